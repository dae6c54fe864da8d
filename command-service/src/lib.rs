//! The command side of meetings: REST endpoints that turn requests into commands on the `User`
//! and `Meeting` aggregates and append the resulting events, plus authentication.
//!
//! `main.rs` is thin: tests and the all-in-one `meetings serve` build the same [`Application`].

pub mod admin;
pub mod executor;
pub mod openapi;
pub mod passwords;
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
use platform::config::{parse_duration, DatabaseSettings, JwtSettings, LogSettings};
use platform::http::health::{self, ReadinessCheck};
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore};
use uuid::Uuid;

use crate::executor::Executor;
use crate::passwords::Passwords;
use crate::sessions::{PgSessionStore, SessionStore, ThrottlePolicy};

/// Default address (API.md "Default ports").
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
    /// Address to bind.
    #[arg(long = "listen", env = "MEETINGS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

/// Token lifetimes.
#[derive(Args, Clone, Debug)]
pub struct AuthSettings {
    /// Lifetime of access tokens (e.g. 900s, 15m).
    #[arg(long = "access-token-ttl", env = "MEETINGS_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    #[arg(long = "refresh-token-ttl", env = "MEETINGS_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
        }
    }
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
            executor: Executor {
                store,
                upcasters: Arc::new(upcasters),
            },
            sessions,
            jwt,
            passwords: Passwords::new(),
            auth: Arc::new(auth),
            throttle: Arc::new(ThrottlePolicy::default()),
        }
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

/// The complete HTTP application: API routes, OpenAPI, health, metrics, error fallbacks.
pub fn router(state: AppState, metrics: Metrics) -> Router {
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(StoreReady(state.store().clone()))];
    let api = routes::router()
        .merge(openapi::router())
        .with_state(state)
        .merge(health::router(checks, metrics.clone()));
    platform::http::finish_router(api, metrics)
}

/// A built, bound application, ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Application {
    /// Connects to PostgreSQL, checks migrations, binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let jwt = Arc::new(JwtKeys::from_settings(&settings.jwt)?);
        let pool = platform::db::connect(
            settings.database.postgres_url()?,
            settings.database.max_connections,
        )
        .await?;
        if !platform::db::migrations_applied(&pool).await? {
            anyhow::bail!("the database is not migrated: run `meetings migrate` first");
        }
        let state = AppState::new(
            Arc::new(PgEventStore::new(pool.clone())),
            Arc::new(PgSessionStore::new(pool)),
            jwt,
            settings.auth.clone(),
        );
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} (MEETINGS_LISTEN): {e}",
                    settings.listen
                )
            })?;
        Ok(Self::from_parts(listener, router(state, Metrics::new())))
    }

    pub fn from_parts(listener: tokio::net::TcpListener, router: Router) -> Self {
        Self { listener, router }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("BUG: a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), "command-service listening");
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}
