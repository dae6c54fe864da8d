//! Shared platform of the meetings services.
//!
//! Everything a service needs that is not business logic lives here once: typed configuration,
//! telemetry, the HTTP error format (RFC 9457), request ids, JWT verification, metrics, and the
//! write-side event store behind a small trait so that the PostgreSQL and (later) SQLite backends
//! are interchangeable without touching handlers.

pub mod auth;
pub mod breaker;
pub mod bus;
pub mod config;
pub mod db;
pub mod http;
pub mod ical;
pub mod leader;
pub mod metrics;
pub mod openapi;
pub mod projection;
pub mod search;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod views;

/// glibc malloc fragments and contends under many tokio tasks; mimalloc measured ~15 % less
/// CPU for the same load (BENCHMARKS.md, pipeline-lag). Declared once here, so every binary
/// of the workspace (services, CLI, benchmarks, tests) runs on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
