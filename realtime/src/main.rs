//! `realtime`: the websocket gateway, listening on `MEETINGS_LISTEN`.

use clap::Parser;
use realtime::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    platform::telemetry::init(settings.log.log_format);
    realtime::build(&settings)
        .await?
        .run_until(platform::shutdown::signal())
        .await
}
