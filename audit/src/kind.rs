//! The aggregate types of the log, and what the audit does with each one's events through
//! the domain's own types and upcasters.

use std::fmt;
use std::str::FromStr;

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use platform::store::{decode_event, StoredEvent};

/// `meeting` or `user`, as the `aggregate_type` column names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Meeting,
    User,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown aggregate type '{0}' (expected 'meeting' or 'user')")]
pub struct UnknownKind(pub String);

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Meeting, Kind::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Meeting => domain::Meeting::TYPE,
            Kind::User => domain::User::TYPE,
        }
    }

    /// The one-line summary of a stored event of this kind; the decoding error when the
    /// event does not decode (an auditor still sees the raw payload).
    pub fn summary(
        self,
        event: &StoredEvent,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> Result<String, String> {
        let (event_type, version) = (event.event_type.as_str(), event.event_version.as_str());
        let payload = event.payload.clone();
        match self {
            Kind::Meeting => {
                decode_event::<domain::MeetingEvent>(event_type, version, payload, upcasters)
                    .map(|e| e.summary())
            }
            Kind::User => {
                decode_event::<domain::UserEvent>(event_type, version, payload, upcasters)
                    .map(|e| e.summary())
            }
        }
    }
}

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownKind(text.to_string()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
