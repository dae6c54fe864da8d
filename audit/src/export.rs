//! `meetings events export`: the log in global order as JSON lines or CSV, streamed from a
//! single `COPY` so memory stays constant whatever its size.
//!
//! PostgreSQL renders each line: the rows leave the server already in their final form and
//! are copied to the output as they arrive. Only events below the oldest running transaction
//! are exported (like every reader of the global order), so an export never misses an event
//! that commits late and a second export from its last position continues exactly after it.

use std::str::FromStr;

use futures::StreamExt;
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
