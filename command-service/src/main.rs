//! `command-service`: the command REST API (API.md), listening on `MEETINGS_LISTEN`.

use clap::Parser;
use command_service::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    platform::telemetry::init(settings.log.log_format);
    command_service::build(&settings)
        .await?
        .run_until(platform::shutdown::signal())
        .await
}
