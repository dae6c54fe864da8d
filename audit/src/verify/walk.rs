//! The sequential part of `verify`: each aggregate's chain, the running hash over the global
//! order, and the anchors it must agree with — the same for every store.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use platform::store::Position;
use uuid::Uuid;

use super::{Checked, Problem, ProblemKind, Report, MAX_PROBLEMS};
use crate::anchor::{Anchor, AnchorReader, AnchorVerifier};

/// The sequential part: chains per aggregate, running hash, anchors.
pub(super) struct Walk {
    pub(super) report: Report,
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
    /// From `running` (the start, or the anchor of `--from`), checking anchors' signatures
    /// against `signed_by` when given.
    pub(super) fn new(
        running: Anchor,
        from: Option<Position>,
        signed_by: Option<std::sync::Arc<AnchorVerifier>>,
    ) -> Self {
        let mut walk = Walk {
            report: Report {
                verified_anchor: from,
                ..Report::default()
            },
            anchor_cursor: running.position,
            running,
            chains: HashMap::new(),
            types: Vec::new(),
            anchors: VecDeque::new(),
            signed_by,
            more_anchors: true,
        };
        if from.is_some() {
            let start = walk.running.clone();
            walk.check_signature(&start);
        }
        walk
    }

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
        log: &mut dyn AnchorReader,
    ) -> Result<Option<Anchor>, sqlx::Error> {
        if self.anchors.is_empty() && self.more_anchors {
            let page = log.after(self.anchor_cursor, 1000).await?;
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

    pub(super) async fn event(
        &mut self,
        log: &mut dyn AnchorReader,
        event: Checked,
    ) -> Result<(), sqlx::Error> {
        // Anchors at positions the log no longer has.
        while let Some(next) = self.next_anchor(log).await? {
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
    pub(super) async fn finish(&mut self, log: &mut dyn AnchorReader) -> Result<(), sqlx::Error> {
        let mut beyond: Option<Anchor> = None;
        let mut first_missing: Option<Position> = None;
        while let Some(next) = self.next_anchor(log).await? {
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
    /// chunk continues: their `(aggregate_type, id, sequence)`, to look up and
    /// [`Walk::predecessor`].
    pub(super) fn unknown_predecessors(&mut self, chunk: &[Checked]) -> Vec<(String, Uuid, i64)> {
        let mut missing = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for event in chunk {
            // Only an aggregate's first event in the chunk may continue a history from
            // before the starting point.
            let key = (self.type_index(&event.aggregate_type), event.aggregate_id);
            if seen.insert(key) && event.sequence > 1 && !self.chains.contains_key(&key) {
                missing.push((
                    String::from_utf8_lossy(&event.aggregate_type).into_owned(),
                    event.aggregate_id,
                    event.sequence - 1,
                ));
            }
        }
        missing
    }

    /// The event before the starting point that an aggregate's chain continues from.
    pub(super) fn predecessor(
        &mut self,
        aggregate_type: &str,
        id: Uuid,
        sequence: i64,
        hash: &[u8],
    ) {
        let key = (self.type_index(aggregate_type.as_bytes()), id);
        self.chains.insert(key, (sequence, owned_hash(hash)));
    }
}
