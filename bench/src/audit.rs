//! `bench audit`: the audit commands on a log of `--events` events generated through the
//! domain (`audit::generate`), each beside the raw scan of the same log measured in the same
//! run: `COPY (SELECT … ORDER BY transaction_id, id) TO STDOUT`, drained by this process.
//!
//! `export --format jsonl` and `verify` run as the release `meetings` binary (a child
//! process), so their peak resident memory (`VmHWM`) is theirs alone; `replay --all` too,
//! with the read models empty before the first round and complete before the next.
//! Rounds alternate baseline and command; medians are reported, with the core-seconds each
//! spent (the whole machine's, which counts PostgreSQL's backends, and the command's own) and
//! the rate the command would reach if that work kept every core busy: what no scheduling of
//! the same work can beat on this machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;

use crate::cpu::{process_ticks, CpuSample, Spent};
use crate::database::{with_database, PostgresOptions};
use crate::stats::median;

#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub postgres: PostgresOptions,
    /// Events in the generated log.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Rounds of each measurement (baseline and command alternate).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Rounds of the (longer) replay.
    #[arg(long, default_value_t = 2)]
    pub replay_rounds: usize,
    /// The `meetings` binary (default: beside this executable).
    #[arg(long)]
    pub meetings: Option<PathBuf>,
}

/// `bench generate-log`: fills an existing (migrated) database's log, for profiling the audit
/// commands by hand.
#[derive(clap::Args, Debug)]
pub struct GenerateOptions {
    /// The database (migrated with `meetings migrate`).
    #[arg(long)]
    pub database_url: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
}

pub async fn generate_log(options: GenerateOptions) -> anyhow::Result<()> {
    let pool = platform::db::connect(&options.database_url, 4).await?;
    let generated = audit::generate::generate(&pool, options.events, &|_| {}).await?;
    let store = platform::store::PgEventStore::new(pool.clone());
    audit::anchor::catch_up(&pool, &store, None).await?;
    println!("{generated:?}");
    Ok(())
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let binary = match &options.meetings {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("meetings"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} is missing (cargo build --release -p meetings)",
        binary.display()
    );
    with_database(&options.postgres.admin_url, |database| async move {
        let pool = platform::db::connect(&database.url, 4).await?;
        platform::db::migrate(&pool).await?;
        let started = Instant::now();
        let generated = audit::generate::generate(&pool, options.events, &|n| {
            if n % 100_000 < 11_000 {
                eprint!("\rgenerated {n} events");
            }
        })
        .await?;
        eprintln!();
        let store = platform::store::PgEventStore::new(pool.clone());
        let anchor = audit::anchor::catch_up(&pool, &store, None).await?;
        sqlx::query("VACUUM ANALYZE events").execute(&pool).await?;
        println!(
            "audit: {} events ({} users, {} meetings) generated through the domain in {:.1} s; \
             {} anchors",
            generated.events,
            generated.users,
            generated.meetings,
            started.elapsed().as_secs_f64(),
            anchor.map_or(0, |a| a.events / audit::anchor::EVERY + 1)
        );

        let mut results = Vec::new();
        for (name, args, rounds) in [
            (
                "export --format jsonl",
                vec!["events", "export", "--format", "jsonl", "--output", "/dev/null"],
                options.rounds,
            ),
            ("verify", vec!["events", "verify", "--json"], options.rounds),
            ("replay --all", vec!["events", "replay", "--all"], options.replay_rounds),
        ] {
            let mut rounds_seen = Vec::new();
            for round in 1..=rounds {
                let baseline = raw_scan(&pool).await?;
                let measured = child(&binary, &database.url, &args).await?;
                let rate = generated.events as f64 / measured.seconds;
                eprintln!(
                    "{name} round {round}: raw scan {:.0} rows/s, command {rate:.0} events/s \
                     ({:.2} s, machine {:.1} core-s, command {:.1} core-s), peak RSS {:.1} MiB",
                    baseline.rate,
                    measured.seconds,
                    measured.spent.machine,
                    measured.spent.process,
                    measured.peak_kib as f64 / 1024.0
                );
                rounds_seen.push((baseline, measured));
            }
            results.push((name, rounds_seen));
        }
        let cores = CpuSample::now().map_or(0, |m| m.cores());
        let per_million = 1_000_000.0 / generated.events as f64;
        println!();
        println!(
            "| command | raw COPY scan (rows/s, median) | command (events/s, median) | ratio | \
             peak RSS (max) | core-s per 1M events: machine / command / raw scan (median) | \
             rate if all {cores} cores were busy |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (name, rounds) in &results {
            let of = |f: &dyn Fn(&(Scan, Measured)) -> f64| {
                median(&rounds.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
            };
            let raw = of(&|(scan, _)| scan.rate);
            let rate = of(&|(_, command)| generated.events as f64 / command.seconds);
            let machine = of(&|(_, command)| command.spent.machine);
            let peak = rounds.iter().map(|(_, command)| command.peak_kib).max();
            println!(
                "| `{name}` | {raw:.0} | {rate:.0} | {:.2}× | {:.1} MiB | {:.1} / {:.1} / {:.1} | {:.0} |",
                rate / raw,
                peak.unwrap_or(0) as f64 / 1024.0,
                machine * per_million,
                of(&|(_, command)| command.spent.process) * per_million,
                of(&|(scan, _)| scan.spent.machine) * per_million,
                generated.events as f64 * cores as f64 / machine,
            );
        }
        Ok(())
    })
    .await
}

/// The raw scan's rows per second and the core-seconds it cost (PostgreSQL and this process).
struct Scan {
    rate: f64,
    spent: Spent,
}

/// The floor: every column of the log in global order through `COPY … TO STDOUT` (text
/// format), drained without looking at it.
async fn raw_scan(pool: &PgPool) -> anyhow::Result<Scan> {
    let cpu = CpuSample::now();
    let started = Instant::now();
    let mut stream = pool
        .copy_out_raw(
            "COPY (SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
                    payload, metadata, recorded_at, transaction_id, id, prev_hash, hash \
             FROM events ORDER BY transaction_id, id) TO STDOUT",
        )
        .await?;
    let mut rows = 0u64;
    while let Some(chunk) = stream.next().await {
        rows += chunk?.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Scan {
        rate: rows as f64 / seconds,
        spent: cpu.and_then(|c| c.spent(seconds, None)).unwrap_or_default(),
    })
}

/// A command's run: wall time, peak resident memory (KiB) and the core-seconds spent.
struct Measured {
    seconds: f64,
    peak_kib: u64,
    spent: Spent,
}

/// Runs `meetings <args>` on the bench database; answers its wall time, its peak resident
/// memory (`VmHWM`) and CPU time (both sampled until it exits, every 20 ms: the CPU of its
/// last moments is missed) and the whole machine's CPU time meanwhile, which counts the
/// PostgreSQL backends working for it.
async fn child(binary: &PathBuf, url: &str, args: &[&str]) -> anyhow::Result<Measured> {
    let cpu = CpuSample::now();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .env("MEETINGS_DATABASE_URL", url)
        .env("MEETINGS_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id().context("no pid")?.to_string();
    let (mut peak, mut ticks) = (0u64, 0u64);
    let status = loop {
        // Gone once the child has exited: the last samples before that are the peak and
        // (nearly) its CPU time.
        if let Ok(kib) = crate::cpu::status_kib(&pid, "VmHWM") {
            peak = peak.max(kib);
        }
        ticks = process_ticks(&pid).unwrap_or(ticks).max(ticks);
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            pipe.read_to_string(&mut stderr).await.ok();
        }
        anyhow::bail!("meetings {} failed ({status}): {stderr}", args.join(" "));
    }
    Ok(Measured {
        seconds,
        peak_kib: peak,
        spent: cpu
            .and_then(|c| c.spent(seconds, Some(ticks)))
            .unwrap_or_default(),
    })
}
