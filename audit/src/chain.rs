//! `meetings events verify` on any event store (embedded mode's SQLite log): every event's
//! hash recomputed from its contents, its link to its predecessor and its aggregate's sequence
//! checked, in global order. Embedded mode writes no global anchors, so what anchors add on
//! PostgreSQL (a deleted aggregate, a cut-off tail) is not checked here; [`crate::verify`]
//! does both on PostgreSQL.

use std::collections::HashMap;

use platform::store::{event_hash, EventStore, HashInput, Position, StoreError, StoredEvent};
use uuid::Uuid;

use crate::verify::{Problem, ProblemKind, Report, MAX_PROBLEMS};

/// Events read per page.
const PAGE: i64 = 2000;

/// Checks every event of `store`; `progress` hears the events read so far.
pub async fn verify_chain(
    store: &dyn EventStore,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut chains = Chains::default();
    let mut after = Position::START;
    loop {
        let page = store.read_all(Some(after), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            for (kind, detail) in chains.check(event)? {
                found(&mut report, event, kind, detail);
            }
            report.events += 1;
        }
        report.head = Some(after);
        progress(report.events);
    }
    Ok(report)
}

/// The head (sequence, hash) of every aggregate read so far, to check each next event against.
#[derive(Default)]
pub struct Chains(HashMap<(String, Uuid), (i64, Vec<u8>)>);

impl Chains {
    /// What is wrong with `event`, the next one of the log in global order (nothing: `[]`);
    /// it becomes its aggregate's head either way.
    pub fn check(&mut self, event: &StoredEvent) -> Result<Vec<(ProblemKind, String)>, StoreError> {
        let mut problems = vec![];
        let key = (event.aggregate_type.clone(), event.aggregate_id);
        let (sequence, hash) = self
            .0
            .get(&key)
            .map_or((0, None), |(s, h)| (*s, Some(h.as_slice())));
        if event.sequence != sequence + 1 {
            problems.push((
                ProblemKind::SequenceGap,
                format!("sequence {} follows {sequence}", event.sequence),
            ));
        } else if event.prev_hash.as_deref() != hash {
            problems.push((
                ProblemKind::ChainBroken,
                "the event does not name its predecessor's hash".into(),
            ));
        }
        if recomputed(event)? != event.hash {
            problems.push((
                ProblemKind::HashMismatch,
                "the stored hash is not the hash of the event's contents".into(),
            ));
        }
        self.0.insert(key, (event.sequence, event.hash.clone()));
        Ok(problems)
    }

    /// Aggregates seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn recomputed(event: &StoredEvent) -> Result<Vec<u8>, StoreError> {
    let metadata = serde_json::to_value(&event.metadata)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("metadata: {e}")))?;
    Ok(event_hash(&HashInput {
        prev_hash: event.prev_hash.as_deref(),
        aggregate_type: &event.aggregate_type,
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &metadata,
        recorded_at: event.recorded_at,
    }))
}

fn found(report: &mut Report, event: &StoredEvent, kind: ProblemKind, detail: String) {
    report.problem_count += 1;
    if report.problems.len() < MAX_PROBLEMS {
        report.problems.push(Problem {
            position: event.position,
            kind,
            aggregate_type: Some(event.aggregate_type.clone()),
            aggregate_id: Some(event.aggregate_id),
            sequence: Some(event.sequence),
            detail,
        });
    }
}
