//! The command side of meetings: REST endpoints that turn requests into commands on the `User`
//! and `Meeting` aggregates and append the resulting events, plus authentication.
//!
//! `main.rs` is thin: tests and the all-in-one `meetings serve` use the same [`build`] parts.

pub mod admin;
pub mod executor;
pub mod limits;
pub mod openapi;
pub mod passwords;
pub mod relay;
pub mod routes;
pub mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::Router;
use clap::Args;
use cqrs_es::persist::EventUpcaster;
use domain::{MeetingServices, UserDirectory};
use platform::auth::JwtKeys;
use platform::breaker::DatabaseBreaker;
use platform::bus::StreamName;
use platform::config::{
    parse_duration, DatabaseSettings, HttpLimits, JwtSettings, LogSettings, NatsSettings,
};
use platform::http::health::{self, ReadinessCheck};
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::{EventStore, PgEventStore};
use uuid::Uuid;

use crate::executor::Executor;
pub use crate::limits::LimitSettings;
use crate::limits::Limits;
use crate::passwords::Passwords;
use crate::relay::{Relay, RelaySettings};
use crate::sessions::{PgSessionStore, SessionStore, ThrottlePolicy};

/// Default address (docs/api.md "Default ports").
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// Settings of the command-service binary.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "command-service", version, about = "meetings command API")]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    #[command(flatten)]
    pub http: HttpLimits,
    #[command(flatten)]
    pub audit: audit::anchor::AuditSettings,
    /// Address to bind, `host:port` such as `0.0.0.0:8081`.
    #[arg(long = "listen", env = "MEETINGS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

/// Token and session lifetimes.
#[derive(Args, Clone, Debug)]
pub struct AuthSettings {
    /// Lifetime of access tokens (e.g. 900s, 15m; at most 1h, since revocations are
    /// remembered that long).
    #[arg(long = "access-token-ttl", env = "MEETINGS_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_access_ttl)]
    pub access_token_ttl: Duration,
    /// Lifetime of one refresh token (each rotation issues a new one).
    #[arg(long = "refresh-token-ttl", env = "MEETINGS_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a session, from its login: no rotation extends it.
    #[arg(long = "session-lifetime", env = "MEETINGS_SESSION_LIFETIME", default_value = "30d", value_parser = parse_duration)]
    pub session_lifetime: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            session_lifetime: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A duration no longer than [`platform::auth::revocation::MAX_ACCESS_TOKEN_TTL`].
fn parse_access_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    let max = platform::auth::revocation::MAX_ACCESS_TOKEN_TTL;
    if ttl > max {
        return Err(format!(
            "`{text}`: access tokens may live at most {} s (revocations are remembered that long)",
            max.as_secs()
        ));
    }
    Ok(ttl)
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub executor: Executor,
    pub sessions: Arc<dyn SessionStore>,
    pub jwt: Arc<JwtKeys>,
    pub passwords: Passwords,
    pub auth: Arc<AuthSettings>,
    pub throttle: Arc<ThrottlePolicy>,
    /// Failed logins of one account from all addresses together: looser than the
    /// per-address throttle, so that guessing from many addresses is slowed too while the
    /// real user, from their own address, is not locked out by a few strangers.
    pub account_throttle: Arc<ThrottlePolicy>,
    pub limits: Arc<Limits>,
    pub meeting_services: MeetingServices,
}

impl FromRef<AppState> for Arc<JwtKeys> {
    fn from_ref(state: &AppState) -> Self {
        state.jwt.clone()
    }
}

impl FromRef<AppState> for Executor {
    fn from_ref(state: &AppState) -> Self {
        state.executor.clone()
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn EventStore>,
        sessions: Arc<dyn SessionStore>,
        jwt: Arc<JwtKeys>,
        auth: AuthSettings,
    ) -> Self {
        let upcasters: Vec<Box<dyn EventUpcaster>> = domain::upcasters::upcasters();
        Self {
            meeting_services: MeetingServices::new(Arc::new(StoreDirectory(store.clone()))),
            executor: Executor::new(store, Arc::new(upcasters)),
            sessions,
            jwt,
            passwords: Passwords::new(),
            auth: Arc::new(auth),
            throttle: Arc::new(ThrottlePolicy::default()),
            account_throttle: Arc::new(ThrottlePolicy::account_wide()),
            limits: Arc::new(Limits::new(&LimitSettings::default())),
        }
    }

    /// The same state with the per-caller limits of `settings`.
    pub fn with_limits(mut self, settings: &LimitSettings) -> Self {
        let limits = Arc::new(Limits::new(settings));
        self.executor = self.executor.with_limits(limits.clone());
        self.limits = limits;
        self
    }

    /// The same state, counting its commands and timing its appends in `metrics` (once per
    /// process).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.executor = self.executor.with_metrics(metrics);
        self
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.executor.store
    }
}

/// The meeting aggregate's view of which users exist, answered by the accounts table.
struct StoreDirectory(Arc<dyn EventStore>);

#[async_trait::async_trait]
impl UserDirectory for StoreDirectory {
    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, String> {
        self.0.missing_users(ids).await.map_err(|e| e.to_string())
    }
}

struct StoreReady(Arc<dyn EventStore>);

#[async_trait::async_trait]
impl ReadinessCheck for StoreReady {
    fn name(&self) -> &'static str {
        "event_store"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ready().await
    }
}

/// The command API routes alone (no OpenAPI, health or fallbacks), for composition by the
/// all-in-one `meetings serve`.
pub fn api_router(state: AppState) -> Router {
    routes::router().with_state(state)
}

/// Readiness checks of the command side.
pub fn readiness_checks(state: &AppState) -> Vec<Arc<dyn ReadinessCheck>> {
    vec![Arc::new(StoreReady(state.store().clone()))]
}

/// The complete HTTP application: API routes, OpenAPI, health, metrics, error fallbacks.
pub fn router(state: AppState, metrics: Metrics, breaker: &DatabaseBreaker) -> Router {
    let checks = readiness_checks(&state);
    let api = routes::router()
        .merge(openapi::router())
        .with_state(state)
        .merge(health::router(checks, metrics.clone()));
    let api = platform::breaker::protect(api, breaker, &metrics);
    platform::http::finish_router(api, metrics)
}

/// Builds the command-service exactly as its binary runs it: connects to a migrated
/// database, binds, and hosts the relay (when NATS is configured) and the idempotency-key
/// purge beside the HTTP server.
pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
    let jwt = Arc::new(JwtKeys::from_settings(&settings.jwt)?);
    let pool = platform::service::connect_migrated(&settings.database).await?;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let metrics = Metrics::new();
    metrics.observe_pool(&pool);
    let relay = match &settings.nats.nats_url {
        Some(url) => Some(
            start_relay(url, &settings.nats.stream, pool.clone())
                .await?
                .with_metrics(&metrics),
        ),
        None => {
            tracing::warn!("MEETINGS_NATS_URL is unset: events are stored but not relayed");
            None
        }
    };
    let state = AppState::new(
        store.clone(),
        Arc::new(PgSessionStore::new(pool.clone())),
        jwt.clone(),
        settings.auth.clone(),
    )
    .with_limits(&settings.limits)
    .with_metrics(&metrics);
    let listener = platform::service::bind(settings.listen).await?;
    let server = Server::new(
        "command-service",
        listener,
        router(state.clone(), metrics, &DatabaseBreaker::new(pool.clone())),
    )
    .with_limits(settings.http.clone())
    .with_revocations(pool.clone(), &jwt);
    let server = audit::anchor::with_task(server, pool, store, settings.audit.signer()?);
    Ok(with_tasks(server, &state, relay))
}

/// Adds the command side's background work to `server`: housekeeping (expired idempotency
/// keys, login throttles and refresh tokens, idle rate-limit buckets), and the relay when
/// this process hosts one.
pub fn with_tasks(server: Server, state: &AppState, relay: Option<Relay>) -> Server {
    let state = state.clone();
    let server = server.with_task("housekeeping", move |stop| async move {
        housekeeping(&state, stop.cancelled_owned()).await;
        Ok(())
    });
    match relay {
        Some(relay) => server.with_task("relay", move |stop| async move {
            relay.run(stop.cancelled_owned()).await;
            Ok(())
        }),
        None => server,
    }
}

/// How long an `Idempotency-Key` is honoured (docs/architecture.md: at least 24 h).
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// Until `shutdown`: every minute, forgets the rate-limit buckets of quiet callers; every
/// hour, deletes expired idempotency records, forgotten login throttles and expired refresh
/// tokens, so no table grows with what a caller merely tried.
pub async fn housekeeping(state: &AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut every = tokio::time::interval(Duration::from_secs(60));
    for minute in 0u64.. {
        tokio::select! {
            () = &mut shutdown => return,
            _ = every.tick() => {}
        }
        state.limits.forget_idle();
        if minute % 60 != 0 {
            continue;
        }
        match state
            .store()
            .purge_idempotency_keys(IDEMPOTENCY_RETENTION)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired idempotency keys purged"),
            Err(error) => tracing::warn!(%error, "cannot purge idempotency keys"),
        }
        let forget = state
            .throttle
            .forget_after
            .max(state.account_throttle.forget_after);
        match state.sessions.purge(forget).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old login throttles and refresh tokens purged"),
            Err(error) => tracing::warn!(%error, "cannot purge login throttles and refresh tokens"),
        }
    }
}

/// Connects to NATS, makes sure the stream exists with our settings, and builds the relay.
pub async fn start_relay(
    nats_url: &str,
    stream: &str,
    pool: sqlx::PgPool,
) -> anyhow::Result<Relay> {
    let stream = StreamName::new(stream)?;
    let client = platform::bus::connect(nats_url, "meetings-relay").await?;
    let js = async_nats::jetstream::new(client);
    platform::bus::ensure_stream(&js, &stream).await?;
    Ok(Relay::over_jetstream(
        pool,
        js,
        stream,
        RelaySettings::default(),
    ))
}
