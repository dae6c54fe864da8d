//! Harness for end-to-end tests: the whole system in one test process, on either backend
//! ([`Stack`]): the distributed pipeline against a real PostgreSQL (fresh database per test)
//! and a real NATS server (a stream per test, or a server the test starts and restarts
//! itself), or embedded mode on the SQLite files of a test directory.
//!
//! The services start through their own `build`, as their binaries do ([`services`]). Relay
//! and projector run as tasks that a test can kill (abort, no graceful shutdown) and start
//! again, to inject crashes at arbitrary points.

pub mod calendar;
mod own_nats;
pub mod own_postgres;
pub mod processes;
pub mod services;
mod stack;
pub mod ws;

use platform::db::sqlite::SqliteFile;
use sqlx::{Column, Row, TypeInfo, ValueRef};

pub use own_nats::OwnNats;
pub use platform::testing::{nats_client, nats_url, Backend};
pub use stack::{KilledOnDrop, Stack};

/// Every read model of a database as comparable text, in a stable order.
pub async fn read_model_snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    let queries = [
        "SELECT to_jsonb(t)::text FROM rm_users t ORDER BY id",
        "SELECT to_jsonb(t)::text FROM rm_meetings t ORDER BY id",
        "SELECT to_jsonb(t)::text FROM rm_meeting_attendees t ORDER BY meeting_id, user_id",
        // Text, not jsonb: the stored document must be the very same bytes.
        "SELECT row_to_json(t)::text FROM rm_meeting_documents t ORDER BY meeting_id",
        "SELECT to_jsonb(t)::text FROM rm_agenda t ORDER BY user_id, meeting_id",
        "SELECT to_jsonb(t)::text FROM rm_chat_messages t ORDER BY meeting_id, message_id",
        "SELECT to_jsonb(t)::text FROM rm_changes t ORDER BY position",
        "SELECT to_jsonb(t)::text FROM projection_sequences t ORDER BY aggregate_type, aggregate_id",
    ];
    let mut rows = vec![];
    for query in queries {
        let mut table: Vec<String> = sqlx::query_scalar(query).fetch_all(pool).await.unwrap();
        rows.push(format!("-- {query} ({} rows)", table.len()));
        rows.append(&mut table);
    }
    rows
}

/// Every read model of an embedded installation's read-model file as comparable text: the
/// rows of each table as JSON, sorted (row order on disk is not a property of the models).
pub async fn sqlite_read_model_snapshot(read_models: &SqliteFile) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND (name LIKE 'rm\\_%' ESCAPE '\\' OR name = 'projection_sequences') ORDER BY name",
    )
    .fetch_all(&read_models.reader)
    .await
    .unwrap();
    let mut rows = vec![];
    for table in tables {
        let mut table_rows: Vec<String> = sqlx::query(&format!("SELECT * FROM \"{table}\""))
            .fetch_all(&read_models.reader)
            .await
            .unwrap()
            .iter()
            .map(sqlite_row_text)
            .collect();
        table_rows.sort();
        rows.push(format!("-- {table} ({} rows)", table_rows.len()));
        rows.append(&mut table_rows);
    }
    rows
}

fn sqlite_row_text(row: &sqlx::sqlite::SqliteRow) -> String {
    let mut fields = serde_json::Map::new();
    for column in row.columns() {
        let raw = row.try_get_raw(column.ordinal()).unwrap();
        let value = if raw.is_null() {
            serde_json::Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" => row.get::<i64, _>(column.ordinal()).into(),
                "REAL" => row.get::<f64, _>(column.ordinal()).into(),
                "BLOB" => format!("{:x?}", row.get::<Vec<u8>, _>(column.ordinal())).into(),
                _ => row.get::<String, _>(column.ordinal()).into(),
            }
        };
        fields.insert(column.name().to_owned(), value);
    }
    serde_json::Value::Object(fields).to_string()
}
