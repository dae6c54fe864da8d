//! SQLite files of embedded mode: one writer connection and a pool of readers per file.
//!
//! SQLite lets one transaction write at a time. Rather than let several pooled connections
//! race for the lock (and fail with `SQLITE_BUSY` when a reader tries to upgrade), every
//! write goes through a pool of exactly one connection: writes queue in-process, in order,
//! and readers (WAL) never wait for them. That single writer is also what makes the event
//! log's ids a global order without skips (see `migrations/sqlite/events`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};

/// The command side's schema: events, accounts, sessions, idempotency records, anchors.
pub static EVENTS_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite/events");

/// The read models' schema: everything the projector writes and the queries read.
pub static READ_MODELS_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("../migrations/sqlite/read-models");

/// How durable a file's commits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// `synchronous=FULL`: a commit that returned survives a power cut (the event log).
    Full,
    /// `synchronous=NORMAL`: a commit may be lost by a power cut, never corrupted (files that
    /// can be rebuilt from the log).
    Rebuildable,
}

/// Reading connections of a file opened without a setting (tools, tests).
const DEFAULT_READERS: u32 = 8;

/// One SQLite file: its single writer and its readers.
#[derive(Clone, Debug)]
pub struct SqliteFile {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
}

impl SqliteFile {
    /// Opens (creating it if missing) the file at `path` in WAL mode, with foreign keys on,
    /// and applies `migrator`.
    async fn open(
        path: &Path,
        durability: Durability,
        migrator: &'static sqlx::migrate::Migrator,
        readers: u32,
    ) -> anyhow::Result<Self> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| anyhow::anyhow!("{}: not a usable SQLite path: {e}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Rebuildable => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            // Another process (the audit CLI) may hold the write lock for a moment.
            .busy_timeout(Duration::from_secs(5))
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        migrator
            .run(&writer)
            .await
            .map_err(|e| anyhow::anyhow!("migrations of {} failed: {e}", path.display()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open {} to read: {e}", path.display()))?;
        Ok(Self { writer, reader })
    }

    /// The event log and the command side: `synchronous=FULL`, [`EVENTS_MIGRATOR`].
    pub async fn open_events(path: &Path) -> anyhow::Result<Self> {
        Self::open_events_with_readers(path, DEFAULT_READERS).await
    }

    /// [`Self::open_events`] with at most `readers` reading connections (embedded mode's
    /// `MEETINGS_DATABASE_MAX_CONNECTIONS`).
    pub async fn open_events_with_readers(path: &Path, readers: u32) -> anyhow::Result<Self> {
        Self::open(path, Durability::Full, &EVENTS_MIGRATOR, readers).await
    }

    /// The read models: rebuildable from the log, [`READ_MODELS_MIGRATOR`].
    pub async fn open_read_models(path: &Path) -> anyhow::Result<Self> {
        Self::open_read_models_with_readers(path, DEFAULT_READERS).await
    }

    /// [`Self::open_read_models`] with at most `readers` reading connections.
    pub async fn open_read_models_with_readers(path: &Path, readers: u32) -> anyhow::Result<Self> {
        Self::open(
            path,
            Durability::Rebuildable,
            &READ_MODELS_MIGRATOR,
            readers,
        )
        .await
    }

    /// Readiness: the file is readable and every migration of `migrator` applied, or why not.
    pub async fn ready(&self, migrator: &sqlx::migrate::Migrator) -> Result<(), String> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.reader)
                .await
                .map_err(|e| format!("unreadable: {e}"))?;
        if super::all_applied(migrator, &applied) {
            Ok(())
        } else {
            Err("migrations not applied".into())
        }
    }
}

/// A time as SQLite keeps it: microseconds since the epoch (PostgreSQL's precision).
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The time of [`micros`].
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A column of microseconds ([`micros`]) as a time.
pub fn time_column(row: &SqliteRow, column: &str) -> sqlx::Result<DateTime<Utc>> {
    Ok(from_micros(row.try_get(column)?))
}

/// `text` (of `column`) as JSON, or a decoding error naming the column.
pub fn json_text<T: DeserializeOwned>(column: &str, text: &str) -> sqlx::Result<T> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// A JSON text column, decoded.
pub fn json_column<T: DeserializeOwned>(row: &SqliteRow, column: &str) -> sqlx::Result<T> {
    json_text(column, row.try_get(column)?)
}

/// A nullable JSON text column, decoded (`None`: NULL).
pub fn optional_json_column<T: DeserializeOwned>(
    row: &SqliteRow,
    column: &str,
) -> sqlx::Result<Option<T>> {
    let text: Option<&str> = row.try_get(column)?;
    text.map(|text| json_text(column, text)).transpose()
}

/// Whether an SQLite error is worth retrying: the file is locked by another process (for
/// longer than the busy timeout) or the pool is exhausted.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Io(_) => true,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                && db
                    .code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(|code| matches!(code & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// Which unique constraint an SQLite error names (`UNIQUE constraint failed: t.a, t.b`):
/// SQLite has no constraint names in its errors, so callers match on the table and columns.
pub fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db
            .message()
            .strip_prefix("UNIQUE constraint failed: ")
            .or_else(|| db.message().strip_prefix("PRIMARY KEY constraint failed: ")),
        _ => None,
    }
}
