//! Databases of their own: one per test ([`TestDatabase`], migrated, dropped with the value)
//! or per benchmark run ([`ScratchDatabase`], dropped when the run says so).

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgPool};

use super::cleanup::run_detached;

/// Server used by tests; override with `MEETINGS_TEST_DATABASE_URL` (any database on the server;
/// the test databases are created beside it).
pub fn admin_url() -> String {
    std::env::var("MEETINGS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `<prefix>_<uuid>`, created beside the database of an admin URL; empty until migrated.
#[derive(Clone, Debug)]
pub struct ScratchDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let mut connection = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        connection.close().await.ok();
        Ok(Self {
            url: replace_database(admin_url, &name),
            name,
            admin_url: admin_url.to_string(),
        })
    }

    /// `DROP DATABASE … WITH (FORCE)`: ends the connections still open to it.
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

/// A migrated database that exists for the lifetime of this value.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    /// The test's own pool; services under test connect pools of their own.
    pub pool: PgPool,
    scratch: ScratchDatabase,
}

impl TestDatabase {
    /// Creates `meetings_test_<uuid>` and applies every migration.
    pub async fn new() -> Self {
        let admin = admin_url();
        let scratch = ScratchDatabase::create(&admin, "meetings_test")
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "tests need PostgreSQL at {admin} (set MEETINGS_TEST_DATABASE_URL, or start \
                     it: see README): {e:#}"
                )
            });
        let pool = crate::db::connect(&scratch.url, 20)
            .await
            .expect("test database pool");
        crate::db::migrate(&pool).await.expect("migrations");
        Self {
            name: scratch.name.clone(),
            url: scratch.url.clone(),
            pool,
            scratch,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends the pools' connections, which belong to the finished test.
        let scratch = self.scratch.clone();
        run_detached(move || async move {
            let _ = scratch.drop_database().await;
        });
    }
}

/// The same server URL with another database name; the query string is kept.
fn replace_database(url: &str, name: &str) -> String {
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
