//! `realtime`: the websocket gateway, listening on `MEETINGS_LISTEN`.

fn main() -> anyhow::Result<()> {
    platform::service::main(
        |settings: &realtime::Settings| &settings.log,
        realtime::build,
    )
}
