//! The pieces every service's `Settings` literal in a harness shares, so that a literal names
//! only what is particular to its test. Literals rather than `parse()`: a developer's
//! `MEETINGS_*` variables must not leak into tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::auth::JwtKeys;
use crate::bus::StreamName;
use crate::config::{DatabaseSettings, JwtSettings, LogSettings, NatsSettings};

/// The HS256 key of every test, end-to-end test and benchmark run (at least 32 bytes).
pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

/// Port 0 on the loopback interface: each service gets a free port of its own.
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// [`JWT_SECRET`] with the default issuer and audience, as services read it.
pub fn jwt_settings() -> JwtSettings {
    JwtSettings {
        jwt_secret: Some(JWT_SECRET.to_string()),
        jwt_secret_file: None,
        issuer: "meetings".to_string(),
        audience: "meetings".to_string(),
        private_key_file: None,
        previous_key_file: None,
        public_key_files: vec![],
    }
}

/// The keys a service builds from [`jwt_settings`]: tokens they issue, services accept.
pub fn jwt_keys() -> Arc<JwtKeys> {
    Arc::new(JwtKeys::from_settings(&jwt_settings()).expect("BUG: the test key is long enough"))
}

pub fn database_settings(url: &str, max_connections: u32) -> DatabaseSettings {
    DatabaseSettings {
        database_url: Some(url.to_string()),
        max_connections,
    }
}

pub fn nats_settings(url: &str, stream: &StreamName) -> NatsSettings {
    NatsSettings {
        nats_url: Some(url.to_string()),
        stream: stream.as_str().to_string(),
    }
}

/// No NATS: a command-service stores events without relaying them.
pub fn without_nats() -> NatsSettings {
    NatsSettings {
        nats_url: None,
        stream: "EVENTS".to_string(),
    }
}

/// The format is unused: harnesses install their subscriber with [`super::init_tracing`].
pub fn log_settings() -> LogSettings {
    LogSettings { log_format: None }
}
