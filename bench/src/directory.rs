//! `bench directory`: GET /v1/users?q= (directory search by the start of any word, accents
//! folded) against the in-process query-service over 100,000 users, interleaved with pgbench
//! running the endpoint's SQL for the same queries on the same database.

use std::sync::Arc;

use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::compare::{self, Baseline, RoundOptions};
use crate::database::{BenchDatabase, ServerOptions};
use crate::load;
use crate::pgbench::ScriptFile;
use crate::seed;
use crate::services;

/// Target: p99 of the HTTP request below this.
const TARGET_P99_US: u32 = 10_000;

const FIRST: [&str; 40] = [
    "Ada",
    "Zoë",
    "Björn",
    "Chloé",
    "Jürgen",
    "Ingrid",
    "José",
    "Łukasz",
    "Søren",
    "Amélie",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Niklaus",
    "Barbara",
    "Edsger",
    "Frances",
    "Tony",
    "Radia",
    "Dennis",
    "Ken",
    "Leslie",
    "Donald",
    "Katherine",
    "Hedy",
    "Tim",
    "Vint",
    "Anita",
    "Guido",
    "Bjarne",
    "Yukihiro",
    "Rasmus",
    "Larry",
    "Sophie",
    "Mária",
    "Ştefan",
    "Nuño",
    "Øystein",
    "Émile",
];
const LAST: [&str; 40] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Wirth",
    "Liskov",
    "Dijkstra",
    "Allen",
    "Hoare",
    "Perlman",
    "Ritchie",
    "Thompson",
    "Lamport",
    "Knuth",
    "Johnson",
    "Lamarr",
    "Berners-Lee",
    "Cerf",
    "Borg",
    "van Rossum",
    "Stroustrup",
    "Matsumoto",
    "Lerdorf",
    "Wall",
    "Wilson",
    "Müller",
    "Gödel",
    "Ångström",
    "Nuñez",
    "Dvořák",
    "Østergaard",
    "García-Márquez",
    "Kovačević",
    "Łęcki",
    "Schrödinger",
    "Fermat",
    "Poincaré",
    "Brontë",
    "Çelik",
];

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Users in the directory.
    #[arg(long, default_value_t = 100_000)]
    pub users: i64,
    /// Concurrent HTTP clients (keep-alive), and pgbench clients (`-c`).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    #[command(flatten)]
    pub rounds: RoundOptions,
    /// Connections of the query-service's pool.
    #[arg(long, default_value_t = 16)]
    pub pool_size: u32,
    #[command(flatten)]
    pub server: ServerOptions,
}

/// The queries both sides run, as people type them: the first letters of a first name, a
/// last name (accents typed or not), the start of a later word, two words, an email start,
/// and a miss.
fn queries() -> Vec<String> {
    let mut queries = Vec::new();
    for (i, first) in FIRST.iter().enumerate() {
        let last = LAST[(i * 7) % LAST.len()];
        let folded = platform::search::fold(first);
        queries.push(folded.chars().take(1 + i % 4).collect());
        queries.push(last.to_string());
        queries.push(platform::search::fold(last));
        let two = |text: String| text.chars().take(2).collect::<String>();
        queries.push(format!("{first} {}", two(platform::search::fold(last))));
        queries.push(format!(
            "{folded}.{}",
            two(platform::search::fold(last).replace([' ', '-'], ""))
        ));
    }
    queries.push("qxz".into());
    queries
}

/// The endpoint's statement (query-service `repository::postgres::directory_search_sql`, first page
/// of 50) for query `:i` of [`queries`], with the values the endpoint binds written in.
fn script(queries: &[String]) -> String {
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let array = |items: &[String]| {
        format!(
            "ARRAY[{}]::text[]",
            items
                .iter()
                .map(|i| literal(i))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let mut script = format!("\\set i random(1, {})\n", queries.len());
    let mut opened = false;
    for (n, q) in queries.iter().enumerate() {
        let query = platform::search::Query::new(q);
        let mut values = vec![
            literal(&format!(
                "{}%",
                query_service::params::like_escape(&query.email)
            )),
            "NULL".to_string(),
            "NULL".to_string(),
            "51".to_string(),
            literal(
                &query
                    .email
                    .chars()
                    .take(platform::search::INDEXED_PREFIX)
                    .collect::<String>(),
            ),
            array(&query.long()),
        ];
        values.extend(query.indexed().iter().map(|w| literal(w)));
        let email = !query.email.contains(char::is_whitespace)
            && query.email.contains(|c: char| !c.is_alphanumeric());
        let Some(sql) = query_service::repository::postgres::directory_search_sql(
            query.words.len(),
            !query.long().is_empty(),
            email,
        ) else {
            continue;
        };
        let mut sql = sql.to_string();
        // Highest first: `$1` must not eat the start of `$10`.
        for (index, value) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", index + 1), value);
        }
        let keyword = if opened { "\\elif" } else { "\\if" };
        opened = true;
        script.push_str(&format!("{keyword} :i = {}\n{sql};\n", n + 1));
    }
    script.push_str("\\endif\n");
    script
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let options = &options;
    let (server, rounds) = (&options.server, &options.rounds);
    compare::with_migrated_database(
        server,
        rounds,
        options.clients,
        options.pool_size,
        |database, pool| async move { run_in(options, &database, &pool).await },
    )
    .await
}

/// Users named from [`FIRST`] × [`LAST`] (and a number), their search words folded by the
/// projector's own function, then `ANALYZE`.
async fn load_users(pool: &PgPool, users: i64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    for chunk in (0..users).collect::<Vec<_>>().chunks(10_000) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut names = Vec::with_capacity(chunk.len());
        let mut emails = Vec::with_capacity(chunk.len());
        let mut words = Vec::with_capacity(chunk.len());
        for &n in chunk {
            let first = FIRST[(n as usize) % FIRST.len()];
            let last = LAST[(n as usize / FIRST.len()) % LAST.len()];
            let name = format!("{first} {last}");
            let email = format!(
                "{}.{}.{n}@example.com",
                platform::search::fold(first),
                platform::search::fold(last).replace([' ', '-'], "")
            );
            words.push(platform::search::user_words(&name, &email));
            ids.push(Uuid::now_v7());
            names.push(name);
            emails.push(email);
        }
        sqlx::query(
            "INSERT INTO rm_users (id, email, email_key, display_name, time_zone, role,
                 working_hours, active, version, created_at, updated_at, search_words)
             SELECT id, email, lower(email), name, 'Europe/Berlin', 'member', NULL, true, 1,
                    now(), now(), words
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                  AS u(id, name, email, words)",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&emails)
        .bind(&words)
        .execute(pool)
        .await?;
    }
    // The directory's prefix rows, as the projector writes them with each user.
    sqlx::query(
        "INSERT INTO rm_user_prefixes (prefix, sort_name, user_id)
         SELECT DISTINCT p, lower(display_name), id FROM rm_users, unnest(search_prefixes) p
         WHERE active",
    )
    .execute(pool)
    .await?;
    // Settled as a long-running directory is: visibility map set (index-only scans), hint bits
    // written, statistics current — and no autovacuum of the fresh rows during the rounds.
    sqlx::query("VACUUM ANALYZE rm_users, rm_user_prefixes")
        .execute(pool)
        .await?;
    println!(
        "loaded {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run_in(options: &Options, database: &BenchDatabase, pool: &PgPool) -> anyhow::Result<()> {
    load_users(pool, options.users).await?;
    let jwt = platform::testing::jwt_keys();
    let service = services::query(
        &database.url,
        options.pool_size,
        query_service::documents::DEFAULT_MAX_BATCH,
    )
    .await?;
    let token: Arc<str> = seed::tokens(pool, &jwt)
        .await?
        .into_iter()
        .next()
        .map(|(_, header)| header)
        .ok_or_else(|| anyhow::anyhow!("no user"))?
        .into();
    let queries = Arc::new(queries());
    let url: Arc<str> = format!("{}/v1/users", service.base).into();
    let found = check_all(&url, &token, &queries).await?;

    let script = ScriptFile::write(&script(&queries))?;
    println!(
        "directory: {} clients, {}, {} users, {} queries (mean {found:.1} items per answer of at most 50), {} cores",
        options.clients,
        options.rounds.describe(),
        options.users,
        queries.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let spec = options
        .rounds
        .closed_loop(options.clients, reqwest::StatusCode::OK);
    let baseline = Baseline::new(
        "pgbench directory",
        &options.server,
        &database.url,
        script.path(),
        options.clients,
        &options.rounds,
    )
    .logging_latencies();
    let comparison = compare::interleave(options.rounds.rounds, "directory", &baseline, || {
        let (token, url, queries) = (token.clone(), url.clone(), queries.clone());
        load::closed_loop(&spec, move |client, rng| {
            let q = &queries[rng.gen_range(0..queries.len())];
            client
                .get(&*url)
                .query(&[("q", q.as_str())])
                .header(reqwest::header::AUTHORIZATION, &*token)
        })
    })
    .await?;

    comparison.print_latency_report("directory", TARGET_P99_US);
    let verdict = comparison.check_errors();
    drop(service);
    pool.close().await;
    verdict
}

/// Every query once before measuring: 200s, and all but the miss find someone; returns the
/// mean number of items per answer.
async fn check_all(url: &str, token: &str, queries: &[String]) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let mut items = 0usize;
    for q in queries {
        let response = client
            .get(url)
            .query(&[("q", q.as_str())])
            .header(reqwest::header::AUTHORIZATION, token)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        let found = body["items"]
            .as_array()
            .filter(|_| status == 200)
            .ok_or_else(|| anyhow::anyhow!("unexpected directory answer: {status} {body}"))?
            .len();
        anyhow::ensure!(
            found > 0 || q == "qxz",
            "`{q}` found nobody: the seeded directory or the search is wrong"
        );
        items += found;
    }
    Ok(items as f64 / queries.len() as f64)
}
