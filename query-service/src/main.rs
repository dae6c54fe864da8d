//! `query-service`: the query REST API (docs/api.md "Queries"), listening on `MEETINGS_LISTEN`.

fn main() -> anyhow::Result<()> {
    platform::service::main::<query_service::Settings>()
}
