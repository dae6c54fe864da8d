//! The state of a meeting as its events left it, and what others may read of it. Fields are
//! visible to the sibling modules that fold events into them (`mod.rs`) and decide on them
//! (`rules.rs`, `decide.rs`); everybody else reads through the accessors.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::membership::Membership;
use super::recurrence::{OccurrenceChange, Series};
use super::values::{Attendee, MeetingStatus, Recurrence, ResponseStatus};

/// One attendee's answer to one occurrence of a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OccurrenceAnswer {
    pub response: ResponseStatus,
    pub comment: Option<String>,
}

/// A meeting, rebuilt from its [`MeetingEvent`](super::MeetingEvent)s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meeting {
    pub(super) id: Option<Uuid>,
    /// Organizer and attendees, each attendee with their answer.
    pub(super) membership: Membership<Attendee>,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) starts_at: DateTime<Utc>,
    pub(super) ends_at: DateTime<Utc>,
    pub(super) time_zone: String,
    pub(super) location: Option<String>,
    pub(super) status: MeetingStatus,
    pub(super) recurrence: Option<Recurrence>,
    /// Occurrences of the series moved or cancelled, by original start.
    #[serde(default)]
    pub(super) occurrence_changes: BTreeMap<DateTime<Utc>, OccurrenceChange>,
    /// Answers to single occurrences, by original start and attendee: kept so that "this and
    /// following" carries them over to the new series.
    #[serde(default)]
    pub(super) occurrence_answers: BTreeMap<(DateTime<Utc>, Uuid), OccurrenceAnswer>,
}

impl Meeting {
    /// Whether the meeting has been scheduled.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The meeting's id, once scheduled.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    /// Who organizes the meeting (nil before it is scheduled).
    pub fn organizer_id(&self) -> Uuid {
        self.membership.organizer().unwrap_or_default()
    }

    /// Title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Start instant.
    pub fn starts_at(&self) -> DateTime<Utc> {
        self.starts_at
    }

    /// End instant.
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.ends_at
    }

    /// IANA time zone the meeting is planned in.
    pub fn time_zone(&self) -> &str {
        &self.time_zone
    }

    /// Location, if any.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// Lifecycle state.
    pub fn status(&self) -> MeetingStatus {
        self.status
    }

    /// Who belongs to the meeting, with the attendees' answers.
    pub fn membership(&self) -> &Membership<Attendee> {
        &self.membership
    }

    /// Invited users with their answers, in invitation order.
    pub fn attendees(&self) -> &[Attendee] {
        self.membership.attendees()
    }

    /// Repetition rule, if any.
    pub fn recurrence(&self) -> Option<&Recurrence> {
        self.recurrence.as_ref()
    }

    /// Occurrences of the series moved or cancelled, by original start.
    pub fn occurrence_changes(&self) -> &BTreeMap<DateTime<Utc>, OccurrenceChange> {
        &self.occurrence_changes
    }

    /// Answers to single occurrences, by (original start, attendee).
    pub fn occurrence_answers(&self) -> &BTreeMap<(DateTime<Utc>, Uuid), OccurrenceAnswer> {
        &self.occurrence_answers
    }

    /// The series the recurrence rule makes, `None` for a single meeting. The rule was
    /// checked when recorded, so it builds (`None` too if a stored one no longer does).
    pub fn series(&self) -> Option<Series> {
        let recurrence = self.recurrence.as_ref()?;
        Series::new(self.starts_at, self.ends_at, &self.time_zone, recurrence).ok()
    }

    /// The attendee entry of `user_id`, if invited.
    pub fn attendee(&self, user_id: Uuid) -> Option<&Attendee> {
        self.membership.attendee(user_id)
    }

    /// Whether `user_id` is invited.
    pub fn is_attendee(&self, user_id: Uuid) -> bool {
        self.membership.is_attendee(user_id)
    }

    /// Whether `user_id` is the organizer or an attendee (and may see the meeting).
    pub fn is_member(&self, user_id: Uuid) -> bool {
        self.membership.contains(user_id)
    }
}
