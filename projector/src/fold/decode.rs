//! Decoding a batch's events into their domain types, and finding what they touch: the rows
//! to load before folding.

use std::collections::BTreeSet;

use cqrs_es::persist::EventUpcaster;
use domain::{Membership, UserEvent};
use platform::bus::EventEnvelope;
use uuid::Uuid;

use crate::error::ProjectionError;

pub use platform::bus::Decoded;

/// Decodes an envelope for the read models. Unknown aggregate types and undecodable data
/// are unapplicable.
pub fn decode(
    event: &EventEnvelope,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<Decoded, ProjectionError> {
    event
        .decode(upcasters)
        .map_err(|reason| ProjectionError::unapplicable(event, reason))
}

/// The ids a batch touches, to load before folding.
#[derive(Debug, Default, PartialEq)]
pub struct Touched {
    pub users: Vec<Uuid>,
    pub meetings: Vec<Uuid>,
    /// Users the batch's meeting events make organizer or attendee: their names go into
    /// the meeting documents.
    pub people: Vec<Uuid>,
    /// Users whose profile the batch changes: the documents of all their meetings show the
    /// new name, so those meetings are loaded too.
    pub renamed: Vec<Uuid>,
}

impl Touched {
    /// `decoded[i]` is `events[i]` decoded (an event that does not decode names nobody).
    pub fn of(events: &[EventEnvelope], decoded: &[Result<Decoded, ProjectionError>]) -> Self {
        let mut users = BTreeSet::new();
        let mut meetings = BTreeSet::new();
        let mut people = BTreeSet::new();
        let mut renamed = BTreeSet::new();
        for (event, decoded) in events.iter().zip(decoded) {
            match decoded {
                Ok(Decoded::User(user_event)) => {
                    users.insert(event.aggregate_id);
                    if matches!(user_event, UserEvent::ProfileChanged { .. }) {
                        renamed.insert(event.aggregate_id);
                    }
                }
                Ok(Decoded::Meeting(meeting_event)) => {
                    meetings.insert(event.aggregate_id);
                    people.extend(Membership::joining(meeting_event));
                }
                Err(_) => {}
            }
        }
        Touched {
            users: users.into_iter().collect(),
            meetings: meetings.into_iter().collect(),
            people: people.into_iter().collect(),
            renamed: renamed.into_iter().collect(),
        }
    }
}
