//! The values a meeting is made of: its lifecycle status, the attendees and their answers,
//! and the repetition rule. Their serde forms are part of the stored events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle state of a meeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MeetingStatus {
    /// Planned, not started yet.
    #[default]
    Scheduled,
    /// Started and not ended.
    InProgress,
    /// Over; read-only from now on.
    Ended,
    /// Called off; read-only from now on.
    Cancelled,
}

impl MeetingStatus {
    /// The wire name of the status, identical to its serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingStatus::Scheduled => "scheduled",
            MeetingStatus::InProgress => "in_progress",
            MeetingStatus::Ended => "ended",
            MeetingStatus::Cancelled => "cancelled",
        }
    }
}

/// An attendee's answer to an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Not answered yet (also after the meeting was rescheduled).
    #[default]
    NeedsAction,
    /// Will attend.
    Accepted,
    /// Will not attend.
    Declined,
    /// Might attend.
    Tentative,
}

impl ResponseStatus {
    /// The wire name of the response, identical to its serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::NeedsAction => "needs_action",
            ResponseStatus::Accepted => "accepted",
            ResponseStatus::Declined => "declined",
            ResponseStatus::Tentative => "tentative",
        }
    }
}

/// Who to invite, as given by the organizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeSpec {
    /// Invited user.
    pub user_id: Uuid,
    /// Whether attendance is optional.
    #[serde(default)]
    pub optional: bool,
}

/// An invited user together with their current answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    /// Invited user.
    pub user_id: Uuid,
    /// Whether attendance is optional.
    pub optional: bool,
    /// Current answer.
    pub response: ResponseStatus,
    /// Comment given with the answer.
    pub comment: Option<String>,
}

impl Attendee {
    /// A user just invited: no answer yet.
    pub fn invited(user_id: Uuid, optional: bool) -> Self {
        Self {
            user_id,
            optional,
            response: ResponseStatus::NeedsAction,
            comment: None,
        }
    }
}

/// Repetition rule of a meeting series (RFC 5545 RRULE plus excluded dates), read in the
/// meeting's time zone: see [`Series`](super::Series).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// RFC 5545 recurrence rule, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    pub rrule: String,
    /// Occurrence start times excluded from the series.
    #[serde(default)]
    pub exdates: Vec<DateTime<Utc>>,
}
