//! `meetings events verify`: walks the whole log in global order and reports every event
//! whose stored hash does not match its content, every break of an aggregate's chain, and
//! every anchor the log no longer agrees with (see [`crate::anchor`]).
//!
//! What each check catches, for someone who edits the database but cannot recompute hashes
//! consistently with the anchors:
//! - an altered payload, metadata, type, time or sequence: the event's hash (exact position);
//! - a deleted or reordered event inside an aggregate: a sequence gap or a broken link at the
//!   next event of that aggregate (exact position);
//! - a deleted whole aggregate, or events moved in the global order: the running hash and
//!   count at the next anchor (the anchor's position; the events between the previous anchor
//!   and it are the suspects);
//! - a truncated tail: anchors beyond the end of the log (the first anchored position that is
//!   gone).
//!
//! The scan is one `COPY` in one snapshot; hashing runs on blocking threads beside it.

use std::collections::VecDeque;

use bytes::Bytes;
use platform::store::{event_hash, EventStore, HashInput, Position, StoreError, StoredEvent};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::anchor::{Anchor, AnchorLog, AnchorVerifier, Loaded};
use crate::copy::{field, BinaryRows, CopyError, Row};

mod walk;

use walk::Walk;

/// Where to start, and whose signatures the anchors must carry.
#[derive(Clone, Default)]
pub struct Options {
    /// Resume after the anchor at this position (a previous run's verified checkpoint)
    /// instead of from the first event.
    pub from: Option<Position>,
    /// Every anchor must be signed by this key (`--public-key`): then rewritten anchors show
    /// too, not only a log that disagrees with its anchors.
    pub signed_by: Option<std::sync::Arc<AnchorVerifier>>,
}

/// What kind of damage a problem shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The row cannot be read (not JSON, a missing column).
    Unreadable,
    /// The stored hash does not match the event's content and predecessor.
    HashMismatch,
    /// The event does not name its predecessor's hash.
    ChainBroken,
    /// The aggregate's sequence does not continue here: events before it are missing or
    /// out of order.
    SequenceGap,
    /// The number of events or the running hash up to an anchor differs.
    AnchorMismatch,
    /// The event an anchor was taken at is gone.
    AnchoredEventMissing,
    /// The log ends before its newest anchor.
    Truncated,
    /// The anchor is not signed by the key given to verify, or its signature does not match
    /// its content: the anchor itself was written or rewritten by someone without the key.
    AnchorSignature,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    /// The position the finding is about.
    pub position: Position,
    pub kind: ProblemKind,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<Uuid>,
    pub sequence: Option<i64>,
    pub detail: String,
}

/// What a run found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Events read.
    pub events: u64,
    /// Anchors compared.
    pub anchors: u64,
    /// The last position read.
    pub head: Option<Position>,
    /// The newest anchor the log agreed with: `--from` for the next run.
    pub verified_anchor: Option<Position>,
    /// The first [`MAX_PROBLEMS`] findings, in log order.
    pub problems: Vec<Problem>,
    /// All findings, including those not listed.
    pub problem_count: u64,
}

/// Findings listed in a report; more are counted.
pub const MAX_PROBLEMS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "no anchor at position {0}: --from takes the position of an anchor (a verified checkpoint)"
    )]
    NoSuchAnchor(Position),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a hash that does not match its event means.
const ALTERED: &str = "the stored hash does not match the event's content: payload, metadata, \
     type, version, time or sequence was altered";

/// Rows hashed per blocking task.
const CHUNK: usize = 2048;

/// One event as the sequential checks need it, its content already rehashed.
struct Checked {
    position: Position,
    aggregate_type: Bytes,
    aggregate_id: Uuid,
    sequence: i64,
    prev_hash: Option<Bytes>,
    hash: Bytes,
    /// `Err`: why the content does not match the stored hash (or cannot be read).
    content: Result<(), (ProblemKind, String)>,
}

const COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata, recorded_at, transaction_id, id, prev_hash, hash";

/// Rehashes one row: recomputes its hash from its content and its own `prev_hash` column
/// (whether that names the right predecessor is checked in order, afterwards).
fn check(row: Row) -> Result<Checked, CopyError> {
    let get = |i: usize, what: &str| field::required(&row, i, what);
    let position = field::position(get(8, "transaction_id")?, get(9, "id")?)?;
    let aggregate_type = get(0, "aggregate_type")?.clone();
    let aggregate_id = field::uuid(get(1, "aggregate_id")?)?;
    let sequence = field::int8(get(2, "sequence")?)?;
    let prev_hash = row.get(10).cloned().flatten();
    let hash = get(11, "hash")?.clone();
    let content = rehash(&row, prev_hash.as_deref(), &hash);
    Ok(Checked {
        position,
        aggregate_type,
        aggregate_id,
        sequence,
        prev_hash,
        hash,
        content,
    })
}

fn rehash(row: &Row, prev_hash: Option<&[u8]>, stored: &[u8]) -> Result<(), (ProblemKind, String)> {
    let unreadable = |e: String| (ProblemKind::Unreadable, e);
    let get =
        |i: usize, what: &str| field::required(row, i, what).map_err(|e| unreadable(e.to_string()));
    let text = |i: usize, what: &str| {
        get(i, what).and_then(|b| {
            std::str::from_utf8(b).map_err(|_| unreadable(format!("{what} is not UTF-8")))
        })
    };
    let json = |i: usize, what: &str| -> Result<serde_json::Value, (ProblemKind, String)> {
        let bytes = field::jsonb(get(i, what)?).map_err(|e| unreadable(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("{what}: {e}")))
    };
    let payload = json(5, "payload")?;
    let metadata = json(6, "metadata")?;
    let computed = event_hash(&HashInput {
        prev_hash,
        aggregate_type: text(0, "aggregate_type")?,
        aggregate_id: field::uuid(get(1, "aggregate_id")?)
            .map_err(|e| unreadable(e.to_string()))?,
        sequence: field::int8(get(2, "sequence")?).map_err(|e| unreadable(e.to_string()))?,
        event_type: text(3, "event_type")?,
        event_version: text(4, "event_version")?,
        payload: &payload,
        metadata: &metadata,
        recorded_at: field::timestamptz(get(7, "recorded_at")?)
            .map_err(|e| unreadable(e.to_string()))?,
    });
    if computed == stored {
        Ok(())
    } else {
        Err((ProblemKind::HashMismatch, ALTERED.into()))
    }
}

/// Verifies the log of `pool`; `progress` hears the number of events read so far.
pub async fn verify(
    pool: &PgPool,
    options: Options,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, VerifyError> {
    // Two connections in one snapshot: one streams the events, the other reads anchors and
    // predecessors, and both see the same log.
    let mut scan = pool.acquire().await?;
    let mut side = pool.acquire().await?;
    let mut scan_tx = scan.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *scan_tx)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *scan_tx)
        .await?;
    let mut side_tx = side.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *side_tx)
        .await?;
    sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .execute(&mut *side_tx)
        .await?;

    let running = match options.from {
        Some(from) => AnchorLog::at(&mut *side_tx, from)
            .await?
            .ok_or(VerifyError::NoSuchAnchor(from))?,
        None => Anchor::start(),
    };
    let running_start = running.position;
    let mut walk = Walk::new(running, options.from, options.signed_by.clone());
    let start = running_start;
    let statement = format!(
        "COPY (SELECT {COLUMNS} FROM events \
               WHERE (transaction_id, id) > ('{}'::xid8, {}) \
               ORDER BY transaction_id, id) TO STDOUT (FORMAT binary)",
        start.transaction_id, start.id
    );
    let mut rows = BinaryRows::new(scan_tx.copy_out_raw(&statement).await?);
    // Up to two chunks hash on blocking threads while the next one is read.
    let mut hashing: VecDeque<tokio::task::JoinHandle<Result<Vec<Checked>, CopyError>>> =
        VecDeque::new();
    let mut done = false;
    while !done || !hashing.is_empty() {
        if !done && hashing.len() < 2 {
            let mut chunk = Vec::with_capacity(CHUNK);
            while chunk.len() < CHUNK {
                match rows.next_row().await? {
                    Some(row) => chunk.push(row),
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            if !chunk.is_empty() {
                hashing.push_back(tokio::task::spawn_blocking(move || {
                    chunk.into_iter().map(check).collect()
                }));
            }
            continue;
        }
        let Some(task) = hashing.pop_front() else {
            break;
        };
        let checked = task
            .await
            .map_err(|e| CopyError::Malformed(format!("hashing failed: {e}")))??;
        if options.from.is_some() {
            predecessors(&mut walk, &mut side_tx, &checked).await?;
        }
        for event in checked {
            walk.event(&mut *side_tx, event).await?;
        }
        progress(walk.report.events);
    }
    drop(rows);
    walk.finish(&mut *side_tx).await?;
    Ok(walk.report)
}

/// With `--from`, looks up in PostgreSQL the predecessors of the aggregates `chunk` continues.
async fn predecessors(
    walk: &mut Walk,
    conn: &mut PgConnection,
    chunk: &[Checked],
) -> Result<(), sqlx::Error> {
    let missing = walk.unknown_predecessors(chunk);
    if missing.is_empty() {
        return Ok(());
    }
    let types: Vec<&str> = missing.iter().map(|(t, _, _)| t.as_str()).collect();
    let ids: Vec<Uuid> = missing.iter().map(|(_, id, _)| *id).collect();
    let sequences: Vec<i64> = missing.iter().map(|(_, _, s)| *s).collect();
    let rows: Vec<(String, Uuid, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.hash \
         FROM unnest($1::text[], $2::uuid[], $3::bigint[]) AS k(t, id, s) \
         JOIN events e ON e.aggregate_type = k.t AND e.aggregate_id = k.id AND e.sequence = k.s",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .fetch_all(conn)
    .await?;
    for (t, id, sequence, hash) in rows {
        walk.predecessor(&t, id, sequence, &hash);
    }
    Ok(())
}

/// Events read from a store per page.
const PAGE: i64 = 2000;

/// [`verify`] on any store (embedded mode's SQLite log), with its anchors in `anchors`: the
/// same checks, reading the global order a page at a time and rehashing here. The log and
/// its anchors are not read in one snapshot, so the anchors are read first: events appended
/// meanwhile (by a running `serve`) are read as an unanchored tail, never taken for gaps.
pub async fn verify_store(
    store: &dyn EventStore,
    anchors: &mut dyn AnchorLog,
    options: Options,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, VerifyError> {
    let running = match options.from {
        Some(from) => anchors
            .at(from)
            .await?
            .ok_or(VerifyError::NoSuchAnchor(from))?,
        None => Anchor::start(),
    };
    let mut after = running.position;
    let mut anchors = Loaded(anchors.all_after(after).await?);
    let mut walk = Walk::new(running, options.from, options.signed_by.clone());
    loop {
        let page = store.read_all(Some(after), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        let checked: Vec<Checked> = page.iter().map(stored).collect();
        if options.from.is_some() {
            for (aggregate_type, id, sequence) in walk.unknown_predecessors(&checked) {
                let found = store
                    .load_page(&aggregate_type, id, sequence - 1, 1)
                    .await?;
                if let Some(event) = found.first().filter(|e| e.sequence == sequence) {
                    walk.predecessor(&aggregate_type, id, sequence, &event.hash);
                }
            }
        }
        for event in checked {
            walk.event(&mut anchors, event).await?;
        }
        progress(walk.report.events);
    }
    walk.finish(&mut anchors).await?;
    Ok(walk.report)
}

/// A stored event as the sequential checks take it, rehashed.
fn stored(event: &StoredEvent) -> Checked {
    let content = match event.recomputed_hash() {
        Ok(hash) if hash == event.hash => Ok(()),
        Ok(_) => Err((ProblemKind::HashMismatch, ALTERED.into())),
        Err(error) => Err((ProblemKind::Unreadable, error.to_string())),
    };
    Checked {
        position: event.position,
        aggregate_type: Bytes::from(event.aggregate_type.clone()),
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        prev_hash: event.prev_hash.clone().map(Bytes::from),
        hash: Bytes::from(event.hash.clone()),
        content,
    }
}
