//! A database of its own per run (and a stream, for the pipeline), dropped at the end: the
//! test harness's scratch resources (`platform::testing`), with the bench's options.

use platform::bus::StreamName;
use platform::testing::ScratchStream;
use sqlx::PgPool;

/// `meetings_bench_<random>` on the server of the admin URL; empty until migrated.
pub use platform::testing::ScratchDatabase as BenchDatabase;

/// The PostgreSQL server the bench databases are created on: shared by every benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct PostgresOptions {
    /// Any database on the PostgreSQL server; the bench database is created beside it.
    #[arg(
        long = "admin-url",
        visible_alias = "database-url",
        env = "MEETINGS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
}

/// Where the bench databases go, and the baseline tool.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOptions {
    #[command(flatten)]
    pub postgres: PostgresOptions,
    /// The pgbench executable.
    #[arg(long, default_value = "pgbench")]
    pub pgbench: String,
    /// pgbench threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pub pgbench_threads: usize,
}

/// Where the benchmarks that run the whole pipeline put their database and stream.
#[derive(clap::Args, Debug, Clone)]
pub struct StackOptions {
    /// NATS with JetStream.
    #[arg(
        long,
        env = "MEETINGS_BENCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    #[command(flatten)]
    pub postgres: PostgresOptions,
}

/// Creates a fresh bench database, runs `body` on it and drops it, whatever `body` returned.
pub async fn with_database<F, Fut>(admin_url: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(BenchDatabase) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let database = BenchDatabase::create(admin_url, "meetings_bench").await?;
    eprintln!("bench database: {}", database.name);
    let outcome = body(database.clone()).await;
    if let Err(error) = database.drop_database().await {
        eprintln!("warning: could not drop {}: {error:#}", database.name);
    }
    outcome
}

/// Like [`with_database`], with a fresh JetStream stream `BENCH<random>` on the stack's NATS
/// too; the stream is deleted afterwards as well.
pub async fn with_database_and_stream<F, Fut>(stack: &StackOptions, body: F) -> anyhow::Result<()>
where
    F: FnOnce(BenchDatabase, async_nats::jetstream::Context, StreamName) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let stream = ScratchStream::create(&stack.nats_url, "BENCH").await?;
    eprintln!("stream: {}", stream.name.as_str());
    let outcome = with_database(&stack.postgres.admin_url, |database| {
        body(database, stream.js.clone(), stream.name.clone())
    })
    .await;
    if let Err(error) = stream.delete().await {
        eprintln!("warning: {error:#}");
    }
    outcome
}

/// Creates the insert baseline's table.
pub async fn prepare(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE bench_baseline (
             id         bigserial   PRIMARY KEY,
             payload    jsonb       NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(pool)
    .await?;
    Ok(())
}
