//! Event histories for the projector's tests: envelopes as the stream delivers them, with
//! contiguous sequences per aggregate and increasing positions.
#![allow(dead_code)] // each test binary uses a different part

use platform::bus::EventEnvelope;
use platform::store::encode_event;
use uuid::Uuid;

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
