//! `bench pipeline-lag`: the whole pipeline in this process — command-service, relay, NATS
//! JetStream (a per-run stream, deleted afterwards), projector, query-service — on a fresh
//! database. An open-loop generator issues commands at a fixed rate; for every accepted
//! command the lag from "HTTP 2xx received" to "visible in the query API" is the time until
//! the first `meetings_projected` notification whose position is at least the command's
//! (exactly when an `X-Min-Position` wait is released). A sample of commands is also read
//! back through a real `GET` with `X-Min-Position` to confirm. The baseline is the same lag at
//! a low rate, in the same run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use command_service::relay::{Relay, RelaySettings};
use platform::bus::StreamName;
use platform::config::parse_duration;
use platform::metrics::Metrics;
use platform::testing::meeting_body_on;
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cpu::{cpu_columns, CpuSample};
use crate::database::{with_database_and_stream, BenchDatabase, StackOptions};
use crate::services;
use crate::stats::{quantile, summary};

/// Target: p99 of the lag below this.
const TARGET_P99_US: u32 = 100_000;
/// A tick this much behind its schedule counts as the generator falling behind.
const LATE: Duration = Duration::from_millis(10);
/// Width of the windows the lag is also reported in.
const WINDOW_SECONDS: u64 = 5;
/// Meetings that respond and chat commands pick from: the most recently scheduled ones.
const RECENT_MEETINGS: usize = 256;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Commands per second under load (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long the load runs.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Commands per second of the baseline phase (run first).
    #[arg(long, default_value_t = 50.0)]
    pub baseline_rate: f64,
    /// How long the baseline phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub baseline_duration: Duration,
    /// Registered users issuing the commands.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// Every n-th command is also read back through GET with X-Min-Position.
    #[arg(long, default_value_t = 100)]
    pub sample_every: u64,
    /// Connections of the command-service's pool (the relay, the projector and the
    /// query-service have pools of their own, as separate processes would).
    #[arg(long, default_value_t = 32)]
    pub pool_size: u32,
    #[command(flatten)]
    pub stack: StackOptions,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.rate > 0.0 && options.baseline_rate > 0.0,
        "rates must be positive"
    );
    anyhow::ensure!(options.users >= 3, "--users must be at least 3");
    anyhow::ensure!(
        options.sample_every > 0,
        "--sample-every must be at least 1"
    );
    let options = &options;
    with_database_and_stream(&options.stack, |database, js, stream| async move {
        run_in(options, &database, js, stream).await
    })
    .await
}

/// One user of the generator.
struct User {
    id: Uuid,
    authorization: String,
}

/// A meeting the generator scheduled: its organizer and attendees (indexes into the users).
#[derive(Clone, Copy)]
struct Recent {
    id: Uuid,
    organizer: usize,
    attendees: [usize; 2],
}

/// What the generator shares with its request tasks.
struct Shared {
    client: reqwest::Client,
    commands: String,
    queries: String,
    users: Vec<User>,
    recent: Mutex<VecDeque<Recent>>,
}

/// An accepted command.
struct Accepted {
    at: Instant,
    position: String,
    kind: &'static str,
}

/// A GET with X-Min-Position after an accepted command: time from acceptance to its answer.
struct Confirmed {
    lag: Duration,
    status: u16,
}

/// The outcome of one request task.
enum Outcome {
    Accepted(Accepted, Option<Confirmed>),
    Failed(String),
}

async fn run_in(
    options: &Options,
    database: &BenchDatabase,
    js: async_nats::jetstream::Context,
    stream: StreamName,
) -> anyhow::Result<()> {
    let relay_pool = platform::db::connect(&database.url, 4).await?;
    platform::db::migrate(&relay_pool).await?;
    // The relay's and the projector's own metrics: where the lag goes, stage by stage.
    let stage_metrics = Metrics::new();
    let projector_pool = platform::db::connect(&database.url, 4).await?;

    let relay = Relay::over_jetstream(
        relay_pool,
        js.clone(),
        stream.clone(),
        RelaySettings::default(),
    )
    .with_metrics(&stage_metrics);
    let relay = tokio::spawn(relay.run(std::future::pending()));
    let projector = projector::new_projector(projector_pool, js, stream, &stage_metrics);
    let projector = tokio::spawn(projector.run(std::future::pending()));
    let commands = services::command(&database.url, options.pool_size).await?;
    let queries = services::query(
        &database.url,
        16,
        query_service::documents::DEFAULT_MAX_BATCH,
    )
    .await?;

    // The bench's own LISTEN: (arrival, checkpoint position) of every notification.
    let notifications: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut listener = PgListener::connect(&database.url).await?;
    listener.listen(query_service::watch::CHANNEL).await?;
    let listening = {
        let notifications = notifications.clone();
        tokio::spawn(async move {
            while let Ok(notification) = listener.recv().await {
                let at = Instant::now();
                notifications
                    .lock()
                    .expect("BUG: not poisoned")
                    .push((at, notification.payload().to_string()));
            }
        })
    };

    let mut users = Vec::with_capacity(options.users);
    for i in 0..options.users {
        let user = commands.sign_up(&format!("User {i}")).await?;
        users.push(User {
            id: user.id,
            authorization: format!("Bearer {}", user.token),
        });
    }
    let shared = Arc::new(Shared {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        commands: commands.base.clone(),
        queries: queries.base.clone(),
        users,
        recent: Mutex::new(VecDeque::with_capacity(RECENT_MEETINGS)),
    });
    // Meetings to respond to and chat in from the first tick on.
    for i in 0..32 {
        if let Outcome::Failed(kind) = issue(&shared, i * 10, false).await {
            anyhow::bail!("preparing meetings: {kind}");
        }
    }

    println!(
        "pipeline-lag: open loop, commands 40% schedule (2 attendees), 30% respond, 30% chat, {} users, every {}th command confirmed by GET with X-Min-Position, {} cores",
        options.users,
        options.sample_every,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let baseline = phase(
        "baseline",
        &shared,
        options.baseline_rate,
        options.baseline_duration,
        options.sample_every,
        &notifications,
    )
    .await?;
    let before_load = (StageTimes::read(&stage_metrics), Instant::now());
    let load = phase(
        "load",
        &shared,
        options.rate,
        options.duration,
        options.sample_every,
        &notifications,
    )
    .await?;
    StageTimes::read(&stage_metrics).print_since("load", &before_load.0, before_load.1.elapsed());
    let (baseline_p99, load_p99) = (baseline.p99(), load.p99());
    println!();
    println!(
        "p99 lag {} ms under load ({:.0}/s) vs {} ms at {:.0}/s (target < {} ms: {})",
        crate::stats::ms(load_p99),
        load.achieved,
        crate::stats::ms(baseline_p99),
        baseline.achieved,
        TARGET_P99_US / 1000,
        if load_p99.is_some_and(|p| p < TARGET_P99_US) && load.errors() == 0 {
            "met"
        } else {
            "NOT met"
        }
    );

    listening.abort();
    relay.abort();
    projector.abort();
    drop(commands);
    drop(queries);
    Ok(())
}

/// Sums and counts of the relay's and the projector's round/batch histograms.
struct StageTimes(BTreeMap<String, f64>);

impl StageTimes {
    /// (stage, metric prefix in the `meetings` registry).
    const STAGES: [(&'static str, &'static str); 2] = [
        ("relay", "meetings_relay_round"),
        ("projector", "meetings_projector_batch"),
    ];

    fn read(metrics: &Metrics) -> Self {
        let values = metrics
            .encode()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                let wanted = Self::STAGES.iter().any(|(_, prefix)| {
                    name.starts_with(prefix) && (name.ends_with("_sum") || name.ends_with("_count"))
                });
                Some((name.to_owned(), value.parse().ok()?)).filter(|_| wanted)
            })
            .collect();
        Self(values)
    }

    /// Mean time and events per relay round and projector batch since `before`.
    fn print_since(&self, label: &str, before: &Self, phase: Duration) {
        let delta = |name: String| {
            self.0.get(&name).copied().unwrap_or(0.0) - before.0.get(&name).copied().unwrap_or(0.0)
        };
        for (stage, prefix) in Self::STAGES {
            let rounds = delta(format!("{prefix}_seconds_count"));
            if rounds == 0.0 {
                continue;
            }
            let seconds = delta(format!("{prefix}_seconds_sum"));
            let events = delta(format!("{prefix}_events_sum"));
            println!(
                "{label}: {stage:<9} {rounds:.0} rounds, mean {:.2} ms and {:.1} events per round, busy {:.0}% of the phase",
                seconds / rounds * 1000.0,
                events / rounds,
                seconds * 100.0 / phase.as_secs_f64(),
            );
        }
    }
}

/// One phase's numbers.
struct Phase {
    achieved: f64,
    lags_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Phase {
    fn p99(&self) -> Option<u32> {
        quantile(&self.lags_us, 0.99)
    }

    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Issues `rate × duration` commands on a fixed schedule, then waits for the projection to
/// catch up and matches every accepted command with its notification.
async fn phase(
    label: &str,
    shared: &Arc<Shared>,
    rate: f64,
    duration: Duration,
    sample_every: u64,
    notifications: &Arc<Mutex<Vec<(Instant, String)>>>,
) -> anyhow::Result<Phase> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut late_ticks = 0u64;
    let mut max_late = Duration::ZERO;
    let mut max_in_flight = 0usize;
    let mut outcomes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let cpu = CpuSample::now();
    let started = Instant::now();
    for i in 0..total {
        let scheduled = interval.tick().await;
        let late = scheduled.elapsed();
        if late > LATE {
            late_ticks += 1;
        }
        max_late = max_late.max(late);
        let shared = shared.clone();
        tasks.spawn(async move { issue(&shared, i, i % sample_every == 0).await });
        // Reap what is done, so memory follows the in-flight count rather than the total.
        while let Some(done) = tasks.try_join_next() {
            outcomes.push(done.context("a request task panicked")?);
        }
        max_in_flight = max_in_flight.max(tasks.len());
    }
    let issued_in = started.elapsed();
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.context("a request task panicked")?);
    }
    let cpu = cpu.and_then(|start| start.until_now());

    let mut accepted = Vec::with_capacity(outcomes.len());
    let mut confirmed = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Accepted(command, check) => {
                confirmed.extend(check);
                accepted.push(command);
            }
            Outcome::Failed(kind) => *errors.entry(kind).or_insert(0) += 1,
        }
    }

    // Wait (bounded) until the projection has announced the newest accepted position.
    let newest = accepted.iter().map(|a| a.position.as_str()).max();
    let deadline = Instant::now() + Duration::from_secs(60);
    if let Some(newest) = newest {
        loop {
            let reached = notifications
                .lock()
                .expect("BUG: not poisoned")
                .last()
                .is_some_and(|(_, position)| position.as_str() >= newest);
            if reached || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // First notification at or past each command's position (positions only grow, but keep
    // a running maximum to be safe).
    let seen: Vec<(Instant, String)> = {
        let all = notifications.lock().expect("BUG: not poisoned");
        let mut increasing: Vec<(Instant, String)> = Vec::with_capacity(all.len());
        for (at, position) in all.iter() {
            if increasing.last().is_none_or(|(_, last)| last < position) {
                increasing.push((*at, position.clone()));
            }
        }
        increasing
    };
    let mut lags_us = Vec::with_capacity(accepted.len());
    let mut by_kind: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    // Lags by when the command was accepted, in windows: a steady tail and a few stalls
    // (a checkpoint, autovacuum, a neighbour's build) call for different fixes.
    let mut by_window: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut never_seen = 0u64;
    for command in &accepted {
        let index = seen.partition_point(|(_, position)| position < &command.position);
        match seen.get(index) {
            Some((at, _)) => {
                let lag = at.saturating_duration_since(command.at).as_micros();
                let lag = u32::try_from(lag).unwrap_or(u32::MAX);
                lags_us.push(lag);
                by_kind.entry(command.kind).or_default().push(lag);
                let window =
                    command.at.saturating_duration_since(started).as_secs() / WINDOW_SECONDS;
                by_window.entry(window).or_default().push(lag);
            }
            None => never_seen += 1,
        }
    }
    if never_seen > 0 {
        *errors
            .entry("not visible within 60 s".to_string())
            .or_insert(0) += never_seen;
    }
    lags_us.sort_unstable();
    let achieved = total as f64 / issued_in.as_secs_f64();

    println!();
    println!(
        "{label}: target {rate:.0}/s for {:.0}s, issued {total} in {:.2}s = {achieved:.1}/s, {} accepted, {} errors {errors:?}",
        duration.as_secs_f64(),
        issued_in.as_secs_f64(),
        accepted.len(),
        errors.values().sum::<u64>(),
    );
    println!(
        "{label}: generator ticks late by > {} ms: {late_ticks} of {total} (max {:.1} ms), max in flight {max_in_flight}",
        LATE.as_millis(),
        max_late.as_secs_f64() * 1000.0
    );
    println!("{label}: lag to notification  {}", summary(&lags_us));
    for (kind, lags) in &mut by_kind {
        lags.sort_unstable();
        println!("{label}:   {kind:<9} {}", summary(lags));
    }
    if by_window.len() > 1 {
        let windows: Vec<String> = by_window
            .values_mut()
            .map(|lags| {
                lags.sort_unstable();
                crate::stats::ms(quantile(lags, 0.99))
            })
            .collect();
        println!(
            "{label}: p99 ms per {WINDOW_SECONDS} s of acceptance: {}",
            windows.join(" ")
        );
    }
    let mut get_lags: Vec<u32> = confirmed
        .iter()
        .filter(|c| c.status == 200)
        .map(|c| u32::try_from(c.lag.as_micros()).unwrap_or(u32::MAX))
        .collect();
    get_lags.sort_unstable();
    let not_ok = confirmed.iter().filter(|c| c.status != 200).count();
    println!(
        "{label}: lag to GET (X-Min-Position) answer {} , non-200: {not_ok}",
        summary(&get_lags)
    );
    println!(
        "{label}: cpu machine busy / bench process {}",
        cpu_columns(cpu.as_ref()).trim()
    );
    Ok(Phase {
        achieved,
        lags_us,
        errors,
    })
}

/// Command `i`: schedule (i % 10 in 0..4), respond (4..7) or chat (7..10). With `confirm`, the
/// affected meeting is then read back with `X-Min-Position`.
async fn issue(shared: &Shared, i: u64, confirm: bool) -> Outcome {
    let n = shared.users.len();
    let pick =
        |salt: u64| usize::try_from((i.wrapping_mul(2_654_435_761) ^ salt) % n as u64).unwrap_or(0);
    let (kind, path, actor, meeting, body, created) = match i % 10 {
        0..=3 => {
            let organizer = pick(0);
            let attendees = [(organizer + 1) % n, (organizer + 2) % n];
            let day = chrono::Utc::now().date_naive() + chrono::Days::new(1 + i % 300);
            let body = meeting_body_on(
                day,
                &format!("Pipeline {i}"),
                &attendees.map(|a| shared.users[a].id),
            );
            let recent = Recent {
                id: Uuid::nil(),
                organizer,
                attendees,
            };
            (
                "schedule",
                "/v1/meetings".to_string(),
                organizer,
                recent,
                body,
                true,
            )
        }
        kind => {
            let recent = {
                let recent = shared.recent.lock().expect("BUG: not poisoned");
                if recent.is_empty() {
                    return Outcome::Failed("no meeting scheduled yet".into());
                }
                recent[pick(1) % recent.len()]
            };
            if kind <= 6 {
                let attendee = recent.attendees[usize::from(i % 2 == 1)];
                let response = ["accepted", "tentative", "declined"][(i % 3) as usize];
                (
                    "respond",
                    format!("/v1/meetings/{}/response", recent.id),
                    attendee,
                    recent,
                    json!({ "response": response }),
                    false,
                )
            } else {
                (
                    "chat",
                    format!("/v1/meetings/{}/messages", recent.id),
                    recent.organizer,
                    recent,
                    json!({ "text": format!("message {i}") }),
                    false,
                )
            }
        }
    };
    let user = &shared.users[actor];
    let response = match shared
        .client
        .post(format!("{}{path}", shared.commands))
        .header(reqwest::header::AUTHORIZATION, &user.authorization)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(format!("{kind} transport: {error}")),
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let at = Instant::now();
    if !status.is_success() {
        return Outcome::Failed(format!("{kind} {}", status.as_u16()));
    }
    let Some(position) = body["position"].as_str().map(str::to_string) else {
        return Outcome::Failed(format!("{kind} answer without a position"));
    };
    let meeting_id = if created {
        let Some(id) = body["id"].as_str().and_then(|id| id.parse().ok()) else {
            return Outcome::Failed(format!("{kind} answer without an id"));
        };
        let mut recent = shared.recent.lock().expect("BUG: not poisoned");
        if recent.len() == RECENT_MEETINGS {
            recent.pop_front();
        }
        recent.push_back(Recent { id, ..meeting });
        id
    } else {
        meeting.id
    };
    let confirmed = if confirm {
        let answer = shared
            .client
            .get(format!("{}/v1/meetings/{meeting_id}", shared.queries))
            .header(reqwest::header::AUTHORIZATION, &user.authorization)
            .header("X-Min-Position", &position)
            .send()
            .await;
        let status = match answer {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let _ = answer.bytes().await;
                status
            }
            Err(_) => 0,
        };
        Some(Confirmed {
            lag: at.elapsed(),
            status,
        })
    } else {
        None
    };
    Outcome::Accepted(Accepted { at, position, kind }, confirmed)
}
