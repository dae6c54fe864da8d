//! Test harness: the query side on either backend, on port 0, over read models the tests fill
//! directly (the projector's fold is not part of these tests; its writer is). On PostgreSQL
//! the query-service is started as its binary starts it (`query_service::build`); on SQLite it
//! is composed as `meetings serve` composes it in embedded mode, over the read-model and event
//! files, following checkpoints the tests publish. Fixture rows go through the projector's
//! read-model writer ([`projector::store::ReadModelConnection`]), so each backend stores them
//! in its own encoding and the tests hold no SQL of either.
#![allow(dead_code)] // each test binary uses a different part of the harness

mod fixtures;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use platform::auth::JwtKeys;
use platform::config::HttpLimits;
use platform::db::sqlite::{micros, SqliteFile};
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::{Position, SqliteEventStore};
use platform::testing::{self, TestClient, TestDatabase, TestDirectory, TestServer};
use query_service::repository::SqliteReadModels;
use query_service::watch::ProjectionWatch;
use query_service::{QueryArgs, Settings};
use serde_json::Value;
use tokio::sync::watch;

#[allow(unused_imports)]
pub use fixtures::{time, MeetingFixture, TestUser};
/// Shared with every service's tests (not every test binary uses it).
#[allow(unused_imports)]
pub use platform::testing::assert_problem;
pub use platform::testing::Backend;

pub struct TestApp {
    /// First field: dropped (stopping the service) before the storage.
    server: TestServer,
    /// Keys of the service's JWT settings, to issue tokens for fixture users.
    pub jwt: Arc<JwtKeys>,
    storage: Storage,
}

enum Storage {
    Postgres(TestDatabase),
    Sqlite {
        events: SqliteFile,
        read_models: SqliteFile,
        /// What the in-process projector would publish after each commit.
        checkpoints: watch::Sender<Option<Position>>,
        _directory: TestDirectory,
    },
}

/// Requests go to the service: `app.get(..)`, `app.url(..)`, `app.client`.
impl Deref for TestApp {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.server
    }
}

/// The service with the default `X-Min-Position` wait (2 s).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with_wait(backend, query_service::DEFAULT_MIN_POSITION_WAIT).await
}

pub async fn spawn_app_with_wait(backend: Backend, min_position_wait: Duration) -> TestApp {
    testing::init_tracing();
    let query = QueryArgs {
        min_position_wait,
        ..QueryArgs::default()
    };
    let (server, storage) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::new().await;
            let settings = Settings {
                database: testing::database_settings(&db.url, 20),
                jwt: testing::jwt_settings(),
                log: testing::log_settings(),
                http: HttpLimits::default(),
                listen: testing::LISTEN,
                query,
            };
            let server = query_service::build(&settings)
                .await
                .expect("the query-service builds");
            (server, Storage::Postgres(db))
        }
        Backend::Sqlite => sqlite_app(&query).await,
    };
    TestApp {
        server: TestServer::start(server),
        jwt: testing::jwt_keys(),
        storage,
    }
}

/// The query side over SQLite files, as embedded mode composes it (`meetings::embedded`).
async fn sqlite_app(query: &QueryArgs) -> (Server, Storage) {
    let directory = TestDirectory::new();
    let events = testing::open_events(&directory.file("meetings.db")).await;
    let read_models = SqliteFile::open_read_models(&directory.file("meetings-read-models.db"))
        .await
        .expect("the read-model file opens");
    let (checkpoints, following) = watch::channel(None);
    let state = query_service::AppState::new(
        Arc::new(SqliteReadModels::new(events.clone(), read_models.clone())),
        Arc::new(SqliteEventStore::new(events.clone())),
        ProjectionWatch::following(following),
        testing::jwt_keys(),
        query,
    );
    let listener = platform::service::bind(testing::LISTEN)
        .await
        .expect("bind port 0");
    let server = Server::new(
        "query-service",
        listener,
        query_service::router(state, Metrics::new(), None),
    );
    let storage = Storage::Sqlite {
        events,
        read_models,
        checkpoints,
        _directory: directory,
    };
    (server, storage)
}

impl TestApp {
    pub fn backend(&self) -> Backend {
        match self.storage {
            Storage::Postgres(_) => Backend::Postgres,
            Storage::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// The PostgreSQL database, for tests of PostgreSQL's own machinery (LISTEN/NOTIFY).
    pub fn db(&self) -> &TestDatabase {
        match &self.storage {
            Storage::Postgres(db) => db,
            Storage::Sqlite { .. } => panic!("BUG: a PostgreSQL-only test ran on SQLite"),
        }
    }

    /// The `n`th position of a test (increasing with `n`), as this backend's log names it.
    pub fn position(&self, n: i64) -> String {
        let transaction_id = match self.storage {
            Storage::Postgres(_) => 1000,
            // One writer: the SQLite log's positions are `(0, id)`.
            Storage::Sqlite { .. } => 0,
        };
        Position {
            transaction_id,
            id: n,
        }
        .to_string()
    }

    /// A stand-in event at `position(n)`, so that the store has written that far: an
    /// `X-Min-Position` past the newest stored event is refused (422) without waiting.
    pub async fn stored_up_to(&self, n: i64) {
        let aggregate = uuid::Uuid::now_v7();
        let stored = match &self.storage {
            Storage::Postgres(db) => sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata, event_id, recorded_at,
                                     transaction_id, id, hash)
                 VALUES ('test', $1, 1, 'StandIn', '1', '{}', '{}', $1, now(), '1000'::xid8,
                         $2, '\\x00')",
            )
            .bind(aggregate)
            .bind(n)
            .execute(&db.pool)
            .await
            .map(drop),
            Storage::Sqlite { events, .. } => sqlx::query(
                "INSERT INTO events (id, aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata, event_id, recorded_at,
                                     hash)
                 VALUES (?, 'test', ?, 1, 'StandIn', '1', '{}', '{}', ?, ?, x'00')",
            )
            .bind(n)
            .bind(aggregate)
            .bind(aggregate)
            .bind(micros(chrono::Utc::now()))
            .execute(&events.writer)
            .await
            .map(drop),
        };
        stored.expect("insert a stand-in event");
    }

    /// What the projector does when it commits: move the checkpoint and announce it (on
    /// PostgreSQL a NOTIFY in the same transaction; in embedded mode the in-process watch).
    pub async fn project_up_to(&self, position: &str) {
        match &self.storage {
            Storage::Postgres(db) => {
                let mut tx = db.pool.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO projection_checkpoints (projection, position)
                     VALUES ('read_models', $1)
                     ON CONFLICT (projection) DO UPDATE SET position = $1, updated_at = now()",
                )
                .bind(position)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query("SELECT pg_notify('meetings_projected', $1)")
                    .bind(position)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            Storage::Sqlite {
                read_models,
                checkpoints,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO projection_checkpoints (projection, position, updated_at)
                     VALUES ('read_models', ?1, ?2)
                     ON CONFLICT (projection) DO UPDATE SET position = ?1, updated_at = ?2",
                )
                .bind(position)
                .bind(micros(chrono::Utc::now()))
                .execute(&read_models.writer)
                .await
                .unwrap();
                checkpoints.send_replace(Some(position.parse().expect("a position")));
            }
        }
    }

    /// What the projector records when it stops on an event it cannot apply.
    pub async fn fail_projection(&self, position: &str, failure: &str) {
        let failed = match &self.storage {
            Storage::Postgres(db) => sqlx::query(
                "INSERT INTO projection_checkpoints (projection, position, failed_at, failure)
                 VALUES ('read_models', $1, now(), $2)",
            )
            .bind(position)
            .bind(failure)
            .execute(&db.pool)
            .await
            .map(drop),
            Storage::Sqlite { read_models, .. } => {
                let now = micros(chrono::Utc::now());
                sqlx::query(
                    "INSERT INTO projection_checkpoints (projection, position, updated_at,
                                                         failed_at, failure)
                     VALUES ('read_models', ?, ?, ?, ?)",
                )
                .bind(position)
                .bind(now)
                .bind(now)
                .bind(failure)
                .execute(&read_models.writer)
                .await
                .map(drop)
            }
        };
        failed.expect("record a projection failure");
    }
}

/// Ids of a list response's `items` under `key`.
pub fn ids(body: &Value, key: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item[key].as_str().unwrap().to_string())
        .collect()
}
