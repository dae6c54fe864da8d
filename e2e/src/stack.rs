//! The running system of one test, on either backend ([`Backend`]):
//!
//! - PostgreSQL: the distributed pipeline — command-service, relay, NATS JetStream (a stream
//!   per test), projector and query-service, each started through its own `build`;
//! - SQLite: `meetings serve` in embedded mode on the files of a test directory, composed by
//!   the binary's own library (`meetings::embedded::build`).
//!
//! Tests written against [`Stack`] run on both (`platform::on_each_backend!`); what only the
//! distributed pipeline has (relay, NATS, separate processes to kill) is reached through
//! [`Stack::db`], [`Stack::nats_url`], [`Stack::stream`] and the relay and projector handles,
//! which a test on SQLite cannot call.

use std::sync::Arc;
use std::time::Duration;

use command_service::relay::{Relay, RelaySettings, RelayState};
use platform::auth::JwtKeys;
use platform::bus::StreamName;
use platform::db::sqlite::SqliteFile;
use platform::store::{EventStore, PgEventStore, Position, StoredEvent};
use platform::testing::{
    self, Backend, ScratchStream, TestClient, TestDatabase, TestDirectory, TestServer,
};
use realtime::connection::changes::SqliteChangeLog;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{nats_client, nats_url, services};

/// Pool size of each service of a stack (what the binaries default to).
const MAX_CONNECTIONS: u32 = 16;

/// The running system.
pub struct Stack {
    /// The command API. Stopped (gracefully) when the stack is dropped, before the storage.
    pub commands: TestServer,
    /// The query API (on SQLite, the same server as the commands).
    pub queries: TestClient,
    pub backend: Backend,
    /// The event store, for what tests check or plant directly.
    pub store: Arc<dyn EventStore>,
    /// Keys of the services' JWT settings.
    pub jwt: Arc<JwtKeys>,
    storage: Storage,
}

enum Storage {
    Distributed(Box<Distributed>),
    Embedded(Box<Embedded>),
}

/// What only the distributed pipeline has.
struct Distributed {
    /// The query-service (first: stopped before the database goes).
    _queries: TestServer,
    db: TestDatabase,
    nats_url: String,
    stream: StreamName,
    relay: Option<(JoinHandle<()>, watch::Receiver<RelayState>)>,
    /// The projector's run and its health endpoints.
    projector: Option<(JoinHandle<anyhow::Result<()>>, TestClient)>,
    /// Delete the stream on drop (a per-test stream on a shared server).
    delete_stream: bool,
}

/// The files of embedded mode.
struct Embedded {
    read_models: SqliteFile,
    _lock: std::fs::File,
    /// Last: removed once everything above let go of the files.
    directory: TestDirectory,
}

impl Stack {
    /// The system on `backend`: on PostgreSQL with a stream of its own on the shared NATS.
    pub async fn on(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self::start(nats_url(), true).await,
            Backend::Sqlite => Self::embedded().await,
        }
    }

    /// The distributed pipeline: command-service, relay, projector, query-service.
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
            queries: queries.api.clone(),
            backend: Backend::Postgres,
            store: Arc::new(PgEventStore::new(db.pool.clone())),
            jwt: testing::jwt_keys(),
            storage: Storage::Distributed(Box::new(Distributed {
                _queries: queries,
                db,
                nats_url,
                stream: testing::unique_stream_name("T"),
                relay: None,
                projector: None,
                delete_stream,
            })),
        };
        stack.start_relay().await;
        stack.start_projector().await;
        stack
    }

    /// `meetings serve` in embedded mode, on the files of a fresh directory.
    pub async fn embedded() -> Self {
        testing::init_tracing();
        let directory = TestDirectory::new();
        let jwt = testing::jwt_keys();
        let system = services::build_embedded(&directory, jwt.clone(), |settings| {
            settings.query.min_position_wait = Duration::from_secs(10);
        })
        .await
        .expect("embedded mode builds");
        let commands = TestServer::start(system.server);
        Self {
            queries: commands.api.clone(),
            commands,
            backend: Backend::Sqlite,
            store: system.store,
            jwt,
            storage: Storage::Embedded(Box::new(Embedded {
                read_models: system.read_models,
                _lock: system.lock,
                directory,
            })),
        }
    }

    fn distributed(&self) -> &Distributed {
        match &self.storage {
            Storage::Distributed(distributed) => distributed,
            Storage::Embedded(_) => {
                panic!("BUG: a test of the distributed pipeline runs on SQLite")
            }
        }
    }

    fn distributed_mut(&mut self) -> &mut Distributed {
        match &mut self.storage {
            Storage::Distributed(distributed) => distributed,
            Storage::Embedded(_) => {
                panic!("BUG: a test of the distributed pipeline runs on SQLite")
            }
        }
    }

    /// Stops embedded mode (waiting until its tasks ended and its lock is released) and
    /// hands over its directory, files intact, for what runs on a stopped installation.
    pub async fn stop_embedded(self) -> TestDirectory {
        let Stack {
            commands, storage, ..
        } = self;
        commands.stop().await.expect("embedded mode stops cleanly");
        match storage {
            Storage::Embedded(embedded) => {
                let Embedded {
                    read_models,
                    _lock,
                    directory,
                } = *embedded;
                read_models.writer.close().await;
                read_models.reader.close().await;
                directory
            }
            Storage::Distributed(_) => panic!("BUG: stop_embedded on the distributed pipeline"),
        }
    }

    /// `MEETINGS_DATABASE_URL` of this system, for the `meetings` CLI.
    pub fn database_url(&self) -> String {
        match &self.storage {
            Storage::Distributed(distributed) => distributed.db.url.clone(),
            Storage::Embedded(embedded) => {
                format!(
                    "sqlite://{}",
                    embedded.directory.file("meetings.db").display()
                )
            }
        }
    }

    /// The PostgreSQL database of the distributed pipeline.
    pub fn db(&self) -> &TestDatabase {
        &self.distributed().db
    }

    pub fn nats_url(&self) -> &str {
        &self.distributed().nats_url
    }

    pub fn stream(&self) -> &StreamName {
        &self.distributed().stream
    }

    /// A relay with a short standby interval, so that takeovers happen within a test.
    pub async fn new_relay(&self) -> Relay {
        let distributed = self.distributed();
        let js = async_nats::jetstream::new(nats_client(&distributed.nats_url).await);
        platform::bus::ensure_stream(&js, &distributed.stream)
            .await
            .unwrap();
        Relay::over_jetstream(
            distributed.db.pool.clone(),
            js,
            distributed.stream.clone(),
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
        self.distributed_mut().relay = Some((task, state));
    }

    /// Kills the relay task at whatever point it is (its lock session closes with it).
    pub fn kill_relay(&mut self) {
        self.distributed_mut().kill_relay();
    }

    /// Starts the projector as its binary does (`projector::build`), health endpoints included.
    pub async fn start_projector(&mut self) {
        let distributed = self.distributed();
        let settings = services::projector_settings(
            &distributed.db.url,
            &distributed.nats_url,
            &distributed.stream,
        );
        let server = projector::build(&settings)
            .await
            .expect("the projector builds");
        let health = TestClient::new(format!("http://{}", server.local_addr()));
        // Aborting the task drops the server's tasks at whatever point they are.
        let task = tokio::spawn(server.run_until(std::future::pending()));
        self.distributed_mut().projector = Some((task, health));
    }

    /// Kills the projector at whatever point it is; its health endpoints go with it.
    pub fn kill_projector(&mut self) {
        self.distributed_mut().kill_projector();
    }

    /// The health endpoints (`/readyz`) of the projector (on SQLite, of the one process).
    pub fn projector_health(&self) -> &TestClient {
        match &self.storage {
            Storage::Distributed(distributed) => {
                let (_, health) = distributed.projector.as_ref().expect("the projector runs");
                health
            }
            Storage::Embedded(_) => &self.commands,
        }
    }

    pub fn relay_state(&self) -> Option<RelayState> {
        let relay = self.distributed().relay.as_ref();
        relay.map(|(_, state)| *state.borrow())
    }

    /// Every committed event in global order (see [`testing::committed_events`]).
    pub async fn committed_events(&self) -> Vec<StoredEvent> {
        match &self.storage {
            Storage::Distributed(distributed) => {
                testing::committed_events(self.store.as_ref(), &distributed.db.pool).await
            }
            // One writer: what is committed is readable in order at once.
            Storage::Embedded(_) => self.store.read_all(None, 1_000_000).await.unwrap(),
        }
    }

    /// The position of the newest committed event.
    pub async fn store_head(&self) -> Position {
        let events = self.committed_events().await;
        events.last().map_or(Position::START, |e| e.position)
    }

    /// Waits until the projector's checkpoint reaches `position` (bounded).
    pub async fn wait_projected(&self, position: Position, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (checkpoint, failure) = self.projection_status().await;
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

    /// The projection's checkpoint and the failure that stopped it, if any.
    pub async fn projection_status(&self) -> (Option<Position>, Option<String>) {
        match &self.storage {
            Storage::Distributed(distributed) => {
                projector::projection::status(&distributed.db.pool).await
            }
            Storage::Embedded(embedded) => {
                projector::sources::sqlite::status(&embedded.read_models).await
            }
        }
        .unwrap()
    }

    /// The number of rows of the read-model table `table`.
    pub async fn read_model_rows(&self, table: &str) -> i64 {
        let query = format!("SELECT count(*) FROM {table}");
        match &self.storage {
            Storage::Distributed(distributed) => {
                sqlx::query_scalar(&query)
                    .fetch_one(&distributed.db.pool)
                    .await
            }
            Storage::Embedded(embedded) => {
                sqlx::query_scalar(&query)
                    .fetch_one(&embedded.read_models.reader)
                    .await
            }
        }
        .unwrap()
    }

    /// Every read model as comparable text, beside the same rebuilt from the event store
    /// alone into fresh storage (the caller waits for the projector to catch up first).
    pub async fn read_models_and_a_rebuild(&self) -> (Vec<String>, Vec<String>) {
        match &self.storage {
            Storage::Distributed(distributed) => {
                let rebuilt = TestDatabase::new().await;
                projector::rebuild(self.store.as_ref(), &rebuilt.pool)
                    .await
                    .unwrap();
                (
                    crate::read_model_snapshot(&distributed.db.pool).await,
                    crate::read_model_snapshot(&rebuilt.pool).await,
                )
            }
            Storage::Embedded(embedded) => {
                let path = embedded.directory.file("rebuilt-read-models.db");
                let rebuilt = SqliteFile::open_read_models(&path).await.unwrap();
                projector::sources::sqlite::rebuild(self.store.as_ref(), &rebuilt)
                    .await
                    .unwrap();
                (
                    crate::sqlite_read_model_snapshot(&embedded.read_models).await,
                    crate::sqlite_read_model_snapshot(&rebuilt).await,
                )
            }
        }
    }

    /// Starts a realtime gateway on this stack as its binary does (`realtime::build`; on
    /// SQLite, another gateway of the process); returns its `ws://…/v1/ws` URL and the handle
    /// that stops it.
    pub async fn start_realtime(&self) -> (String, TestServer) {
        let server = match &self.storage {
            Storage::Distributed(distributed) => {
                let settings = services::realtime_settings(
                    &distributed.db.url,
                    &distributed.nats_url,
                    &distributed.stream,
                );
                realtime::build(&settings)
                    .await
                    .expect("the realtime gateway builds")
            }
            Storage::Embedded(_) => self.gateway_over_store(Default::default()).await,
        };
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
        let server = match &self.storage {
            Storage::Distributed(distributed) => realtime::assemble(
                listener().await,
                distributed.db.pool.clone(),
                self.jwt.clone(),
                nats_client(&distributed.nats_url).await,
                distributed.stream.clone(),
                vec![],
                limits,
            ),
            Storage::Embedded(_) => self.gateway_over_store(limits).await,
        };
        let url = format!("ws://{}/v1/ws", server.local_addr());
        (
            url,
            KilledOnDrop(tokio::spawn(server.run_until(std::future::pending()))),
        )
    }

    async fn gateway_over_store(
        &self,
        limits: realtime::connection::Limits,
    ) -> platform::service::Server {
        let Storage::Embedded(embedded) = &self.storage else {
            unreachable!("BUG: only embedded mode has a gateway over the store")
        };
        realtime::assemble_over_store(
            listener().await,
            self.store.clone(),
            Arc::new(SqliteChangeLog(embedded.read_models.clone())),
            self.jwt.clone(),
            vec![],
            limits,
        )
    }
}

/// Requests, as a client makes them.
impl Stack {
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
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(testing::LISTEN)
        .await
        .unwrap()
}

impl Distributed {
    fn kill_relay(&mut self) {
        if let Some((task, _)) = self.relay.take() {
            task.abort();
        }
    }

    fn kill_projector(&mut self) {
        if let Some((task, _health)) = self.projector.take() {
            task.abort();
        }
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        self.kill_relay();
        self.kill_projector();
        if self.delete_stream {
            ScratchStream::delete_detached(&self.nats_url, &self.stream);
        }
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
