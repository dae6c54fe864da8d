//! The services under test, started in the bench process on `127.0.0.1:0` exactly as the test
//! harnesses do (`AppState::new` + `router` + `Application::from_parts`), with no log
//! subscriber installed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use command_service::sessions::PgSessionStore;
use command_service::AuthSettings;
use platform::auth::JwtKeys;
use platform::config::Secret;
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Access tokens outlive any run: a token expiring mid-round would count as errors.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A fresh random HS256 key shared by the services of one run.
pub fn jwt_keys() -> Arc<JwtKeys> {
    let secret = format!(
        "bench-{}-{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    Arc::new(JwtKeys::new(&Secret::new(secret), "meetings", "meetings"))
}

/// A running HTTP service; stops (graceful shutdown) when dropped.
pub struct Service {
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Service {
    /// The command-service on `pool` (event store and sessions).
    pub async fn command(pool: PgPool, jwt: Arc<JwtKeys>) -> anyhow::Result<Self> {
        let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
        let auth = AuthSettings {
            access_token_ttl: TOKEN_LIFETIME,
            ..AuthSettings::default()
        };
        let state =
            command_service::AppState::new(store, Arc::new(PgSessionStore::new(pool)), jwt, auth);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let app = command_service::Application::from_parts(
            listener,
            command_service::router(state, Metrics::new()),
        );
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Ok(Self {
            base,
            shutdown: Some(tx),
        })
    }

    /// The query-service on `pool` (read models; its projection listener included), with the
    /// default `X-Min-Position` wait bound.
    pub async fn query(pool: PgPool, jwt: Arc<JwtKeys>) -> anyhow::Result<Self> {
        Self::query_with(pool, jwt, query_service::documents::DEFAULT_MAX_BATCH).await
    }

    /// The query-service with at most `read_batch` meeting reads per statement.
    pub async fn query_with(
        pool: PgPool,
        jwt: Arc<JwtKeys>,
        read_batch: usize,
    ) -> anyhow::Result<Self> {
        let state =
            query_service::AppState::new(pool, jwt, query_service::DEFAULT_MIN_POSITION_WAIT)
                .with_read_batch(read_batch);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let app = query_service::Application::from_parts(
            listener,
            query_service::router(state, Metrics::new()),
        );
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .run_until(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            base,
            shutdown: Some(tx),
        })
    }

    /// Registers a user over HTTP and logs in; returns (user id, access token). argon2 runs
    /// here, never inside a measurement.
    pub async fn register_and_login(
        &self,
        display_name: &str,
    ) -> anyhow::Result<(uuid::Uuid, String)> {
        let client = reqwest::Client::new();
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple";
        let response = client
            .post(format!("{}/v1/auth/register", self.base))
            .json(&json!({"email": email, "password": password, "display_name": display_name}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "register: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let response = client
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "login: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let tokens: Value = response.json().await?;
        let token = tokens["access_token"]
            .as_str()
            .map(str::to_string)
            .context("login answered without an access_token")?;
        let id = tokens["user_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .context("login answered without a user_id")?;
        Ok((id, token))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
