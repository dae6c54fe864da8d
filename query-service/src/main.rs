//! `query-service`: the query REST API (API.md "Queries"), listening on `MEETINGS_LISTEN`.

use clap::Parser;
use query_service::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    platform::telemetry::init(settings.log.log_format);
    query_service::build(&settings)
        .await?
        .run_until(platform::shutdown::signal())
        .await
}
