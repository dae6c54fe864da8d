//! The one place that builds the tracing subscriber.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber: JSON lines (default off a terminal) or human text.
/// `RUST_LOG` overrides the default `info` filter.
pub fn init(format: Option<LogFormat>) {
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: tests and the all-in-one `serve` may call this more than once.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    // Every enclosing span's fields, not only the innermost's: a line from
                    // deep inside a request still carries its request and correlation ids.
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer()).try_init(),
    };
}
