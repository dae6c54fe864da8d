//! The read models do not depend on the backend: the generated history with every event type,
//! projected into PostgreSQL and into the SQLite file of embedded mode (in different cuts),
//! comes out the same, table by table and row by row, once each backend's encoding (ids as
//! text or bytes, times as text or microseconds, JSON as a value or text, arrays as a column
//! or rows) is read back into one form.

use chrono::{DateTime, SecondsFormat, Utc};
use platform::bus::EventEnvelope;
use platform::db::sqlite::SqliteFile;
use platform::testing::history::{history, Random};
use platform::testing::{TestDatabase, TestDirectory};
use projector::projection::lead;
use projector::{apply_batch, BatchOutcome};
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, PgPool, Row, TypeInfo, ValueRef};
use uuid::Uuid;

/// Tables and the order their rows are compared in.
const TABLES: &[(&str, &str)] = &[
    ("rm_users", "id"),
    ("rm_meetings", "id"),
    ("rm_meeting_attendees", "meeting_id, user_id"),
    ("rm_meeting_documents", "meeting_id"),
    ("rm_agenda", "user_id, meeting_id"),
    ("rm_chat_messages", "meeting_id, message_id"),
    ("rm_changes", "position"),
    (
        "projection_sequences",
        "projection, aggregate_type, aggregate_id",
    ),
    // Text keys collate differently on the two; sorted again below.
    ("rm_user_prefixes", "prefix, sort_name, user_id"),
];

/// Columns holding JSON (as `jsonb`/`json` on PostgreSQL, as text on SQLite).
const JSON_COLUMNS: &[&str] = &[
    "working_hours",
    "recurrence",
    "occurrences",
    "occurrence_responses",
    "series",
    "data",
    "members",
    "body",
];

/// Columns one backend keeps for its own indexes only.
const INDEX_COLUMNS: &[(&str, &str)] = &[
    ("rm_users", "search_prefixes"),
    ("rm_users", "sort_name"),
    ("rm_meetings", "title_key"),
];

/// Whether `table`'s `column` is compared.
fn compared(table: &str, column: &str) -> bool {
    !INDEX_COLUMNS.contains(&(table, column))
}

fn sorted(table: &str, mut rows: Vec<Value>) -> Vec<Value> {
    if table == "rm_user_prefixes" {
        rows.sort_by_key(|row| row.to_string());
    }
    rows
}

fn time(value: DateTime<Utc>) -> Value {
    Value::String(value.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn postgres_value(column: &str, value: Value) -> Value {
    match value {
        Value::String(text) if column.ends_with("_at") => {
            time(DateTime::parse_from_rfc3339(&text).unwrap().to_utc())
        }
        Value::String(text) if JSON_COLUMNS.contains(&column) => {
            serde_json::from_str(&text).unwrap()
        }
        other => other,
    }
}

fn sqlite_value(column: &str, row: &SqliteRow, index: usize) -> Value {
    let raw = row.try_get_raw(index).unwrap();
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = raw.type_info().name().to_owned();
    match type_name.as_str() {
        "BLOB" => {
            let bytes: Vec<u8> = row.get(index);
            Value::String(Uuid::from_slice(&bytes).unwrap().to_string())
        }
        "INTEGER" if column.ends_with("_at") => {
            time(platform::db::sqlite::from_micros(row.get(index)))
        }
        "INTEGER"
            if matches!(
                column,
                "active" | "optional" | "is_organizer" // booleans
            ) =>
        {
            Value::Bool(row.get::<i64, _>(index) != 0)
        }
        "INTEGER" => Value::from(row.get::<i64, _>(index)),
        _ if JSON_COLUMNS.contains(&column) => {
            serde_json::from_str(&row.get::<String, _>(index)).unwrap()
        }
        _ => Value::String(row.get(index)),
    }
}

type Dump = Vec<(&'static str, Vec<Value>)>;

async fn postgres_dump(pool: &PgPool) -> Dump {
    let mut dump = Vec::new();
    for (table, key) in TABLES {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t) FROM {table} t ORDER BY {key}"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        let rows = rows
            .into_iter()
            .map(|row| {
                let Value::Object(row) = row else {
                    unreachable!()
                };
                let mut row: Map<String, Value> = row
                    .into_iter()
                    .filter(|(c, _)| compared(table, c))
                    .map(|(c, v)| {
                        let v = postgres_value(&c, v);
                        (c, v)
                    })
                    .collect();
                if let Some(Value::Array(audience)) = row.get_mut("audience") {
                    audience.sort_by_key(|v| v.to_string());
                }
                Value::Object(row)
            })
            .collect();
        dump.push((*table, sorted(table, rows)));
    }
    dump
}

async fn sqlite_dump(file: &SqliteFile) -> Dump {
    let mut dump = Vec::new();
    for (table, key) in TABLES {
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .fetch_all(&file.reader)
            .await
            .unwrap();
        let mut out = Vec::new();
        for row in rows {
            let mut object = Map::new();
            for column in row.columns() {
                if compared(table, column.name()) {
                    object.insert(
                        column.name().to_owned(),
                        sqlite_value(column.name(), &row, column.ordinal()),
                    );
                }
            }
            if *table == "rm_changes" {
                // The audience is rows of its own table here.
                let audience: Vec<Vec<u8>> =
                    sqlx::query_scalar("SELECT user_id FROM rm_change_audience WHERE position = ?")
                        .bind(object["position"].as_str().unwrap())
                        .fetch_all(&file.reader)
                        .await
                        .unwrap();
                let mut audience: Vec<Value> = audience
                    .iter()
                    .map(|b| Value::String(Uuid::from_slice(b).unwrap().to_string()))
                    .collect();
                audience.sort_by_key(|v| v.to_string());
                object.insert("audience".into(), Value::Array(audience));
            }
            out.push(Value::Object(object));
        }
        dump.push((*table, sorted(table, out)));
    }
    dump
}

async fn project_into_postgres(pool: &PgPool, events: &[EventEnvelope]) {
    let upcasters = domain::upcasters::upcasters();
    let mut leader = lead(pool).await.unwrap().expect("no other projector");
    let outcome = apply_batch(&mut leader, events, None, &upcasters)
        .await
        .unwrap();
    assert_eq!(outcome.applied, events.len());
}

async fn project_into_sqlite(
    file: &SqliteFile,
    events: &[EventEnvelope],
    mut cut: impl FnMut() -> usize,
) -> Vec<BatchOutcome> {
    let upcasters = domain::upcasters::upcasters();
    let mut writer = file.writer.acquire().await.unwrap();
    let mut outcomes = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(cut().clamp(1, rest.len()));
        outcomes.push(
            apply_batch(&mut *writer, batch, None, &upcasters)
                .await
                .unwrap(),
        );
        rest = tail;
    }
    outcomes
}

#[tokio::test]
async fn sqlite_read_models_equal_the_postgresql_ones_row_by_row() {
    let events = history(0x5EED);
    let postgres = TestDatabase::new().await;
    project_into_postgres(&postgres.pool, &events).await;
    let expected = postgres_dump(&postgres.pool).await;

    let directory = TestDirectory::new();
    let file = SqliteFile::open_read_models(&directory.file("read-models.db"))
        .await
        .unwrap();
    let mut random = Random(7);
    let outcomes = project_into_sqlite(&file, &events, || 1 + random.below(23)).await;
    assert_eq!(
        outcomes.iter().map(|o| o.applied).sum::<usize>(),
        events.len()
    );
    let actual = sqlite_dump(&file).await;
    for ((table, expected), (_, actual)) in expected.iter().zip(&actual) {
        assert!(!expected.is_empty(), "{table} has rows");
        assert_eq!(expected.len(), actual.len(), "{table}: row count");
        for (expected, actual) in expected.iter().zip(actual) {
            assert_eq!(expected, actual, "{table}");
        }
    }

    // Redelivered in other cuts: recognized by the sequences, nothing changes.
    let again = project_into_sqlite(&file, &events, || 9).await;
    assert!(again.iter().all(|o| o.applied == 0));
    assert_eq!(
        again.iter().map(|o| o.duplicates).sum::<usize>(),
        events.len()
    );
    assert_eq!(sqlite_dump(&file).await, actual);
}
