//! The facts recorded about a meeting. Their JSON (serde's external tagging,
//! `{"VariantName": {...}}`) is what the event store keeps: renaming a variant
//! or a field breaks every stored stream unless an upcaster is added.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{AttendeeSpec, Recurrence, ResponseStatus};

/// Schema version of every meeting event.
pub const MEETING_EVENT_VERSION: &str = "1.0";

/// Facts recorded about a meeting, serialized with serde's default external
/// tagging (`{"VariantName": {...}}`).
///
/// Events of one occurrence of a series name it by its original start (`occurrence`).
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
        /// Repetition rule of a series; `None` for a single meeting.
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
    /// The repetition rule changed: a single meeting became a series, a series got another
    /// rule or exdates, or (`None`) became a single meeting. Every occurrence's own time,
    /// cancellation and answers are dropped: they named the old occurrences.
    RecurrenceChanged {
        /// The rule after the change.
        recurrence: Option<Recurrence>,
    },
    /// One occurrence of a series got its own time (or, cancelled before, is back on).
    OccurrenceRescheduled {
        /// The occurrence's original start (where the rule puts it).
        occurrence: DateTime<Utc>,
        /// Its start now.
        starts_at: DateTime<Utc>,
        /// Its end now.
        ends_at: DateTime<Utc>,
    },
    /// One occurrence of a series was called off; the series goes on.
    OccurrenceCancelled {
        /// The occurrence's original start.
        occurrence: DateTime<Utc>,
    },
    /// "This and following": the series ends just before `occurrence`, and the new series
    /// `continued_as` carries on from it (scheduled in the same transaction). The changes
    /// of occurrences from `occurrence` on went with it.
    SeriesSplit {
        /// The original start of the first occurrence that moved to the new series.
        occurrence: DateTime<Utc>,
        /// The meeting that continues the series.
        continued_as: Uuid,
        /// This series' rule after the split: ending before `occurrence`.
        recurrence: Recurrence,
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
            MeetingEvent::RecurrenceChanged { .. } => "RecurrenceChanged",
            MeetingEvent::OccurrenceRescheduled { .. } => "OccurrenceRescheduled",
            MeetingEvent::OccurrenceCancelled { .. } => "OccurrenceCancelled",
            MeetingEvent::SeriesSplit { .. } => "SeriesSplit",
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

impl MeetingEvent {
    /// One line for an audit timeline (`meetings events history`): what happened, with the
    /// values an auditor looks for. Free text (titles, chat) is quoted and cut at 60
    /// characters so a line stays a line.
    pub fn summary(&self) -> String {
        use crate::common::quote_short as q;
        match self {
            MeetingEvent::MeetingScheduled {
                title,
                starts_at,
                ends_at,
                time_zone,
                attendees,
                organizer_id,
                recurrence,
                ..
            } => format!(
                "scheduled {} for {} – {} ({time_zone}){} by organizer {organizer_id}, {} attendee(s)",
                q(title),
                starts_at.to_rfc3339(),
                ends_at.to_rfc3339(),
                match recurrence {
                    Some(r) => format!(", repeating {}", q(&r.rrule)),
                    None => String::new(),
                },
                attendees.len()
            ),
            MeetingEvent::MeetingDetailsUpdated {
                title, time_zone, ..
            } => format!("details changed: title {}, time zone {time_zone}", q(title)),
            MeetingEvent::MeetingRescheduled {
                starts_at,
                ends_at,
                previous_starts_at,
                ..
            } => format!(
                "moved from {} to {} – {}",
                previous_starts_at.to_rfc3339(),
                starts_at.to_rfc3339(),
                ends_at.to_rfc3339()
            ),
            MeetingEvent::RecurrenceChanged { recurrence } => match recurrence {
                Some(r) => format!(
                    "repeats {} with {} excluded date(s)",
                    q(&r.rrule),
                    r.exdates.len()
                ),
                None => "no longer repeats".to_string(),
            },
            MeetingEvent::OccurrenceRescheduled {
                occurrence,
                starts_at,
                ends_at,
            } => format!(
                "occurrence {} moved to {} – {}",
                occurrence.to_rfc3339(),
                starts_at.to_rfc3339(),
                ends_at.to_rfc3339()
            ),
            MeetingEvent::OccurrenceCancelled { occurrence } => {
                format!("occurrence {} cancelled", occurrence.to_rfc3339())
            }
            MeetingEvent::SeriesSplit {
                occurrence,
                continued_as,
                recurrence,
            } => format!(
                "split: repeats {} until before {}, continued by meeting {continued_as}",
                q(&recurrence.rrule),
                occurrence.to_rfc3339()
            ),
            MeetingEvent::AttendeeInvited { user_id, optional } => format!(
                "invited {user_id}{}",
                if *optional { " (optional)" } else { "" }
            ),
            MeetingEvent::AttendeeRemoved { user_id } => format!("removed attendee {user_id}"),
            MeetingEvent::AttendeeResponded {
                user_id,
                response,
                occurrence,
                ..
            } => match occurrence {
                Some(at) => format!(
                    "{user_id} answered {} for the occurrence at {}",
                    response.as_str(),
                    at.to_rfc3339()
                ),
                None => format!("{user_id} answered {}", response.as_str()),
            },
            MeetingEvent::MeetingCancelled { reason } => match reason {
                Some(reason) => format!("cancelled: {}", q(reason)),
                None => "cancelled".to_string(),
            },
            MeetingEvent::MeetingStarted { at } => format!("started at {}", at.to_rfc3339()),
            MeetingEvent::MeetingEnded { at } => format!("ended at {}", at.to_rfc3339()),
            MeetingEvent::ChatMessagePosted {
                author_id, text, ..
            } => format!("{author_id} wrote {}", q(text)),
        }
    }
}
