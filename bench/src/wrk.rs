//! Closed-loop HTTP load from `wrk` (a C load generator with LuaJIT scripting), the HTTP analog
//! of pgbench: a separate, lean client process instead of a client inside the bench process.
//!
//! Each round runs wrk twice, like the pgbench baseline: once for the warmup (not measured),
//! then for the measured duration on fresh keep-alive connections. The requests (path and
//! `Authorization` header) come from a file written once; every request picks one at random.
//! The script's `done()` prints wrk's own latency histogram (1 µs buckets). wrk 4 corrects it for
//! coordinated omission (it adds samples for every latency above twice the mean interval per
//! connection), so its sample count exceeds the request count and its high percentiles are
//! pessimistic compared with the raw latencies of the in-process generator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::cpu::CpuSample;
use crate::load::{ClosedLoop, Round};

/// Requests as `<path>\t<Authorization value>` lines; per wrk thread they are formatted once
/// and then picked at random.
const SCRIPT: &str = r#"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local requests = {}
function init(args)
  math.randomseed(os.time() * 1000 + id)
  for line in io.lines(args[1]) do
    local path, token = line:match("^([^\t]+)\t(.+)$")
    requests[#requests + 1] = wrk.format("GET", path, { ["Authorization"] = token })
  end
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH summary %d %d %d %d %d %d %d\n", summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("BENCH latency %d %d\n", value, count))
  end
end
"#;

/// The Lua script and the request file, removed on drop.
pub struct WrkFiles {
    script: PathBuf,
    requests: PathBuf,
}

impl WrkFiles {
    /// `requests`: (path with query, `Authorization` header value).
    pub fn write(requests: &[(String, String)]) -> anyhow::Result<Self> {
        let stem = std::env::temp_dir().join(format!(
            "meetings-bench-wrk-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let script = stem.with_extension("lua");
        let list = stem.with_extension("tsv");
        std::fs::write(&script, SCRIPT).context("writing the wrk script")?;
        let mut text = String::new();
        for (path, authorization) in requests {
            anyhow::ensure!(
                !path.contains(['\t', '\n']) && !authorization.contains(['\t', '\n']),
                "a request path or header contains a tab or newline"
            );
            text.push_str(path);
            text.push('\t');
            text.push_str(authorization);
            text.push('\n');
        }
        std::fs::write(&list, text).context("writing the wrk request list")?;
        Ok(Self {
            script,
            requests: list,
        })
    }
}

impl Drop for WrkFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
        let _ = std::fs::remove_file(&self.requests);
    }
}

/// What one wrk run reported.
#[derive(Debug, Default, PartialEq)]
struct WrkOutput {
    requests: u64,
    duration_us: u64,
    /// Errors by kind (`connect`, `read`, `write`, `status` (≥ 400), `timeout`), non-zero only.
    errors: BTreeMap<String, u64>,
    /// Latency histogram: (µs, count).
    histogram: Vec<(u32, u64)>,
}

fn parse(stdout: &str) -> anyhow::Result<WrkOutput> {
    let mut output = WrkOutput::default();
    let mut summary = false;
    for line in stdout.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("BENCH") {
            continue;
        }
        let kind = fields.next();
        let numbers: Vec<u64> = fields
            .map(|f| f.parse::<f64>().map(|v| v as u64))
            .collect::<Result<_, _>>()
            .with_context(|| format!("wrk script line `{line}`"))?;
        match (kind, numbers.as_slice()) {
            (Some("summary"), [requests, duration, connect, read, write, status, timeout]) => {
                summary = true;
                output.requests = *requests;
                output.duration_us = *duration;
                for (name, count) in [
                    ("connect", connect),
                    ("read", read),
                    ("write", write),
                    ("status", status),
                    ("timeout", timeout),
                ] {
                    if *count > 0 {
                        output.errors.insert(format!("wrk {name}"), *count);
                    }
                }
            }
            (Some("latency"), [value, count]) => output
                .histogram
                .push((u32::try_from(*value).unwrap_or(u32::MAX), *count)),
            _ => anyhow::bail!("unexpected wrk script line `{line}`"),
        }
    }
    anyhow::ensure!(summary, "wrk printed no summary:\n{stdout}");
    Ok(output)
}

async fn run_wrk(
    wrk: &str,
    threads: usize,
    clients: usize,
    duration: Duration,
    files: &WrkFiles,
    base: &str,
) -> anyhow::Result<WrkOutput> {
    let output = tokio::process::Command::new(wrk)
        .arg("-t")
        .arg(threads.min(clients).to_string())
        .arg("-c")
        .arg(clients.to_string())
        .arg("-d")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("30s")
        .arg("-s")
        .arg(&files.script)
        .arg(base)
        .arg("--")
        .arg(&files.requests)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running `{wrk}` (install wrk, or pass --load in-process)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&stdout)
}

/// One round: wrk for `spec.warmup` (unmeasured), then for `spec.duration`. wrk counts
/// answers ≥ 400 as errors; the expected status is checked once before measuring.
pub async fn closed_loop(
    spec: &ClosedLoop,
    wrk: &str,
    threads: usize,
    files: &WrkFiles,
    base: &str,
) -> anyhow::Result<Round> {
    if !spec.warmup.is_zero() {
        run_wrk(wrk, threads, spec.clients, spec.warmup, files, base).await?;
    }
    let cpu = CpuSample::now();
    let output = run_wrk(wrk, threads, spec.clients, spec.duration, files, base).await?;
    let cpu = cpu.and_then(|start| start.until_now());
    let ok = output
        .requests
        .saturating_sub(output.errors.get("wrk status").copied().unwrap_or(0));
    let mut latencies_us = Vec::with_capacity(ok as usize);
    for &(value, count) in &output.histogram {
        latencies_us.extend(std::iter::repeat_n(value, count as usize));
    }
    latencies_us.sort_unstable();
    let seconds = Duration::from_micros(output.duration_us.max(1)).as_secs_f64();
    Ok(Round {
        ok,
        failures: output.errors,
        throughput: ok as f64 / seconds,
        latencies_us,
        cpu,
    })
}

/// Whether `path` names an executable wrk (for a clear error before seeding).
pub fn check_available(wrk: &str) -> anyhow::Result<()> {
    let found = std::process::Command::new(wrk)
        .arg("--version")
        .output()
        .map(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false);
    anyhow::ensure!(
        found,
        "`{wrk}` not found: install wrk (apt-get install wrk) or pass --load in-process"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_output() {
        let output = parse(
            "Running 1s test @ http://x\nBENCH summary 1200 1000500 0 0 0 3 0\nBENCH latency 150 2\nBENCH latency 900 1\n",
        )
        .unwrap();
        assert_eq!(output.requests, 1200);
        assert_eq!(output.duration_us, 1_000_500);
        assert_eq!(
            output.errors,
            BTreeMap::from([("wrk status".to_string(), 3)])
        );
        assert_eq!(output.histogram, vec![(150, 2), (900, 1)]);
        assert!(parse("no summary").is_err());
    }
}
