//! Rebuilding the read models while the system runs (`meetings events replay`).
//!
//! 1. **Shadow**: a copy of every read-model table's definition (columns, defaults, storage
//!    options, primary keys, grants) in the schema [`SHADOW`], empty.
//! 2. **Build**: the events, in global order from the store, folded by the projector's own
//!    fold on a connection whose `search_path` is the shadow schema, in bulk ([`bulk`]: what
//!    the events touch is kept in memory and written once, documents rendered at the end).
//!    The live projector keeps running; readers keep reading the live tables.
//! 3. **Documents and indexes**: unique keys, foreign keys and secondary indexes, deferred
//!    until the bulk of the rows is in (one sort each instead of one index insertion per row),
//!    built on two connections at once while the meeting documents are rendered from the
//!    final rows on the third; keys attached and foreign keys checked last; then a catch-up
//!    with the new events, by the projector's batch code from here on.
//! 4. **Swap**: the projector lock is taken (the active projector, if any, is pre-empted: its
//!    connection is ended, its uncommitted batch rolls back, and it stands by); the shadow
//!    catches up with every event readable; then, in one transaction, the live tables move
//!    out and the shadow tables move in under the same names, and the new checkpoint is
//!    announced. A reader's statement sees either the old tables or the new ones whole.
//! 5. **Continue**: the lock is released; the projector leads again and resumes from the new
//!    checkpoint. A NATS projector resumes from the old stream sequence, carried over: what
//!    the shadow already holds is redelivered and skipped by sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::tail::StoreTail;
use platform::store::{EventStore, Position};
use sqlx::{Connection, PgConnection, PgPool};

use crate::apply::{apply_isolating_announcing, NOTIFY_CHANNEL, PROJECTION};
use shadow::{attach_keys, build_indexes, prepare_shadow, Deferred};

mod bulk;
mod decoding;
mod shadow;

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

/// The table the build writes last (its rows depend on the final rows of the others).
const DOCUMENTS: &str = "rm_meeting_documents";

/// Tables the projector only inserts into (never looks up or updates): their keys are
/// added after the build, like secondary indexes.
const APPEND_ONLY: &[&str] = &["rm_chat_messages", "rm_changes"];

/// Tables the build deletes from by a secondary index (a user's stale directory prefixes, by
/// `user_id`): that index is made with the table, not deferred, or each delete would scan.
const INDEXED_EARLY: &[&str] = &["rm_user_prefixes"];

/// Events per batch while building: two batches are in memory at a time (one applied, the
/// next read), which keeps a replay's resident memory under 100 MiB.
const BATCH: i64 = 2000;

/// Events per batch of the bulk build (two in memory at a time: one folded, the next read;
/// beside the held rows).
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
    store: Arc<dyn EventStore>,
    progress: &(dyn Fn(Phase, u64) + Sync),
) -> anyhow::Result<Outcome> {
    replay_with(pool, store, progress, Limits::default()).await
}

/// [`replay`], holding users and meetings in memory within `limits` while building.
pub async fn replay_with(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
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
    let result = build_and_swap(pool, &store, &live, &deferred, progress, limits).await;
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
    store: &Arc<dyn EventStore>,
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
        .build(store.clone(), limits, |n| progress(Phase::Build, n))
        .await?;
    progress(Phase::Index, builder.applied);
    // The documents are rendered while the other tables' indexes are built (they only read
    // those tables), the documents' own indexes after.
    let (rendered, indexed) = tokio::join!(
        bulk::render_documents(&mut builder.conn),
        build_indexes(pool, deferred, DOCUMENTS)
    );
    rendered?;
    indexed?;
    attach_keys(&mut builder.conn, deferred, DOCUMENTS).await?;
    builder
        .catch_up(store.as_ref(), |n| progress(Phase::CatchUp, n))
        .await?;

    let mut attempt = 0;
    loop {
        attempt += 1;
        progress(Phase::Swap, builder.applied);
        let mut lock = take_projection_lock(pool).await?;
        let paused = Instant::now();
        builder
            .catch_up(store.as_ref(), |n| progress(Phase::Swap, n))
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
    /// next batch is read and decoded, on a task of its own ([`decoding`]), while the current
    /// one is folded and written.
    async fn build(
        mut self,
        store: Arc<dyn EventStore>,
        limits: Limits,
        progress: impl Fn(u64),
    ) -> anyhow::Result<Self> {
        let mut bulk = bulk::Bulk::new(self.conn, SHADOW_CHANNEL, limits);
        let mut batches = decoding::Decoding::start(store, self.after, BULK_BATCH);
        let mut newest = None;
        while let Some(events) = batches.next().await? {
            bulk.apply(&events).await?;
            if let Some(after) = events.last().map(|(e, _)| e.position) {
                self.after = after;
                newest = Some(after);
            }
            progress(self.applied + bulk.counts().0);
        }
        let (applied, reloaded) = bulk.counts();
        self.conn = bulk.finish(newest).await?;
        self.applied += applied;
        self.reloaded += reloaded;
        Ok(self)
    }

    /// Applies everything readable now by the projector's batch code. The next batch is read
    /// while the current one is applied, so at most two batches are in memory.
    async fn catch_up(
        &mut self,
        store: &dyn EventStore,
        progress: impl Fn(u64),
    ) -> anyhow::Result<()> {
        let mut batches = ReadAhead::start(store, self.after, BATCH).await?;
        while let Some(envelopes) = batches.take() {
            let apply = apply_isolating_announcing(
                &mut self.conn,
                &envelopes,
                None,
                self.upcasters,
                SHADOW_CHANNEL,
            );
            self.applied += batches.reading(apply).await??.applied as u64;
            if let Some(after) = envelopes.last().map(|e| e.position) {
                self.after = after;
            }
            progress(self.applied);
        }
        Ok(())
    }
}

/// The events after a position in batches, each next one read while the caller works on the
/// current one.
struct ReadAhead<'s> {
    tail: StoreTail<'s>,
    batch: i64,
    next: Vec<platform::store::StoredEvent>,
    /// Whether `next` is the last batch readable now (it came short).
    last: bool,
}

impl<'s> ReadAhead<'s> {
    async fn start(store: &'s dyn EventStore, after: Position, batch: i64) -> anyhow::Result<Self> {
        let mut tail = StoreTail::new(store, after, batch);
        let next = tail.read().await?;
        Ok(ReadAhead {
            tail,
            batch,
            last: false,
            next,
        })
    }

    /// The current batch, `None` at the end of what is readable now.
    fn take(&mut self) -> Option<Vec<EventEnvelope>> {
        if self.next.is_empty() {
            return None;
        }
        self.last = self.next.len() < self.batch as usize;
        Some(
            std::mem::take(&mut self.next)
                .into_iter()
                .map(EventEnvelope::from)
                .collect(),
        )
    }

    /// Runs `work` on the current batch while the next one is read (none after a short one:
    /// it was the end of what is readable now).
    async fn reading<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> anyhow::Result<T> {
        let tail = &mut self.tail;
        let last = self.last;
        let read = async move {
            if last {
                Ok(Vec::new())
            } else {
                tail.read().await
            }
        };
        let (read, done) = tokio::join!(read, work);
        self.next = read?;
        Ok(done)
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
