//! The query side of meetings: REST endpoints that read the read models (`rm_*` tables) kept by
//! the projector, and nothing else. Every query route accepts `X-Min-Position` (see [`watch`]).
//!
//! `main.rs` is thin: tests and the all-in-one `meetings serve` use the same [`build`] parts.

pub mod documents;
pub mod openapi;
pub mod params;
pub mod repository;
pub mod routes;
pub mod slots;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::Router;
use platform::auth::JwtKeys;
use platform::breaker::DatabaseBreaker;
use platform::config::{parse_duration, DatabaseSettings, HttpLimits, JwtSettings, LogSettings};
use platform::http::health::{self, ReadinessCheck};
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::{EventStore, PgEventStore};
use sqlx::PgPool;

use crate::repository::{PgReadModels, ReadModels};
use crate::watch::{MinPositionState, ProjectionWatch};

/// Default address (docs/api.md "Default ports").
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8082";

/// Default bound of an `X-Min-Position` wait (docs/api.md "Common": 2 s).
pub const DEFAULT_MIN_POSITION_WAIT: Duration = Duration::from_secs(2);

/// Settings of the query-service binary.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "query-service", version, about = "meetings query API")]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub http: HttpLimits,
    /// Address to bind, `host:port` such as `0.0.0.0:8082`.
    #[arg(long = "listen", env = "MEETINGS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub query: QueryArgs,
}

/// The query side's own settings, flattened into its binary and into `meetings serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct QueryArgs {
    /// Longest a query with `X-Min-Position` waits for the projection before answering 503
    /// (e.g. `2s`, `500ms`).
    #[arg(long = "min-position-wait", env = "MEETINGS_MIN_POSITION_WAIT", default_value = "2s", value_parser = parse_duration)]
    pub min_position_wait: Duration,
    /// Most meeting reads that arrive together and share one statement (1: each its own).
    #[arg(long = "read-batch", env = "MEETINGS_READ_BATCH", default_value_t = documents::DEFAULT_MAX_BATCH, value_parser = parse_read_batch)]
    pub read_batch: usize,
    /// Base of the absolute URLs handed out (the calendar feed's), e.g.
    /// `https://meetings.example.com`; unset: from the request's `Host`.
    #[arg(long = "public-url", env = "MEETINGS_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
}

/// An `http(s)://host[:port][/path]` base without a trailing slash, query or fragment.
fn parse_public_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(['?', '#', ' ', '@']) =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(format!(
            "`{text}` is not an http(s) base URL such as https://meetings.example.com"
        )),
    }
}

impl QueryArgs {
    /// Refuses an `X-Min-Position` wait that the request timeout would cut off: the query
    /// would answer a timeout instead of its 503 "not reached yet".
    pub fn check(&self, http: &HttpLimits) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.min_position_wait < http.request_timeout,
            "MEETINGS_MIN_POSITION_WAIT ({:?}) must be shorter than \
             MEETINGS_HTTP_REQUEST_TIMEOUT ({:?})",
            self.min_position_wait,
            http.request_timeout
        );
        Ok(())
    }
}

impl Default for QueryArgs {
    fn default() -> Self {
        Self {
            min_position_wait: DEFAULT_MIN_POSITION_WAIT,
            read_batch: documents::DEFAULT_MAX_BATCH,
            public_url: None,
        }
    }
}

/// A batch size of 1 to 1 000.
fn parse_read_batch(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=1000) => Ok(n),
        _ => Err(format!("`{text}` is not a number from 1 to 1000")),
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The read models.
    pub read_models: Arc<dyn ReadModels>,
    /// The event log, for the administrators' history only (an audit shows what was
    /// recorded, not a projection of it).
    pub events: Arc<dyn EventStore>,
    pub jwt: Arc<JwtKeys>,
    /// How far the read models are; `X-Min-Position` waits on it.
    pub watch: ProjectionWatch,
    /// Upper bound of an `X-Min-Position` wait.
    pub min_position_wait: Duration,
    /// Meeting documents, read in batches of what arrives together.
    pub documents: documents::DocumentReader,
    /// `MEETINGS_PUBLIC_URL`: base of absolute URLs (else the request's `Host`).
    pub public_url: Option<Arc<str>>,
}

impl AppState {
    /// The state over PostgreSQL: starts the projection listener and the batched document
    /// reader (needs a Tokio runtime).
    pub fn from_args(pool: PgPool, jwt: Arc<JwtKeys>, args: &QueryArgs) -> Self {
        Self::new(
            Arc::new(PgReadModels::new(pool.clone())),
            Arc::new(PgEventStore::new(pool.clone())),
            ProjectionWatch::start(pool),
            jwt,
            args,
        )
    }

    /// The state over any backend, with `watch` telling how far its read models are.
    pub fn new(
        read_models: Arc<dyn ReadModels>,
        events: Arc<dyn EventStore>,
        watch: ProjectionWatch,
        jwt: Arc<JwtKeys>,
        args: &QueryArgs,
    ) -> Self {
        Self {
            watch,
            documents: documents::DocumentReader::start(read_models.clone(), args.read_batch),
            read_models,
            events,
            jwt,
            min_position_wait: args.min_position_wait,
            public_url: args.public_url.as_deref().map(Arc::from),
        }
    }
}

impl FromRef<AppState> for Arc<JwtKeys> {
    fn from_ref(state: &AppState) -> Self {
        state.jwt.clone()
    }
}

/// Readiness fails while any projection is stopped on an event it cannot apply: the read
/// models would silently stay behind otherwise (docs/architecture.md, guarantee 5).
pub struct ProjectionsHealthy(pub Arc<dyn ReadModels>);

#[async_trait::async_trait]
impl ReadinessCheck for ProjectionsHealthy {
    fn name(&self) -> &'static str {
        "projections"
    }

    async fn check(&self) -> Result<(), String> {
        let failed = self
            .0
            .failed_projections()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        if failed.is_empty() {
            return Ok(());
        }
        Err(failed
            .into_iter()
            .map(|(projection, failure)| {
                format!(
                    "projection {projection} stopped: {}",
                    failure.as_deref().unwrap_or("no reason recorded")
                )
            })
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Readiness of the read models' storage: reachable and migrated.
pub struct ReadModelsReady(pub Arc<dyn ReadModels>);

#[async_trait::async_trait]
impl ReadinessCheck for ReadModelsReady {
    fn name(&self) -> &'static str {
        self.0.backend()
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ready().await
    }
}

/// The query routes behind the `X-Min-Position` wait, without OpenAPI, health or fallbacks,
/// for composition by the all-in-one `meetings serve`.
pub fn api_router(state: AppState, metrics: &Metrics) -> Router {
    let min_position = MinPositionState::new(
        state.watch.clone(),
        state.read_models.clone(),
        state.min_position_wait,
        state.jwt.clone(),
        metrics,
    );
    routes::router()
        // route_layer: only matched query routes wait; unknown paths answer 404 at once.
        .route_layer(axum::middleware::from_fn_with_state(
            min_position,
            watch::min_position,
        ))
        .with_state(state)
}

/// Readiness checks of the query side.
pub fn readiness_checks(state: &AppState) -> Vec<Arc<dyn ReadinessCheck>> {
    vec![
        Arc::new(ReadModelsReady(state.read_models.clone())),
        Arc::new(ProjectionsHealthy(state.read_models.clone())),
    ]
}

/// The complete HTTP application: query routes (behind the `X-Min-Position` wait), OpenAPI,
/// health, metrics, error fallbacks; behind `breaker` when the database is a server
/// (PostgreSQL), without one over the files of embedded mode.
pub fn router(state: AppState, metrics: Metrics, breaker: Option<&DatabaseBreaker>) -> Router {
    let checks = readiness_checks(&state);
    let api = api_router(state.clone(), &metrics)
        .merge(openapi::router().with_state(state))
        .merge(health::router(checks, metrics.clone()));
    let api = match breaker {
        Some(breaker) => platform::breaker::protect(api, breaker, &metrics),
        None => api,
    };
    platform::http::finish_router(api, metrics)
}

/// Builds the query-service exactly as its binary runs it: connects to a migrated database,
/// starts the projection listener, binds.
pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
    settings.query.check(&settings.http)?;
    let jwt = Arc::new(JwtKeys::from_settings(&settings.jwt)?);
    let pool = platform::service::connect_migrated(&settings.database).await?;
    let state = AppState::from_args(pool.clone(), jwt.clone(), &settings.query);
    let listener = platform::service::bind(settings.listen).await?;
    let metrics = Metrics::new();
    metrics.observe_pool(&pool);
    Ok(Server::new(
        "query-service",
        listener,
        router(state, metrics, Some(&DatabaseBreaker::new(pool.clone()))),
    )
    .with_limits(settings.http.clone())
    .with_revocations(pool, &jwt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_http_bases() {
        assert_eq!(
            parse_public_url("https://meetings.example.com/").as_deref(),
            Ok("https://meetings.example.com")
        );
        assert!(parse_public_url("http://localhost:8080/cal").is_ok());
        for bad in [
            "meetings.example.com",
            "ftp://x",
            "https://",
            "https://x/?a=b",
            "https:///x",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn read_batches_are_one_to_a_thousand() {
        assert_eq!(parse_read_batch("64"), Ok(64));
        assert_eq!(parse_read_batch("1"), Ok(1));
        assert!(parse_read_batch("0").is_err());
        assert!(parse_read_batch("1001").is_err());
        assert!(parse_read_batch("many").is_err());
    }

    #[test]
    fn a_min_position_wait_must_end_before_the_request_timeout() {
        let http = HttpLimits::default();
        assert!(QueryArgs::default().check(&http).is_ok());
        let args = QueryArgs {
            min_position_wait: http.request_timeout,
            ..QueryArgs::default()
        };
        let error = args.check(&http).unwrap_err().to_string();
        assert!(
            error.contains("MEETINGS_MIN_POSITION_WAIT")
                && error.contains("MEETINGS_HTTP_REQUEST_TIMEOUT"),
            "{error}"
        );
    }
}
