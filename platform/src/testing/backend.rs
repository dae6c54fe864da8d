//! Tests that run once per storage backend: the same test code against PostgreSQL and against
//! the SQLite files of embedded mode ([`on_each_backend!`](crate::on_each_backend)).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::sqlite::SqliteFile;
use crate::store::{EventStore, PgEventStore, SqliteEventStore};

use super::TestDatabase;

/// Which storage a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A directory of SQLite files of one test, removed with the value.
#[derive(Debug)]
pub struct TestDirectory {
    pub path: PathBuf,
}

impl TestDirectory {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("meetings_test_{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("a test directory");
        Self { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Default for TestDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDirectory {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.path).ok();
    }
}

/// The event store of one test on `backend`, with the storage under it for raw statements.
pub struct TestStore {
    pub backend: Backend,
    pub store: Arc<dyn EventStore>,
    pub postgres: Option<TestDatabase>,
    pub sqlite: Option<(SqliteFile, TestDirectory)>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let db = TestDatabase::new().await;
                Self {
                    backend,
                    store: Arc::new(PgEventStore::new(db.pool.clone())),
                    postgres: Some(db),
                    sqlite: None,
                }
            }
            Backend::Sqlite => {
                let directory = TestDirectory::new();
                let file = open_events(&directory.file("events.db")).await;
                Self {
                    backend,
                    store: Arc::new(SqliteEventStore::new(file.clone())),
                    postgres: None,
                    sqlite: Some((file, directory)),
                }
            }
        }
    }

    /// Runs one statement as a user with database rights would, bypassing the store.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match (&self.postgres, &self.sqlite) {
            (Some(db), _) => Ok(sqlx::query(sql).execute(&db.pool).await?.rows_affected()),
            (_, Some((file, _))) => Ok(sqlx::query(sql)
                .execute(&file.writer)
                .await?
                .rows_affected()),
            _ => unreachable!("BUG: a test store has a backend"),
        }
    }
}

/// The event log file of embedded mode at `path`, migrated.
pub async fn open_events(path: &Path) -> SqliteFile {
    SqliteFile::open_events(path)
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e:#}", path.display()))
}

/// Declares each named `async fn name(backend: Backend)` of the enclosing module as two tests,
/// `postgres::name` and `sqlite::name`; after `sync:`, each `fn name(backend: Backend)` (a
/// test that runs its own runtime, such as a property test).
#[macro_export]
macro_rules! on_each_backend {
    (sync: $($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::testing::Backend::Postgres)
                }
            )*
        }
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::testing::Backend::Sqlite)
                }
            )*
        }
    };
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::testing::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::testing::Backend::Sqlite).await
                }
            )*
        }
    };
}
