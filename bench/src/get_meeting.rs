//! `bench get-meeting`: authenticated GET /v1/meetings/{id} throughput against the in-process
//! query-service, over read models loaded with SQL, interleaved with a pgbench primary-key
//! SELECT on `rm_meetings` on the same database.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;
use uuid::Uuid;

use sqlx::PgPool;

use crate::compare::{self, Baseline, RoundOptions};
use crate::database::{BenchDatabase, ServerOptions};
use crate::load;
use crate::pgbench::ScriptFile;
use crate::seed;
use crate::services;
use crate::stats::summary;
use crate::wrk;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Concurrent HTTP clients (keep-alive), and pgbench clients (`-c`).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[command(flatten)]
    pub rounds: RoundOptions,
    /// Meetings loaded into the read models.
    #[arg(long, default_value_t = 10_000)]
    pub meetings: i64,
    /// Users loaded into the read models (organizers and attendees).
    #[arg(long, default_value_t = 1_000)]
    pub users: i64,
    /// Connections of the query-service's pool.
    #[arg(long, default_value_t = 32)]
    pub pool_size: u32,
    /// HTTP load generator: `wrk` (a separate C process, like pgbench for the baseline) or
    /// `in-process` (reqwest clients inside the bench process, sharing its runtime with the
    /// service; the method of the runs before 2026-11-28 11:00 UTC).
    #[arg(long, value_enum, default_value_t = Load::Wrk)]
    pub load: Load,
    /// The wrk executable.
    #[arg(long, default_value = "wrk")]
    pub wrk: String,
    /// wrk threads (`-t`), as pgbench's `-j`.
    #[arg(long, default_value_t = 2)]
    pub wrk_threads: usize,
    /// The query-service's `MEETINGS_READ_BATCH`: most reads per statement (1: every read
    /// its own statement, as before 2026-12-02).
    #[arg(long, default_value_t = query_service::documents::DEFAULT_MAX_BATCH)]
    pub read_batch: usize,
    #[command(flatten)]
    pub server: ServerOptions,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    Wrk,
    InProcess,
}

/// The baseline: a primary-key SELECT of a random existing meeting (ids are
/// `md5('meeting-' || n)::uuid`, see [`seed`]).
fn script(meetings: i64) -> String {
    format!(
        "\\set n random(1, {meetings})\nSELECT * FROM rm_meetings WHERE id = {};\n",
        seed::meeting_id_sql(":n")
    )
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.load == Load::Wrk {
        wrk::check_available(&options.wrk)?;
    }
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
    seed::load(pool, options.users, options.meetings).await?;
    let jwt = platform::testing::jwt_keys();
    let service = services::query(&database.url, options.pool_size, options.read_batch).await?;

    // Requests: a random (user, meeting) pair where the user organizes or attends the meeting,
    // so every request is a visible meeting (200), with that user's token.
    let tokens: HashMap<Uuid, Arc<str>> = seed::tokens(pool, &jwt)
        .await?
        .into_iter()
        .map(|(id, header)| (id, header.into()))
        .collect();
    let pairs: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT user_id, meeting_id FROM rm_agenda")
        .fetch_all(pool)
        .await?;
    let requests: Arc<Vec<(Arc<str>, String)>> = Arc::new(
        pairs
            .into_iter()
            .map(|(user, meeting)| {
                let token = tokens
                    .get(&user)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no token for user {user}"))?;
                Ok((token, format!("{}/v1/meetings/{meeting}", service.base)))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    check_one(&requests[0]).await?;
    let wrk_files = match options.load {
        Load::Wrk => Some(wrk::WrkFiles::write(
            &requests
                .iter()
                .map(|(token, url)| {
                    let path = url.strip_prefix(service.base.as_str()).unwrap_or(url);
                    (path.to_string(), token.to_string())
                })
                .collect::<Vec<_>>(),
        )?),
        Load::InProcess => None,
    };

    let script = ScriptFile::write(&script(options.meetings))?;
    println!(
        "get-meeting: {} clients ({}), read batch {}, {}, {} meetings, {} (user, meeting) pairs, {} cores",
        options.clients,
        match options.load {
            Load::Wrk => format!("wrk -t {}", options.wrk_threads),
            Load::InProcess => "in-process reqwest".to_string(),
        },
        options.read_batch,
        options.rounds.describe(),
        options.meetings,
        requests.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let spec = options
        .rounds
        .closed_loop(options.clients, reqwest::StatusCode::OK);
    let baseline = Baseline::new(
        "pgbench pk select",
        &options.server,
        &database.url,
        script.path(),
        options.clients,
        &options.rounds,
    );
    let comparison = compare::interleave(options.rounds.rounds, "get-meeting", &baseline, || {
        let requests = requests.clone();
        let (spec, wrk_files, base) = (&spec, wrk_files.as_ref(), service.base.as_str());
        async move {
            match wrk_files {
                Some(files) => {
                    wrk::closed_loop(spec, &options.wrk, options.wrk_threads, files, base).await
                }
                None => {
                    load::closed_loop(spec, move |client, rng| {
                        let (token, url) = &requests[rng.gen_range(0..requests.len())];
                        client
                            .get(url)
                            .header(reqwest::header::AUTHORIZATION, &**token)
                    })
                    .await
                }
            }
        }
    })
    .await?;

    let service_median = comparison.service_median();
    let baseline_median = comparison.baseline_median();
    let ratio = service_median / baseline_median;
    println!();
    println!(
        "median  get-meeting {service_median:>9.1} req/s   pgbench pk select {baseline_median:>9.1} tps"
    );
    println!(
        "ratio   {:.1}% of the baseline (target ≥ 50%: {})",
        ratio * 100.0,
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
    println!(
        "latency get-meeting, all measured rounds: {}",
        summary(&load::all_latencies(&comparison.service))
    );
    let verdict = comparison.check_errors();
    drop(service);
    pool.close().await;
    verdict
}

/// One request before measuring: 200 with the meeting, its organizer's name and attendees.
async fn check_one((token, url): &(Arc<str>, String)) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .get(url)
        .header(reqwest::header::AUTHORIZATION, &**token)
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    anyhow::ensure!(
        status == 200
            && body["organizer"]["display_name"].is_string()
            && body["attendees"]
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|a| a["display_name"].is_string())),
        "unexpected answer to GET {url}: {status} {body}"
    );
    Ok(())
}
