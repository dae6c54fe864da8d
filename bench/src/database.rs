//! A dedicated, migrated database per run, dropped at the end.

use anyhow::Context;
use platform::bus::{ensure_stream, StreamName};
use sqlx::{Connection, PgConnection, PgPool};

/// Where the bench databases go, and the baseline tool: shared by every benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOptions {
    /// Any database on the PostgreSQL server; the bench database is created beside it.
    #[arg(
        long = "admin-url",
        visible_alias = "database-url",
        env = "MEETINGS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
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
    /// Any database on the PostgreSQL server; the bench database is created beside it.
    #[arg(
        long = "admin-url",
        visible_alias = "database-url",
        env = "MEETINGS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
}

/// Creates a fresh bench database, runs `body` on it and drops it, whatever `body` returned.
pub async fn with_database<F, Fut>(admin_url: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(BenchDatabase) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let database = BenchDatabase::create(admin_url).await?;
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
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(&stack.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", stack.nats_url))?;
    let js = async_nats::jetstream::new(client);
    let stream = StreamName::new(&format!("BENCH{}", uuid::Uuid::new_v4().simple()))?;
    ensure_stream(&js, &stream).await?;
    eprintln!("stream: {}", stream.as_str());
    let outcome = with_database(&stack.admin_url, |database| {
        body(database, js.clone(), stream.clone())
    })
    .await;
    if let Err(error) = js.delete_stream(stream.as_str()).await {
        eprintln!(
            "warning: could not delete stream {}: {error}",
            stream.as_str()
        );
    }
    outcome
}

/// `meetings_bench_<random>` on the server of `admin_url`.
#[derive(Clone)]
pub struct BenchDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl BenchDatabase {
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let mut connection = PgConnection::connect(admin_url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {admin_url}: {e}"))?;
        let name = format!("meetings_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        connection.close().await.ok();
        Ok(Self {
            url: replace_database(admin_url, &name),
            name,
            admin_url: admin_url.to_string(),
        })
    }

    /// Applies the service's migrations.
    pub async fn migrate(&self, pool: &PgPool) -> anyhow::Result<()> {
        platform::db::migrate(pool).await
    }

    /// Applies the service's migrations and creates the insert baseline's table.
    pub async fn prepare(&self, pool: &PgPool) -> anyhow::Result<()> {
        self.migrate(pool).await?;
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

    /// `DROP DATABASE … WITH (FORCE)`: ends any connection still open.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut connection = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut connection)
        .await?;
        connection.close().await.ok();
        Ok(())
    }
}

/// The same server URL with another database name; the query string is kept.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.rfind('/') {
        Some(index) if index > "postgres://".len() => &base[..index],
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            replace_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
