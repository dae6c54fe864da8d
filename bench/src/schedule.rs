//! `bench schedule-meeting`: POST /v1/meetings over HTTP against the in-process command-service,
//! interleaved with a pgbench single-row-insert baseline on the same database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use command_service::sessions::PgSessionStore;
use command_service::{router, AppState, Application, AuthSettings};
use platform::auth::JwtKeys;
use platform::config::{parse_duration, Secret};
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::cpu::{CpuSample, CpuUse};
use crate::database::BenchDatabase;
use crate::pgbench::{self, PgbenchResult, ScriptFile};
use crate::stats::{median, quantile};

/// Non-201 answers above this share of all answers fail the run.
const MAX_ERROR_RATE: f64 = 0.001;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Concurrent HTTP clients, and pgbench clients (`-c`).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Measured time of each round (whole seconds for pgbench).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before each round.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Service rounds and baseline rounds, interleaved (service, baseline, service, …).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Any database on the PostgreSQL server; the bench database is created beside it.
    #[arg(
        long = "admin-url",
        visible_alias = "database-url",
        env = "MEETINGS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
    /// Connections of the command-service's pool.
    #[arg(long, default_value_t = 32)]
    pub pool_size: u32,
    /// Experiment: build the service's pool without sqlx's per-acquire ping
    /// (`test_before_acquire(false)`) instead of with `platform::db::connect`.
    #[arg(long)]
    pub no_acquire_ping: bool,
    /// The pgbench executable.
    #[arg(long, default_value = "pgbench")]
    pub pgbench: String,
    /// pgbench threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pub pgbench_threads: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(options.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        options.duration >= Duration::from_secs(1),
        "--duration must be at least 1s"
    );
    let database = BenchDatabase::create(&options.admin_url).await?;
    eprintln!("bench database: {}", database.name);
    let outcome = run_in(&options, &database).await;
    if let Err(error) = database.drop_database().await {
        eprintln!("warning: could not drop {}: {error:#}", database.name);
    }
    outcome
}

async fn run_in(options: &Options, database: &BenchDatabase) -> anyhow::Result<()> {
    let pool = if options.no_acquire_ping {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(options.pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .connect(&database.url)
            .await?
    } else {
        platform::db::connect(&database.url, options.pool_size).await?
    };
    database.prepare(&pool).await?;
    let service = Service::start(pool.clone()).await?;
    let token = service.user_token().await?;
    let script = ScriptFile::write()?;

    print_header(options);
    let mut service_rounds = Vec::with_capacity(options.rounds);
    let mut baseline_rounds = Vec::with_capacity(options.rounds);
    for round in 1..=options.rounds {
        let result = service_round(&service.base, &token, options).await?;
        println!("{}", result.line(round));
        service_rounds.push(result);

        if !options.warmup.is_zero() {
            pgbench::run(
                &options.pgbench,
                &database.url,
                script.path(),
                options.clients,
                options.pgbench_threads,
                options.warmup,
            )
            .await?;
        }
        let cpu = CpuSample::now();
        let result = pgbench::run(
            &options.pgbench,
            &database.url,
            script.path(),
            options.clients,
            options.pgbench_threads,
            options.duration,
        )
        .await?;
        let cpu = cpu.and_then(|start| start.until_now());
        println!("{}", baseline_line(round, &result, cpu.as_ref()));
        baseline_rounds.push(result);
    }

    let service_tps: Vec<f64> = service_rounds.iter().map(|r| r.throughput).collect();
    let baseline_tps: Vec<f64> = baseline_rounds.iter().map(|r| r.tps).collect();
    let service_median = median(&service_tps).expect("BUG: at least one round");
    let baseline_median = median(&baseline_tps).expect("BUG: at least one round");
    let mut latencies: Vec<u32> = service_rounds
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let ok: u64 = service_rounds.iter().map(|r| r.ok).sum();
    let errors: u64 = service_rounds.iter().map(|r| r.errors()).sum();
    let error_rate = errors as f64 / (ok + errors).max(1) as f64;
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
    println!(
        "errors  {errors} of {} measured requests ({:.3}%)",
        ok + errors,
        error_rate * 100.0
    );
    print_row_sizes(&pool).await?;

    drop(service);
    pool.close().await;
    if error_rate > MAX_ERROR_RATE {
        let mut statuses = BTreeMap::new();
        for round in &service_rounds {
            for (status, count) in &round.failures {
                *statuses.entry(status.clone()).or_insert(0u64) += count;
            }
        }
        anyhow::bail!(
            "{:.3}% of the requests failed (limit {:.1}%): {statuses:?}",
            error_rate * 100.0,
            MAX_ERROR_RATE * 100.0
        );
    }
    Ok(())
}

fn print_header(options: &Options) {
    println!(
        "schedule-meeting: {} clients, {} rounds of {}s (+{}s warmup each), {} cores{}",
        options.clients,
        options.rounds,
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if options.no_acquire_ping {
            ", EXPERIMENT: pool without acquire ping"
        } else {
            ""
        }
    );
    println!(
        "round  kind              throughput    p50 ms   p99 ms  errors  cpu busy  cpu bench proc"
    );
}

fn baseline_line(round: usize, result: &PgbenchResult, cpu: Option<&CpuUse>) -> String {
    format!(
        "{round:>5}  pgbench insert    {:>8.1}/s  {:>8}  {:>7}  {:>6}  {}",
        result.tps,
        result
            .latency_avg_ms
            .map_or_else(|| "-".to_string(), |v| format!("{v:.2}avg")),
        "-",
        result.failed,
        cpu_columns(cpu),
    )
}

fn cpu_columns(cpu: Option<&CpuUse>) -> String {
    match cpu {
        Some(cpu) => format!(
            "{:>7.0}%  {:>13.0}%",
            cpu.machine_busy * 100.0,
            cpu.process * 100.0
        ),
        None => format!("{:>8}  {:>14}", "-", "-"),
    }
}

fn ms(micros: Option<u32>) -> String {
    micros.map_or_else(
        || "-".to_string(),
        |us| format!("{:.2}", us as f64 / 1000.0),
    )
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

/// The command-service, in this process, on 127.0.0.1:0.
struct Service {
    base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Service {
    async fn start(pool: PgPool) -> anyhow::Result<Self> {
        let secret = format!(
            "bench-{}-{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let jwt = Arc::new(JwtKeys::new(&Secret::new(secret), "meetings", "meetings"));
        let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
        let auth = AuthSettings {
            // Outlive any run: a token expiring mid-round would count as errors.
            access_token_ttl: Duration::from_secs(24 * 3600),
            ..AuthSettings::default()
        };
        let state = AppState::new(store, Arc::new(PgSessionStore::new(pool)), jwt, auth);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let app = Application::from_parts(listener, router(state, Metrics::new()));
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Ok(Self {
            base,
            shutdown: Some(tx),
        })
    }

    /// Registers a user and logs in; returns the access token.
    async fn user_token(&self) -> anyhow::Result<String> {
        let client = reqwest::Client::new();
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple";
        let response = client
            .post(format!("{}/v1/auth/register", self.base))
            .json(&json!({"email": email, "password": password, "display_name": "Bench"}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "register: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let response = client
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "login: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let tokens: Value = response.json().await?;
        tokens["access_token"]
            .as_str()
            .map(str::to_string)
            .context("login answered without an access_token")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
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

/// One measured service round.
struct ServiceRound {
    /// 201s completed inside the measured window.
    ok: u64,
    /// Failures (status or transport) completed inside the measured window, by kind.
    failures: BTreeMap<String, u64>,
    throughput: f64,
    latencies_us: Vec<u32>,
    cpu: Option<CpuUse>,
}

impl ServiceRound {
    fn errors(&self) -> u64 {
        self.failures.values().sum()
    }

    fn line(&self, round: usize) -> String {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        format!(
            "{round:>5}  schedule-meeting  {:>8.1}/s  {:>8}  {:>7}  {:>6}  {}",
            self.throughput,
            ms(quantile(&sorted, 0.50)),
            ms(quantile(&sorted, 0.99)),
            self.errors(),
            cpu_columns(self.cpu.as_ref()),
        )
    }
}

#[derive(Default)]
struct ClientTally {
    ok: u64,
    failures: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

/// `clients` tasks, each with its own keep-alive HTTP/1.1 connection, POST /v1/meetings in a
/// loop for warmup + duration; only answers completed inside the measured window count.
async fn service_round(base: &str, token: &str, options: &Options) -> anyhow::Result<ServiceRound> {
    let url: Arc<str> = format!("{base}/v1/meetings").into();
    let authorization: Arc<str> = format!("Bearer {token}").into();
    let body: Arc<[u8]> = meeting_body().into();
    let start = Instant::now();
    let measure_from = start + options.warmup;
    let end = measure_from + options.duration;
    let mut tasks = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = url.clone();
        let authorization = authorization.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            while Instant::now() < end {
                let sent = Instant::now();
                let outcome = client
                    .post(&*url)
                    .header(reqwest::header::AUTHORIZATION, &*authorization)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec())
                    .send()
                    .await;
                let outcome = match outcome {
                    Ok(response) => {
                        let status = response.status();
                        // Read the body so the connection is reused.
                        match response.bytes().await {
                            Ok(_) if status == reqwest::StatusCode::CREATED => Ok(()),
                            Ok(_) => Err(status.as_u16().to_string()),
                            Err(error) => Err(format!("body: {error}")),
                        }
                    }
                    Err(error) => Err(format!("transport: {error}")),
                };
                let done = Instant::now();
                if done < measure_from || done > end {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        tally.ok += 1;
                        let micros = (done - sent).as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Err(kind) => *tally.failures.entry(kind).or_insert(0) += 1,
                }
            }
            tally
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu = CpuSample::now();
    tokio::time::sleep_until(end.into()).await;
    let cpu = cpu.and_then(|start| start.until_now());
    let mut round = ServiceRound {
        ok: 0,
        failures: BTreeMap::new(),
        throughput: 0.0,
        latencies_us: Vec::new(),
        cpu,
    };
    for task in tasks {
        let tally = task.await.context("a client task panicked")?;
        round.ok += tally.ok;
        for (kind, count) in tally.failures {
            *round.failures.entry(kind).or_insert(0) += count;
        }
        round.latencies_us.extend(tally.latencies_us);
    }
    round.throughput = round.ok as f64 / options.duration.as_secs_f64();
    Ok(round)
}
