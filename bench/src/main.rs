//! Benchmark runner: load generators measured against a baseline taken in the same run, on the
//! same database, so that the noise of a shared machine hits both.
//!
//! `cargo run --release -p bench -- schedule-meeting` (see BENCHMARKS.md).

mod cpu;
mod database;
mod pgbench;
mod schedule;
mod stats;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "bench", version, about = "meetings benchmark runner")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// POST /v1/meetings throughput over HTTP against a pgbench single-row-insert baseline.
    ScheduleMeeting(schedule::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Two workers for a two-core machine; the service and the load generator share them,
    // as pgbench's two threads share the machine with PostgreSQL in the baseline.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = match cli.command {
        Command::ScheduleMeeting(options) => runtime.block_on(schedule::run(options)),
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
}
