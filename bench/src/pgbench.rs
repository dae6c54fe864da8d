//! Baselines: `pgbench` running a custom script on the bench database (single-row INSERTs for
//! schedule-meeting, primary-key and agenda SELECTs for the query benchmarks).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A jsonb payload of about the size of a `MeetingScheduled` event's payload and metadata.
const PAYLOAD: &str = r#"{"meeting_id": "0192a5e0-7c3a-7d2e-9b1f-3c4d5e6f7a8b", "organizer": "0192a5e0-7c3a-7d2e-9b1f-000000000001", "title": "Benchmark planning", "description": null, "starts_at": "2026-11-29T10:00:00Z", "ends_at": "2026-11-29T11:00:00Z", "time_zone": "Europe/Berlin", "location": "Room 4", "attendees": [], "recurrence": null, "metadata": {"event_id": "0192a5e0-7c3a-7d2e-9b1f-3c4d5e6f7a8c", "actor_id": "0192a5e0-7c3a-7d2e-9b1f-000000000001", "request_id": "01JDQ3Z8W4V5N6M7K8J9H0G1F2", "correlation_id": "01JDQ3Z8W4V5N6M7K8J9H0G1F2", "causation_id": "01JDQ3Z8W4V5N6M7K8J9H0G1F2"}}"#;

/// The schedule-meeting baseline: one INSERT, one implicit transaction.
pub fn insert_script() -> String {
    format!("INSERT INTO bench_baseline (payload) VALUES ('{PAYLOAD}'::jsonb);\n")
}

/// The script written to a temporary file, removed on drop.
pub struct ScriptFile(PathBuf);

impl ScriptFile {
    pub fn write(script: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "meetings-bench-{}.sql",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, script).context("writing the pgbench script")?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one pgbench run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PgbenchResult {
    /// `tps = … (without initial connection time)`.
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    pub latency_avg_ms: Option<f64>,
}

/// `pgbench -n -c <clients> -j <threads> -T <seconds> -f <script> -M prepared <url>`: what a
/// baseline runs, round after round.
pub struct Invocation<'a> {
    pub pgbench: &'a str,
    pub database_url: &'a str,
    pub script: &'a Path,
    pub clients: usize,
    pub threads: usize,
}

impl Invocation<'_> {
    /// Runs for `duration`.
    pub async fn run(&self, duration: Duration) -> anyhow::Result<PgbenchResult> {
        self.run_with_log(duration, None).await
    }

    /// [`Self::run`] with per-transaction logging (`-l`): also returns every transaction's
    /// latency in microseconds, sorted, for percentiles comparable to the HTTP side's.
    pub async fn run_logged(
        &self,
        duration: Duration,
    ) -> anyhow::Result<(PgbenchResult, Vec<u32>)> {
        let dir = std::env::temp_dir().join(format!(
            "meetings-bench-log-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).context("creating the pgbench log directory")?;
        let outcome = async {
            let result = self
                .run_with_log(duration, Some(&dir.join("pgbench_log")))
                .await?;
            let mut latencies =
                Vec::with_capacity(usize::try_from(result.transactions).unwrap_or(0));
            for entry in std::fs::read_dir(&dir)? {
                let text = std::fs::read_to_string(entry?.path())?;
                latencies.extend(parse_log(&text));
            }
            latencies.sort_unstable();
            anyhow::Ok((result, latencies))
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    async fn run_with_log(
        &self,
        duration: Duration,
        log_prefix: Option<&Path>,
    ) -> anyhow::Result<PgbenchResult> {
        let Self {
            pgbench,
            database_url,
            script,
            clients,
            threads,
        } = *self;
        let seconds = duration.as_secs().max(1);
        let mut command = tokio::process::Command::new(pgbench);
        command
            .arg("-n")
            .args(["-c", &clients.to_string()])
            .args(["-j", &threads.min(clients).max(1).to_string()])
            .args(["-T", &seconds.to_string()])
            .arg("-f")
            .arg(script)
            .args(["-M", "prepared"]);
        if let Some(prefix) = log_prefix {
            command
                .arg("-l")
                .arg(format!("--log-prefix={}", prefix.display()));
        }
        let output = command
            .arg(database_url)
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {pgbench} (set --pgbench to its path)"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            anyhow::bail!(
                "pgbench failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("unexpected pgbench output:\n{stdout}"))
    }
}

/// Latencies (µs) of a per-transaction log: `client_id transaction_no time script_no
/// time_epoch time_us …`, `time` being the transaction's elapsed time in microseconds. Failed
/// or skipped transactions (`failed`, `skipped` in the time column) are left out.
pub fn parse_log(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.lines().filter_map(|line| {
        let micros: u64 = line.split_whitespace().nth(2)?.parse().ok()?;
        Some(u32::try_from(micros).unwrap_or(u32::MAX))
    })
}

/// Parses pgbench's summary (PostgreSQL 14+ wording).
pub fn parse(output: &str) -> anyhow::Result<PgbenchResult> {
    let mut tps = None;
    let mut transactions = None;
    let mut failed = 0;
    let mut latency_avg_ms = None;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            if rest.contains("without initial connection time") {
                tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            transactions = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.split('/').next())
                .and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            failed = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("latency average =") {
            latency_avg_ms = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    Ok(PgbenchResult {
        tps: tps.context("no `tps = … (without initial connection time)` line")?,
        transactions: transactions.context("no `number of transactions actually processed`")?,
        failed,
        latency_avg_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = "pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/probe.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 20513
number of failed transactions: 0 (0.000%)
latency average = 4.274 ms
initial connection time = 352.743 ms
tps = 7487.756152 (without initial connection time)
";

    #[test]
    fn parses_the_pg15_summary() {
        assert_eq!(
            parse(PG15).unwrap(),
            PgbenchResult {
                tps: 7487.756152,
                transactions: 20513,
                failed: 0,
                latency_avg_ms: Some(4.274),
            }
        );
    }

    #[test]
    fn older_and_failing_summaries() {
        // Only the tps without the initial connection time counts; `-t` prints `n/n`.
        let other = "number of transactions actually processed: 100/100\n\
                     tps = 90.5 (including connections establishing)\n\
                     tps = 101.5 (without initial connection time)\n";
        let parsed = parse(other).unwrap();
        assert_eq!(parsed.tps, 101.5);
        assert_eq!(parsed.transactions, 100);
        assert_eq!(parsed.failed, 0);
        assert!(parse("pgbench: error: connection refused").is_err());
        let failing = format!("{PG15}number of failed transactions: 7 (0.034%)\n");
        assert_eq!(parse(&failing).unwrap().failed, 7);
    }

    #[test]
    fn per_transaction_logs_give_latencies() {
        let log = "0 0 1234 0 1764318000 123456\n1 0 987 0 1764318000 223456\n2 1 failed 0 1764318001 1\n";
        assert_eq!(parse_log(log).collect::<Vec<_>>(), vec![1234, 987]);
    }

    #[test]
    fn the_script_is_one_insert_with_valid_json() {
        let script = insert_script();
        assert_eq!(script.lines().count(), 1);
        assert!(script.starts_with("INSERT INTO bench_baseline (payload) VALUES ('"));
        serde_json::from_str::<serde_json::Value>(PAYLOAD).unwrap();
        assert!(!PAYLOAD.contains('\''));
    }
}
