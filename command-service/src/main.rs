//! `command-service`: the command REST API (API.md), listening on `MEETINGS_LISTEN`.

use clap::Parser;
use command_service::{Application, Settings};

/// glibc malloc fragments and contends under many tokio tasks; mimalloc measured ~15 % less
/// CPU for the same load (BENCHMARKS.md, pipeline-lag).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    platform::telemetry::init(settings.log.log_format);
    let application = Application::build(&settings).await?;
    application.run_until(platform::shutdown::signal()).await?;
    Ok(())
}
