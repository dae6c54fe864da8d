//! `meetings events copy --to postgres://…`: moves an embedded installation (SQLite) to
//! PostgreSQL when it outgrows one process.
//!
//! What cannot be rebuilt is copied in one PostgreSQL transaction, all or nothing: the event
//! log in its global order with every hash as it was (the source verified first, hashes,
//! links, sequences and anchors, so a damaged source is refused rather than copied), and the
//! accounts, sessions and calendar feed addresses (users log in with the same passwords, keep
//! their sessions and their subscribed feeds). The read models are then rebuilt from the copied log, and the
//! target's log is verified (`meetings events verify`). Not copied: login throttles, idempotency
//! records and snapshots — short-lived or derived.
//!
//! The source's lock is held throughout: `meetings serve` cannot run on it meanwhile, so the
//! copy is of one consistent state. The target must hold no events yet.

use std::path::Path;

use platform::db::sqlite::{from_micros, SqliteFile};
use platform::store::{
    Commit, EventStore, NewEvent, PgEventStore, Position, SqliteEventStore, StoredEvent,
};
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// Events read from the source per page.
const PAGE: i64 = 2000;

/// What a copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub events: u64,
    pub aggregates: u64,
    pub accounts: u64,
    pub refresh_tokens: u64,
    pub calendar_feeds: u64,
    /// Events the rebuilt read models were projected from.
    pub projected: u64,
}

/// Why a copy failed: the source's or target's state (1), or reaching them (2).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Unavailable(anyhow::Error),
}

impl CopyError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CopyError::Refused(_) => 1,
            CopyError::Unavailable(_) => 2,
        }
    }
}

fn unavailable(error: impl Into<anyhow::Error>) -> CopyError {
    CopyError::Unavailable(error.into())
}

/// Copies the installation whose event log is `source` into the PostgreSQL database `target`
/// (migrated first); `progress` hears the events copied so far.
pub async fn to_postgres(
    source: &Path,
    target: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Copied, CopyError> {
    if !source.exists() {
        return Err(unavailable(anyhow::anyhow!(
            "{} does not exist",
            source.display()
        )));
    }
    let _lock = crate::embedded::lock(source).map_err(unavailable)?;
    let file = SqliteFile::open_events(source).await.map_err(unavailable)?;
    let pool = PgPool::connect(target).await.map_err(unavailable)?;
    platform::db::migrate(&pool).await.map_err(unavailable)?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .map_err(unavailable)?;
    if existing > 0 {
        return Err(CopyError::Refused(format!(
            "the target already holds {existing} events: copy into an empty database"
        )));
    }

    let source_store = SqliteEventStore::new(file.clone());
    verified(&source_store, &file).await?;

    let mut copied = Copied::default();
    let mut tx = pool.begin().await.map_err(unavailable)?;
    copied.accounts = copy_accounts(&file, &mut tx).await?;
    copied.refresh_tokens = copy_refresh_tokens(&file, &mut tx).await?;
    copied.calendar_feeds = copy_calendar_feeds(&file, &mut tx).await?;
    let mut after = Position::START;
    loop {
        let page = source_store
            .read_all(Some(after), PAGE)
            .await
            .map_err(unavailable)?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for commit in commits(&page) {
            append(&mut tx, commit).await?;
            copied.events += commit.len() as u64;
            // A verified log starts every aggregate at sequence 1.
            copied.aggregates += u64::from(commit[0].sequence == 1);
        }
        progress(copied.events);
    }
    tx.commit().await.map_err(unavailable)?;

    // The read models, from the copied log alone.
    let target_store = PgEventStore::new(pool.clone());
    copied.projected = projector::rebuild(&target_store, &pool)
        .await
        .map_err(unavailable)? as u64;
    Ok(copied)
}

/// The events of `page` as commits: runs of one aggregate's consecutive events, in order.
fn commits(page: &[StoredEvent]) -> Vec<&[StoredEvent]> {
    page.chunk_by(|a, b| {
        a.aggregate_type == b.aggregate_type
            && a.aggregate_id == b.aggregate_id
            && b.sequence == a.sequence + 1
    })
    .collect()
}

/// Refuses a source that `meetings events verify` would not pass: every hash, link and
/// sequence, and its anchors (a deleted whole aggregate, a cut-off tail). The source is
/// locked, so what is verified is what is copied.
async fn verified(store: &SqliteEventStore, file: &SqliteFile) -> Result<(), CopyError> {
    let mut anchors = audit::anchor::SqliteAnchors(file.clone());
    let report = audit::verify::verify_store(store, &mut anchors, Default::default(), &|_| {})
        .await
        .map_err(unavailable)?;
    match report.problems.first() {
        None => Ok(()),
        Some(first) => Err(CopyError::Refused(format!(
            "the source log does not verify: {} problem(s), the first at {}: {:?}, {} \
             (`meetings events verify` lists every finding)",
            report.problem_count, first.position, first.kind, first.detail
        ))),
    }
}

/// Appends `events` (one aggregate's consecutive events) to the target as one commit.
async fn append(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    events: &[StoredEvent],
) -> Result<(), CopyError> {
    let first = &events[0];
    let aggregate_type = match first.aggregate_type.as_str() {
        "user" => "user",
        "meeting" => "meeting",
        other => {
            return Err(CopyError::Refused(format!(
                "event at {} has an unknown aggregate type {other:?}",
                first.position
            )))
        }
    };
    let commit = Commit {
        aggregate_type,
        aggregate_id: first.aggregate_id,
        expected_sequence: first.sequence - 1,
        prev_hash: first.prev_hash.clone(),
        events: events
            .iter()
            .map(|e| NewEvent {
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at: e.recorded_at,
            })
            .collect(),
        side_effects: vec![],
        idempotency: None,
    };
    platform::store::postgres::append_in(tx, &commit)
        .await
        .map_err(|e| CopyError::Refused(format!("the target refused {}: {e}", first.position)))?;
    Ok(())
}

/// An optional microseconds column as a time.
fn time(row: &sqlx::sqlite::SqliteRow, column: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    row.get::<Option<i64>, _>(column).map(from_micros)
}

async fn copy_accounts(
    file: &SqliteFile,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<u64, CopyError> {
    let rows = sqlx::query("SELECT * FROM accounts ORDER BY created_at, user_id")
        .fetch_all(&file.reader)
        .await
        .map_err(unavailable)?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO accounts (user_id, email_key, password_hash, active, session_version, \
                                   sessions_revoked_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.get::<Uuid, _>("user_id"))
        .bind(row.get::<String, _>("email_key"))
        .bind(row.get::<String, _>("password_hash"))
        .bind(row.get::<bool, _>("active"))
        .bind(row.get::<i32, _>("session_version"))
        .bind(time(row, "sessions_revoked_at"))
        .bind(time(row, "created_at"))
        .bind(time(row, "updated_at"))
        .execute(&mut **tx)
        .await
        .map_err(|e| CopyError::Refused(format!("the target refused an account: {e}")))?;
    }
    Ok(rows.len() as u64)
}

async fn copy_refresh_tokens(
    file: &SqliteFile,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<u64, CopyError> {
    let rows = sqlx::query("SELECT * FROM refresh_tokens ORDER BY issued_at, token_hash")
        .fetch_all(&file.reader)
        .await
        .map_err(unavailable)?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at, \
                                         family_expires_at, used_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.get::<Vec<u8>, _>("token_hash"))
        .bind(row.get::<Uuid, _>("family_id"))
        .bind(row.get::<Uuid, _>("user_id"))
        .bind(time(row, "issued_at"))
        .bind(time(row, "expires_at"))
        .bind(time(row, "family_expires_at"))
        .bind(time(row, "used_at"))
        .bind(time(row, "revoked_at"))
        .execute(&mut **tx)
        .await
        .map_err(|e| CopyError::Refused(format!("the target refused a session: {e}")))?;
    }
    Ok(rows.len() as u64)
}

async fn copy_calendar_feeds(
    file: &SqliteFile,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<u64, CopyError> {
    let rows = sqlx::query("SELECT * FROM calendar_feeds ORDER BY created_at, user_id")
        .fetch_all(&file.reader)
        .await
        .map_err(unavailable)?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO calendar_feeds (user_id, token_hash, token, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(row.get::<Uuid, _>("user_id"))
        .bind(row.get::<Vec<u8>, _>("token_hash"))
        .bind(row.get::<String, _>("token"))
        .bind(time(row, "created_at"))
        .execute(&mut **tx)
        .await
        .map_err(|e| CopyError::Refused(format!("the target refused a calendar feed: {e}")))?;
    }
    Ok(rows.len() as u64)
}
