//! Interleaved rounds — service, baseline, service, baseline, … — so that noise from other
//! tenants of the machine hits both sides; medians and their ratio.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use platform::config::parse_duration;

use crate::cpu::CpuSample;
use crate::database::{BenchDatabase, ServerOptions};
use crate::load::{self, baseline_line, ClosedLoop, Round};
use crate::pgbench::{Invocation, PgbenchResult};
use crate::stats::{median, ms, quantile, summary};

/// Most failed service requests a run accepts, as a share of its measured requests.
const MAX_ERROR_RATE: f64 = 0.001;

/// How long and how often each side is measured, shared by the interleaved benchmarks.
#[derive(clap::Args, Debug)]
pub struct RoundOptions {
    /// Measured time of each round (whole seconds for pgbench).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before each round.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Service rounds and baseline rounds, interleaved (service, baseline, service, …).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

impl RoundOptions {
    /// Refuses runs that would measure nothing.
    pub fn check(&self, clients: usize) -> anyhow::Result<()> {
        anyhow::ensure!(clients > 0, "--clients must be at least 1");
        anyhow::ensure!(self.rounds > 0, "--rounds must be at least 1");
        anyhow::ensure!(
            self.duration >= Duration::from_secs(1),
            "--duration must be at least 1s"
        );
        Ok(())
    }

    /// `3 rounds of 20s (+5s warmup each)`, for the header line of a run.
    pub fn describe(&self) -> String {
        format!(
            "{} rounds of {}s (+{}s warmup each)",
            self.rounds,
            self.duration.as_secs_f64(),
            self.warmup.as_secs_f64()
        )
    }

    /// A service round: `clients` connections, `expected` counting as success.
    pub fn closed_loop(&self, clients: usize, expected: reqwest::StatusCode) -> ClosedLoop {
        ClosedLoop {
            clients,
            warmup: self.warmup,
            duration: self.duration,
            expected,
        }
    }
}

/// How the pgbench side of each round runs.
pub struct Baseline<'a> {
    pub label: &'a str,
    pub pgbench: Invocation<'a>,
    /// Unmeasured pgbench run before each measured one (skipped when zero).
    pub warmup: Duration,
    pub duration: Duration,
    /// Per-transaction log (`-l`) for latency percentiles.
    pub log_latencies: bool,
}

impl<'a> Baseline<'a> {
    /// `script` on `database_url` with `clients`, timed like the service's rounds.
    pub fn new(
        label: &'a str,
        server: &'a ServerOptions,
        database_url: &'a str,
        script: &'a Path,
        clients: usize,
        rounds: &RoundOptions,
    ) -> Self {
        Self {
            label,
            pgbench: Invocation {
                pgbench: &server.pgbench,
                database_url,
                script,
                clients,
                threads: server.pgbench_threads,
            },
            warmup: rounds.warmup,
            duration: rounds.duration,
            log_latencies: false,
        }
    }

    /// Also logs every transaction, for latency percentiles.
    pub fn logging_latencies(self) -> Self {
        Self {
            log_latencies: true,
            ..self
        }
    }
}

/// One pgbench round: its summary and, when logged, every latency (µs, sorted).
pub struct BaselineRound {
    pub result: PgbenchResult,
    pub latencies_us: Option<Vec<u32>>,
}

pub struct Comparison {
    pub service: Vec<Round>,
    pub baseline: Vec<BaselineRound>,
}

impl Comparison {
    pub fn service_median(&self) -> f64 {
        let values: Vec<f64> = self.service.iter().map(|r| r.throughput).collect();
        median(&values).expect("BUG: at least one round")
    }

    pub fn baseline_median(&self) -> f64 {
        let values: Vec<f64> = self.baseline.iter().map(|r| r.result.tps).collect();
        median(&values).expect("BUG: at least one round")
    }

    /// Prints how many measured service requests failed; an error when more than
    /// [`MAX_ERROR_RATE`] did. The caller stops its service before returning it.
    pub fn check_errors(&self) -> anyhow::Result<()> {
        let ok: u64 = self.service.iter().map(|r| r.ok).sum();
        let failures = load::failures_of(&self.service);
        let errors: u64 = failures.values().sum();
        let rate = errors as f64 / (ok + errors).max(1) as f64;
        println!(
            "errors  {errors} of {} measured requests ({:.3}%) {failures:?}",
            ok + errors,
            rate * 100.0
        );
        anyhow::ensure!(
            rate <= MAX_ERROR_RATE,
            "{:.3}% of the requests failed (limit {:.1}%): {failures:?}",
            rate * 100.0,
            MAX_ERROR_RATE * 100.0
        );
        Ok(())
    }

    /// Prints the latencies of both sides over all measured rounds, the service's p99 against
    /// `target_p99_us`, and the medians of both rates and their ratio; `name` names the
    /// service's side and, after "pgbench", the baseline's (which must log its latencies).
    pub fn print_latency_report(&self, name: &str, target_p99_us: u32) {
        let service_latencies = load::all_latencies(&self.service);
        let baseline_latencies = self.baseline_latencies();
        let (service_median, baseline_median) = (self.service_median(), self.baseline_median());
        let p99 = quantile(&service_latencies, 0.99);
        println!();
        println!(
            "latency {name} (HTTP), all measured rounds: {}",
            summary(&service_latencies)
        );
        println!(
            "latency pgbench same SQL, all measured rounds: {}",
            summary(&baseline_latencies)
        );
        println!(
            "p99     {} ms vs {} ms (target < {} ms: {})",
            ms(p99),
            ms(quantile(&baseline_latencies, 0.99)),
            target_p99_us / 1000,
            if p99.is_some_and(|p| p < target_p99_us) {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "median  {name} {service_median:>9.1} req/s   pgbench {name} {baseline_median:>9.1} tps   ratio {:.1}%",
            service_median / baseline_median * 100.0
        );
    }

    /// Every logged baseline latency, sorted.
    pub fn baseline_latencies(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self
            .baseline
            .iter()
            .filter_map(|r| r.latencies_us.as_deref())
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        all
    }
}

/// [`with_database`](crate::database::with_database) for the closed-loop benchmarks: refuses options that would measure
/// nothing, then hands `body` the database, migrated, with a pool of `pool_size`.
pub async fn with_migrated_database<F, Fut>(
    server: &ServerOptions,
    rounds: &RoundOptions,
    clients: usize,
    pool_size: u32,
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(BenchDatabase, sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    rounds.check(clients)?;
    crate::database::with_database(&server.postgres.admin_url, |database| async move {
        let pool = platform::db::connect(&database.url, pool_size).await?;
        platform::db::migrate(&pool).await?;
        body(database, pool).await
    })
    .await
}

/// Runs `rounds` × (service round, baseline round), printing each line as it completes.
pub async fn interleave<F, Fut>(
    rounds: usize,
    service_label: &str,
    baseline: &Baseline<'_>,
    mut service_round: F,
) -> anyhow::Result<Comparison>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Round>>,
{
    println!("{}", load::header());
    let mut comparison = Comparison {
        service: Vec::with_capacity(rounds),
        baseline: Vec::with_capacity(rounds),
    };
    for round in 1..=rounds {
        let result = service_round().await?;
        println!("{}", result.line(round, service_label));
        comparison.service.push(result);

        if !baseline.warmup.is_zero() {
            baseline.pgbench.run(baseline.warmup).await?;
        }
        let cpu = CpuSample::now();
        let (result, latencies_us) = if baseline.log_latencies {
            let (result, latencies) = baseline.pgbench.run_logged(baseline.duration).await?;
            (result, Some(latencies))
        } else {
            (baseline.pgbench.run(baseline.duration).await?, None)
        };
        let cpu = cpu.and_then(|start| start.until_now());
        println!(
            "{}",
            baseline_line(
                round,
                baseline.label,
                &result,
                latencies_us.as_deref(),
                cpu.as_ref()
            )
        );
        comparison.baseline.push(BaselineRound {
            result,
            latencies_us,
        });
    }
    Ok(comparison)
}
