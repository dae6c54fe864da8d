//! Where the CPU went during a round, and a process's memory, from `/proc` (Linux; elsewhere
//! nothing is reported).

/// Shares of the whole machine (all cores) over an interval.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// Not idle (PostgreSQL, this process, pgbench, and anything else on the machine).
    pub machine_busy: f64,
    /// This process: the in-process service plus the HTTP load generator.
    pub process: f64,
}

/// `machine busy %  bench process %` columns of a result line (`-` when not measured).
pub fn cpu_columns(cpu: Option<&CpuUse>) -> String {
    match cpu {
        Some(cpu) => format!(
            "{:>7.0}%  {:>13.0}%",
            cpu.machine_busy * 100.0,
            cpu.process * 100.0
        ),
        None => format!("{:>8}  {:>14}", "-", "-"),
    }
}

/// Cumulative counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    total: u64,
    idle: u64,
    process: u64,
}

impl CpuSample {
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (total, idle) = parse_machine(&stat)?;
        Some(Self {
            total,
            idle,
            process: parse_process(&own)?,
        })
    }

    /// The use between this sample and now.
    pub fn until_now(self) -> Option<CpuUse> {
        let later = Self::now()?;
        let total = later.total.checked_sub(self.total)?;
        if total == 0 {
            return None;
        }
        let idle = later.idle.saturating_sub(self.idle);
        let process = later.process.saturating_sub(self.process);
        Some(CpuUse {
            machine_busy: total.saturating_sub(idle) as f64 / total as f64,
            process: process as f64 / total as f64,
        })
    }
}

/// `cpu user nice system idle iowait irq softirq steal …` → (total, idle + iowait).
fn parse_machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // guest time is already part of user time
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((fields.iter().sum(), idle))
}

/// utime + stime of `/proc/<pid>/stat` (fields 14 and 15; the name may contain spaces).
fn parse_process(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of a process's `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in KiB.
pub fn status_kib(pid: &str, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_and_proc_self_stat() {
        let stat = "cpu  100 5 50 800 20 1 2 3 7 0\ncpu0 50 2 25 400 10 0 1 1 0 0\n";
        assert_eq!(parse_machine(stat), Some((981, 820)));
        let own = "4242 (bench (x)) S 1 4242 4242 0 -1 4194304 100 0 0 0 1234 567 0 0 20 0 4 0";
        assert_eq!(parse_process(own), Some(1801));
    }
}
