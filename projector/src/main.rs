//! `projector`: maintains the read models from the event stream; serves health and metrics.

fn main() -> anyhow::Result<()> {
    platform::service::main(
        |settings: &projector::Settings| &settings.log,
        projector::build,
    )
}
