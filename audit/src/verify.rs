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

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use platform::store::{event_hash, HashInput, Position};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::anchor::{self, Anchor, AnchorVerifier};
use crate::copy::{field, BinaryRows, CopyError, Row};

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
}

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
        Err((
            ProblemKind::HashMismatch,
            "the stored hash does not match the event's content: payload, metadata, type, \
             version, time or sequence was altered"
                .into(),
        ))
    }
}

/// The sequential part: chains per aggregate, running hash, anchors.
struct Walk {
    report: Report,
    running: Anchor,
    /// The newest event of every aggregate seen (by index into `types` and id): its
    /// sequence and hash. Owned values: a slice of a `COPY` buffer would keep the whole
    /// buffer alive for as long as its aggregate is remembered.
    chains: HashMap<(u32, Uuid), (i64, [u8; 32])>,
    /// The aggregate types seen (a handful).
    types: Vec<Bytes>,
    anchors: VecDeque<Anchor>,
    signed_by: Option<std::sync::Arc<AnchorVerifier>>,
    /// Whether more anchors than `anchors` holds may follow, after `anchor_cursor`.
    more_anchors: bool,
    anchor_cursor: Position,
}

/// A stored hash as a fixed array (a SHA-256 hash is 32 bytes; anything else never matches a
/// recomputed one, and is reported there).
fn owned_hash(hash: &[u8]) -> [u8; 32] {
    let mut owned = [0; 32];
    let n = hash.len().min(32);
    owned[..n].copy_from_slice(&hash[..n]);
    owned
}

impl Walk {
    fn type_index(&mut self, aggregate_type: &[u8]) -> u32 {
        match self.types.iter().position(|t| &t[..] == aggregate_type) {
            Some(i) => i as u32,
            None => {
                self.types.push(Bytes::copy_from_slice(aggregate_type));
                (self.types.len() - 1) as u32
            }
        }
    }

    fn problem(&mut self, problem: Problem) {
        self.report.problem_count += 1;
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(problem);
        }
    }

    async fn next_anchor(
        &mut self,
        conn: &mut PgConnection,
    ) -> Result<Option<Anchor>, sqlx::Error> {
        if self.anchors.is_empty() && self.more_anchors {
            let page = anchor::after(conn, self.anchor_cursor, 1000).await?;
            self.more_anchors = page.len() == 1000;
            if let Some(last) = page.last() {
                self.anchor_cursor = last.position;
            }
            self.anchors.extend(page);
        }
        Ok(self.anchors.front().cloned())
    }

    /// With a key to check against, reports an anchor that it did not sign.
    fn check_signature(&mut self, anchor: &Anchor) {
        let Some(detail) = self.signed_by.as_ref().and_then(|key| key.problem(anchor)) else {
            return;
        };
        self.problem(Problem {
            position: anchor.position,
            kind: ProblemKind::AnchorSignature,
            aggregate_type: None,
            aggregate_id: None,
            sequence: None,
            detail,
        });
    }

    /// Compares the running state with the anchor at its position (just reached).
    fn compare(&mut self, anchor: Anchor) {
        self.report.anchors += 1;
        self.check_signature(&anchor);
        let trusted = self
            .signed_by
            .as_ref()
            .is_none_or(|key| key.problem(&anchor).is_none());
        if anchor.events == self.running.events && anchor.chain == self.running.chain {
            if trusted {
                self.report.verified_anchor = Some(anchor.position);
            }
        } else {
            let since = self
                .report
                .verified_anchor
                .map_or("the first event".to_string(), |p| {
                    format!("the anchor at {p}")
                });
            let detail = if anchor.events != self.running.events {
                format!(
                    "{} events were anchored up to here, the log holds {}: events after {since} were deleted or inserted",
                    anchor.events, self.running.events
                )
            } else {
                format!("the running hash differs: events after {since} were altered or moved in the global order")
            };
            self.problem(Problem {
                position: anchor.position,
                kind: ProblemKind::AnchorMismatch,
                aggregate_type: None,
                aggregate_id: None,
                sequence: None,
                detail,
            });
        }
        // Continue from the anchor, so what follows is judged on its own.
        self.running = anchor;
    }

    async fn event(&mut self, conn: &mut PgConnection, event: Checked) -> Result<(), sqlx::Error> {
        // Anchors at positions the log no longer has.
        while let Some(next) = self.next_anchor(conn).await? {
            if next.position >= event.position {
                break;
            }
            self.anchors.pop_front();
            self.report.anchors += 1;
            self.check_signature(&next);
            self.problem(Problem {
                position: next.position,
                kind: ProblemKind::AnchoredEventMissing,
                aggregate_type: None,
                aggregate_id: None,
                sequence: None,
                detail: format!(
                    "an anchor was taken at this position ({} events), but the log has no event here: it was deleted or moved",
                    next.events
                ),
            });
            self.running = next;
        }
        self.report.events += 1;
        self.report.head = Some(event.position);
        self.running.extend(event.position, &event.hash);
        let aggregate_type = String::from_utf8_lossy(&event.aggregate_type).into_owned();
        let at = |kind, detail: String| Problem {
            position: event.position,
            kind,
            aggregate_type: Some(aggregate_type.clone()),
            aggregate_id: Some(event.aggregate_id),
            sequence: Some(event.sequence),
            detail,
        };
        if let Err((kind, detail)) = &event.content {
            self.problem(at(*kind, detail.clone()));
        }
        let key = (self.type_index(&event.aggregate_type), event.aggregate_id);
        let (expected, predecessor) = match self.chains.get(&key) {
            Some((sequence, hash)) => (sequence + 1, Some(*hash)),
            None => (1, None),
        };
        if event.sequence != expected {
            self.problem(at(
                ProblemKind::SequenceGap,
                format!(
                    "expected sequence {expected} of this aggregate, found {}: events before it were deleted or reordered",
                    event.sequence
                ),
            ));
        } else if event.prev_hash.as_deref() != predecessor.as_ref().map(|h| &h[..]) {
            self.problem(at(
                ProblemKind::ChainBroken,
                "the event does not chain onto its predecessor's hash".into(),
            ));
        }
        self.chains
            .insert(key, (event.sequence, owned_hash(&event.hash)));
        if self
            .anchors
            .front()
            .is_some_and(|a| a.position == event.position)
        {
            let anchor = self.anchors.pop_front().expect("BUG: checked");
            self.compare(anchor);
        }
        Ok(())
    }

    /// Anchors past the end of the log.
    async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut beyond: Option<Anchor> = None;
        let mut first_missing: Option<Position> = None;
        while let Some(next) = self.next_anchor(conn).await? {
            self.anchors.pop_front();
            self.report.anchors += 1;
            self.check_signature(&next);
            first_missing.get_or_insert(next.position);
            beyond = Some(next);
        }
        if let (Some(newest), Some(first)) = (beyond, first_missing) {
            let end = self
                .report
                .head
                .map_or("before its first event".to_string(), |p| format!("at {p}"));
            self.problem(Problem {
                position: first,
                kind: ProblemKind::Truncated,
                aggregate_type: None,
                aggregate_id: None,
                sequence: None,
                detail: format!(
                    "the log ends {end} with {} events, but it was anchored up to {} with {} events: its newest events were deleted",
                    self.running.events, newest.position, newest.events
                ),
            });
        }
        Ok(())
    }

    /// With `--from`, the predecessors (before the starting point) of the aggregates this
    /// chunk continues.
    async fn predecessors(
        &mut self,
        conn: &mut PgConnection,
        chunk: &[Checked],
    ) -> Result<(), sqlx::Error> {
        let (mut types, mut ids, mut sequences) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for event in chunk {
            // Only an aggregate's first event in the chunk may continue a history from
            // before the starting point.
            let key = (self.type_index(&event.aggregate_type), event.aggregate_id);
            if seen.insert(key) && event.sequence > 1 && !self.chains.contains_key(&key) {
                types.push(String::from_utf8_lossy(&event.aggregate_type).into_owned());
                ids.push(event.aggregate_id);
                sequences.push(event.sequence - 1);
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
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
            let key = (self.type_index(t.as_bytes()), id);
            self.chains.insert(key, (sequence, owned_hash(&hash)));
        }
        Ok(())
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
        Some(from) => anchor::at(&mut side_tx, from)
            .await?
            .ok_or(VerifyError::NoSuchAnchor(from))?,
        None => Anchor::start(),
    };
    let running_start = running.position;
    let mut walk = Walk {
        report: Report {
            verified_anchor: options.from,
            ..Report::default()
        },
        running,
        chains: HashMap::new(),
        types: Vec::new(),
        anchors: VecDeque::new(),
        signed_by: options.signed_by.clone(),
        more_anchors: true,
        anchor_cursor: running_start,
    };
    if options.from.is_some() {
        let from = walk.running.clone();
        walk.check_signature(&from);
    }
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
            walk.predecessors(&mut side_tx, &checked).await?;
        }
        for event in checked {
            walk.event(&mut side_tx, event).await?;
        }
        progress(walk.report.events);
    }
    drop(rows);
    walk.finish(&mut side_tx).await?;
    Ok(walk.report)
}
