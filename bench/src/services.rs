//! The services under test, started in the bench process on `127.0.0.1:0` as their binaries
//! start them — a settings literal and `Application::build` (`e2e::services`) — with the
//! workspace's test key and no log subscriber installed. Each stops (graceful shutdown) when
//! its handle is dropped.

use std::time::Duration;

use platform::testing::TestServer;

/// Access tokens outlive any run: a token expiring mid-round would count as errors.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The command-service on the database of `database_url`, with a pool of `pool_size`.
pub async fn command(database_url: &str, pool_size: u32) -> anyhow::Result<TestServer> {
    let mut settings = e2e::services::command_settings(database_url, pool_size);
    settings.auth.access_token_ttl = TOKEN_LIFETIME;
    e2e::services::serve_commands(&settings).await
}

/// The query-service (its projection listener included) with the default `X-Min-Position`
/// wait bound and at most `read_batch` meeting reads per statement.
pub async fn query(
    database_url: &str,
    pool_size: u32,
    read_batch: usize,
) -> anyhow::Result<TestServer> {
    let mut settings = e2e::services::query_settings(database_url, pool_size);
    settings.query.read_batch = read_batch;
    e2e::services::serve_queries(&settings).await
}
