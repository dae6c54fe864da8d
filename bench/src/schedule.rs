//! `bench schedule-meeting`: POST /v1/meetings over HTTP against the in-process command-service,
//! interleaved with a pgbench single-row-insert baseline on the same database.

use serde_json::json;
use sqlx::PgPool;

use crate::compare::{self, Baseline, RoundOptions};
use crate::database::{self, BenchDatabase, ServerOptions};
use crate::load::{self, ClosedLoop, Round};
use crate::pgbench::{self, ScriptFile};
use crate::services;
use crate::stats::{ms, quantile};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Concurrent HTTP clients, and pgbench clients (`-c`).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[command(flatten)]
    pub rounds: RoundOptions,
    #[command(flatten)]
    pub server: ServerOptions,
    /// Connections of the command-service's pool.
    #[arg(long, default_value_t = 32)]
    pub pool_size: u32,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let options = &options;
    let (server, rounds) = (&options.server, &options.rounds);
    compare::with_migrated_database(
        server,
        rounds,
        options.clients,
        options.pool_size,
        |database, pool| async move { run_in(options, &database, &pool).await },
    )
    .await
}

async fn run_in(options: &Options, database: &BenchDatabase, pool: &PgPool) -> anyhow::Result<()> {
    let server = &options.server;
    database::prepare(pool).await?;
    let service = services::command(&database.url, options.pool_size).await?;
    let token = service.sign_up("Bench").await?.token;
    let script = ScriptFile::write(&pgbench::insert_script())?;
    let spec = options
        .rounds
        .closed_loop(options.clients, reqwest::StatusCode::CREATED);

    print_header(options);
    let baseline = Baseline::new(
        "pgbench insert",
        server,
        &database.url,
        script.path(),
        options.clients,
        &options.rounds,
    );
    let comparison =
        compare::interleave(options.rounds.rounds, "schedule-meeting", &baseline, || {
            service_round(&service.base, &token, &spec)
        })
        .await?;
    let service_median = comparison.service_median();
    let baseline_median = comparison.baseline_median();
    let service_rounds = &comparison.service;
    let latencies = load::all_latencies(service_rounds);
    let ratio = service_median / baseline_median;

    println!();
    println!(
        "median  schedule-meeting {service_median:>9.1} req/s   pgbench insert {baseline_median:>9.1} tps"
    );
    println!(
        "ratio   {:.1}% of the baseline (target ≥ 50%: {})",
        ratio * 100.0,
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
    println!(
        "latency schedule-meeting, all measured rounds: p50 {} ms, p99 {} ms, max {} ms ({} requests)",
        ms(quantile(&latencies, 0.50)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied()),
        latencies.len()
    );
    let verdict = comparison.check_errors();
    print_row_sizes(pool).await?;

    drop(service);
    pool.close().await;
    verdict
}

fn print_header(options: &Options) {
    println!(
        "schedule-meeting: {} clients, {}, {} cores",
        options.clients,
        options.rounds.describe(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
}

/// Average stored row size of both tables, to show the baseline's rows are comparable.
async fn print_row_sizes(pool: &PgPool) -> anyhow::Result<()> {
    let (events, event_bytes): (i64, Option<f64>) =
        sqlx::query_as("SELECT count(*), avg(pg_column_size(e.*))::float8 FROM events e")
            .fetch_one(pool)
            .await?;
    let (rows, row_bytes): (i64, Option<f64>) =
        sqlx::query_as("SELECT count(*), avg(pg_column_size(b.*))::float8 FROM bench_baseline b")
            .fetch_one(pool)
            .await?;
    println!(
        "rows    events: {events} (avg {:.0} bytes, 3 indexes), bench_baseline: {rows} (avg {:.0} bytes, 1 index)",
        event_bytes.unwrap_or(0.0),
        row_bytes.unwrap_or(0.0)
    );
    Ok(())
}

/// A valid schedule request: tomorrow 10:00–11:00 UTC, no attendees.
fn meeting_body() -> Vec<u8> {
    let day = chrono::Utc::now()
        .date_naive()
        .succ_opt()
        .expect("BUG: tomorrow exists");
    serde_json::to_vec(&json!({
        "title": "Benchmark planning",
        "description": "Weekly sync",
        "starts_at": format!("{day}T10:00:00Z"),
        "ends_at": format!("{day}T11:00:00Z"),
        "time_zone": "Europe/Berlin",
        "location": "Room 4",
    }))
    .expect("BUG: a JSON value serializes")
}

/// One measured round of POST /v1/meetings from `clients` keep-alive connections.
async fn service_round(base: &str, token: &str, spec: &ClosedLoop) -> anyhow::Result<Round> {
    let url = format!("{base}/v1/meetings");
    let authorization = format!("Bearer {token}");
    let body = meeting_body();
    load::closed_loop(spec, move |client, _| {
        client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
    })
    .await
}
