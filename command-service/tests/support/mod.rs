//! Test harness: the command-service started as its binary starts it (`command_service::build`)
//! on port 0, against a fresh PostgreSQL database, or embedded mode's composition
//! (`meetings::embedded::build`) on fresh SQLite files — each test runs on both
//! (`platform::on_each_backend!`) — with the workspace's test key. The pieces
//! come from `platform::testing`; only what is particular to this service is here.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::ops::Deref;
use std::sync::Arc;

use command_service::{AuthSettings, LimitSettings, Settings};
use platform::auth::JwtKeys;
use platform::config::HttpLimits;
use platform::db::sqlite::SqliteFile;
use platform::store::{EventStore, PgEventStore, StoredEvent};
use platform::testing::{self, TestClient, TestDatabase, TestDirectory, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

/// Shared with every service's tests (not every test binary uses them).
#[allow(unused_imports)]
pub use platform::testing::{assert_problem, meeting_body, Backend, TestUser, JWT_SECRET};

pub struct TestApp {
    /// First field: dropped (stopping the service) before the storage.
    server: TestServer,
    pub backend: Backend,
    /// The event store of the service, for what tests check or plant directly.
    pub store: Arc<dyn EventStore>,
    /// Keys of the service's JWT settings.
    pub jwt: Arc<JwtKeys>,
    storage: Storage,
}

enum Storage {
    /// The command-service binary's composition, and what it was built from (for a replica).
    Postgres(Box<Settings>, TestDatabase),
    /// `meetings serve` in embedded mode: the event log's file, its lock, the directory.
    Sqlite(SqliteFile, std::fs::File, TestDirectory),
}

/// Requests go to the service: `app.post(..)`, `app.url(..)`, `app.client`.
impl Deref for TestApp {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.server
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, AuthSettings::default()).await
}

pub async fn spawn_app_with(backend: Backend, auth: AuthSettings) -> TestApp {
    spawn(
        backend,
        auth,
        // Every test client registers from 127.0.0.1: one address for many users.
        LimitSettings {
            registrations_per_hour: 100_000.try_into().unwrap(),
            ..LimitSettings::default()
        },
    )
    .await
}

/// The service with the given per-caller limits (and default token lifetimes).
pub async fn spawn_app_limited(backend: Backend, limits: LimitSettings) -> TestApp {
    spawn(backend, AuthSettings::default(), limits).await
}

async fn spawn(backend: Backend, auth: AuthSettings, limits: LimitSettings) -> TestApp {
    testing::init_tracing();
    let jwt = testing::jwt_keys();
    match backend {
        Backend::Postgres => {
            let db = TestDatabase::new().await;
            let settings = Settings {
                database: testing::database_settings(&db.url, 20),
                jwt: testing::jwt_settings(),
                log: testing::log_settings(),
                auth,
                limits,
                nats: testing::without_nats(),
                http: HttpLimits::default(),
                audit: Default::default(),
                listen: testing::LISTEN,
            };
            TestApp {
                server: serve(&settings).await,
                backend,
                store: Arc::new(PgEventStore::new(db.pool.clone())),
                jwt,
                storage: Storage::Postgres(Box::new(settings), db),
            }
        }
        Backend::Sqlite => {
            // The command API of `meetings serve` with no database configured.
            let directory = TestDirectory::new();
            let system = e2e::services::build_embedded(&directory, jwt.clone(), |settings| {
                settings.database.max_connections = 20;
                settings.auth = auth;
                settings.limits = limits;
            })
            .await
            .expect("embedded mode builds");
            TestApp {
                server: TestServer::start(system.server),
                backend,
                store: system.store,
                jwt,
                storage: Storage::Sqlite(system.events, system.lock, directory),
            }
        }
    }
}

async fn serve(settings: &Settings) -> TestServer {
    TestServer::start(
        command_service::build(settings)
            .await
            .expect("the command-service builds"),
    )
}

/// A second command-service instance, with its own pool and cache, on the same database.
pub async fn spawn_replica(app: &TestApp) -> TestServer {
    let Storage::Postgres(settings, _) = &app.storage else {
        panic!("BUG: embedded mode is one process: no replica on SQLite")
    };
    serve(settings).await
}

impl TestApp {
    /// Registers a user with a unique email and logs them in.
    pub async fn user(&self, name: &str) -> TestUser {
        self.sign_up(name).await.expect("sign up")
    }

    /// Makes `user` an admin the way an operator does (`meetings users promote`), and returns a
    /// fresh token carrying the role.
    pub async fn promote(&self, user: &TestUser) -> TestUser {
        command_service::admin::promote(self.store.clone(), &user.email)
            .await
            .expect("promote");
        self.log_in(user.clone()).await.expect("log in again")
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// Ends the session of `refresh_token`, asked with the access token `token`.
    pub async fn logout(&self, token: Option<&str>, refresh_token: &str) -> reqwest::Response {
        self.post(
            "/v1/auth/logout",
            token,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// A command that needs a valid access token: renaming oneself.
    pub async fn rename(&self, token: &str, name: &str) -> reqwest::Response {
        self.patch("/v1/users/me", Some(token), json!({"display_name": name}))
            .await
    }

    /// Schedules a meeting for tomorrow 10:00–11:00 UTC and returns its id.
    pub async fn schedule(&self, organizer: &TestUser, attendees: &[Uuid]) -> Uuid {
        self.server
            .schedule(&organizer.token, &meeting_body("Planning", attendees))
            .await
            .expect("schedule")
    }

    /// Every committed event, in global order (see [`testing::committed_events`]).
    pub async fn all_events(&self) -> Vec<StoredEvent> {
        match &self.storage {
            Storage::Postgres(_, db) => {
                testing::committed_events(self.store.as_ref(), &db.pool).await
            }
            // One writer: what is committed is readable in order at once.
            Storage::Sqlite(..) => self.store.read_all(None, 1_000_000).await.unwrap(),
        }
    }

    pub async fn event_count(&self) -> i64 {
        self.count("SELECT count(*) FROM events").await
    }

    /// The answer of `SELECT count(*) …` (SQL both backends read alike) on the service's store.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.storage {
            Storage::Postgres(_, db) => sqlx::query_scalar(sql).fetch_one(&db.pool).await,
            Storage::Sqlite(events, ..) => sqlx::query_scalar(sql).fetch_one(&events.reader).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The PostgreSQL database of a test that runs on PostgreSQL only.
    pub fn db(&self) -> &TestDatabase {
        match &self.storage {
            Storage::Postgres(_, db) => db,
            Storage::Sqlite(..) => panic!("BUG: a PostgreSQL-only test runs on SQLite"),
        }
    }
}

/// The string field `key` of `value`.
pub fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
        .to_string()
}

/// Repeats `request` while it answers one of `before` until it answers `after`, for at
/// most `within`; how long that took. Any other answer fails the test.
pub async fn answers_within<F, Fut>(
    before: &[u16],
    after: u16,
    within: std::time::Duration,
    mut request: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = std::time::Instant::now();
    loop {
        let status = request().await.status().as_u16();
        if status == after {
            return started.elapsed();
        }
        assert!(
            before.contains(&status),
            "{status}: neither one of {before:?} nor {after}"
        );
        assert!(
            started.elapsed() < within,
            "still {status} after {within:?}, wanted {after}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
