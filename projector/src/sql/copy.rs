//! Appending rows with `COPY … FROM STDIN (FORMAT binary)`: what the bulk build of a replay
//! writes to the tables it only appends to (`rm_changes`, `rm_chat_messages`: two rows of
//! three it writes). PostgreSQL inserts copied rows a page at a time (one write-ahead log
//! record per page rather than per row) and reads binary fields without parsing them, where
//! an `INSERT … SELECT FROM unnest(…)` built arrays, unnested them and inserted row by row.
//!
//! The format: PostgreSQL's documentation, "COPY", section "Binary Format".

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::rows::{ChangeRow, ChatRow};

/// The OID of `uuid`, named in each binary `uuid[]`.
const UUID_OID: u32 = 2950;
/// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in microseconds since the Unix epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows in PostgreSQL's binary copy format, field by field.
struct CopyRows {
    buffer: Vec<u8>,
}

impl CopyRows {
    fn new(capacity: usize) -> Self {
        let mut buffer = Vec::with_capacity(capacity);
        // Signature, flags (no OIDs), header extension length.
        buffer.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buffer.extend_from_slice(&0i32.to_be_bytes());
        buffer.extend_from_slice(&0i32.to_be_bytes());
        CopyRows { buffer }
    }

    fn row(&mut self, fields: i16) {
        self.buffer.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.buffer.extend_from_slice(bytes);
    }

    fn length(&mut self, length: usize) {
        let length = i32::try_from(length).expect("BUG: a field over 2 GiB");
        self.buffer.extend_from_slice(&length.to_be_bytes());
    }

    fn uuid(&mut self, id: Uuid) {
        self.field(id.as_bytes());
    }

    fn text(&mut self, text: &str) {
        self.field(text.as_bytes());
    }

    fn int8(&mut self, n: i64) {
        self.field(&n.to_be_bytes());
    }

    fn timestamptz(&mut self, at: DateTime<Utc>) {
        self.int8(at.timestamp_micros() - POSTGRES_EPOCH_MICROS);
    }

    /// `jsonb`: a version byte (1), then the JSON text.
    fn jsonb(&mut self, json: &str) {
        self.length(json.len() + 1);
        self.buffer.push(1);
        self.buffer.extend_from_slice(json.as_bytes());
    }

    /// A one-dimensional `uuid[]` without NULLs (no dimension when empty, as PostgreSQL
    /// sends `'{}'`).
    fn uuid_array(&mut self, ids: &[Uuid]) {
        let dimensions: i32 = if ids.is_empty() { 0 } else { 1 };
        let header = 12 + 8 * dimensions as usize;
        self.length(header + ids.len() * (4 + 16));
        self.buffer.extend_from_slice(&dimensions.to_be_bytes());
        self.buffer.extend_from_slice(&0i32.to_be_bytes());
        self.buffer.extend_from_slice(&UUID_OID.to_be_bytes());
        if !ids.is_empty() {
            self.length(ids.len());
            self.buffer.extend_from_slice(&1i32.to_be_bytes());
        }
        for id in ids {
            self.uuid(*id);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buffer.extend_from_slice(&(-1i16).to_be_bytes());
        self.buffer
    }
}

/// Appends `rows` to `rm_changes` (of the connection's `search_path`).
pub async fn append_changes(conn: &mut PgConnection, rows: &[ChangeRow]) -> sqlx::Result<()> {
    let statement = "COPY rm_changes (position, event_id, event_type, aggregate_type, \
                     aggregate_id, sequence, recorded_at, data, audience) \
                     FROM STDIN (FORMAT binary)";
    append(conn, statement, rows, 512, |copy, row| {
        copy.row(9);
        copy.text(&row.position);
        copy.uuid(row.event_id);
        copy.text(&row.event_type);
        copy.text(&row.aggregate_type);
        copy.uuid(row.aggregate_id);
        copy.int8(row.sequence);
        copy.timestamptz(row.recorded_at);
        copy.jsonb(&row.data);
        copy.uuid_array(&row.audience);
    })
    .await
}

/// Appends `rows` to `rm_chat_messages` (of the connection's `search_path`).
pub async fn append_chat(conn: &mut PgConnection, rows: &[ChatRow]) -> sqlx::Result<()> {
    let statement = "COPY rm_chat_messages (meeting_id, message_id, author_id, text, posted_at, \
                     position) FROM STDIN (FORMAT binary)";
    append(conn, statement, rows, 256, |copy, row| {
        copy.row(6);
        copy.uuid(row.meeting_id);
        copy.uuid(row.message_id);
        copy.uuid(row.author_id);
        copy.text(&row.text);
        copy.timestamptz(row.posted_at);
        copy.text(&row.position);
    })
    .await
}

/// Copies `rows`, each written by `write` (about `row_size` bytes), with `statement`; nothing
/// when there are none.
async fn append<R>(
    conn: &mut PgConnection,
    statement: &str,
    rows: &[R],
    row_size: usize,
    write: impl Fn(&mut CopyRows, &R),
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = CopyRows::new(rows.len() * row_size);
    for row in rows {
        write(&mut copy, row);
    }
    let mut sending = conn.copy_in_raw(statement).await?;
    sending.send(copy.finish()).await?;
    sending.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_carry_their_dimension_unless_empty_and_timestamps_count_from_2000() {
        let id = Uuid::from_u128(0x0102);
        let mut copy = CopyRows { buffer: Vec::new() };
        copy.uuid_array(&[id]);
        let mut expected = vec![0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x0b, 0x86];
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 16]);
        expected.extend_from_slice(id.as_bytes());
        assert_eq!(copy.buffer, expected);

        let mut copy = CopyRows { buffer: Vec::new() };
        copy.uuid_array(&[]);
        assert_eq!(
            copy.buffer,
            [0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0x86]
        );

        let mut copy = CopyRows { buffer: Vec::new() };
        copy.timestamptz("2000-01-01T00:00:01Z".parse().unwrap());
        assert_eq!(copy.buffer, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]);
    }
}
