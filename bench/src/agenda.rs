//! `bench agenda`: GET /v1/me/agenda for one-week windows of random users against the
//! in-process query-service, over a year of read models loaded with SQL, interleaved with
//! pgbench running the endpoint's SQL (`-M prepared`, same concurrency) on the same database.

use std::sync::Arc;

use chrono::SecondsFormat;
use rand::Rng;

use sqlx::PgPool;

use crate::compare::{self, Baseline, RoundOptions};
use crate::database::{BenchDatabase, ServerOptions};
use crate::load;
use crate::pgbench::ScriptFile;
use crate::seed;
use crate::services;

/// Target: p99 of the HTTP request below this.
const TARGET_P99_US: u32 = 10_000;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Meetings loaded into the read models, spread over a year.
    #[arg(long, default_value_t = 100_000)]
    pub meetings: i64,
    /// Users loaded into the read models.
    #[arg(long, default_value_t = 10_000)]
    pub users: i64,
    /// Concurrent HTTP clients (keep-alive), and pgbench clients (`-c`).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    #[command(flatten)]
    pub rounds: RoundOptions,
    /// Connections of the query-service's pool.
    #[arg(long, default_value_t = 16)]
    pub pool_size: u32,
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Last day offset a one-week window may start on.
const LAST_START_DAY: i64 = seed::DAYS - 7;

/// The endpoint's statement (query-service `repository::postgres` `agenda_rows`), with the caller and the
/// window computed from pgbench variables: user `:u`, window `[base + :d days, + 7 days)`, the
/// index scan starting 24 hours before the window as the endpoint's does.
fn script(users: i64) -> String {
    let base = seed::base().to_rfc3339_opts(SecondsFormat::Secs, true);
    let from = format!("(timestamptz '{base}' + :d::int * interval '1 day')");
    format!(
        "\\set u random(1, {users})\n\\set d random(0, {LAST_START_DAY})\n\
         SELECT meeting_id, starts_at, ends_at, title, status, my_response, is_organizer \
         FROM rm_agenda \
         WHERE user_id = {} AND starts_at >= {from} - interval '24 hours' \
         AND starts_at < {from} + interval '7 days' AND ends_at > {from} \
         ORDER BY starts_at, meeting_id;\n",
        seed::user_id_sql(":u")
    )
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
    let seeded = seed::load(pool, options.users, options.meetings).await?;
    let jwt = platform::testing::jwt_keys();
    let service = services::query(
        &database.url,
        options.pool_size,
        query_service::documents::DEFAULT_MAX_BATCH,
    )
    .await?;
    let tokens: Arc<Vec<String>> = Arc::new(
        seed::tokens(pool, &jwt)
            .await?
            .into_iter()
            .map(|(_, header)| header)
            .collect(),
    );
    let url: Arc<str> = format!("{}/v1/me/agenda", service.base).into();
    let items = check_some(&url, &tokens).await?;

    let script = ScriptFile::write(&script(options.users))?;
    println!(
        "agenda: {} clients, {}, one-week windows, {} users, {} meetings, {:.1} agenda rows per user-week (sampled: {items:.2} items per answer), {} cores",
        options.clients,
        options.rounds.describe(),
        seeded.users,
        seeded.meetings,
        seeded.agenda_rows as f64 / seeded.users as f64 / (seed::DAYS as f64 / 7.0),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let spec = options
        .rounds
        .closed_loop(options.clients, reqwest::StatusCode::OK);
    let baseline = Baseline::new(
        "pgbench agenda",
        &options.server,
        &database.url,
        script.path(),
        options.clients,
        &options.rounds,
    )
    .logging_latencies();
    let comparison = compare::interleave(options.rounds.rounds, "agenda", &baseline, || {
        let tokens = tokens.clone();
        let url = url.clone();
        load::closed_loop(&spec, move |client, rng| {
            let token = &tokens[rng.gen_range(0..tokens.len())];
            let (from, to) = seed::week(rng.gen_range(0..=LAST_START_DAY));
            client
                .get(&*url)
                .query(&[
                    ("from", from.to_rfc3339_opts(SecondsFormat::Secs, true)),
                    ("to", to.to_rfc3339_opts(SecondsFormat::Secs, true)),
                ])
                .header(reqwest::header::AUTHORIZATION, token)
        })
    })
    .await?;

    comparison.print_latency_report("agenda", TARGET_P99_US);
    let verdict = comparison.check_errors();
    drop(service);
    pool.close().await;
    verdict
}

/// A few requests before measuring: 200s with items lists; returns the average item count.
async fn check_some(url: &str, tokens: &[String]) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let samples = 200.min(tokens.len());
    let mut items = 0usize;
    for (i, token) in tokens.iter().take(samples).enumerate() {
        let (from, to) = seed::week(i as i64 * 7 % LAST_START_DAY);
        let response = client
            .get(url)
            .query(&[
                ("from", from.to_rfc3339_opts(SecondsFormat::Secs, true)),
                ("to", to.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ])
            .header(reqwest::header::AUTHORIZATION, token)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        let list = body["items"]
            .as_array()
            .filter(|_| status == 200)
            .ok_or_else(|| anyhow::anyhow!("unexpected agenda answer: {status} {body}"))?;
        items += list.len();
    }
    Ok(items as f64 / samples.max(1) as f64)
}
