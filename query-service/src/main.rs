//! `query-service`: the query REST API (docs/api.md "Queries"), listening on `MEETINGS_LISTEN`.

fn main() -> anyhow::Result<()> {
    platform::service::main(
        |settings: &query_service::Settings| &settings.log,
        query_service::build,
    )
}
