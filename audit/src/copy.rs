//! Reading PostgreSQL's binary `COPY … TO STDOUT (FORMAT binary)` output row by row.
//!
//! The audit scans read the whole event log; `COPY` streams it at the server's full speed
//! (no per-row protocol messages beyond the data, no text escaping), and the binary format
//! needs no unescaping either: each field is a length and its bytes.

use bytes::{Buf, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use platform::store::Position;
use uuid::Uuid;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("malformed COPY data: {0}")]
    Malformed(String),
}

/// The rows of a binary `COPY` stream.
pub struct BinaryRows<'c> {
    stream: BoxStream<'c, Result<Bytes, sqlx::Error>>,
    buffer: BytesMut,
    started: bool,
    finished: bool,
}

/// One row: its fields, `None` for SQL NULL.
pub type Row = Vec<Option<Bytes>>;

impl<'c> BinaryRows<'c> {
    pub fn new(stream: BoxStream<'c, Result<Bytes, sqlx::Error>>) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            started: false,
            finished: false,
        }
    }

    /// Makes at least `n` bytes available; `false` when the stream ended first.
    async fn fill(&mut self, n: usize) -> Result<bool, CopyError> {
        while self.buffer.len() < n {
            match self.stream.next().await {
                Some(chunk) => self.buffer.extend_from_slice(&chunk?),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    async fn need(&mut self, n: usize) -> Result<(), CopyError> {
        if self.fill(n).await? {
            Ok(())
        } else {
            Err(CopyError::Malformed("the stream ended inside a row".into()))
        }
    }

    /// The next row, or `None` after the last one.
    pub async fn next_row(&mut self) -> Result<Option<Row>, CopyError> {
        if self.finished {
            return Ok(None);
        }
        if !self.started {
            self.need(SIGNATURE.len() + 8).await?;
            if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
                return Err(CopyError::Malformed("not binary COPY data".into()));
            }
            self.buffer.advance(SIGNATURE.len() + 4);
            let extension = self.buffer.get_u32() as usize;
            self.need(extension).await?;
            self.buffer.advance(extension);
            self.started = true;
        }
        self.need(2).await?;
        let fields = self.buffer.get_i16();
        if fields < 0 {
            self.finished = true;
            // Drain the stream so the connection is ready for its next statement.
            while let Some(chunk) = self.stream.next().await {
                chunk?;
            }
            return Ok(None);
        }
        let mut row = Vec::with_capacity(fields as usize);
        for _ in 0..fields {
            self.need(4).await?;
            let length = self.buffer.get_i32();
            if length < 0 {
                row.push(None);
                continue;
            }
            let length = length as usize;
            self.need(length).await?;
            row.push(Some(self.buffer.split_to(length).freeze()));
        }
        Ok(Some(row))
    }
}

/// Field decoders for the binary forms of the types the audit scans read.
pub mod field {
    use super::*;

    fn malformed(what: &str) -> CopyError {
        CopyError::Malformed(format!("bad {what} field"))
    }

    pub fn required<'a>(row: &'a Row, i: usize, what: &str) -> Result<&'a Bytes, CopyError> {
        row.get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| CopyError::Malformed(format!("{what} is missing")))
    }

    pub fn text(bytes: &Bytes) -> Result<String, CopyError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("text"))
    }

    pub fn int8(bytes: &Bytes) -> Result<i64, CopyError> {
        let array: [u8; 8] = bytes[..].try_into().map_err(|_| malformed("bigint"))?;
        Ok(i64::from_be_bytes(array))
    }

    pub fn uuid(bytes: &Bytes) -> Result<Uuid, CopyError> {
        Uuid::from_slice(bytes).map_err(|_| malformed("uuid"))
    }

    /// `timestamptz`: microseconds since 2000-01-01 00:00 UTC.
    pub fn timestamptz(bytes: &Bytes) -> Result<DateTime<Utc>, CopyError> {
        const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
        DateTime::from_timestamp_micros(int8(bytes)? + POSTGRES_EPOCH_MICROS)
            .ok_or_else(|| malformed("timestamptz"))
    }

    /// `jsonb`: a format version byte (1) and the JSON text.
    pub fn jsonb(bytes: &Bytes) -> Result<Bytes, CopyError> {
        match bytes.first() {
            Some(1) => Ok(bytes.slice(1..)),
            _ => Err(malformed("jsonb")),
        }
    }

    /// A global position from its `xid8` and `bigint` columns.
    pub fn position(transaction_id: &Bytes, id: &Bytes) -> Result<Position, CopyError> {
        Ok(Position {
            transaction_id: int8(transaction_id)? as u64,
            id: int8(id)?,
        })
    }
}
