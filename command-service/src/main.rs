//! `command-service`: the command REST API (docs/api.md), listening on `MEETINGS_LISTEN`.

fn main() -> anyhow::Result<()> {
    platform::service::main(
        |settings: &command_service::Settings| &settings.log,
        command_service::build,
    )
}
