//! The rules every meeting command is checked against, in this order: existence → access →
//! status → validation. Strangers never learn that a meeting exists: they get `NotFound`
//! where a member would get `Forbidden`.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::state::Meeting;
use super::values::{AttendeeSpec, MeetingStatus};
use crate::common::{Actor, DomainError, FieldError};
use crate::validation::{
    validate_instant, validate_optional_long_text, validate_optional_text, validate_text,
};

/// Maximum title length, in characters (after trimming).
pub const MAX_TITLE_CHARS: usize = 200;
/// Maximum description length, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Maximum location length, in characters.
pub const MAX_LOCATION_CHARS: usize = 500;
/// Maximum number of attendees of one meeting (the organizer not counted).
pub const MAX_ATTENDEES: usize = 500;
/// Maximum length of a response comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1_000;
/// Maximum length of a cancellation reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Maximum length of a chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_000;
/// Longest allowed meeting.
pub const MAX_DURATION_HOURS: i64 = 24;

const NOT_FOUND: &str = "meeting not found";
const ORGANIZER_ONLY: &str = "only the organizer can change this meeting";
const ORGANIZER_IS_NO_ATTENDEE: &str = "the organizer is not an attendee";

// ------------------------------------------------------- existence, access, status

impl Meeting {
    pub(super) fn require_exists(&self) -> Result<(), DomainError> {
        if self.exists() {
            Ok(())
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// Organizer or admin may proceed; attendees are told no, strangers see nothing.
    pub(super) fn require_organizer(&self, actor: Actor) -> Result<(), DomainError> {
        self.require_exists()?;
        if actor.user_id == self.organizer_id() || actor.is_admin() {
            Ok(())
        } else if self.is_attendee(actor.user_id) {
            Err(DomainError::forbidden(ORGANIZER_ONLY))
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// Organizer or attendee may proceed; everybody else (admins too) sees nothing.
    pub(super) fn require_member(&self, actor: Actor) -> Result<(), DomainError> {
        self.require_exists()?;
        if self.is_member(actor.user_id) {
            Ok(())
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// An attendee may proceed; the organizer is told no, everybody else sees nothing.
    pub(super) fn require_attendee(&self, actor: Actor) -> Result<(), DomainError> {
        self.require_exists()?;
        if self.is_attendee(actor.user_id) {
            Ok(())
        } else if actor.user_id == self.organizer_id() {
            Err(DomainError::forbidden("the organizer does not respond"))
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// Rejects commands on a cancelled or ended meeting.
    pub(super) fn require_open(&self) -> Result<(), DomainError> {
        match self.status {
            MeetingStatus::Cancelled => Err(DomainError::conflict("meeting is cancelled")),
            MeetingStatus::Ended => Err(DomainError::conflict("meeting has ended")),
            MeetingStatus::Scheduled | MeetingStatus::InProgress => Ok(()),
        }
    }

    /// Rejects commands unless the meeting has not started yet.
    pub(super) fn require_scheduled(&self) -> Result<(), DomainError> {
        self.require_open()?;
        if self.status == MeetingStatus::InProgress {
            Err(DomainError::conflict("meeting is in progress"))
        } else {
            Ok(())
        }
    }

    /// Rejects a new attendee who is the organizer, already invited, or one too many.
    pub(super) fn require_invitable(&self, user_id: Uuid) -> Result<(), DomainError> {
        if user_id == self.organizer_id() {
            return Err(DomainError::invalid("user_id", ORGANIZER_IS_NO_ATTENDEE));
        }
        if self.is_attendee(user_id) {
            return Err(DomainError::conflict("user is already an attendee"));
        }
        if self.attendees().len() + 1 > MAX_ATTENDEES {
            return Err(too_many_attendees().into());
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- input

/// Checks start/end of a meeting: both in the accepted years, the end after the start and
/// at most [`MAX_DURATION_HOURS`] later (reported on `ends_at`).
pub(super) fn validate_times(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<(), FieldError> {
    validate_instant("starts_at", starts_at)?;
    validate_instant("ends_at", ends_at)?;
    if ends_at <= starts_at {
        Err(FieldError::new("ends_at", "must be after starts_at"))
    } else if ends_at - starts_at > Duration::hours(MAX_DURATION_HOURS) {
        Err(FieldError::new(
            "ends_at",
            "a meeting lasts at most 24 hours",
        ))
    } else {
        Ok(())
    }
}

pub(super) fn validate_title(title: &str) -> Result<String, FieldError> {
    validate_text("title", title, 1, MAX_TITLE_CHARS)
}

pub(super) fn validate_description(
    description: Option<&str>,
) -> Result<Option<String>, FieldError> {
    validate_optional_long_text("description", description, MAX_DESCRIPTION_CHARS)
}

pub(super) fn validate_location(location: Option<&str>) -> Result<Option<String>, FieldError> {
    validate_optional_text("location", location, MAX_LOCATION_CHARS)
}

/// The attendee list of a new meeting: at most [`MAX_ATTENDEES`], nobody twice, the
/// organizer not at all. Each problem is reported on its own entry.
pub(super) fn validate_attendees(
    organizer_id: Uuid,
    attendees: &[AttendeeSpec],
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if attendees.len() > MAX_ATTENDEES {
        errors.push(too_many_attendees());
    }
    let mut seen = HashSet::with_capacity(attendees.len());
    for (i, attendee) in attendees.iter().enumerate() {
        let field = format!("attendees[{i}].user_id");
        if attendee.user_id == organizer_id {
            errors.push(FieldError::new(field, ORGANIZER_IS_NO_ATTENDEE));
        } else if !seen.insert(attendee.user_id) {
            errors.push(FieldError::new(field, "duplicate attendee"));
        }
    }
    errors
}

fn too_many_attendees() -> FieldError {
    FieldError::new(
        "attendees",
        format!("a meeting has at most {MAX_ATTENDEES} attendees"),
    )
}
