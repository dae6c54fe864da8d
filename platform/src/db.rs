//! PostgreSQL connection and the migrations, embedded once for services, CLI and tests.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub mod sqlite;

/// All migrations of `migrations/`, compiled into every binary that links the platform.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool. Fails fast (a few seconds) when PostgreSQL is unreachable.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .map_err(|e| anyhow::anyhow!("MEETINGS_DATABASE_URL is not a valid PostgreSQL URL: {e}"))?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before every use: it doubled the round trips of the hottest command. A dead
        // connection surfaces as one failed statement (503, retried by the client) and is
        // then dropped from the pool.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL (MEETINGS_DATABASE_URL): {e}"))
}

/// Whether a database error is worth retrying: the connection or the server is (perhaps
/// briefly) unavailable, or the transaction lost a serialization race (or, on SQLite, the
/// file is locked by another process). Anything else (a
/// constraint, a type, a syntax error) fails the same way every time.
pub fn is_transient(error: &sqlx::Error) -> bool {
    if sqlite::is_transient(error) {
        return true;
    }
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now;
            // 53: insufficient resources; 40001/40P01: serialization failure, deadlock.
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// Applies pending migrations; running it again is a no-op.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))
}

/// Readiness of a PostgreSQL database: reachable and migrated, or why not.
pub async fn ready(pool: &PgPool) -> Result<(), String> {
    match migrations_applied(pool).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("migrations not applied (run `meetings migrate`)".into()),
        Err(error) => Err(format!("unreachable: {error}")),
    }
}

/// Whether every migration of `migrator` is among the `applied` versions.
fn all_applied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> bool {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.contains(&m.version))
}

/// Whether every embedded migration has been applied (readiness).
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .or_else(|error| match &error {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(vec![]),
                _ => Err(error),
            })?;
    Ok(all_applied(&MIGRATOR, &applied))
}
