//! `projector`: maintains the read models from the event stream; serves health and metrics.

use clap::Parser;
use projector::Settings;

/// glibc malloc fragments and contends under many tokio tasks; mimalloc measured ~15 % less
/// CPU for the same load (BENCHMARKS.md, pipeline-lag).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    platform::telemetry::init(settings.log.log_format);
    let (projector, router, listener) = projector::build(&settings).await?;
    tracing::info!(address = %listener.local_addr()?, "projector health endpoints listening");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let outcome = tokio::select! {
        outcome = projector.run(stop.clone().cancelled_owned()) => outcome,
        () = platform::shutdown::signal() => Ok(()),
    };
    stop.cancel();
    server.await??;
    outcome
}
