//! The one test harness of the workspace (feature `testing`): what every crate's tests, the
//! end-to-end tests and the benchmarks need to run services against real PostgreSQL and NATS.
//!
//! It knows no service: each harness fills its service's `Settings` with the pieces below and
//! starts it through the same `Application::build` as the binary. Tests never skip when
//! PostgreSQL or NATS is missing: they fail with a message saying what to start.
//!
//! - [`backend`]: the same test on PostgreSQL and on SQLite (embedded mode).
//! - [`database`]: a fresh, migrated database per test ([`TestDatabase`]), or per bench run.
//! - [`history`]: a generated history of every event type, as the stream delivers it.
//! - [`events`]: the event store once every commit is readable in global order.
//! - [`settings`]: the one test JWT key and the settings every service literal shares.
//! - [`logs`]: tracing installed once per test process, quiet unless `TEST_LOG` is set.
//! - [`server`]: a service spawned on port 0 that stops gracefully when dropped.
//! - [`client`]: HTTP calls, sign-up and scheduling as clients make them; problem bodies.
//! - [`nats`]: NATS of the tests and JetStream streams of their own.

pub mod backend;
mod cleanup;
pub mod client;
pub mod database;
pub mod events;
pub mod history;
pub mod logs;
pub mod nats;
pub mod server;
pub mod settings;

pub use backend::{open_events, Backend, TestDirectory, TestStore};
pub use client::{assert_problem, meeting_body, meeting_body_on, TestClient, TestUser, PASSWORD};
pub use database::{admin_url, ScratchDatabase, TestDatabase};
pub use events::{committed_events, event_count};
pub use logs::init_tracing;
pub use nats::{connect_nats, nats_client, nats_url, unique_stream_name, ScratchStream};
pub use server::TestServer;
pub use settings::{
    database_settings, jwt_keys, jwt_settings, log_settings, nats_settings, without_nats,
    JWT_SECRET, LISTEN,
};
