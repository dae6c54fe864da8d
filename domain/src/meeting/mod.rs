//! The `Meeting` aggregate: scheduling, details, attendees and their
//! responses, the meeting lifecycle (start/end/cancel) and in-meeting chat.
//!
//! Every command on an existing meeting is checked in the same order:
//! existence → access → status → validation. Strangers never learn that a
//! meeting exists: they get `NotFound` where a member would get `Forbidden`.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::{
    validate_optional_text, validate_text, validate_time_zone, Actor, DomainError, FieldError,
    Violations,
};

#[cfg(test)]
mod tests;

/// Schema version of every meeting event.
pub const MEETING_EVENT_VERSION: &str = "1.0";
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

/// Repetition rule of a meeting series (RFC 5545 RRULE plus excluded dates).
///
/// Carried in the events for forward compatibility; scheduling a recurring
/// series is rejected until recurrence support lands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// RFC 5545 recurrence rule, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    pub rrule: String,
    /// Occurrence start times excluded from the series.
    #[serde(default)]
    pub exdates: Vec<DateTime<Utc>>,
}

/// Port to the user registry, so the aggregate can refuse unknown attendees.
#[async_trait::async_trait]
pub trait UserDirectory: Send + Sync {
    /// ids among `ids` that are not registered, active users
    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, String>;
}

/// Outside services the `Meeting` aggregate needs to decide commands.
#[derive(Clone)]
pub struct MeetingServices {
    /// Who is a registered, active user.
    pub users: Arc<dyn UserDirectory>,
}

impl MeetingServices {
    /// Bundles the services.
    pub fn new(users: Arc<dyn UserDirectory>) -> Self {
        Self { users }
    }
}

impl std::fmt::Debug for MeetingServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeetingServices").finish_non_exhaustive()
    }
}

/// Commands accepted by the [`Meeting`] aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum MeetingCommand {
    /// Create a meeting organized by `actor`.
    Schedule {
        /// Id chosen by the application for the new meeting.
        meeting_id: Uuid,
        /// The organizer.
        actor: Actor,
        /// Title, 1..=200 characters after trimming.
        title: String,
        /// Free text, at most 10 000 characters.
        description: Option<String>,
        /// Start instant.
        starts_at: DateTime<Utc>,
        /// End instant, after the start and at most 24 h later.
        ends_at: DateTime<Utc>,
        /// IANA time zone the meeting is planned in.
        time_zone: String,
        /// Where it takes place, at most 500 characters.
        location: Option<String>,
        /// Invited users (organizer excluded), at most 500.
        attendees: Vec<AttendeeSpec>,
        /// Repetition rule; not supported yet.
        recurrence: Option<Recurrence>,
    },
    /// Change title/description/location/time zone; `None` keeps a field,
    /// `Some(None)` clears an optional one.
    UpdateDetails {
        /// Who asks.
        actor: Actor,
        /// New title.
        title: Option<String>,
        /// New description.
        description: Option<Option<String>>,
        /// New location.
        location: Option<Option<String>>,
        /// New IANA time zone.
        time_zone: Option<String>,
    },
    /// Move the meeting; a missing side keeps its current value.
    Reschedule {
        /// Who asks.
        actor: Actor,
        /// New start.
        starts_at: Option<DateTime<Utc>>,
        /// New end.
        ends_at: Option<DateTime<Utc>>,
    },
    /// Add one attendee.
    Invite {
        /// Who asks.
        actor: Actor,
        /// Who to add.
        attendee: AttendeeSpec,
    },
    /// Take an attendee off the meeting.
    RemoveAttendee {
        /// Who asks.
        actor: Actor,
        /// The attendee to remove.
        user_id: Uuid,
    },
    /// An attendee answers the invitation.
    Respond {
        /// The answering attendee.
        actor: Actor,
        /// The answer.
        response: ResponseStatus,
        /// Optional comment, at most 1000 characters.
        comment: Option<String>,
        /// A single occurrence of a series (recurring meetings only).
        occurrence: Option<DateTime<Utc>>,
    },
    /// Call the meeting off.
    Cancel {
        /// Who asks.
        actor: Actor,
        /// Optional reason, at most 1000 characters.
        reason: Option<String>,
    },
    /// Mark the meeting as started.
    Start {
        /// Who asks.
        actor: Actor,
        /// When it started.
        at: DateTime<Utc>,
    },
    /// Mark the meeting as ended.
    End {
        /// Who asks.
        actor: Actor,
        /// When it ended.
        at: DateTime<Utc>,
    },
    /// Post to the meeting chat.
    PostMessage {
        /// The author.
        actor: Actor,
        /// Id chosen by the application for the message.
        message_id: Uuid,
        /// Message text, 1..=4000 characters after trimming.
        text: String,
        /// When it was posted.
        at: DateTime<Utc>,
    },
}

/// Facts recorded about a meeting, serialized with serde's default external
/// tagging (`{"VariantName": {...}}`).
///
/// Per-occurrence events (`OccurrenceRescheduled`, `OccurrenceCancelled`)
/// will be added together with recurrence support.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MeetingEvent {
    /// The meeting was created.
    MeetingScheduled {
        /// Id of the meeting.
        meeting_id: Uuid,
        /// Who organizes it.
        organizer_id: Uuid,
        /// Trimmed title.
        title: String,
        /// Trimmed description, `None` when blank.
        description: Option<String>,
        /// Start instant.
        starts_at: DateTime<Utc>,
        /// End instant.
        ends_at: DateTime<Utc>,
        /// IANA time zone.
        time_zone: String,
        /// Trimmed location, `None` when blank.
        location: Option<String>,
        /// Initial attendees.
        attendees: Vec<AttendeeSpec>,
        /// Repetition rule (always `None` until recurrence is supported).
        recurrence: Option<Recurrence>,
    },
    /// Details changed; carries the full new details.
    MeetingDetailsUpdated {
        /// Title after the change.
        title: String,
        /// Description after the change.
        description: Option<String>,
        /// Location after the change.
        location: Option<String>,
        /// Time zone after the change.
        time_zone: String,
    },
    /// The meeting moved; every attendee has to answer again.
    MeetingRescheduled {
        /// New start.
        starts_at: DateTime<Utc>,
        /// New end.
        ends_at: DateTime<Utc>,
        /// Start before the change.
        previous_starts_at: DateTime<Utc>,
        /// End before the change.
        previous_ends_at: DateTime<Utc>,
    },
    /// A user was invited.
    AttendeeInvited {
        /// The new attendee.
        user_id: Uuid,
        /// Whether attendance is optional.
        optional: bool,
    },
    /// An attendee was taken off the meeting.
    AttendeeRemoved {
        /// The removed attendee.
        user_id: Uuid,
    },
    /// An attendee answered.
    AttendeeResponded {
        /// The answering attendee.
        user_id: Uuid,
        /// The answer.
        response: ResponseStatus,
        /// Trimmed comment, `None` when blank.
        comment: Option<String>,
        /// The occurrence answered for (recurring meetings only).
        occurrence: Option<DateTime<Utc>>,
    },
    /// The meeting was called off.
    MeetingCancelled {
        /// Trimmed reason, `None` when blank.
        reason: Option<String>,
    },
    /// The meeting started.
    MeetingStarted {
        /// When.
        at: DateTime<Utc>,
    },
    /// The meeting ended.
    MeetingEnded {
        /// When.
        at: DateTime<Utc>,
    },
    /// A chat message was posted.
    ChatMessagePosted {
        /// Id of the message.
        message_id: Uuid,
        /// Who wrote it.
        author_id: Uuid,
        /// Trimmed text.
        text: String,
        /// When it was posted.
        at: DateTime<Utc>,
    },
}

impl DomainEvent for MeetingEvent {
    fn event_type(&self) -> String {
        match self {
            MeetingEvent::MeetingScheduled { .. } => "MeetingScheduled",
            MeetingEvent::MeetingDetailsUpdated { .. } => "MeetingDetailsUpdated",
            MeetingEvent::MeetingRescheduled { .. } => "MeetingRescheduled",
            MeetingEvent::AttendeeInvited { .. } => "AttendeeInvited",
            MeetingEvent::AttendeeRemoved { .. } => "AttendeeRemoved",
            MeetingEvent::AttendeeResponded { .. } => "AttendeeResponded",
            MeetingEvent::MeetingCancelled { .. } => "MeetingCancelled",
            MeetingEvent::MeetingStarted { .. } => "MeetingStarted",
            MeetingEvent::MeetingEnded { .. } => "MeetingEnded",
            MeetingEvent::ChatMessagePosted { .. } => "ChatMessagePosted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        MEETING_EVENT_VERSION.to_string()
    }
}

/// A meeting, rebuilt from its [`MeetingEvent`]s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meeting {
    id: Option<Uuid>,
    organizer_id: Uuid,
    title: String,
    description: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    time_zone: String,
    location: Option<String>,
    status: MeetingStatus,
    attendees: Vec<Attendee>,
    recurrence: Option<Recurrence>,
}

/// Checks start/end of a meeting, reporting problems on `ends_at`.
fn validate_times(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<(), FieldError> {
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

fn validate_title(title: &str) -> Result<String, FieldError> {
    validate_text("title", title, 1, MAX_TITLE_CHARS)
}

fn validate_description(description: Option<&str>) -> Result<Option<String>, FieldError> {
    validate_optional_text("description", description, MAX_DESCRIPTION_CHARS)
}

fn validate_location(location: Option<&str>) -> Result<Option<String>, FieldError> {
    validate_optional_text("location", location, MAX_LOCATION_CHARS)
}

fn too_many_attendees() -> FieldError {
    FieldError::new(
        "attendees",
        format!("a meeting has at most {MAX_ATTENDEES} attendees"),
    )
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
        self.organizer_id
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

    /// Invited users with their answers, in invitation order.
    pub fn attendees(&self) -> &[Attendee] {
        &self.attendees
    }

    /// Repetition rule, if any.
    pub fn recurrence(&self) -> Option<&Recurrence> {
        self.recurrence.as_ref()
    }

    /// The attendee entry of `user_id`, if invited.
    pub fn attendee(&self, user_id: Uuid) -> Option<&Attendee> {
        self.attendees.iter().find(|a| a.user_id == user_id)
    }

    /// Whether `user_id` is invited.
    pub fn is_attendee(&self, user_id: Uuid) -> bool {
        self.attendee(user_id).is_some()
    }

    /// Whether `user_id` is the organizer or an attendee (and may see the meeting).
    pub fn is_member(&self, user_id: Uuid) -> bool {
        self.exists() && (self.organizer_id == user_id || self.is_attendee(user_id))
    }

    fn require_exists(&self) -> Result<(), DomainError> {
        if self.exists() {
            Ok(())
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// Organizer or admin may proceed; attendees are told no, strangers see nothing.
    fn require_organizer(&self, actor: Actor) -> Result<(), DomainError> {
        self.require_exists()?;
        if actor.user_id == self.organizer_id || actor.is_admin() {
            Ok(())
        } else if self.is_attendee(actor.user_id) {
            Err(DomainError::forbidden(ORGANIZER_ONLY))
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// Organizer or attendee may proceed; everybody else (admins too) sees nothing.
    fn require_member(&self, actor: Actor) -> Result<(), DomainError> {
        self.require_exists()?;
        if self.is_member(actor.user_id) {
            Ok(())
        } else {
            Err(DomainError::not_found(NOT_FOUND))
        }
    }

    /// Rejects commands on a cancelled or ended meeting.
    fn require_open(&self) -> Result<(), DomainError> {
        match self.status {
            MeetingStatus::Cancelled => Err(DomainError::conflict("meeting is cancelled")),
            MeetingStatus::Ended => Err(DomainError::conflict("meeting has ended")),
            MeetingStatus::Scheduled | MeetingStatus::InProgress => Ok(()),
        }
    }

    /// Rejects commands unless the meeting has not started yet.
    fn require_scheduled(&self) -> Result<(), DomainError> {
        self.require_open()?;
        if self.status == MeetingStatus::InProgress {
            Err(DomainError::conflict("meeting is in progress"))
        } else {
            Ok(())
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn schedule(
        &self,
        services: &MeetingServices,
        meeting_id: Uuid,
        actor: Actor,
        title: String,
        description: Option<String>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        time_zone: String,
        location: Option<String>,
        attendees: Vec<AttendeeSpec>,
        recurrence: Option<Recurrence>,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        if self.exists() {
            return Err(DomainError::conflict("meeting already exists"));
        }
        let organizer_id = actor.user_id;
        let mut violations = Violations::new();
        let title = violations.check(validate_title(&title));
        let description = violations
            .check(validate_description(description.as_deref()))
            .flatten();
        let location = violations
            .check(validate_location(location.as_deref()))
            .flatten();
        violations.check(validate_times(starts_at, ends_at));
        let time_zone = time_zone.trim().to_string();
        violations.check(validate_time_zone("time_zone", &time_zone));
        if attendees.len() > MAX_ATTENDEES {
            violations.push(too_many_attendees());
        }
        let mut seen = HashSet::with_capacity(attendees.len());
        for (i, attendee) in attendees.iter().enumerate() {
            let field = format!("attendees[{i}].user_id");
            if attendee.user_id == organizer_id {
                violations.push(FieldError::new(field, "the organizer is not an attendee"));
            } else if !seen.insert(attendee.user_id) {
                violations.push(FieldError::new(field, "duplicate attendee"));
            }
        }
        if recurrence.is_some() {
            violations.push(FieldError::new(
                "recurrence",
                "recurring series are not supported yet",
            ));
        }
        violations.into_result()?;

        if !attendees.is_empty() {
            let ids: Vec<Uuid> = attendees.iter().map(|a| a.user_id).collect();
            let missing: HashSet<Uuid> = services
                .users
                .missing_users(&ids)
                .await
                .map_err(DomainError::Unavailable)?
                .into_iter()
                .collect();
            let unknown: Vec<FieldError> = ids
                .iter()
                .enumerate()
                .filter(|(_, id)| missing.contains(id))
                .map(|(i, _)| FieldError::new(format!("attendees[{i}].user_id"), "unknown user"))
                .collect();
            if !unknown.is_empty() {
                return Err(DomainError::Validation(unknown));
            }
        }

        Ok(Some(MeetingEvent::MeetingScheduled {
            meeting_id,
            organizer_id,
            title: title.expect("BUG: title validated"),
            description,
            starts_at,
            ends_at,
            time_zone,
            location,
            attendees,
            recurrence,
        }))
    }

    fn update_details(
        &self,
        actor: Actor,
        title: Option<String>,
        description: Option<Option<String>>,
        location: Option<Option<String>>,
        time_zone: Option<String>,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_open()?;
        let mut violations = Violations::new();
        let new_title = match title {
            Some(title) => violations.check(validate_title(&title)).unwrap_or_default(),
            None => self.title.clone(),
        };
        let new_description = match description {
            Some(description) => violations
                .check(validate_description(description.as_deref()))
                .flatten(),
            None => self.description.clone(),
        };
        let new_location = match location {
            Some(location) => violations
                .check(validate_location(location.as_deref()))
                .flatten(),
            None => self.location.clone(),
        };
        let new_time_zone = match time_zone {
            Some(tz) => {
                let tz = tz.trim().to_string();
                violations.check(validate_time_zone("time_zone", &tz));
                tz
            }
            None => self.time_zone.clone(),
        };
        violations.into_result()?;
        if new_title == self.title
            && new_description == self.description
            && new_location == self.location
            && new_time_zone == self.time_zone
        {
            return Ok(None);
        }
        Ok(Some(MeetingEvent::MeetingDetailsUpdated {
            title: new_title,
            description: new_description,
            location: new_location,
            time_zone: new_time_zone,
        }))
    }

    fn reschedule(
        &self,
        actor: Actor,
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        let new_starts_at = starts_at.unwrap_or(self.starts_at);
        let new_ends_at = ends_at.unwrap_or(self.ends_at);
        validate_times(new_starts_at, new_ends_at)
            .map_err(|error| DomainError::Validation(vec![error]))?;
        if new_starts_at == self.starts_at && new_ends_at == self.ends_at {
            return Ok(None);
        }
        Ok(Some(MeetingEvent::MeetingRescheduled {
            starts_at: new_starts_at,
            ends_at: new_ends_at,
            previous_starts_at: self.starts_at,
            previous_ends_at: self.ends_at,
        }))
    }

    async fn invite(
        &self,
        services: &MeetingServices,
        actor: Actor,
        attendee: AttendeeSpec,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_open()?;
        if attendee.user_id == self.organizer_id {
            return Err(DomainError::invalid(
                "user_id",
                "the organizer is not an attendee",
            ));
        }
        if self.is_attendee(attendee.user_id) {
            return Err(DomainError::conflict("user is already an attendee"));
        }
        if self.attendees.len() + 1 > MAX_ATTENDEES {
            return Err(DomainError::Validation(vec![too_many_attendees()]));
        }
        let missing = services
            .users
            .missing_users(&[attendee.user_id])
            .await
            .map_err(DomainError::Unavailable)?;
        if missing.contains(&attendee.user_id) {
            return Err(DomainError::invalid("user_id", "unknown user"));
        }
        Ok(Some(MeetingEvent::AttendeeInvited {
            user_id: attendee.user_id,
            optional: attendee.optional,
        }))
    }

    fn remove_attendee(
        &self,
        actor: Actor,
        user_id: Uuid,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_open()?;
        if !self.is_attendee(user_id) {
            return Err(DomainError::not_found("attendee not found"));
        }
        Ok(Some(MeetingEvent::AttendeeRemoved { user_id }))
    }

    fn respond(
        &self,
        actor: Actor,
        response: ResponseStatus,
        comment: Option<String>,
        occurrence: Option<DateTime<Utc>>,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_exists()?;
        if !self.is_attendee(actor.user_id) {
            return Err(if actor.user_id == self.organizer_id {
                DomainError::forbidden("the organizer does not respond")
            } else {
                DomainError::not_found(NOT_FOUND)
            });
        }
        self.require_open()?;
        let mut violations = Violations::new();
        let comment = violations
            .check(validate_optional_text(
                "comment",
                comment.as_deref(),
                MAX_COMMENT_CHARS,
            ))
            .flatten();
        if occurrence.is_some() && self.recurrence.is_none() {
            violations.push(FieldError::new(
                "occurrence",
                "the meeting is not recurring",
            ));
        }
        violations.into_result()?;
        Ok(Some(MeetingEvent::AttendeeResponded {
            user_id: actor.user_id,
            response,
            comment,
            occurrence,
        }))
    }

    fn cancel(
        &self,
        actor: Actor,
        reason: Option<String>,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        let reason = validate_optional_text("reason", reason.as_deref(), MAX_REASON_CHARS)
            .map_err(|error| DomainError::Validation(vec![error]))?;
        Ok(Some(MeetingEvent::MeetingCancelled { reason }))
    }

    fn start(&self, actor: Actor, at: DateTime<Utc>) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        Ok(Some(MeetingEvent::MeetingStarted { at }))
    }

    fn end(&self, actor: Actor, at: DateTime<Utc>) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_organizer(actor)?;
        self.require_open()?;
        if self.status == MeetingStatus::Scheduled {
            return Err(DomainError::conflict("meeting has not started"));
        }
        Ok(Some(MeetingEvent::MeetingEnded { at }))
    }

    fn post_message(
        &self,
        actor: Actor,
        message_id: Uuid,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<MeetingEvent>, DomainError> {
        self.require_member(actor)?;
        self.require_open()?;
        let text = validate_text("text", text, 1, MAX_MESSAGE_CHARS)
            .map_err(|error| DomainError::Validation(vec![error]))?;
        Ok(Some(MeetingEvent::ChatMessagePosted {
            message_id,
            author_id: actor.user_id,
            text,
            at,
        }))
    }
}

impl Aggregate for Meeting {
    const TYPE: &'static str = "meeting";
    type Command = MeetingCommand;
    type Event = MeetingEvent;
    type Error = DomainError;
    type Services = MeetingServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            MeetingCommand::Schedule {
                meeting_id,
                actor,
                title,
                description,
                starts_at,
                ends_at,
                time_zone,
                location,
                attendees,
                recurrence,
            } => {
                self.schedule(
                    services,
                    meeting_id,
                    actor,
                    title,
                    description,
                    starts_at,
                    ends_at,
                    time_zone,
                    location,
                    attendees,
                    recurrence,
                )
                .await?
            }
            MeetingCommand::UpdateDetails {
                actor,
                title,
                description,
                location,
                time_zone,
            } => self.update_details(actor, title, description, location, time_zone)?,
            MeetingCommand::Reschedule {
                actor,
                starts_at,
                ends_at,
            } => self.reschedule(actor, starts_at, ends_at)?,
            MeetingCommand::Invite { actor, attendee } => {
                self.invite(services, actor, attendee).await?
            }
            MeetingCommand::RemoveAttendee { actor, user_id } => {
                self.remove_attendee(actor, user_id)?
            }
            MeetingCommand::Respond {
                actor,
                response,
                comment,
                occurrence,
            } => self.respond(actor, response, comment, occurrence)?,
            MeetingCommand::Cancel { actor, reason } => self.cancel(actor, reason)?,
            MeetingCommand::Start { actor, at } => self.start(actor, at)?,
            MeetingCommand::End { actor, at } => self.end(actor, at)?,
            MeetingCommand::PostMessage {
                actor,
                message_id,
                text,
                at,
            } => self.post_message(actor, message_id, &text, at)?,
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            MeetingEvent::MeetingScheduled {
                meeting_id,
                organizer_id,
                title,
                description,
                starts_at,
                ends_at,
                time_zone,
                location,
                attendees,
                recurrence,
            } => {
                *self = Meeting {
                    id: Some(meeting_id),
                    organizer_id,
                    title,
                    description,
                    starts_at,
                    ends_at,
                    time_zone,
                    location,
                    status: MeetingStatus::Scheduled,
                    attendees: attendees
                        .into_iter()
                        .map(|spec| Attendee {
                            user_id: spec.user_id,
                            optional: spec.optional,
                            response: ResponseStatus::NeedsAction,
                            comment: None,
                        })
                        .collect(),
                    recurrence,
                };
            }
            MeetingEvent::MeetingDetailsUpdated {
                title,
                description,
                location,
                time_zone,
            } => {
                self.title = title;
                self.description = description;
                self.location = location;
                self.time_zone = time_zone;
            }
            MeetingEvent::MeetingRescheduled {
                starts_at, ends_at, ..
            } => {
                self.starts_at = starts_at;
                self.ends_at = ends_at;
                // A moved meeting needs a fresh answer from everyone.
                for attendee in &mut self.attendees {
                    attendee.response = ResponseStatus::NeedsAction;
                }
            }
            MeetingEvent::AttendeeInvited { user_id, optional } => {
                self.attendees.push(Attendee {
                    user_id,
                    optional,
                    response: ResponseStatus::NeedsAction,
                    comment: None,
                });
            }
            MeetingEvent::AttendeeRemoved { user_id } => {
                self.attendees.retain(|a| a.user_id != user_id);
            }
            MeetingEvent::AttendeeResponded {
                user_id,
                response,
                comment,
                ..
            } => {
                if let Some(attendee) = self.attendees.iter_mut().find(|a| a.user_id == user_id) {
                    attendee.response = response;
                    attendee.comment = comment;
                }
            }
            MeetingEvent::MeetingCancelled { .. } => self.status = MeetingStatus::Cancelled,
            MeetingEvent::MeetingStarted { .. } => self.status = MeetingStatus::InProgress,
            MeetingEvent::MeetingEnded { .. } => self.status = MeetingStatus::Ended,
            MeetingEvent::ChatMessagePosted { .. } => {}
        }
    }
}
