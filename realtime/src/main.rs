//! `realtime`: the websocket gateway, listening on `MEETINGS_LISTEN`.

use clap::Parser;
use realtime::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    platform::telemetry::init(settings.log.log_format);
    let application = Application::build(&settings).await?;
    application.run_until(platform::shutdown::signal()).await?;
    Ok(())
}
