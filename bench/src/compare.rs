//! Interleaved rounds — service, baseline, service, baseline, … — so that noise from other
//! tenants of the machine hits both sides; medians and their ratio.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::cpu::CpuSample;
use crate::database::ServerOptions;
use crate::load::{self, baseline_line, Round};
use crate::pgbench::{self, PgbenchResult};
use crate::stats::median;

/// How the pgbench side of each round runs.
pub struct Baseline<'a> {
    pub label: &'a str,
    pub server: &'a ServerOptions,
    pub database_url: &'a str,
    pub script: &'a Path,
    pub clients: usize,
    /// Unmeasured pgbench run before each measured one (skipped when zero).
    pub warmup: Duration,
    pub duration: Duration,
    /// Per-transaction log (`-l`) for latency percentiles.
    pub log_latencies: bool,
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
            pgbench::run(
                &baseline.server.pgbench,
                baseline.database_url,
                baseline.script,
                baseline.clients,
                baseline.server.pgbench_threads,
                baseline.warmup,
            )
            .await?;
        }
        let cpu = CpuSample::now();
        let (result, latencies_us) = if baseline.log_latencies {
            let (result, latencies) = pgbench::run_logged(
                &baseline.server.pgbench,
                baseline.database_url,
                baseline.script,
                baseline.clients,
                baseline.server.pgbench_threads,
                baseline.duration,
            )
            .await?;
            (result, Some(latencies))
        } else {
            let result = pgbench::run(
                &baseline.server.pgbench,
                baseline.database_url,
                baseline.script,
                baseline.clients,
                baseline.server.pgbench_threads,
                baseline.duration,
            )
            .await?;
            (result, None)
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
