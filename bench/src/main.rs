//! Benchmark runner: load generators measured against a baseline taken in the same run, on the
//! same database, so that the noise of a shared machine hits both.
//!
//! `cargo run --release -p bench -- <schedule-meeting|pipeline-lag|get-meeting|agenda|realtime|audit>` (see
//! BENCHMARKS.md).

// The services run inside the bench process on the allocator their binaries use: it is
// declared once, in `platform`.

mod agenda;
mod audit;
mod calendar;
mod compare;
mod cpu;
mod database;
mod directory;
mod embedded;
mod get_meeting;
mod load;
mod pgbench;
mod pipeline;
mod realtime;
mod schedule;
mod seed;
mod services;
mod stats;
mod wrk;

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
    /// Command accepted → visible in the query API, through relay, JetStream and projector,
    /// under an open-loop command rate, against the same lag at a low rate.
    PipelineLag(pipeline::Options),
    /// GET /v1/meetings/{id} throughput against a pgbench primary-key select baseline.
    GetMeeting(get_meeting::Options),
    /// GET /v1/me/agenda latency for one-week windows against pgbench running the same SQL.
    Agenda(agenda::Options),
    /// GET /v1/users?q= latency over 100,000 users against pgbench running the same SQL.
    Directory(directory::Options),
    /// `meetings events export | verify | replay` (child processes) on a log generated
    /// through the domain, each against a raw COPY scan of the same log.
    Audit(audit::Options),
    /// GET /v1/me/agenda over a year with recurring series, and the iCalendar feed, each
    /// beside the SQL it runs.
    Calendar(calendar::Options),
    /// Appends a log generated through the domain to an existing database (for profiling).
    GenerateLog(audit::GenerateOptions),
    /// Embedded mode (`meetings serve` on SQLite): schedule-meeting against a raw SQLite
    /// insert loop, and command → query latency at a rate.
    Embedded(embedded::Options),
    /// The websocket gateway (child process): memory per connection, fan-out to one meeting,
    /// command → event latency at a rate; raw tokio-tungstenite baselines.
    Realtime(realtime::Options),
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
        Command::PipelineLag(options) => runtime.block_on(pipeline::run(options)),
        Command::GetMeeting(options) => runtime.block_on(get_meeting::run(options)),
        Command::Calendar(options) => runtime.block_on(calendar::run(options)),
        Command::Agenda(options) => runtime.block_on(agenda::run(options)),
        Command::Directory(options) => runtime.block_on(directory::run(options)),
        Command::Embedded(options) => runtime.block_on(embedded::run(options)),
        Command::Realtime(options) => runtime.block_on(realtime::run(options)),
        Command::Audit(options) => runtime.block_on(audit::run(options)),
        Command::GenerateLog(options) => runtime.block_on(audit::generate_log(options)),
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
}
