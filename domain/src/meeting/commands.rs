//! What can be asked of a meeting ([`MeetingCommand`]) and the outside services the
//! aggregate consults to decide ([`MeetingServices`]). Commands are never stored.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{AttendeeSpec, Recurrence, ResponseStatus};
use crate::common::{Actor, DomainError};

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

    /// The ids among `ids` that are no active users; a directory that cannot answer makes
    /// the command [`DomainError::Unavailable`].
    pub(super) async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, DomainError> {
        self.users
            .missing_users(ids)
            .await
            .map_err(DomainError::Unavailable)
    }
}

impl std::fmt::Debug for MeetingServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeetingServices").finish_non_exhaustive()
    }
}

/// Everything needed to create a meeting: the one argument of [`MeetingCommand::Schedule`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleMeeting {
    /// Id chosen by the application for the new meeting.
    pub meeting_id: Uuid,
    /// The organizer.
    pub actor: Actor,
    /// Title, 1..=200 characters after trimming.
    pub title: String,
    /// Free text, at most 10 000 characters.
    pub description: Option<String>,
    /// Start instant.
    pub starts_at: DateTime<Utc>,
    /// End instant, after the start and at most 24 h later.
    pub ends_at: DateTime<Utc>,
    /// IANA time zone the meeting is planned in.
    pub time_zone: String,
    /// Where it takes place, at most 500 characters.
    pub location: Option<String>,
    /// Invited users (organizer excluded), at most 500.
    pub attendees: Vec<AttendeeSpec>,
    /// Repetition rule of a series (read in `time_zone`; `starts_at` is its first occurrence).
    pub recurrence: Option<Recurrence>,
}

/// Commands accepted by the [`Meeting`](super::Meeting) aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum MeetingCommand {
    /// Create a meeting organized by the command's `actor`.
    Schedule(ScheduleMeeting),
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
    /// Make the meeting a series, change its rule, or (`None`) make it a single meeting.
    ChangeRecurrence {
        /// Who asks.
        actor: Actor,
        /// The new rule.
        recurrence: Option<Recurrence>,
    },
    /// Move, cancel or restore one occurrence of a series.
    ChangeOccurrence {
        /// Who asks.
        actor: Actor,
        /// The occurrence's original start.
        occurrence: DateTime<Utc>,
        /// New start (default: its current one).
        starts_at: Option<DateTime<Utc>>,
        /// New end (default: its current one).
        ends_at: Option<DateTime<Utc>>,
        /// `true` calls it off, `false` puts a cancelled one back on.
        cancelled: Option<bool>,
    },
    /// "This and following": end the series just before `occurrence`; the series
    /// `continued_as` (see [`Meeting::continuation`](super::Meeting::continuation)) carries on.
    SplitSeries {
        /// Who asks.
        actor: Actor,
        /// Original start of the first occurrence of the new series.
        occurrence: DateTime<Utc>,
        /// Id of the new series.
        continued_as: Uuid,
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
