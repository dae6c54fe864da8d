//! The services of the system started in this process as their binaries start them: a
//! `Settings` literal and the service's own `build`. Used by [`crate::Stack`] and by the
//! benchmarks, hence fallible: a benchmark reports an error and drops its database.
//!
//! Literals rather than `parse()`, so that a developer's `MEETINGS_*` variables cannot leak
//! in; the shared pieces come from `platform::testing`.

use platform::bus::StreamName;
use platform::config::HttpLimits;
use platform::testing::{self, TestServer};

/// The command-service, without NATS: the end-to-end tests run the relay beside it, so that
/// they can kill it alone.
pub fn command_settings(database_url: &str, max_connections: u32) -> command_service::Settings {
    command_service::Settings {
        database: testing::database_settings(database_url, max_connections),
        jwt: testing::jwt_settings(),
        log: testing::log_settings(),
        auth: command_service::AuthSettings::default(),
        limits: robot_limits(),
        nats: testing::without_nats(),
        http: HttpLimits::default(),
        audit: audit::anchor::AuditSettings::default(),
        listen: testing::LISTEN,
    }
}

/// Limits for clients that are test robots: every one registers from 127.0.0.1 and drives
/// its user far faster than a person would. The limits themselves are tested on their own
/// (`command-service/tests/limits.rs`).
pub fn robot_limits() -> command_service::LimitSettings {
    let plenty = 1_000_000.try_into().expect("not zero");
    command_service::LimitSettings {
        command_rate: plenty,
        command_burst: plenty,
        meetings_per_day: plenty,
        chat_per_minute: plenty,
        registrations_per_hour: plenty,
        trusted_proxies: Vec::new(),
    }
}

/// The query-service with the binary's defaults.
pub fn query_settings(database_url: &str, max_connections: u32) -> query_service::Settings {
    query_service::Settings {
        database: testing::database_settings(database_url, max_connections),
        jwt: testing::jwt_settings(),
        log: testing::log_settings(),
        http: HttpLimits::default(),
        listen: testing::LISTEN,
        query: query_service::QueryArgs::default(),
    }
}

/// The realtime gateway on `stream`, allowing no browser origin but its own.
pub fn realtime_settings(
    database_url: &str,
    nats_url: &str,
    stream: &StreamName,
) -> realtime::Settings {
    realtime::Settings {
        database: testing::database_settings(database_url, 16),
        nats: testing::nats_settings(nats_url, stream),
        jwt: testing::jwt_settings(),
        log: testing::log_settings(),
        http: HttpLimits::default(),
        listen: testing::LISTEN,
        gateway: realtime::GatewayArgs::default(),
    }
}

/// The projector of `stream`, with its health endpoints on port 0.
pub fn projector_settings(
    database_url: &str,
    nats_url: &str,
    stream: &StreamName,
) -> projector::Settings {
    projector::Settings {
        database: testing::database_settings(database_url, 16),
        nats: testing::nats_settings(nats_url, stream),
        log: testing::log_settings(),
        http: HttpLimits::default(),
        listen: testing::LISTEN,
    }
}

/// Builds the command-service from `settings` and serves it until the handle is dropped.
pub async fn serve_commands(settings: &command_service::Settings) -> anyhow::Result<TestServer> {
    Ok(TestServer::start(command_service::build(settings).await?))
}

/// Builds the query-service from `settings` and serves it until the handle is dropped.
pub async fn serve_queries(settings: &query_service::Settings) -> anyhow::Result<TestServer> {
    Ok(TestServer::start(query_service::build(settings).await?))
}

/// `meetings serve` in embedded mode with its files in `data_dir` (the default SQLite
/// location), on port 0.
pub fn embedded_settings(data_dir: &std::path::Path) -> meetings::serve::ServeArgs {
    meetings::serve::ServeArgs {
        database: platform::config::DatabaseSettings {
            database_url: None,
            max_connections: 16,
        },
        jwt: testing::jwt_settings(),
        auth: command_service::AuthSettings::default(),
        limits: robot_limits(),
        nats: testing::without_nats(),
        query: query_service::QueryArgs::default(),
        gateway: realtime::GatewayArgs::default(),
        http: HttpLimits::default(),
        audit: audit::anchor::AuditSettings::default(),
        listen: testing::LISTEN,
        data_dir: data_dir.to_path_buf(),
    }
}

/// Embedded mode built as `meetings serve` builds it, on `<directory>/meetings.db`, with
/// `configure` applied to [`embedded_settings`] first; signing with `jwt`.
pub async fn build_embedded(
    directory: &testing::TestDirectory,
    jwt: std::sync::Arc<platform::auth::JwtKeys>,
    configure: impl FnOnce(&mut meetings::serve::ServeArgs),
) -> anyhow::Result<meetings::embedded::Embedded> {
    let mut settings = embedded_settings(&directory.path);
    configure(&mut settings);
    meetings::embedded::build(&settings, jwt, &directory.file("meetings.db")).await
}
