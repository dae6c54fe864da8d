//! `bench embedded`: `meetings serve` in embedded mode (SQLite files in a scratch directory,
//! built by `meetings::embedded::build` as the binary builds it), in this process.
//!
//! 1. schedule-meeting: POST /v1/meetings in closed-loop rounds, interleaved with a raw SQLite
//!    insert loop on a scratch file of the same directory and the same settings (WAL,
//!    `synchronous=FULL`, one writer, one transaction per row): what the disk and SQLite allow.
//! 2. command → query: an open loop of POST /v1/meetings at a fixed rate; for each accepted
//!    command the time from sending it until GET /v1/meetings/{id} with its `X-Min-Position`
//!    answers (read-your-writes through the projector); the baseline is the same at a low
//!    rate, first.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::config::parse_duration;
use platform::testing::{self, meeting_body, TestDirectory, TestServer};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::task::JoinSet;

use crate::compare::RoundOptions;
use crate::load::{self, Round};
use crate::stats::{median, summary};

/// Target: schedule-meeting at least this share of the raw insert loop's rate.
const TARGET_RATIO: f64 = 0.5;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Concurrent HTTP clients of the schedule-meeting rounds.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    #[command(flatten)]
    pub rounds: RoundOptions,
    /// Commands per second of the command → query phase (open loop).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Commands per second of its baseline (run first).
    #[arg(long, default_value_t = 20.0)]
    pub baseline_rate: f64,
    /// How long each command → query phase runs.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lag_duration: Duration,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    options.rounds.check(options.clients)?;
    anyhow::ensure!(
        options.rate > 0.0 && options.baseline_rate > 0.0,
        "rates must be positive"
    );
    let directory = TestDirectory::new();
    let system = e2e::services::build_embedded(&directory, testing::jwt_keys(), |_| {}).await?;
    let _lock = system.lock;
    let service = TestServer::start(system.server);
    let raw = RawInserts::open(&directory.file("raw-inserts.db")).await?;

    println!(
        "embedded: schedule-meeting vs raw SQLite inserts, {} clients, {}; files in {}",
        options.clients,
        options.rounds.describe(),
        directory.path.display()
    );
    println!("{}", load::header());
    let token = service.sign_up("Bench").await?.token;
    let spec = options
        .rounds
        .closed_loop(options.clients, reqwest::StatusCode::CREATED);
    let (mut served, mut inserted) = (vec![], vec![]);
    for round in 1..=options.rounds.rounds {
        let url = service.url("/v1/meetings");
        let token = token.clone();
        let body = meeting_body("Benchmark planning", &[]);
        let result: Round = load::closed_loop(&spec, move |client, _| {
            client.post(&url).bearer_auth(&token).json(&body)
        })
        .await?;
        println!("{}", result.line(round, "schedule-meeting"));
        served.push(result.throughput);
        let rate = raw
            .round(options.rounds.warmup, options.rounds.duration)
            .await?;
        println!("{round:>5}  {:<16}  {rate:>8.1}/s", "raw sqlite insert");
        inserted.push(rate);
    }
    let (served, inserted) = (
        median(&served).unwrap_or_default(),
        median(&inserted).unwrap_or_default(),
    );
    let ratio = served / inserted;
    println!();
    println!(
        "median  schedule-meeting {served:>9.1} req/s   raw sqlite insert {inserted:>9.1} rows/s"
    );
    println!(
        "ratio   {:.2}× the baseline (target ≥ {TARGET_RATIO}×: {})",
        ratio,
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );

    println!();
    for (label, rate) in [("baseline", options.baseline_rate), ("load", options.rate)] {
        let lag = command_to_query(&service, &token, rate, options.lag_duration).await?;
        println!(
            "command → query at {rate}/s ({label}): {}, {} errors, {:.1} commands/s achieved",
            summary(&lag.latencies_us),
            lag.errors,
            lag.achieved
        );
    }
    Ok(())
}

/// The baseline: one writer inserting rows of a command's size, one transaction each.
struct RawInserts {
    pool: sqlx::SqlitePool,
}

impl RawInserts {
    async fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE rows (id INTEGER PRIMARY KEY, aggregate_id BLOB NOT NULL, \
             payload TEXT NOT NULL, hash BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    /// Rows per second inserted during `duration`, after `warmup`.
    async fn round(&self, warmup: Duration, duration: Duration) -> anyhow::Result<f64> {
        // A row the size of a command's event: its body as the payload.
        let payload = meeting_body("Benchmark planning", &[]).to_string();
        let start = Instant::now();
        let (measure_from, end) = (start + warmup, start + warmup + duration);
        let mut counted = 0u64;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            sqlx::query("INSERT INTO rows (aggregate_id, payload, hash) VALUES (?, ?, ?)")
                .bind(uuid::Uuid::now_v7())
                .bind(&payload)
                .bind([7u8; 32].as_slice())
                .execute(&self.pool)
                .await?;
            if now >= measure_from {
                counted += 1;
            }
        }
        Ok(counted as f64 / duration.as_secs_f64())
    }
}

struct Lag {
    latencies_us: Vec<u32>,
    errors: u64,
    achieved: f64,
}

/// An open loop of schedule commands at `rate` for `duration`; each one's time until the
/// query API shows it at its position.
async fn command_to_query(
    service: &TestServer,
    token: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Lag> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let shared = Arc::new((client, service.base.clone(), token.to_owned()));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    let mut issued = 0u64;
    while start.elapsed() < duration {
        tokio::time::sleep_until(start + interval * issued as u32).await;
        issued += 1;
        let shared = shared.clone();
        tasks.spawn(async move {
            let (client, base, token) = &*shared;
            let sent = Instant::now();
            let body = meeting_body("Benchmark planning", &[]);
            let response = client
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .ok()?;
            if response.status() != 201 {
                return None;
            }
            let created: Value = response.json().await.ok()?;
            let (id, position) = (created["id"].as_str()?, created["position"].as_str()?);
            let read = client
                .get(format!("{base}/v1/meetings/{id}"))
                .bearer_auth(token)
                .header("X-Min-Position", position)
                .send()
                .await
                .ok()?;
            (read.status() == 200).then(|| sent.elapsed().as_micros() as u32)
        });
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut lag = Lag {
        latencies_us: vec![],
        errors: 0,
        achieved: issued as f64 / elapsed,
    };
    while let Some(result) = tasks.join_next().await {
        match result? {
            Some(us) => lag.latencies_us.push(us),
            None => lag.errors += 1,
        }
    }
    lag.latencies_us.sort_unstable();
    Ok(lag)
}
