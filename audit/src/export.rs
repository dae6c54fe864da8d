//! `meetings events export`: the log in global order as JSON lines or CSV, streamed from a
//! single `COPY` so memory stays constant whatever its size.
//!
//! PostgreSQL renders each line: the rows leave the server already in their final form and
//! are copied to the output as they arrive. Only events below the oldest running transaction
//! are exported (like every reader of the global order), so an export never misses an event
//! that commits late and a second export from its last position continues exactly after it.
//!
//! Any other store (the SQLite file of embedded mode) is read a page at a time through
//! [`EventStore::read_all`] and rendered here, with the same fields in the same forms.

use std::str::FromStr;

use chrono::SecondsFormat;
use futures::StreamExt;
use platform::store::{EventStore, Position, StoredEvent};
use sqlx::PgPool;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::copy::{BinaryRows, CopyError};
use crate::{Kind, Point};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, the fields of a history entry without `summary`.
    Jsonl,
    /// RFC 4180 CSV with a header row; payload and metadata as JSON text.
    Csv,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "jsonl" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format '{other}' (expected jsonl or csv)")),
        }
    }
}

/// Which events.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// At or after (a time or a position).
    pub from: Option<Point>,
    /// At or before.
    pub to: Option<Point>,
    pub kind: Option<Kind>,
    /// Caused by this user (`metadata.actor_id`).
    pub actor: Option<Uuid>,
}

impl Filter {
    fn sql(&self) -> String {
        let mut conditions =
            vec!["transaction_id < pg_snapshot_xmin(pg_current_snapshot())".to_string()];
        if let Some(from) = &self.from {
            conditions.push(from.sql(true));
        }
        if let Some(to) = &self.to {
            conditions.push(to.sql(false));
        }
        if let Some(kind) = self.kind {
            conditions.push(format!("aggregate_type = '{}'", kind.as_str()));
        }
        if let Some(actor) = self.actor {
            conditions.push(format!("metadata->>'actor_id' = '{actor}'"));
        }
        conditions.join(" AND ")
    }
}

/// The position as `Position` prints it: 32 hexadecimal digits.
const POSITION: &str =
    "lpad(to_hex(transaction_id::text::bigint), 16, '0') || lpad(to_hex(id), 16, '0')";
/// RFC 3339 in UTC with microseconds, as `history::Entry` prints it.
const RECORDED_AT: &str =
    "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

fn statement(filter: &Filter, format: Format) -> String {
    let conditions = filter.sql();
    match format {
        Format::Jsonl => format!(
            "COPY (SELECT json_build_object(\
                'position', {POSITION}, 'aggregate_type', aggregate_type, \
                'aggregate_id', aggregate_id, 'sequence', sequence, 'event_type', event_type, \
                'event_version', event_version, 'recorded_at', {RECORDED_AT}, \
                'actor_id', metadata->'actor_id', 'payload', payload, 'metadata', metadata, \
                'hash', encode(hash, 'hex'), 'prev_hash', encode(prev_hash, 'hex'))::text \
             FROM events WHERE {conditions} ORDER BY transaction_id, id) \
             TO STDOUT (FORMAT binary)"
        ),
        Format::Csv => format!(
            "COPY (SELECT {POSITION} AS position, aggregate_type, aggregate_id, sequence, \
                event_type, event_version, {RECORDED_AT} AS recorded_at, \
                metadata->>'actor_id' AS actor_id, metadata->>'event_id' AS event_id, \
                metadata->>'request_id' AS request_id, \
                metadata->>'correlation_id' AS correlation_id, \
                metadata->>'causation_id' AS causation_id, payload::text AS payload, \
                metadata::text AS metadata, encode(hash, 'hex') AS hash, \
                encode(prev_hash, 'hex') AS prev_hash \
             FROM events WHERE {conditions} ORDER BY transaction_id, id) \
             TO STDOUT (FORMAT csv, HEADER)"
        ),
    }
}

/// Writes the events `filter` selects to `out`; answers how many. `progress` hears the count
/// so far.
pub async fn export(
    pool: &PgPool,
    filter: &Filter,
    format: Format,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, CopyError> {
    let mut conn = pool.acquire().await?;
    let statement = statement(filter, format);
    let mut count = 0u64;
    let write_error = |e: std::io::Error| CopyError::Malformed(format!("cannot write: {e}"));
    match format {
        Format::Jsonl => {
            let mut rows = BinaryRows::new(conn.copy_out_raw(&statement).await?);
            let mut buffer = Vec::with_capacity(1 << 16);
            while let Some(row) = rows.next_row().await? {
                let line = crate::copy::field::required(&row, 0, "line")?;
                buffer.extend_from_slice(line);
                buffer.push(b'\n');
                count += 1;
                if buffer.len() >= 1 << 16 {
                    out.write_all(&buffer).await.map_err(write_error)?;
                    buffer.clear();
                    progress(count);
                }
            }
            out.write_all(&buffer).await.map_err(write_error)?;
        }
        Format::Csv => {
            // Lines are rows: no exported field holds a raw line break (JSON escapes them).
            let mut stream = conn.copy_out_raw(&statement).await?;
            let mut header = true;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                let lines = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                count += lines;
                if header && lines > 0 {
                    count -= 1;
                    header = false;
                }
                out.write_all(&chunk).await.map_err(write_error)?;
                progress(count);
            }
        }
    }
    out.flush().await.map_err(write_error)?;
    progress(count);
    Ok(count)
}

/// Where an export reads: PostgreSQL's `COPY`, or any store's global-order reader.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Postgres(&'a PgPool),
    Store(&'a dyn EventStore),
}

/// Writes the events `filter` selects from `source` to `out`; answers how many.
pub async fn export_from(
    source: Source<'_>,
    filter: &Filter,
    format: Format,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, CopyError> {
    match source {
        Source::Postgres(pool) => export(pool, filter, format, out, progress).await,
        Source::Store(store) => export_store(store, filter, format, out, progress).await,
    }
}

/// Events read from a store per page.
const PAGE: i64 = 2000;

impl Filter {
    fn includes(&self, event: &StoredEvent) -> bool {
        let after_from = match self.from {
            None => true,
            Some(Point::Time(time)) => event.recorded_at >= time,
            Some(Point::Position(position)) => event.position >= position,
        };
        after_from
            && self.to.is_none_or(|to| to.includes(event))
            && self
                .kind
                .is_none_or(|kind| event.aggregate_type == kind.as_str())
            && self
                .actor
                .is_none_or(|actor| event.metadata.actor_id == Some(actor))
    }

    /// Whether no event from `event` on can be selected: the log is read in position order,
    /// so nothing past a `--to` position matches (recorded times need not grow with
    /// positions, so a `--to` time reads on to the end).
    fn past_the_end(&self, event: &StoredEvent) -> bool {
        matches!(self.to, Some(Point::Position(to)) if event.position > to)
    }
}

/// An export line: the fields of a history entry without `summary`, in its order and forms.
#[derive(serde::Serialize)]
struct Line<'a> {
    position: Position,
    aggregate_type: &'a str,
    aggregate_id: Uuid,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    recorded_at: String,
    actor_id: Option<Uuid>,
    payload: &'a serde_json::Value,
    metadata: &'a platform::store::EventMetadata,
    hash: String,
    prev_hash: Option<String>,
}

impl<'a> Line<'a> {
    fn new(event: &'a StoredEvent) -> Self {
        Self {
            position: event.position,
            aggregate_type: &event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            recorded_at: event
                .recorded_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            actor_id: event.metadata.actor_id,
            payload: &event.payload,
            metadata: &event.metadata,
            hash: hex::encode(&event.hash),
            prev_hash: event.prev_hash.as_ref().map(hex::encode),
        }
    }
}

/// The CSV columns, as the PostgreSQL export names them.
const CSV_HEADER: &[&str] = &[
    "position",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "recorded_at",
    "actor_id",
    "event_id",
    "request_id",
    "correlation_id",
    "causation_id",
    "payload",
    "metadata",
    "hash",
    "prev_hash",
];

fn csv_record(event: &StoredEvent) -> Result<Vec<String>, serde_json::Error> {
    let line = Line::new(event);
    let metadata = &event.metadata;
    Ok(vec![
        line.position.to_string(),
        event.aggregate_type.clone(),
        event.aggregate_id.to_string(),
        event.sequence.to_string(),
        event.event_type.clone(),
        event.event_version.clone(),
        line.recorded_at,
        metadata.actor_id.map(|a| a.to_string()).unwrap_or_default(),
        metadata.event_id.to_string(),
        metadata.request_id.clone(),
        metadata.correlation_id.clone(),
        metadata.causation_id.clone(),
        serde_json::to_string(&event.payload)?,
        serde_json::to_string(metadata)?,
        line.hash,
        line.prev_hash.unwrap_or_default(),
    ])
}

/// [`export`] over any store: pages of the global order, filtered and rendered here.
async fn export_store(
    store: &dyn EventStore,
    filter: &Filter,
    format: Format,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, CopyError> {
    let malformed = |e: &dyn std::fmt::Display| CopyError::Malformed(e.to_string());
    let write_error = |e: std::io::Error| CopyError::Malformed(format!("cannot write: {e}"));
    // Start just before a `--from` position instead of at the beginning of the log.
    let mut after = match filter.from {
        Some(Point::Position(from)) if from.id > 0 => Some(Position {
            transaction_id: from.transaction_id,
            id: from.id - 1,
        }),
        _ => None,
    };
    // Lines gather here a page at a time, then go out.
    let mut buffer = Vec::with_capacity(1 << 16);
    let mut csv_writer = csv::WriterBuilder::new();
    csv_writer
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'));
    if format == Format::Csv {
        let mut header = csv_writer.from_writer(&mut buffer);
        header.write_record(CSV_HEADER).map_err(|e| malformed(&e))?;
        header.flush().map_err(write_error)?;
    }
    let mut count = 0u64;
    let mut done = false;
    while !done {
        let page = store
            .read_all(after, PAGE)
            .await
            .map_err(|e| malformed(&e))?;
        done = (page.len() as i64) < PAGE;
        after = page.last().map(|event| event.position).or(after);
        let end = page
            .iter()
            .position(|event| filter.past_the_end(event))
            .unwrap_or(page.len());
        done |= end < page.len();
        let selected = page[..end].iter().filter(|event| filter.includes(event));
        match format {
            Format::Jsonl => {
                for event in selected {
                    serde_json::to_writer(&mut buffer, &Line::new(event))
                        .map_err(|e| malformed(&e))?;
                    buffer.push(b'\n');
                    count += 1;
                }
            }
            Format::Csv => {
                let mut rows = csv_writer.from_writer(&mut buffer);
                for event in selected {
                    let record = csv_record(event).map_err(|e| malformed(&e))?;
                    rows.write_record(&record).map_err(|e| malformed(&e))?;
                    count += 1;
                }
                rows.flush().map_err(write_error)?;
            }
        }
        out.write_all(&buffer).await.map_err(write_error)?;
        buffer.clear();
        progress(count);
    }
    out.flush().await.map_err(write_error)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conditions_with_nothing_but_validated_values() {
        let filter = Filter {
            from: Some("000000000000002a0000000000000007".parse().unwrap()),
            to: Some("2026-12-02T10:00:00Z".parse().unwrap()),
            kind: Some(Kind::Meeting),
            actor: Some(Uuid::nil()),
        };
        assert_eq!(
            filter.sql(),
            "transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             AND (transaction_id, id) >= ('42'::xid8, 7) \
             AND recorded_at <= '2026-12-02T10:00:00.000000Z'::timestamptz \
             AND aggregate_type = 'meeting' \
             AND metadata->>'actor_id' = '00000000-0000-0000-0000-000000000000'"
        );
    }
}
