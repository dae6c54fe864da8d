//! Between domain events and stored rows: serialization, upcasting, rebuilding an aggregate,
//! and the tamper-evident hash chain.
//!
//! Stored payloads hold only the event's fields; the variant name lives in `event_type`. That
//! keeps payloads readable for projections and clients (`{"title": …}` rather than
//! `{"MeetingScheduled": {"title": …}}`).

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::{Commit, NewEvent, StoreError, StoredEvent};

/// Splits a domain event into `(event_type, event_version, payload)`.
pub fn encode_event<E: DomainEvent>(event: &E) -> Result<(String, String, Value), StoreError> {
    let value = serde_json::to_value(event)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("cannot serialize event: {e}")))?;
    let payload = match value {
        Value::Object(mut map) if map.len() == 1 => {
            let (_, inner) = map.iter_mut().next().expect("BUG: one entry");
            inner.take()
        }
        // Unit variants serialize as a bare string.
        Value::String(_) => Value::Object(Default::default()),
        other => {
            return Err(StoreError::Other(anyhow::anyhow!(
                "events must be enum variants, got {other}"
            )))
        }
    };
    Ok((event.event_type(), event.event_version(), payload))
}

/// An aggregate rebuilt from its events, with what the next commit must chain onto. The
/// default is the aggregate before its first event.
#[derive(Clone, Default)]
pub struct AggregateState<A> {
    pub aggregate: A,
    /// Sequence of the last event (0 when the aggregate has no events).
    pub version: i64,
    pub last_hash: Option<Vec<u8>>,
}

/// Upcasts and applies stored events in order. A stored event that does not decode is an error,
/// never skipped.
pub fn decode_events<A: Aggregate>(
    events: Vec<StoredEvent>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<AggregateState<A>, StoreError> {
    let mut state = AggregateState::default();
    apply_stored(&mut state, events, upcasters)?;
    Ok(state)
}

/// Upcasts and applies stored events that follow `state` (the next sequence first).
pub fn apply_stored<A: Aggregate>(
    state: &mut AggregateState<A>,
    events: Vec<StoredEvent>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<(), StoreError> {
    for stored in events {
        let corrupt = |reason: String| StoreError::Corrupt {
            aggregate_type: stored.aggregate_type.clone(),
            aggregate_id: stored.aggregate_id,
            sequence: stored.sequence,
            reason,
        };
        if stored.sequence != state.version + 1 {
            return Err(corrupt(format!(
                "sequence gap: expected {}, found {}",
                state.version + 1,
                stored.sequence
            )));
        }
        let event: A::Event = decode_event(
            &stored.event_type,
            &stored.event_version,
            stored.payload.clone(),
            upcasters,
        )
        .map_err(corrupt)?;
        state.aggregate.apply(event);
        state.version = stored.sequence;
        state.last_hash = Some(stored.hash);
    }
    Ok(())
}

/// Upcasts one stored payload to the current version and decodes it.
pub fn decode_event<E: DomainEvent>(
    event_type: &str,
    event_version: &str,
    payload: Value,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<E, String> {
    let serialized = upcast(
        SerializedEvent::new(
            String::new(),
            0,
            String::new(),
            event_type.to_string(),
            event_version.to_string(),
            payload,
            Value::Null,
        ),
        upcasters,
    );
    let mut wrapper = serde_json::Map::new();
    wrapper.insert(serialized.event_type, serialized.payload);
    serde_json::from_value(Value::Object(wrapper)).map_err(|e| e.to_string())
}

fn upcast(event: SerializedEvent, upcasters: &[Box<dyn EventUpcaster>]) -> SerializedEvent {
    upcasters.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

/// The fields an event's hash covers, in a fixed order.
pub struct HashInput<'a> {
    pub prev_hash: Option<&'a [u8]>,
    pub aggregate_type: &'a str,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// SHA-256 over the previous hash and the event's content, each field length-prefixed so that
/// no two different events share an input. JSON is hashed in canonical form (sorted keys), as
/// PostgreSQL's jsonb does not keep key order.
pub fn event_hash(input: &HashInput<'_>) -> Vec<u8> {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(input.prev_hash.unwrap_or_default());
    field(input.aggregate_type.as_bytes());
    field(input.aggregate_id.as_bytes());
    field(&input.sequence.to_be_bytes());
    field(input.event_type.as_bytes());
    field(input.event_version.as_bytes());
    field(canonical_json(input.payload).as_bytes());
    field(canonical_json(input.metadata).as_bytes());
    field(&input.recorded_at.timestamp_micros().to_be_bytes());
    hasher.finalize().to_vec()
}

impl StoredEvent {
    /// The hash of this event computed from its contents and its `prev_hash`: equal to
    /// `hash` unless someone altered the stored event.
    pub fn recomputed_hash(&self) -> Result<Vec<u8>, serde_json::Error> {
        let metadata = serde_json::to_value(&self.metadata)?;
        Ok(event_hash(&HashInput {
            prev_hash: self.prev_hash.as_deref(),
            aggregate_type: &self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &metadata,
            recorded_at: self.recorded_at,
        }))
    }
}

/// One event of a commit as a store writes it: its sequence, its metadata as JSON, its time cut
/// to the microseconds the databases keep (the hash is of what is read back, so a log copied
/// between the backends keeps its hashes), and its link in the aggregate's hash chain.
pub struct Chained<'c> {
    pub event: &'c NewEvent,
    pub sequence: i64,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

/// The events of `commit`, numbered after its expected sequence and chained onto its
/// `prev_hash`: the one place both stores compute what they append.
pub fn chain(commit: &Commit) -> Result<Vec<Chained<'_>>, StoreError> {
    let mut prev_hash = commit.prev_hash.clone();
    let mut chained = Vec::with_capacity(commit.events.len());
    for (offset, event) in commit.events.iter().enumerate() {
        let sequence = commit.expected_sequence + 1 + offset as i64;
        let metadata = serde_json::to_value(&event.metadata)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("metadata: {e}")))?;
        let recorded_at = DateTime::from_timestamp_micros(event.recorded_at.timestamp_micros())
            .expect("BUG: a valid timestamp stays valid when truncated");
        let hash = event_hash(&HashInput {
            prev_hash: prev_hash.as_deref(),
            aggregate_type: commit.aggregate_type,
            aggregate_id: commit.aggregate_id,
            sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &metadata,
            recorded_at,
        });
        chained.push(Chained {
            event,
            sequence,
            metadata,
            recorded_at,
            prev_hash: prev_hash.replace(hash.clone()),
            hash,
        });
    }
    Ok(chained)
}

/// JSON with object keys sorted at every level, independent of serde_json's map features.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(value, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    fn input<'a>(payload: &'a Value, metadata: &'a Value, prev: Option<&'a [u8]>) -> HashInput<'a> {
        HashInput {
            prev_hash: prev,
            aggregate_type: "meeting",
            aggregate_id: Uuid::nil(),
            sequence: 1,
            event_type: "MeetingCancelled",
            event_version: "1.0",
            payload,
            metadata,
            recorded_at: chrono::DateTime::from_timestamp_micros(1_000_000).unwrap(),
        }
    }

    #[test]
    fn any_change_changes_the_hash() {
        let payload = json!({"reason": "x"});
        let metadata = json!({"actor_id": null});
        let base = event_hash(&input(&payload, &metadata, None));
        assert_eq!(base, event_hash(&input(&payload, &metadata, None)));
        let other_payload = json!({"reason": "y"});
        assert_ne!(base, event_hash(&input(&other_payload, &metadata, None)));
        assert_ne!(base, event_hash(&input(&payload, &metadata, Some(&[1]))));
        let mut moved = input(&payload, &metadata, None);
        moved.sequence = 2;
        assert_ne!(base, event_hash(&moved));
    }
}
