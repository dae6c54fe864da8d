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

/// Keeps this process's resident memory close to what it uses, for commands whose memory is
/// bounded (`meetings events …`: a replay, a verify): no transparent huge pages. The allocator
/// asks the kernel for them on its arenas, and a 2 MiB page is resident whole once touched:
/// a replay of 1,000,000 events peaked at 80–112 MiB with them, 66 MiB without, for the same
/// CPU time (BENCHMARKS.md, audit). Services keep them.
pub fn without_huge_pages() {
    // `prctl(PR_SET_THP_DISABLE)`: a flag of the whole process, not of the calling thread.
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(%error, "transparent huge pages stay on");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_bounded_command_turns_huge_pages_off_for_its_process() {
        super::without_huge_pages();
        let off = std::thread::spawn(rustix::thread::transparent_huge_pages_are_disabled);
        assert!(off.join().unwrap().unwrap(), "seen from another thread too");
    }
}
