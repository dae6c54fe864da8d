//! Harness for end-to-end tests: the whole distributed pipeline in one test process, against
//! a real PostgreSQL (fresh database per test) and a real NATS server (a stream per test, or
//! a server the test starts and restarts itself).
//!
//! The services start through their own `build`, as their binaries do ([`services`]). Relay
//! and projector run as tasks that a test can kill (abort, no graceful shutdown) and start
//! again, to inject crashes at arbitrary points.

pub mod calendar;
mod own_nats;
pub mod own_postgres;
pub mod processes;
pub mod services;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use command_service::relay::{Relay, RelaySettings, RelayState};
use platform::auth::JwtKeys;
use platform::bus::StreamName;
use platform::store::{EventStore, PgEventStore, Position};
use platform::testing::{self, ScratchStream, TestClient, TestDatabase, TestServer};
use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use own_nats::OwnNats;
pub use platform::testing::{nats_client, nats_url};

/// Pool size of each service of a stack (what the binaries default to).
const MAX_CONNECTIONS: u32 = 16;

/// The running system.
pub struct Stack {
    /// Stopped (gracefully) when the stack is dropped, before the database goes.
    pub commands: TestServer,
    pub queries: TestServer,
    pub db: TestDatabase,
    pub nats_url: String,
    pub stream: StreamName,
    /// The event store of the stack's database, for what tests check or plant directly.
    pub store: Arc<dyn EventStore>,
    /// Keys of the services' JWT settings.
    pub jwt: Arc<JwtKeys>,
    relay: Option<(JoinHandle<()>, tokio::sync::watch::Receiver<RelayState>)>,
    /// The projector's run and its health endpoints.
    projector: Option<(JoinHandle<anyhow::Result<()>>, TestClient)>,
    /// Delete the stream on drop (a per-test stream on a shared server).
    delete_stream: bool,
}

impl Stack {
    /// Everything up: command-service, relay, projector, query-service.
    pub async fn start(nats_url: String, delete_stream: bool) -> Self {
        testing::init_tracing();
        let db = TestDatabase::new().await;
        let commands =
            services::serve_commands(&services::command_settings(&db.url, MAX_CONNECTIONS))
                .await
                .expect("the command-service builds");
        let mut queries = services::query_settings(&db.url, MAX_CONNECTIONS);
        // Generous: a loaded test machine may take seconds to project.
        queries.query.min_position_wait = Duration::from_secs(10);
        let queries = services::serve_queries(&queries)
            .await
            .expect("the query-service builds");
        let mut stack = Self {
            commands,
            queries,
            nats_url,
            stream: testing::unique_stream_name("T"),
            store: Arc::new(PgEventStore::new(db.pool.clone())),
            jwt: testing::jwt_keys(),
            db,
            relay: None,
            projector: None,
            delete_stream,
        };
        stack.start_relay().await;
        stack.start_projector().await;
        stack
    }

    /// A relay with a short standby interval, so that takeovers happen within a test.
    pub async fn new_relay(&self) -> Relay {
        let js = async_nats::jetstream::new(nats_client(&self.nats_url).await);
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

    /// Starts the projector as its binary does (`projector::build`), health endpoints included.
    pub async fn start_projector(&mut self) {
        let settings = services::projector_settings(&self.db.url, &self.nats_url, &self.stream);
        let server = projector::build(&settings)
            .await
            .expect("the projector builds");
        let health = TestClient::new(format!("http://{}", server.local_addr()));
        // Aborting the task drops the server's tasks at whatever point they are.
        let task = tokio::spawn(server.run_until(std::future::pending()));
        self.projector = Some((task, health));
    }

    /// Kills the projector at whatever point it is; its health endpoints go with it.
    pub fn kill_projector(&mut self) {
        if let Some((task, _health)) = self.projector.take() {
            task.abort();
        }
    }

    /// The health endpoints (`/readyz`) of the running projector.
    pub fn projector_health(&self) -> &TestClient {
        let (_, health) = self.projector.as_ref().expect("the projector runs");
        health
    }

    /// Registers and logs in a user; returns (id, access token, position of the registration).
    pub async fn user(&self, name: &str) -> (Uuid, String, String) {
        let user = self.commands.sign_up(name).await.expect("sign up");
        (user.id, user.token, user.position)
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
            .commands
            .request(method, path, Some(token))
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
            .queries
            .get_at(path, Some(token), position)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A query with a JSON body (free/busy, find-times) that must see at least `position`.
    pub async fn query_post(
        &self,
        path: &str,
        token: &str,
        position: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .queries
            .request(reqwest::Method::POST, path, Some(token))
            .header("X-Min-Position", position)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The position of the newest committed event (see [`testing::committed_events`]).
    pub async fn store_head(&self) -> Position {
        testing::committed_events(self.store.as_ref(), &self.db.pool)
            .await
            .last()
            .map_or(Position::START, |e| e.position)
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

    /// Starts a realtime gateway on this stack as its binary does (`realtime::build`);
    /// returns its `ws://…/v1/ws` URL and the handle that stops it.
    pub async fn start_realtime(&self) -> (String, TestServer) {
        let settings = services::realtime_settings(&self.db.url, &self.nats_url, &self.stream);
        let server = realtime::build(&settings)
            .await
            .expect("the realtime gateway builds");
        (
            format!("ws://{}/v1/ws", server.local_addr()),
            TestServer::start(server),
        )
    }

    /// A gateway with `limits` (timers and queue sizes a test shortens), which are not
    /// settings: assembled from its parts.
    pub async fn start_realtime_with(
        &self,
        limits: realtime::connection::Limits,
    ) -> (String, KilledOnDrop) {
        let listener = tokio::net::TcpListener::bind(testing::LISTEN)
            .await
            .unwrap();
        let server = realtime::assemble(
            listener,
            self.db.pool.clone(),
            self.jwt.clone(),
            nats_client(&self.nats_url).await,
            self.stream.clone(),
            vec![],
            limits,
        );
        let url = format!("ws://{}/v1/ws", server.local_addr());
        (
            url,
            KilledOnDrop(tokio::spawn(server.run_until(std::future::pending()))),
        )
    }

    pub fn relay_state(&self) -> Option<RelayState> {
        self.relay.as_ref().map(|(_, state)| *state.borrow())
    }
}

/// A gateway that [`KilledOnDrop::kill`] stops at once, without goodbyes, as a crash would:
/// aborting the server's task drops its tasks (stream consumer, presence) wherever they are.
pub struct KilledOnDrop(JoinHandle<anyhow::Result<()>>);

impl KilledOnDrop {
    pub fn kill(&self) {
        self.0.abort();
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_relay();
        self.kill_projector();
        if self.delete_stream {
            ScratchStream::delete_detached(&self.nats_url, &self.stream);
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
