//! Each event checked against its aggregate's chain as the log is read in global order:
//! its hash recomputed from its contents, its link to its predecessor and its sequence.
//! `meetings events copy` refuses a source that fails it; `verify` ([`crate::verify`]) does
//! the same and compares the global anchors too.

use std::collections::HashMap;

use platform::store::{StoreError, StoredEvent};
use uuid::Uuid;

use crate::verify::ProblemKind;

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
        let recomputed = event
            .recomputed_hash()
            .map_err(|e| StoreError::Other(anyhow::anyhow!("metadata: {e}")))?;
        if recomputed != event.hash {
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
