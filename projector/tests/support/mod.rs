//! Event histories for the projector's tests: envelopes as the stream delivers them, with
//! contiguous sequences per aggregate and increasing positions.
#![allow(dead_code)] // each test binary uses a different part

pub mod history;

use chrono::{DateTime, Duration, TimeZone, Utc};
use platform::bus::EventEnvelope;
use platform::store::{encode_event, EventMetadata, Position};
use uuid::Uuid;

#[derive(Default)]
pub struct History {
    pub events: Vec<EventEnvelope>,
    pub sequences: std::collections::HashMap<Uuid, i64>,
}

impl History {
    /// Appends `event` to the stream of `aggregate_type`/`id`, at its next sequence.
    pub fn push<E: cqrs_es::DomainEvent>(&mut self, aggregate_type: &str, id: Uuid, event: E) {
        let sequence = self.sequences.entry(id).or_insert(0);
        *sequence += 1;
        let n = self.events.len() as i64 + 1;
        let event_id = Uuid::from_u128(0xE000_0000 + n as u128);
        let (event_type, event_version, data) = encode_event(&event).unwrap();
        self.events.push(EventEnvelope {
            event_id,
            position: Position {
                transaction_id: 100 + n as u64 / 3,
                id: n,
            },
            event_type,
            event_version,
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: id,
            sequence: *sequence,
            // Microseconds too: rows travel through JSON when loaded and must come back exact.
            recorded_at: start() + Duration::microseconds(n * 1_000_123),
            data,
            metadata: EventMetadata {
                event_id,
                actor_id: None,
                request_id: format!("req-{n}"),
                correlation_id: format!("req-{n}"),
                causation_id: format!("req-{n}"),
                traceparent: None,
            },
        });
    }
}

/// `template` (its aggregate, sequence and position) carrying `event` instead, under the
/// event id `event_id`: an event a test plants in a stream.
pub fn carrying<E: cqrs_es::DomainEvent>(
    template: &EventEnvelope,
    event_id: Uuid,
    event: &E,
) -> EventEnvelope {
    let (event_type, event_version, data) = encode_event(event).unwrap();
    let mut planted = template.clone();
    planted.event_id = event_id;
    planted.event_type = event_type;
    planted.event_version = event_version;
    planted.data = data;
    planted
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
}
