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

/// Core-seconds spent over an interval: every core of the machine that was not idle, and one
/// process's (user + system) share of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub machine: f64,
    pub process: f64,
}

/// Cumulative counters, in clock ticks, and the machine's cores.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    total: u64,
    idle: u64,
    process: u64,
    cores: usize,
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
            cores: parse_cores(&stat)?,
        })
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The use between this sample and now.
    pub fn until_now(self) -> Option<CpuUse> {
        let (total, busy, process) = self.ticks_until(Self::now()?)?;
        Some(CpuUse {
            machine_busy: busy as f64 / total as f64,
            process: process as f64 / total as f64,
        })
    }

    /// The core-seconds spent between this sample and now, over `seconds` of wall time: the
    /// machine's, and this process's or, given its `ticks` meanwhile, another's. Ticks are
    /// turned into seconds through the interval itself (all cores' ticks = cores × wall
    /// time), so the kernel's tick rate need not be known.
    pub fn spent(self, seconds: f64, ticks: Option<u64>) -> Option<Spent> {
        let (total, busy, own) = self.ticks_until(Self::now()?)?;
        let per_tick = self.cores as f64 * seconds / total as f64;
        Some(Spent {
            machine: busy as f64 * per_tick,
            process: ticks.unwrap_or(own) as f64 * per_tick,
        })
    }

    /// Ticks from this sample to `later`: all cores', the busy ones', this process's.
    fn ticks_until(self, later: Self) -> Option<(u64, u64, u64)> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)?;
        let busy = total.saturating_sub(later.idle.saturating_sub(self.idle));
        Some((total, busy, later.process.saturating_sub(self.process)))
    }
}

/// User + system clock ticks of process `pid` so far.
pub fn process_ticks(pid: &str) -> Option<u64> {
    parse_process(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The `cpuN` lines of `/proc/stat`: the cores its `cpu` line sums.
fn parse_cores(stat: &str) -> Option<usize> {
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (cores > 0).then_some(cores)
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
        assert_eq!(parse_cores(stat), Some(1));
        assert_eq!(parse_cores("cpu  1 2 3 4\n"), None);
        let own = "4242 (bench (x)) S 1 4242 4242 0 -1 4194304 100 0 0 0 1234 567 0 0 20 0 4 0";
        assert_eq!(parse_process(own), Some(1801));
    }
}
