//! `bench calendar`: the calendar reads issue 13 sets targets for, on a log generated through
//! the domain (`audit::generate::generate_calendar`) and projected by the projector's replay:
//! - `GET /v1/me/agenda` over a whole year for one user with `--series` recurring series (and
//!   `--singles` single meetings), every series expanded in the request;
//! - that user's iCalendar feed (`GET /v1/calendar/feeds/{token}.ics`) of all those meetings.
//!
//! One client, requests one after the other (latency, not throughput), against the
//! in-process query-service. Each beside its baseline measured in the same rounds: the SQL the
//! endpoint runs, through sqlx from this process (rows fetched, nothing expanded or rendered).
//! Rounds alternate baseline and endpoint; p50/p99 over all rounds.

use std::time::Instant;

use sqlx::PgPool;

use crate::database::{with_database, PostgresOptions};
use crate::services;
use crate::stats::{ms, quantile, summary};

/// Targets (issue 13): agenda over a year p99 below 20 ms; a 1,000-meeting feed below 50 ms.
const AGENDA_TARGET_US: u32 = 20_000;
const FEED_TARGET_US: u32 = 50_000;
const YEAR: (&str, &str) = ("2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");

#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub postgres: PostgresOptions,
    /// Recurring series in the user's calendar.
    #[arg(long, default_value_t = 200)]
    pub series: u64,
    /// Single meetings in the user's calendar besides the series.
    #[arg(long, default_value_t = 800)]
    pub singles: u64,
    /// Requests per round and endpoint.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Rounds (baseline and endpoint alternate).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    with_database(&options.postgres.admin_url, |database| async move {
        let pool = platform::db::connect(&database.url, 4).await?;
        platform::db::migrate(&pool).await?;
        let log =
            audit::generate::generate_calendar(&pool, options.series, options.singles).await?;
        let store = std::sync::Arc::new(platform::store::PgEventStore::new(pool.clone()));
        projector::replay::replay(&pool, store, &|_, _| {}).await?;
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        let service = services::query(&database.url, 4, 64).await?;
        let jwt = platform::testing::jwt_keys();
        let token = format!(
            "Bearer {}",
            jwt.issue(log.owner, domain::Role::Member, services::TOKEN_LIFETIME)
        );
        let client = reqwest::Client::new();
        let agenda_url = format!(
            "{}/v1/me/agenda?from={}&to={}",
            service.base, YEAR.0, YEAR.1
        );
        let agenda: serde_json::Value = client
            .get(&agenda_url)
            .header("authorization", &token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let occurrences = agenda["items"].as_array().map_or(0, Vec::len);
        let feed: serde_json::Value = client
            .get(format!("{}/v1/calendar/feed", service.base))
            .header("authorization", &token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let feed_url = feed["url"].as_str().unwrap_or_default().to_owned();
        let ics = client
            .get(&feed_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        println!(
            "calendar: {} events generated through the domain; one user with {} series and {} \
             single meetings; a year's agenda has {occurrences} items; the feed has {} VEVENTs \
             in {} KiB; {} requests x {} rounds, one client",
            log.events,
            log.series,
            log.singles,
            ics.matches("BEGIN:VEVENT").count(),
            ics.len() / 1024,
            options.requests,
            options.rounds
        );

        let (mut agenda_sql, mut agenda_http, mut feed_sql, mut feed_http) =
            (vec![], vec![], vec![], vec![]);
        for round in 1..=options.rounds {
            agenda_sql.extend(timed(options.requests, || agenda_rows(&pool, log.owner)).await?);
            agenda_http
                .extend(timed(options.requests, || get(&client, &agenda_url, Some(&token))).await?);
            feed_sql.extend(timed(options.requests, || feed_rows(&pool, log.owner)).await?);
            feed_http.extend(timed(options.requests, || get(&client, &feed_url, None)).await?);
            eprintln!("round {round} done");
        }
        for samples in [
            &mut agenda_sql,
            &mut agenda_http,
            &mut feed_sql,
            &mut feed_http,
        ] {
            samples.sort_unstable();
        }
        println!();
        report(
            "agenda, a year (HTTP)",
            &agenda_http,
            "its SQL",
            &agenda_sql,
            AGENDA_TARGET_US,
        );
        report(
            "feed .ics (HTTP)",
            &feed_http,
            "its SQL",
            &feed_sql,
            FEED_TARGET_US,
        );
        Ok(())
    })
    .await
}

fn report(name: &str, endpoint: &[u32], baseline_name: &str, baseline: &[u32], target: u32) {
    let (p50, p99) = (quantile(endpoint, 0.5), quantile(endpoint, 0.99));
    let base50 = quantile(baseline, 0.5);
    println!("{name}: {}", summary(endpoint));
    println!("  baseline, {baseline_name}: {}", summary(baseline));
    println!(
        "  p99 {} ms (target < {} ms: {}); median {:.1}x the baseline's",
        ms(p99),
        target / 1000,
        if p99.is_some_and(|p| p < target) {
            "met"
        } else {
            "NOT met"
        },
        p50.unwrap_or(0) as f64 / base50.unwrap_or(1).max(1) as f64
    );
}

/// Runs `request` `n` times one after the other; the latency of each, in microseconds.
async fn timed<F, Fut>(n: usize, mut request: F) -> anyhow::Result<Vec<u32>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        request().await?;
        latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Ok(latencies)
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> anyhow::Result<()> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let body = request.send().await?.error_for_status()?.bytes().await?;
    anyhow::ensure!(!body.is_empty(), "empty answer from {url}");
    Ok(())
}

/// The rows the agenda endpoint reads for a year (query-service `routes::calendar`).
async fn agenda_rows(pool: &PgPool, user: uuid::Uuid) -> anyhow::Result<()> {
    let from: chrono::DateTime<chrono::Utc> = YEAR.0.parse()?;
    let to: chrono::DateTime<chrono::Utc> = YEAR.1.parse()?;
    let rows: Vec<(uuid::Uuid, Option<serde_json::Value>)> = sqlx::query_as(
        "(SELECT meeting_id, series FROM rm_agenda
          WHERE user_id = $1 AND starts_at >= $2 AND starts_at < $3 AND ends_at > $4
            AND series IS NULL LIMIT 5001)
         UNION ALL
         (SELECT meeting_id, series FROM rm_agenda
          WHERE user_id = $1 AND series IS NOT NULL AND starts_at < $3
            AND (series_ends_at IS NULL OR series_ends_at > $4) LIMIT 5001)",
    )
    .bind(user)
    .bind(from - chrono::Duration::hours(24))
    .bind(to)
    .bind(from)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!rows.is_empty(), "no agenda rows");
    Ok(())
}

/// The documents the feed reads (query-service `routes::ical`).
async fn feed_rows(pool: &PgPool, user: uuid::Uuid) -> anyhow::Result<()> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT d.body::text FROM rm_agenda a
         JOIN rm_meeting_documents d ON d.meeting_id = a.meeting_id
         WHERE a.user_id = $1
           AND (CASE WHEN a.series IS NULL THEN a.ends_at ELSE a.series_ends_at END
                > now() - make_interval(days => 180)
                OR (a.series IS NOT NULL AND a.series_ends_at IS NULL))
         ORDER BY a.starts_at DESC, a.meeting_id LIMIT 2000",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!rows.is_empty(), "no feed rows");
    Ok(())
}
