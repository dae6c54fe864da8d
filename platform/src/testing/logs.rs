//! Tracing for tests: installed once per test process, written nowhere unless `TEST_LOG` is
//! set. Formatting still runs, so a field that cannot be logged fails in tests, not in
//! production.

use std::sync::LazyLock;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        crate::telemetry::init(Some(LogFormat::Text));
    } else {
        let _ = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(fmt::layer().with_writer(std::io::sink))
            .try_init();
    }
});

/// Installs the test subscriber on the first call; later calls do nothing. Benchmarks do not
/// call it: their measurements run without a subscriber, as before.
pub fn init_tracing() {
    LazyLock::force(&TRACING);
}
