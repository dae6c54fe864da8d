//! `bench realtime`: the websocket gateway, run as a CHILD process (the release `realtime`
//! binary beside the bench binary) so that its memory is its own; command-service and relay
//! run in the bench process on a fresh database and a per-run JetStream stream. Clients are
//! tokio-tungstenite connections in the bench process.
//!
//! 1. memory: the child's VmRSS before and after `--connections` authenticated connections,
//!    each subscribed to `user:me`, divided by the count.
//! 2. fan-out: the same connections (20 users × N/20 connections) subscribe to one meeting;
//!    one chat message is posted; delay from "HTTP 201 received" to each client's frame.
//! 3. latency: `--clients` connections on their own meetings, chat messages posted open loop
//!    at `--rate`; delay from "HTTP 201 received" to the frame.
//!
//! Baselines in the same run: a raw tokio-tungstenite server in the bench process, as a
//! broadcast to `--baseline-connections` clients (fan-out floor) and as an echo round trip at
//! the same rate (latency floor).

mod clients;
mod raw;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use command_service::relay::{Relay, RelaySettings};
use platform::bus::StreamName;
use platform::config::parse_duration;
use platform::testing::{meeting_body_on, TestClient};
use serde_json::json;
use tokio::sync::{mpsc, watch, Semaphore};
use uuid::Uuid;

use crate::database::{with_database_and_stream, BenchDatabase, StackOptions};
use crate::services;
use crate::stats::summary;

use clients::{client, collect, open_fds, wait_count, Arrival, Stage};
use raw::{baselines, Floors};

/// Targets of the brief.
const TARGET_BYTES_PER_CONNECTION: f64 = 20.0 * 1024.0;
const TARGET_FANOUT_P99_US: u32 = 250_000;
const TARGET_LATENCY_P99_US: u32 = 50_000;
/// Chat posts in flight at most during the latency phase (ticks wait beyond it: counted late).
const MAX_IN_FLIGHT: usize = 256;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Connections for the memory and fan-out measurements.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Users sharing those connections (organizer + attendees of the fan-out meeting).
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Chat messages posted to the fan-out meeting, one at a time.
    #[arg(long, default_value_t = 5)]
    pub fanout_repetitions: usize,
    /// Connections of the latency measurement, one meeting each.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Chat messages per second of the latency measurement (open loop).
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Clients of the raw broadcast baseline (server and clients both in this process: two
    /// descriptors per connection).
    #[arg(long, default_value_t = 9_000)]
    pub baseline_connections: usize,
    /// The gateway binary (default: `realtime` beside this executable).
    #[arg(long)]
    pub realtime_bin: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub stack: StackOptions,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.users >= 2 && options.users <= 500,
        "--users 2..=500"
    );
    anyhow::ensure!(options.rate > 0.0, "--rate must be positive");
    let options = &options;
    with_database_and_stream(&options.stack, |database, js, stream| async move {
        run_in(options, &database, js, stream).await
    })
    .await
}

/// VmRSS of a process in bytes.
fn rss(pid: &str) -> anyhow::Result<u64> {
    Ok(crate::cpu::status_kib(pid, "VmRSS")? * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The command API, as the gateway's clients' users call it.
struct Commands(TestClient);

impl Commands {
    async fn post(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<(Instant, serde_json::Value)> {
        let response = self
            .0
            .request(reqwest::Method::POST, path, Some(token))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let at = Instant::now();
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok((at, body))
    }

    async fn schedule(&self, token: &str, attendees: &[Uuid], i: usize) -> anyhow::Result<Uuid> {
        let day = chrono::Utc::now().date_naive() + chrono::Days::new(1 + (i % 300) as u64);
        self.0
            .schedule(
                token,
                &meeting_body_on(day, &format!("Realtime {i}"), attendees),
            )
            .await
    }

    /// Posts a chat message; (accepted instant, position).
    async fn chat(
        &self,
        token: &str,
        meeting: Uuid,
        text: &str,
    ) -> anyhow::Result<(Instant, String)> {
        let (at, body) = self
            .post(
                token,
                &format!("/v1/meetings/{meeting}/messages"),
                json!({"text": text}),
            )
            .await?;
        let position = body["position"]
            .as_str()
            .context("chat answered without a position")?;
        Ok((at, position.to_string()))
    }
}

async fn run_in(
    options: &Options,
    database: &BenchDatabase,
    js: async_nats::jetstream::Context,
    stream: StreamName,
) -> anyhow::Result<()> {
    let relay_pool = platform::db::connect(&database.url, 4).await?;
    platform::db::migrate(&relay_pool).await?;
    let relay = Relay::over_jetstream(
        relay_pool,
        js.clone(),
        stream.clone(),
        RelaySettings::default(),
    );
    let relay = tokio::spawn(relay.run(std::future::pending()));
    let commands_service = services::command(&database.url, 16).await?;
    let commands = Commands(commands_service.api.clone());

    // The gateway as a child process.
    let bin = match &options.realtime_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("realtime"),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(&bin)
        .env("MEETINGS_DATABASE_URL", &database.url)
        .env("MEETINGS_NATS_URL", &options.stack.nats_url)
        .env("MEETINGS_JWT_SECRET", platform::testing::JWT_SECRET)
        .env("MEETINGS_STREAM", stream.as_str())
        .env("MEETINGS_LISTEN", format!("127.0.0.1:{port}"))
        // Room above the measured connections: the default cap (10 000) equals them.
        .env(
            "MEETINGS_HTTP_MAX_CONNECTIONS",
            (options.connections + options.clients + 1_000).to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (cargo build --release -p realtime)",
                bin.display()
            )
        })?;
    let pid = child.id().context("child without pid")?.to_string();
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "realtime did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut users = Vec::with_capacity(options.users);
    for i in 0..options.users {
        let user = commands_service.sign_up(&format!("RT {i}")).await?;
        users.push((user.id, user.token));
    }
    let outcome = measure(options, &commands, &users, &url, &pid).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    relay.abort();
    drop(commands_service);
    outcome
}

async fn measure(
    options: &Options,
    commands: &Commands,
    users: &[(Uuid, String)],
    url: &str,
    pid: &str,
) -> anyhow::Result<()> {
    let me = std::process::id().to_string();
    println!(
        "realtime: gateway child pid {pid}, {} cores, open files limit {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| l
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string()))
            .unwrap_or_default()
    );

    // Warm-up: one connection, so lazy allocations (pool, consumer) precede the baseline.
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Arrival>();
    let ready = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    {
        let warm = tokio::spawn(client(
            url.to_string(),
            users[0].1.clone(),
            vec!["user:me".into()],
            ready.clone(),
            events_tx.clone(),
            stage_rx.clone(),
        ));
        wait_count(&ready, 1, &errors).await;
        warm.abort();
        ready.store(0, Ordering::Relaxed);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. Memory.
    let n = options.connections;
    let (server_before, client_before) = (rss(pid)?, rss(&me)?);
    let opening = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (url, token) = (url.to_string(), users[i % users.len()].1.clone());
        let (ready, events, stage, errors, first_error) = (
            ready.clone(),
            events_tx.clone(),
            stage_rx.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ready_before = ready.clone();
            let run = client(url, token, vec!["user:me".into()], ready, events, stage);
            tokio::pin!(run);
            // Release the gate once subscribed (or failed).
            let outcome = tokio::select! {
                outcome = &mut run => Some(outcome),
                () = async { loop { tokio::time::sleep(Duration::from_millis(5)).await; if ready_before.load(Ordering::Relaxed) > 0 { break } } } => None,
            };
            drop(permit);
            let outcome = match outcome {
                Some(outcome) => outcome,
                None => run.await,
            };
            if let Err(error) = outcome {
                errors.fetch_add(1, Ordering::Relaxed);
                first_error.lock().expect("not poisoned").get_or_insert(format!("{error:#}"));
            }
        }));
    }
    let reached = wait_count(&ready, n, &errors).await;
    let opened_in = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (server_after, client_after) = (rss(pid)?, rss(&me)?);
    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / reached.max(1) as f64;
    let server_per = per(server_before, server_after);
    println!();
    println!(
        "memory: {reached} of {n} connections authenticated + subscribed to user:me in {:.1}s ({} failed{})",
        opened_in.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        first_error.lock().expect("not poisoned").as_deref().map(|e| format!(", first: {e}")).unwrap_or_default()
    );
    println!(
        "memory: gateway (child) VmRSS {} → {} = {:.1} KiB per connection (target < 20 KiB: {})",
        mib(server_before),
        mib(server_after),
        server_per / 1024.0,
        if server_per < TARGET_BYTES_PER_CONNECTION && reached == n {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "memory: bench clients (this process, tokio-tungstenite) VmRSS {} → {} = {:.1} KiB per connection",
        mib(client_before),
        mib(client_after),
        per(client_before, client_after) / 1024.0
    );

    // 2. Fan-out: every connection also subscribes to one meeting of all users.
    let attendees: Vec<Uuid> = users[1..].iter().map(|(id, _)| *id).collect();
    let meeting = commands.schedule(&users[0].1, &attendees, 0).await?;
    while events_rx.try_recv().is_ok() {}
    ready.store(0, Ordering::Relaxed);
    stage_tx.send(Stage::Subscribe(format!("meeting:{meeting}")))?;
    let subscribed = wait_count(&ready, reached, &Arc::new(AtomicUsize::new(0))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_meeting = rss(pid)?;
    println!();
    println!(
        "fanout: {subscribed} connections ({} users) subscribed to meeting:{meeting}; gateway VmRSS now {}",
        users.len(),
        mib(server_meeting)
    );
    while events_rx.try_recv().is_ok() {}
    let mut all = Vec::new();
    for repetition in 0..options.fanout_repetitions {
        let (accepted, position) = commands
            .chat(&users[0].1, meeting, &format!("fan-out {repetition}"))
            .await?;
        let delays = collect(
            &mut events_rx,
            &position,
            accepted,
            subscribed,
            Duration::from_secs(15),
        )
        .await;
        println!("fanout: message {repetition}: {}", summary(&delays));
        all.extend(delays);
        tokio::time::sleep(Duration::from_secs(1)).await;
        while events_rx.try_recv().is_ok() {}
    }
    all.sort_unstable();
    let fanout_p99 = crate::stats::quantile(&all, 0.99);
    let expected = subscribed * options.fanout_repetitions;
    println!(
        "fanout: all messages: {} ; {} of {expected} deliveries (target p99 < 250 ms: {})",
        summary(&all),
        all.len(),
        if fanout_p99.is_some_and(|p| p < TARGET_FANOUT_P99_US) && all.len() == expected {
            "met"
        } else {
            "NOT met"
        }
    );
    stage_tx.send(Stage::Close)?;
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    drop(stage_tx);

    println!(
        "open descriptors in the bench process after closing: {}",
        open_fds()
    );

    // 3. Latency at a rate: one meeting per client, organizers round-robin.
    let mut meetings = Vec::with_capacity(options.clients);
    for i in 0..options.clients {
        let organizer = i % users.len();
        let attendee = users[(organizer + 1) % users.len()].0;
        meetings.push((
            organizer,
            commands
                .schedule(&users[organizer].1, &[attendee], i + 1)
                .await?,
        ));
    }
    let ready = Arc::new(AtomicUsize::new(0));
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Arrival>();
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    let mut tasks = Vec::new();
    for (organizer, meeting) in &meetings {
        tasks.push(tokio::spawn(client(
            url.to_string(),
            users[*organizer].1.clone(),
            vec![format!("meeting:{meeting}")],
            ready.clone(),
            events_tx.clone(),
            stage_rx.clone(),
        )));
    }
    let up = wait_count(&ready, meetings.len(), &AtomicUsize::new(0)).await;
    anyhow::ensure!(up == meetings.len(), "only {up} latency clients connected");
    let total = (options.rate * options.duration.as_secs_f64()).round() as usize;
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let failed: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let commands = Arc::new(Commands(commands.0.clone()));
    let users = Arc::new(users.to_vec());
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut late = 0usize;
    let mut posts = tokio::task::JoinSet::new();
    // Bounded in flight: a slow command side must not exhaust this process's descriptors
    // (each in-flight post holds a client and a server socket here).
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let issuing = Instant::now();
    for i in 0..total {
        let permit = in_flight.clone().acquire_owned().await?;
        if interval.tick().await.elapsed() > Duration::from_millis(10) {
            late += 1;
        }
        let (organizer, meeting) = meetings[i % meetings.len()];
        let (commands, users, accepted, failed) = (
            commands.clone(),
            users.clone(),
            accepted.clone(),
            failed.clone(),
        );
        posts.spawn(async move {
            let _permit = permit;
            match commands
                .chat(&users[organizer].1, meeting, &format!("m{i}"))
                .await
            {
                Ok((at, position)) => {
                    accepted.lock().expect("not poisoned").insert(position, at);
                }
                Err(error) => {
                    // "<path>: <status> …" or a transport error: keep the kind, not the ids.
                    let error = format!("{error:#}");
                    let kind = match error.split_once(": ") {
                        Some((_, rest)) if rest.len() >= 3 => rest[..3].to_string(),
                        _ => error.chars().take(60).collect(),
                    };
                    *failed
                        .lock()
                        .expect("not poisoned")
                        .entry(kind)
                        .or_insert(0) += 1;
                }
            }
        });
        while posts.try_join_next().is_some() {}
    }
    let issued_in = issuing.elapsed();
    while posts.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted = std::mem::take(&mut *accepted.lock().expect("not poisoned"));
    let mut delays = Vec::with_capacity(total);
    let mut early = 0usize;
    while let Ok((at, position)) = events_rx.try_recv() {
        if let Some(accepted) = accepted.get(&position) {
            if at < *accepted {
                early += 1;
            }
            delays.push(
                u32::try_from(at.saturating_duration_since(*accepted).as_micros())
                    .unwrap_or(u32::MAX),
            );
        }
    }
    delays.sort_unstable();
    let p99 = crate::stats::quantile(&delays, 0.99);
    println!();
    println!(
        "latency: {} clients, {total} chat messages at {:.1}/s ({late} ticks > 10 ms late), {} accepted, failed {:?}, {} delivered ({early} before the HTTP answer, counted 0)",
        meetings.len(),
        total as f64 / issued_in.as_secs_f64(),
        accepted.len(),
        failed.lock().expect("not poisoned"),
        delays.len()
    );
    println!(
        "latency: accepted → frame {} (target p99 < 50 ms: {})",
        summary(&delays),
        if p99.is_some_and(|p| p < TARGET_LATENCY_P99_US) && delays.len() == total {
            "met"
        } else {
            "NOT met"
        }
    );
    stage_tx.send(Stage::Close)?;
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    println!(
        "open descriptors in the bench process after closing: {}",
        open_fds()
    );
    baselines(&Floors {
        connections: options.baseline_connections,
        fanout_repetitions: options.fanout_repetitions,
        clients: options.clients,
        rate: options.rate,
        duration: options.duration,
    })
    .await
}
