//! Test harness: a real command-service on port 0 against a fresh PostgreSQL database.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use command_service::sessions::PgSessionStore;
use command_service::{router, AppState, Application, AuthSettings};
use platform::auth::JwtKeys;
use platform::config::Secret;
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore, StoredEvent};
use platform::testing::TestDatabase;
use serde_json::{json, Value};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

pub struct TestApp {
    pub address: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn EventStore>,
    pub jwt: Arc<JwtKeys>,
    pub db: TestDatabase,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AuthSettings::default()).await
}

pub async fn spawn_app_with(auth: AuthSettings) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        platform::telemetry::init(Some(platform::config::LogFormat::Text));
    }
    let db = TestDatabase::new().await;
    let jwt = Arc::new(JwtKeys::new(
        &Secret::new(JWT_SECRET),
        "meetings",
        "meetings",
    ));
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(db.pool.clone()));
    let state = AppState::new(
        store.clone(),
        Arc::new(PgSessionStore::new(db.pool.clone())),
        jwt.clone(),
        auth,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::from_parts(listener, router(state, Metrics::new()));
    let address = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        base: format!("http://{address}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        store,
        jwt,
        db,
        shutdown: Some(tx),
    }
}

/// A registered, logged-in user.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub token: String,
    pub refresh_token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request failed")
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> reqwest::Response {
        self.post(
            "/v1/auth/register",
            None,
            json!({"email": email, "password": password, "display_name": name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a user with a unique email and logs them in.
    pub async fn user(&self, name: &str) -> TestUser {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            Uuid::new_v4().simple()
        );
        let password = "correct horse battery".to_string();
        let response = self.register(&email, &password, name).await;
        assert_eq!(
            response.status(),
            201,
            "register: {}",
            response.text().await.unwrap()
        );
        let id: Uuid = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let response = self.login(&email, &password).await;
        assert_eq!(response.status(), 200);
        let tokens: Value = response.json().await.unwrap();
        TestUser {
            id,
            email,
            password,
            token: tokens["access_token"].as_str().unwrap().to_string(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    /// Makes `user` an admin the way an operator does (`meetings users promote`), and returns a
    /// fresh token carrying the role.
    pub async fn promote(&self, user: &TestUser) -> TestUser {
        command_service::admin::promote(self.store.clone(), &user.email)
            .await
            .expect("promote");
        let response = self.login(&user.email, &user.password).await;
        assert_eq!(response.status(), 200);
        let tokens: Value = response.json().await.unwrap();
        TestUser {
            token: tokens["access_token"].as_str().unwrap().to_string(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_string(),
            ..user.clone()
        }
    }

    /// Schedules a meeting for tomorrow 10:00–11:00 UTC and returns its id.
    pub async fn schedule(&self, organizer: &TestUser, attendees: &[Uuid]) -> Uuid {
        let response = self
            .post(
                "/v1/meetings",
                Some(&organizer.token),
                meeting_body("Planning", attendees),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Every committed event, in global order. The global-order reader stops below the oldest
    /// running transaction of the whole PostgreSQL cluster (other tests' too), so wait until
    /// it has caught up with everything committed.
    pub async fn all_events(&self) -> Vec<StoredEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let committed = self.event_count().await;
            let events = self.store.read_all(None, 1_000_000).await.unwrap();
            if events.len() as i64 == committed {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the global-order reader saw {} of {committed} events",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

pub fn meeting_body(title: &str, attendees: &[Uuid]) -> Value {
    let start = chrono::Utc::now().date_naive().succ_opt().unwrap();
    json!({
        "title": title,
        "starts_at": format!("{start}T10:00:00Z"),
        "ends_at": format!("{start}T11:00:00Z"),
        "time_zone": "Europe/Berlin",
        "attendees": attendees.iter().map(|id| json!({"user_id": id})).collect::<Vec<_>>(),
    })
}

/// Shared with every service's tests (not every test binary uses it).
#[allow(unused_imports)]
pub use platform::testing::assert_problem;

/// A second command-service instance with its own pool on the same database as `app`.
pub async fn spawn_replica(app: &TestApp) -> Replica {
    let pool = platform::db::connect(&app.db.url, 10).await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let state = AppState::new(
        store,
        Arc::new(PgSessionStore::new(pool)),
        app.jwt.clone(),
        AuthSettings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Application::from_parts(listener, router(state, Metrics::new()));
    let base = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    Replica {
        base,
        client: app.client.clone(),
        _shutdown: tx,
    }
}

pub struct Replica {
    pub base: String,
    pub client: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Replica {
    pub async fn register(&self, email: &str, password: &str, name: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/auth/register", self.base))
            .json(&json!({"email": email, "password": password, "display_name": name}))
            .send()
            .await
            .unwrap()
    }
}
