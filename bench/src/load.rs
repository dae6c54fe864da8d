//! Closed-loop HTTP load: `clients` tasks, each with its own keep-alive HTTP/1.1 connection,
//! send requests back to back for warmup + duration; only answers completed inside the
//! measured window count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cpu::{cpu_columns, CpuSample, CpuUse};
use crate::stats::{ms, quantile};

/// What one closed-loop round does.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The answer that counts as a success; anything else is an error.
    pub expected: reqwest::StatusCode,
}

/// One measured round.
pub struct Round {
    /// Expected answers completed inside the measured window.
    pub ok: u64,
    /// Failures (status or transport) completed inside the measured window, by kind.
    pub failures: BTreeMap<String, u64>,
    pub throughput: f64,
    /// Client-side latencies of the successful requests, sorted.
    pub latencies_us: Vec<u32>,
    pub cpu: Option<CpuUse>,
}

impl Round {
    pub fn errors(&self) -> u64 {
        self.failures.values().sum()
    }

    /// `round  <label>  throughput  p50  p99  errors  cpu…`, aligned with the header of
    /// [`header`].
    pub fn line(&self, round: usize, label: &str) -> String {
        format!(
            "{round:>5}  {label:<16}  {:>8.1}/s  {:>8}  {:>7}  {:>6}  {}",
            self.throughput,
            ms(quantile(&self.latencies_us, 0.50)),
            ms(quantile(&self.latencies_us, 0.99)),
            self.errors(),
            cpu_columns(self.cpu.as_ref()),
        )
    }
}

/// The column header of [`Round::line`] and [`baseline_line`].
pub fn header() -> &'static str {
    "round  kind              throughput    p50 ms   p99 ms  errors  cpu busy  cpu bench proc"
}

/// A pgbench round in the same columns (p50/p99 from its per-transaction log when there is
/// one, else the average latency).
pub fn baseline_line(
    round: usize,
    label: &str,
    result: &crate::pgbench::PgbenchResult,
    latencies_us: Option<&[u32]>,
    cpu: Option<&CpuUse>,
) -> String {
    let (p50, p99) = match latencies_us {
        Some(sorted) => (ms(quantile(sorted, 0.50)), ms(quantile(sorted, 0.99))),
        None => (
            result
                .latency_avg_ms
                .map_or_else(|| "-".to_string(), |v| format!("{v:.2}avg")),
            "-".to_string(),
        ),
    };
    format!(
        "{round:>5}  {label:<16}  {:>8.1}/s  {p50:>8}  {p99:>7}  {:>6}  {}",
        result.tps,
        result.failed,
        cpu_columns(cpu),
    )
}

#[derive(Default)]
struct ClientTally {
    ok: u64,
    failures: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

/// Runs one round; `request` builds each request (with the task's own random generator).
pub async fn closed_loop<F>(spec: &ClosedLoop, request: F) -> anyhow::Result<Round>
where
    F: Fn(&reqwest::Client, &mut StdRng) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?;
        let request = request.clone();
        let expected = spec.expected;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut tally = ClientTally::default();
            while Instant::now() < end {
                let builder = request(&client, &mut rng);
                let sent = Instant::now();
                let outcome = match builder.send().await {
                    Ok(response) => {
                        let status = response.status();
                        // Read the body so the connection is reused.
                        match response.bytes().await {
                            Ok(_) if status == expected => Ok(()),
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
    let mut round = Round {
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
    round.latencies_us.sort_unstable();
    round.throughput = round.ok as f64 / spec.duration.as_secs_f64();
    Ok(round)
}

/// All failures of several rounds, by kind.
pub fn failures_of(rounds: &[Round]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for round in rounds {
        for (kind, count) in &round.failures {
            *all.entry(kind.clone()).or_insert(0) += count;
        }
    }
    all
}

/// Every successful latency of several rounds, sorted.
pub fn all_latencies(rounds: &[Round]) -> Vec<u32> {
    let mut all: Vec<u32> = rounds
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    all.sort_unstable();
    all
}
