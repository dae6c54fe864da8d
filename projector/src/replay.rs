//! Rebuilding the read models while the system runs (`meetings events replay`).
//!
//! 1. **Shadow**: a copy of every read-model table's definition (columns, defaults, storage
//!    options, primary keys, grants) in the schema [`SHADOW`], empty.
//! 2. **Build**: the events, in global order from the store, folded by the projector's own
//!    fold on a connection whose `search_path` is the shadow schema, in bulk ([`bulk`]: what
//!    the events touch is kept in memory and written once, documents rendered at the end).
//!    The live projector keeps running; readers keep reading the live tables.
//! 3. **Indexes**: unique constraints, foreign keys and secondary indexes, deferred until the
//!    bulk of the rows is in (one sort each instead of one index insertion per row), on two
//!    connections at once (a table after another on each), foreign keys last; then a
//!    catch-up with the new events, by the projector's batch code from here on.
//! 4. **Swap**: the projector lock is taken (the active projector, if any, is pre-empted: its
//!    connection is ended, its uncommitted batch rolls back, and it stands by); the shadow
//!    catches up with every event readable; then, in one transaction, the live tables move
//!    out and the shadow tables move in under the same names, and the new checkpoint is
//!    announced. A reader's statement sees either the old tables or the new ones whole.
//! 5. **Continue**: the lock is released; the projector leads again and resumes from the new
//!    checkpoint. A NATS projector resumes from the old stream sequence, carried over: what
//!    the shadow already holds is redelivered and skipped by sequence.

use std::time::{Duration, Instant};

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::tail::StoreTail;
use platform::store::{EventStore, Position};
use sqlx::{Connection, PgConnection, PgPool};

use crate::apply::{apply_isolating_announcing, NOTIFY_CHANNEL, PROJECTION};

mod bulk;

pub use bulk::Limits;

/// Where the new read models are built.
pub const SHADOW: &str = "meetings_replay";
/// Where the old ones go for the moment of the swap.
const RETIRED: &str = "meetings_retired";
/// Checkpoints of the shadow are announced here: nobody waits on them.
const SHADOW_CHANNEL: &str = "meetings_replay_progress";

/// The projections a replay can rebuild. The read models are one projection today (one
/// fold writes every `rm_*` table in one statement with one checkpoint), so `--all` and
/// `--projection read_models` are the same rebuild.
pub const PROJECTIONS: &[&str] = &[PROJECTION];

/// Every table of the projection, referenced tables before the tables referring to them.
pub const TABLES: &[&str] = &[
    "projection_checkpoints",
    "projection_sequences",
    "rm_users",
    "rm_user_prefixes",
    "rm_meetings",
    "rm_meeting_attendees",
    "rm_meeting_documents",
    "rm_agenda",
    "rm_chat_messages",
    "rm_changes",
];

/// Tables the projector only inserts into (never looks up or updates): their keys are
/// added after the build, like secondary indexes.
const APPEND_ONLY: &[&str] = &["rm_chat_messages", "rm_changes"];

/// Tables the build deletes from by a secondary index (a user's stale directory prefixes, by
/// `user_id`): that index is made with the table, not deferred, or each delete would scan.
const INDEXED_EARLY: &[&str] = &["rm_user_prefixes"];

/// Events per batch while building: two batches are in memory at a time (one applied, the
/// next read), which keeps a replay's resident memory under 100 MiB.
const BATCH: i64 = 2000;

/// Events per batch of the bulk build (two in memory at a time, beside the held rows).
const BULK_BATCH: i64 = 2000;

/// Longest the swap waits for readers' locks before it gives up and tries again.
const SWAP_LOCK_TIMEOUT: &str = "5s";

/// Where a replay is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Build,
    Index,
    CatchUp,
    Swap,
}

/// What a replay did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Events applied to the new read models.
    pub events: u64,
    /// The checkpoint the new read models took over with.
    pub position: Option<Position>,
    /// How long the projection was paused for the swap (lock to release).
    pub paused: Duration,
    /// Users and meetings the build wrote, met again and loaded back ([`Limits`]).
    pub reloaded: u64,
}

/// Rebuilds the read models of `pool` from `store` while services keep using them (see the
/// module's documentation). `progress` hears the phase and the events applied so far.
pub async fn replay(
    pool: &PgPool,
    store: &dyn EventStore,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> anyhow::Result<Outcome> {
    replay_with(pool, store, progress, Limits::default()).await
}

/// [`replay`], holding users and meetings in memory within `limits` while building.
pub async fn replay_with(
    pool: &PgPool,
    store: &dyn EventStore,
    progress: &(dyn Fn(Phase, u64) + Sync),
    limits: Limits,
) -> anyhow::Result<Outcome> {
    let Some(mut guard) = platform::leader::try_lead(pool, "meetings-replay").await? else {
        anyhow::bail!("another replay of this database is running");
    };
    // `DROP … IF EXISTS` and `CASCADE` notices are expected here, not news.
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut guard)
        .await?;
    let live = live_schema(&mut guard).await?;
    let deferred = prepare_shadow(&mut guard, &live).await?;
    let result = build_and_swap(pool, store, &live, &deferred, progress, limits).await;
    if result.is_err() {
        // Leave nothing half-built behind; the live read models were never touched.
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW} CASCADE"))
            .execute(&mut guard)
            .await
            .ok();
    }
    guard.close().await.ok();
    result
}

async fn build_and_swap(
    pool: &PgPool,
    store: &dyn EventStore,
    live: &str,
    deferred: &Deferred,
    progress: &(dyn Fn(Phase, u64) + Sync),
    limits: Limits,
) -> anyhow::Result<Outcome> {
    let upcasters = domain::upcasters::upcasters();
    let mut shadow = pool.acquire().await?.detach();
    sqlx::query(&format!(
        "SELECT set_config('search_path', '{SHADOW}, pg_catalog', false), \
                set_config('synchronous_commit', 'off', false), \
                set_config('client_min_messages', 'warning', false)"
    ))
    .execute(&mut shadow)
    .await?;
    crate::projection::key_lookup_plans(&mut shadow).await?;
    let builder = Builder {
        conn: shadow,
        upcasters: &upcasters,
        after: Position::START,
        applied: 0,
        reloaded: 0,
    };

    let mut builder = builder
        .build(store, limits, |n| progress(Phase::Build, n))
        .await?;
    progress(Phase::Index, builder.applied);
    complete_shadow(&mut builder.conn, pool, deferred).await?;
    builder
        .catch_up(store, |n| progress(Phase::CatchUp, n))
        .await?;

    let mut attempt = 0;
    loop {
        attempt += 1;
        progress(Phase::Swap, builder.applied);
        let mut lock = take_projection_lock(pool).await?;
        let paused = Instant::now();
        builder
            .catch_up(store, |n| progress(Phase::Swap, n))
            .await?;
        match swap(&mut lock, live).await {
            Ok(position) => {
                lock.close().await.ok();
                builder.conn.close().await.ok();
                return Ok(Outcome {
                    events: builder.applied,
                    position,
                    paused: paused.elapsed(),
                    reloaded: builder.reloaded,
                });
            }
            // Readers held their locks longer than the timeout: let the projector run
            // again meanwhile and retry.
            Err(error) if attempt < 3 && is_lock_timeout(&error) => {
                tracing::warn!(%error, "the swap waited too long for readers; retrying");
                lock.close().await.ok();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// Applies events to the shadow tables.
struct Builder<'u> {
    conn: PgConnection,
    upcasters: &'u [Box<dyn EventUpcaster>],
    after: Position,
    applied: u64,
    reloaded: u64,
}

impl Builder<'_> {
    /// Folds everything readable now into the empty shadow tables, in bulk ([`bulk`]). The
    /// next batch is read while the current one is folded and written.
    async fn build(
        mut self,
        store: &dyn EventStore,
        limits: Limits,
        progress: impl Fn(u64),
    ) -> anyhow::Result<Self> {
        let mut bulk = bulk::Bulk::new(self.conn, self.upcasters, SHADOW_CHANNEL, limits);
        let mut tail = StoreTail::new(store, self.after, BULK_BATCH);
        let mut next = tail.read().await?;
        let mut newest = None;
        while !next.is_empty() {
            let last = next.len() < BULK_BATCH as usize;
            let envelopes: Vec<EventEnvelope> = std::mem::take(&mut next)
                .into_iter()
                .map(EventEnvelope::from)
                .collect();
            let read = async {
                if last {
                    Ok(Vec::new())
                } else {
                    tail.read().await
                }
            };
            let (read, applied) = tokio::join!(read, bulk.apply(&envelopes));
            applied?;
            if let Some(after) = envelopes.last().map(|e| e.position) {
                self.after = after;
                newest = Some(after);
            }
            progress(self.applied + bulk.counts().0);
            next = read?;
        }
        let (applied, reloaded) = bulk.counts();
        self.conn = bulk.finish(newest).await?;
        self.applied += applied;
        self.reloaded += reloaded;
        Ok(self)
    }

    /// Applies everything readable now. The next batch is read while the current one is
    /// applied, so at most two batches are in memory.
    async fn catch_up(
        &mut self,
        store: &dyn EventStore,
        progress: impl Fn(u64),
    ) -> anyhow::Result<()> {
        let mut tail = StoreTail::new(store, self.after, BATCH);
        let mut next = tail.read().await?;
        while !next.is_empty() {
            let last = next.len() < BATCH as usize;
            let envelopes: Vec<EventEnvelope> = std::mem::take(&mut next)
                .into_iter()
                .map(EventEnvelope::from)
                .collect();
            let after = envelopes.last().map(|e| e.position);
            let read = async {
                if last {
                    // A short batch was the end of what is readable now.
                    Ok(Vec::new())
                } else {
                    tail.read().await
                }
            };
            let apply = apply_isolating_announcing(
                &mut self.conn,
                &envelopes,
                None,
                self.upcasters,
                SHADOW_CHANNEL,
            );
            let (read, applied) = tokio::join!(read, apply);
            self.applied += applied?.applied as u64;
            if let Some(after) = after {
                self.after = after;
            }
            progress(self.applied);
            next = read?;
        }
        Ok(())
    }
}

/// The schema the live read models are in (where `rm_users` resolves).
async fn live_schema(conn: &mut PgConnection) -> anyhow::Result<String> {
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT quote_ident(n.nspname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = to_regclass('rm_users')",
    )
    .fetch_one(conn)
    .await?;
    schema.ok_or_else(|| anyhow::anyhow!("the read models do not exist: run `meetings migrate`"))
}

/// Creates the empty shadow tables with their primary keys, storage options and grants;
/// answers the statements that complete them after the bulk build (unique constraints,
/// foreign keys, secondary indexes).
async fn prepare_shadow(conn: &mut PgConnection, live: &str) -> anyhow::Result<Deferred> {
    let mut now = vec![
        format!("DROP SCHEMA IF EXISTS {SHADOW} CASCADE"),
        format!("CREATE SCHEMA {SHADOW}"),
    ];
    let mut deferred = Deferred::default();
    for table in TABLES {
        let mut completing = Vec::new();
        let source = format!("{live}.{table}");
        let target = format!("{SHADOW}.{table}");
        // Unlogged while it is built: no write-ahead log for rows that a crash would make
        // worthless anyway (a failed replay starts over); logged before it can be swapped in
        // (first, before it has indexes: that rewrites the table). Logging the append-only
        // tables from the start instead measured the same.
        now.push(format!(
            "CREATE UNLOGGED TABLE {target} (LIKE {source} INCLUDING DEFAULTS \
             INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED \
             INCLUDING IDENTITY)"
        ));
        completing.push(format!("ALTER TABLE {target} SET LOGGED"));
        let options: Option<Vec<String>> =
            sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = $1::regclass")
                .bind(&source)
                .fetch_one(&mut *conn)
                .await?;
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            now.push(format!("ALTER TABLE {target} SET ({})", options.join(", ")));
        }
        let constraints: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT contype::text, quote_ident(conname), pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'f') \
             ORDER BY conname",
        )
        .bind(&source)
        .fetch_all(&mut *conn)
        .await?;
        for (kind, name, definition) in constraints {
            let definition = definition.replace(&format!("REFERENCES {live}."), "REFERENCES ");
            let statement = format!("ALTER TABLE {target} ADD CONSTRAINT {name} {definition}");
            match kind.as_str() {
                // Tables the build only appends to need no key until it ends.
                "p" if !APPEND_ONLY.contains(table) => now.push(statement),
                "f" => deferred.foreign.push(statement),
                _ => completing.push(statement),
            }
        }
        let definitions: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = $1::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
             ORDER BY i.indexrelid",
        )
        .bind(&source)
        .fetch_all(&mut *conn)
        .await?;
        for definition in definitions {
            let index = retarget_index(&definition, &target)?;
            if INDEXED_EARLY.contains(table) {
                now.push(index);
            } else {
                completing.push(index);
            }
        }
        let grants: Vec<String> = sqlx::query_scalar(
            "SELECT format('GRANT %s ON %s TO %s', a.privilege_type, $2::text, \
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                         ELSE quote_ident(pg_get_userbyid(a.grantee)) END) \
             FROM pg_class c, aclexplode(c.relacl) a \
             WHERE c.oid = $1::regclass AND a.grantee <> c.relowner",
        )
        .bind(&source)
        .bind(&target)
        .fetch_all(&mut *conn)
        .await?;
        now.extend(grants);
        let owner: String = sqlx::query_scalar(
            "SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(&source)
        .fetch_one(&mut *conn)
        .await?;
        now.push(format!(
            "DO $$ BEGIN IF quote_ident(current_user) <> '{owner}' THEN \
             EXECUTE 'ALTER TABLE {target} OWNER TO {owner}'; END IF; END $$"
        ));
        deferred.tables.push(completing);
    }
    let mut tx = conn.begin().await?;
    for statement in &now {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(deferred)
}

/// The statements that complete the shadow tables after the bulk build.
#[derive(Debug, Default)]
struct Deferred {
    /// Per table, in order: `SET LOGGED`, its unique constraints and secondary indexes.
    tables: Vec<Vec<String>>,
    /// Foreign keys, once every table has its keys (unqualified references: run with the
    /// shadow schema first in `search_path`).
    foreign: Vec<String>,
}

/// Runs the deferred statements: the tables' on two connections at once (one table after
/// another on each, the longest first: PostgreSQL builds one index per connection on one
/// core), then the foreign keys on `conn`.
async fn complete_shadow(
    conn: &mut PgConnection,
    pool: &PgPool,
    deferred: &Deferred,
) -> anyhow::Result<()> {
    let mut tables: Vec<&Vec<String>> = deferred.tables.iter().collect();
    tables.sort_by_key(|statements| std::cmp::Reverse(statements.len()));
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(tables));
    let mut second = pool.acquire().await?.detach();
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut second)
        .await?;
    let (first, other) = tokio::join!(drain(conn, &queue), drain(&mut second, &queue));
    second.close().await.ok();
    first?;
    other?;
    for statement in &deferred.foreign {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs the statements of table after table from `queue` until it is empty.
async fn drain(
    conn: &mut PgConnection,
    queue: &std::sync::Mutex<std::collections::VecDeque<&Vec<String>>>,
) -> Result<(), sqlx::Error> {
    loop {
        let Some(statements) = queue.lock().expect("BUG: poisoned").pop_front() else {
            return Ok(());
        };
        for statement in statements {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
    }
}

/// `CREATE INDEX name ON <table> USING …` of a live table, made to create the same index
/// (same name, method, columns, options) on `target`.
fn retarget_index(definition: &str, target: &str) -> anyhow::Result<String> {
    let on = definition
        .find(" ON ")
        .ok_or_else(|| anyhow::anyhow!("unexpected index definition: {definition}"))?;
    let using = definition[on..]
        .find(" USING ")
        .map(|i| on + i)
        .ok_or_else(|| anyhow::anyhow!("unexpected index definition: {definition}"))?;
    let only = if definition[on..using].contains(" ONLY ") {
        "ONLY "
    } else {
        ""
    };
    Ok(format!(
        "{} ON {only}{target}{}",
        &definition[..on],
        &definition[using..]
    ))
}

/// Takes the projection's single-active lock, pre-empting the projector that holds it: its
/// session ends (its open batch rolls back) and it stands by until the lock is free again.
async fn take_projection_lock(pool: &PgPool) -> anyhow::Result<PgConnection> {
    let key = crate::projection::lock_key();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(conn) = platform::leader::try_lead(pool, &key).await? {
            return Ok(conn);
        }
        let holders: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND objsubid = 1 AND database = (SELECT oid FROM pg_database \
                                                WHERE datname = current_database()) \
               AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)::bigint",
        )
        .bind(&key)
        .fetch_all(pool)
        .await?;
        for pid in holders {
            tracing::info!(pid, "pre-empting the active projector for the swap");
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(pool)
                .await?;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "cannot take the projection lock from the active projector"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves the live tables out and the shadow tables in, in one transaction, carrying the
/// stream sequence over and announcing the new checkpoint at commit. Answers the new
/// checkpoint.
async fn swap(conn: &mut PgConnection, live: &str) -> Result<Option<Position>, sqlx::Error> {
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut *conn)
        .await?;
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "UPDATE {SHADOW}.projection_checkpoints s SET stream_sequence = l.stream_sequence \
         FROM {live}.projection_checkpoints l WHERE s.projection = l.projection"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {RETIRED} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {RETIRED}"))
        .execute(&mut *tx)
        .await?;
    for table in TABLES {
        sqlx::query(&format!("ALTER TABLE {live}.{table} SET SCHEMA {RETIRED}"))
            .execute(&mut *tx)
            .await?;
    }
    for table in TABLES {
        sqlx::query(&format!("ALTER TABLE {SHADOW}.{table} SET SCHEMA {live}"))
            .execute(&mut *tx)
            .await?;
    }
    let position: Option<String> = sqlx::query_scalar(&format!(
        "SELECT position FROM {live}.projection_checkpoints WHERE projection = $1"
    ))
    .bind(PROJECTION)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(position) = &position {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(position)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for statement in [
        format!("DROP SCHEMA {RETIRED} CASCADE"),
        format!("DROP SCHEMA {SHADOW}"),
    ] {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(position.and_then(|p| p.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_definition_is_retargeted_with_its_name_method_and_options() {
        assert_eq!(
            retarget_index(
                "CREATE INDEX rm_changes_audience ON public.rm_changes USING gin (audience) WITH (fastupdate='off')",
                "meetings_replay.rm_changes"
            )
            .unwrap(),
            "CREATE INDEX rm_changes_audience ON meetings_replay.rm_changes USING gin (audience) WITH (fastupdate='off')"
        );
    }
}
