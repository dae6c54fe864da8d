//! Harness for end-to-end tests: the whole distributed pipeline in one test process, against
//! a real PostgreSQL (fresh database per test) and a real NATS server (a stream per test, or
//! a server the test starts and restarts itself).
//!
//! Relay and projector run as tasks that a test can kill (abort, no graceful shutdown) and
//! start again, to inject crashes at arbitrary points.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use command_service::relay::{Relay, RelaySettings, RelayState};
use command_service::sessions::PgSessionStore;
use command_service::AuthSettings;
use platform::auth::JwtKeys;
use platform::bus::StreamName;
use platform::config::Secret;
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore, Position};
use platform::testing::TestDatabase;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const JWT_SECRET: &str = "e2e-secret-that-is-at-least-32-bytes-long";

/// NATS used by tests; `MEETINGS_TEST_NATS_URL` overrides. Tests fail (never skip) without it.
pub fn nats_url() -> String {
    std::env::var("MEETINGS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub async fn nats_client(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("tests need NATS with JetStream at {url} (see README): {e}"))
}

/// A nats-server process owned by one test, so the test can restart it.
pub struct OwnNats {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl OwnNats {
    pub async fn start() -> Self {
        let port = free_port();
        let store = std::env::temp_dir().join(format!("meetings-nats-{}", Uuid::new_v4()));
        let mut nats = Self {
            port,
            store,
            child: None,
        };
        nats.spawn().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let binary = std::env::var("MEETINGS_TEST_NATS_SERVER").unwrap_or_else(|_| {
            if std::path::Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (install nats-server): {e}"));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        self.spawn().await;
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        std::fs::remove_dir_all(&self.store).ok();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running system.
pub struct Stack {
    pub db: TestDatabase,
    pub nats_url: String,
    pub stream: StreamName,
    pub store: Arc<dyn EventStore>,
    pub jwt: Arc<JwtKeys>,
    pub commands: String,
    pub queries: String,
    pub client: reqwest::Client,
    relay: Option<(JoinHandle<()>, tokio::sync::watch::Receiver<RelayState>)>,
    projector: Option<JoinHandle<anyhow::Result<()>>>,
    servers: Vec<JoinHandle<()>>,
    /// Delete the stream on drop (a per-test stream on a shared server).
    delete_stream: bool,
}

impl Stack {
    /// Everything up: command-service, relay, projector, query-service.
    pub async fn start(nats_url: String, delete_stream: bool) -> Self {
        if std::env::var("TEST_LOG").is_ok() {
            platform::telemetry::init(Some(platform::config::LogFormat::Text));
        }
        let db = TestDatabase::new().await;
        let stream = StreamName::new(&format!("T{}", Uuid::new_v4().simple())).unwrap();
        let jwt = Arc::new(JwtKeys::new(
            &Secret::new(JWT_SECRET),
            "meetings",
            "meetings",
        ));
        let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(db.pool.clone()));

        let command_state = command_service::AppState::new(
            store.clone(),
            Arc::new(PgSessionStore::new(db.pool.clone())),
            jwt.clone(),
            AuthSettings::default(),
        );
        let (commands, command_server) =
            serve(command_service::router(command_state, Metrics::new())).await;
        let query_state =
            query_service::AppState::new(db.pool.clone(), jwt.clone(), Duration::from_secs(10));
        let (queries, query_server) =
            serve(query_service::router(query_state, Metrics::new())).await;

        let mut stack = Self {
            db,
            nats_url,
            stream,
            store,
            jwt,
            commands: format!("http://{commands}"),
            queries: format!("http://{queries}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            relay: None,
            projector: None,
            servers: vec![command_server, query_server],
            delete_stream,
        };
        stack.start_relay().await;
        stack.start_projector().await;
        stack
    }

    pub async fn new_relay(&self) -> Relay {
        let client = nats_client(&self.nats_url).await;
        let js = async_nats::jetstream::new(client);
        platform::bus::ensure_stream(&js, &self.stream)
            .await
            .unwrap();
        Relay::over_jetstream(
            self.db.pool.clone(),
            js,
            self.stream.clone(),
            RelaySettings {
                standby_interval: Duration::from_millis(100),
                ..Default::default()
            },
        )
    }

    pub async fn start_relay(&mut self) {
        let relay = self.new_relay().await;
        let state = relay.state();
        let task = tokio::spawn(relay.run(std::future::pending()));
        self.relay = Some((task, state));
    }

    /// Kills the relay task at whatever point it is (its lock session closes with it).
    pub fn kill_relay(&mut self) {
        if let Some((task, _)) = self.relay.take() {
            task.abort();
        }
    }

    pub async fn start_projector(&mut self) {
        let client = nats_client(&self.nats_url).await;
        let projector = projector::new_projector(
            self.db.pool.clone(),
            async_nats::jetstream::new(client),
            self.stream.clone(),
            &Metrics::new(),
        );
        self.projector = Some(tokio::spawn(projector.run(std::future::pending())));
    }

    pub fn kill_projector(&mut self) {
        if let Some(task) = self.projector.take() {
            task.abort();
        }
    }

    /// Registers and logs in a user; returns (id, access token).
    pub async fn user(&self, name: &str) -> (Uuid, String, String) {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            Uuid::new_v4().simple()
        );
        let response = self
            .client
            .post(format!("{}/v1/auth/register", self.commands))
            .json(
                &json!({"email": email, "password": "correct horse battery", "display_name": name}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        let position = body["position"].as_str().unwrap().to_string();
        let response = self
            .client
            .post(format!("{}/v1/auth/login", self.commands))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let token = response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        (id, token, position)
    }

    /// A command; returns (status, body).
    pub async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.commands))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A query that must see at least `position` (read-your-writes, no polling in the test).
    pub async fn query(&self, path: &str, token: &str, position: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.queries))
            .bearer_auth(token)
            .header("X-Min-Position", position)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The position of the newest committed event. The global-order reader stops below the
    /// oldest running transaction of the whole cluster (other tests' too), so wait until it
    /// has seen every committed event.
    pub async fn store_head(&self) -> Position {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                .fetch_one(&self.db.pool)
                .await
                .unwrap();
            let events = self.store.read_all(None, 1_000_000).await.unwrap();
            if events.len() as i64 == committed {
                return events.last().map_or(Position::START, |e| e.position);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reader lags the store"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the projector's checkpoint reaches `position` (bounded).
    pub async fn wait_projected(&self, position: Position, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (checkpoint, failure) = projector::projection::status(&self.db.pool).await.unwrap();
            assert!(failure.is_none(), "projection stopped: {failure:?}");
            if checkpoint.is_some_and(|c| c >= position) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "projection stuck at {checkpoint:?}, wanted {position}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts a realtime gateway instance on this stack; returns its `ws://…/v1/ws` URL and
    /// the handle that kills it.
    pub async fn start_realtime(
        &self,
        limits: realtime::connection::Limits,
    ) -> (String, realtime::Running) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = realtime::Application::from_parts(
            listener,
            self.db.pool.clone(),
            self.jwt.clone(),
            nats_client(&self.nats_url).await,
            self.stream.clone(),
            vec![],
            limits,
        );
        (format!("ws://{address}/v1/ws"), app.spawn())
    }

    pub fn relay_state(&self) -> Option<RelayState> {
        self.relay.as_ref().map(|(_, state)| *state.borrow())
    }
}

async fn serve(router: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .ok();
    });
    (address, task)
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_relay();
        self.kill_projector();
        for server in &self.servers {
            server.abort();
        }
        if self.delete_stream {
            let url = self.nats_url.clone();
            let stream = self.stream.as_str().to_string();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    if let Ok(client) = async_nats::connect(url).await {
                        let js = async_nats::jetstream::new(client);
                        js.delete_stream(&stream).await.ok();
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// Every read model of a database as comparable text, in a stable order.
pub async fn read_model_snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    let queries = [
        "SELECT to_jsonb(t)::text FROM rm_users t ORDER BY id",
        "SELECT to_jsonb(t)::text FROM rm_meetings t ORDER BY id",
        "SELECT to_jsonb(t)::text FROM rm_meeting_attendees t ORDER BY meeting_id, user_id",
        // Text, not jsonb: the stored document must be the very same bytes.
        "SELECT row_to_json(t)::text FROM rm_meeting_documents t ORDER BY meeting_id",
        "SELECT to_jsonb(t)::text FROM rm_agenda t ORDER BY user_id, meeting_id",
        "SELECT to_jsonb(t)::text FROM rm_chat_messages t ORDER BY meeting_id, message_id",
        "SELECT to_jsonb(t)::text FROM rm_changes t ORDER BY position",
        "SELECT to_jsonb(t)::text FROM projection_sequences t ORDER BY aggregate_type, aggregate_id",
    ];
    let mut rows = vec![];
    for query in queries {
        let mut table: Vec<String> = sqlx::query_scalar(query).fetch_all(pool).await.unwrap();
        rows.push(format!("-- {query} ({} rows)", table.len()));
        rows.append(&mut table);
    }
    rows
}
