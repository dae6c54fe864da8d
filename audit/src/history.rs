//! An aggregate's timeline: every event with its position, time, actor, a one-line summary,
//! and the full payload, metadata and hashes. `meetings events history --json` prints these
//! entries; `GET /v1/admin/history/{aggregate_type}/{id}` answers them a page at a time.

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::{EventStore, Position, StoreError, StoredEvent};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::Kind;

/// One event of a timeline. `meetings events export --format jsonl` writes the same fields
/// (without `summary`) in the same forms.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Global position (32 hexadecimal digits; sorts in commit order).
    #[schema(value_type = String, example = "00000000000003e90000000000000011")]
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// The aggregate's version after this event (1 for its first).
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// When it was recorded, RFC 3339 in UTC with microseconds.
    #[serde(serialize_with = "micros")]
    pub recorded_at: DateTime<Utc>,
    /// Who caused it: `null` for a registration, the nil UUID for the operator CLI.
    pub actor_id: Option<Uuid>,
    /// What happened, in one line; `undecodable: …` when the stored event does not decode.
    pub summary: String,
    /// The stored payload, as stored (before upcasting).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// event_id, actor_id, request_id, correlation_id, causation_id.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// SHA-256 of the event chained to its predecessor's, hexadecimal.
    pub hash: String,
    pub prev_hash: Option<String>,
}

fn micros<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Entry {
    pub fn new(event: &StoredEvent, upcasters: &[Box<dyn EventUpcaster>]) -> Self {
        Self {
            position: event.position,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            recorded_at: event.recorded_at,
            actor_id: event.metadata.actor_id,
            summary: EventEnvelope::from(event)
                .decode(upcasters)
                .map_or_else(|error| format!("undecodable: {error}"), |e| e.summary()),
            payload: event.payload.clone(),
            metadata: serde_json::to_value(&event.metadata).unwrap_or_default(),
            hash: hex::encode(&event.hash),
            prev_hash: event.prev_hash.as_ref().map(hex::encode),
        }
    }
}

/// One page of a timeline.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// In sequence order.
    pub events: Vec<Entry>,
    /// Pass as `after_sequence` for the next page; `null` on the last one.
    pub next_after_sequence: Option<i64>,
}

/// Most events one page holds.
pub const MAX_PAGE: i64 = 1000;

/// The events of `id` after `after_sequence`, at most `limit` (≤ [`MAX_PAGE`]).
pub async fn page(
    store: &dyn EventStore,
    kind: Kind,
    id: Uuid,
    after_sequence: i64,
    limit: i64,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<Page, StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut events = store
        .load_page(kind.as_str(), id, after_sequence.max(0), limit + 1)
        .await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    Ok(Page {
        aggregate_type: kind.as_str().to_string(),
        aggregate_id: id,
        next_after_sequence: if more {
            events.last().map(|e| e.sequence)
        } else {
            None
        },
        events: events
            .iter()
            .map(|event| Entry::new(event, upcasters))
            .collect(),
    })
}
