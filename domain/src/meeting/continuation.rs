//! "This and following": a series split at one of its occurrences. The series keeps the
//! occurrences before it ([`MeetingEvent::SeriesSplit`](super::MeetingEvent::SeriesSplit)); a
//! new meeting, scheduled in the same transaction, carries on from it with the requested
//! changes. Calendars (Google, Outlook) do the same: `RANGE=THISANDFUTURE` is barely
//! supported by clients, two series with their own `UID`s are understood by all.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::commands::{MeetingCommand, ScheduleMeeting};
use super::recurrence::Series;
use super::state::Meeting;
use super::values::{AttendeeSpec, Recurrence, ResponseStatus};
use crate::common::{Actor, DomainError, Role};

/// What the new series changes compared to the one it continues; `None` keeps a field.
/// `description`/`location` `Some(None)` clear them; `recurrence` `Some(None)` makes the
/// continuation a single meeting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesChanges {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New location.
    pub location: Option<Option<String>>,
    /// New zone the rule is read in.
    pub time_zone: Option<String>,
    /// New first start (default: the occurrence split at).
    pub starts_at: Option<DateTime<Utc>>,
    /// New first end (default: the start plus the series' length).
    pub ends_at: Option<DateTime<Utc>>,
    /// New rule (default: the old one from the occurrence on).
    pub recurrence: Option<Option<Recurrence>>,
}

impl SeriesChanges {
    /// Whether the occurrences stay where they were: then their own times, cancellations and
    /// the attendees' answers carry over; otherwise, as when a series is rescheduled, they
    /// are dropped.
    fn keeps_times(&self) -> bool {
        self.starts_at.is_none()
            && self.ends_at.is_none()
            && self.time_zone.is_none()
            && self.recurrence.is_none()
    }
}

impl Meeting {
    /// The checks a split passes: organizer or admin, open, a series, and `occurrence` one of
    /// its occurrences after the first. Returns the series and its rule.
    pub(super) fn series_to_split(
        &self,
        actor: Actor,
        occurrence: DateTime<Utc>,
    ) -> Result<(Series, &Recurrence), DomainError> {
        self.require_organizer(actor)?;
        self.require_open()?;
        let (Some(series), Some(recurrence)) = (self.series(), self.recurrence.as_ref()) else {
            return Err(DomainError::not_found("the meeting is not recurring"));
        };
        if !series.is_occurrence(occurrence) {
            return Err(DomainError::not_found("no such occurrence"));
        }
        if occurrence == self.starts_at {
            return Err(DomainError::invalid(
                "occurrence_start",
                "this is the series' first occurrence: change the whole series with \
                 PATCH /v1/meetings/{id}",
            ));
        }
        Ok((series, recurrence))
    }

    /// The commands that schedule `continued_as`, the series carrying on from `occurrence`
    /// with `changes`: same organizer, details and attendees (but those in `dropped`, users
    /// no longer active), the rest of the rule. When the times stay, the occurrences' own
    /// times and cancellations, the attendees' answers to the series and their answers to
    /// single occurrences from the split on carry over.
    pub fn continuation(
        &self,
        actor: Actor,
        occurrence: DateTime<Utc>,
        continued_as: Uuid,
        changes: SeriesChanges,
        dropped: &[Uuid],
    ) -> Result<Vec<MeetingCommand>, DomainError> {
        let (series, recurrence) = self.series_to_split(actor, occurrence)?;
        let (_, rest) = series.split(recurrence, occurrence)?;
        let organizer = Actor::new(self.organizer_id(), Role::Member);
        let keeps_times = changes.keeps_times();
        let starts_at = changes.starts_at.unwrap_or(occurrence);
        let ends_at = changes
            .ends_at
            .unwrap_or(starts_at + (self.ends_at - self.starts_at));
        let attendees: Vec<&super::values::Attendee> = self
            .attendees()
            .iter()
            .filter(|a| !dropped.contains(&a.user_id))
            .collect();
        let mut commands = vec![MeetingCommand::Schedule(ScheduleMeeting {
            meeting_id: continued_as,
            actor: organizer,
            title: changes.title.unwrap_or_else(|| self.title.clone()),
            description: changes
                .description
                .unwrap_or_else(|| self.description.clone()),
            starts_at,
            ends_at,
            time_zone: changes.time_zone.unwrap_or_else(|| self.time_zone.clone()),
            location: changes.location.unwrap_or_else(|| self.location.clone()),
            attendees: attendees
                .iter()
                .map(|a| AttendeeSpec {
                    user_id: a.user_id,
                    optional: a.optional,
                })
                .collect(),
            recurrence: changes.recurrence.unwrap_or(Some(rest)),
        })];
        if !keeps_times {
            return Ok(commands);
        }
        for (original, change) in self.occurrence_changes.range(occurrence..) {
            commands.push(MeetingCommand::ChangeOccurrence {
                actor: organizer,
                occurrence: *original,
                starts_at: (!change.cancelled).then_some(change.starts_at),
                ends_at: (!change.cancelled).then_some(change.ends_at),
                cancelled: change.cancelled.then_some(true),
            });
        }
        for attendee in &attendees {
            if attendee.response != ResponseStatus::NeedsAction {
                commands.push(MeetingCommand::Respond {
                    actor: Actor::new(attendee.user_id, Role::Member),
                    response: attendee.response,
                    comment: attendee.comment.clone(),
                    occurrence: None,
                });
            }
        }
        // After the series' answers, which leave the single occurrences' answers as they are.
        for ((original, user_id), answer) in
            self.occurrence_answers.range((occurrence, Uuid::nil())..)
        {
            let cancelled = self
                .occurrence_changes
                .get(original)
                .is_some_and(|change| change.cancelled);
            if !cancelled && attendees.iter().any(|a| a.user_id == *user_id) {
                commands.push(MeetingCommand::Respond {
                    actor: Actor::new(*user_id, Role::Member),
                    response: answer.response,
                    comment: answer.comment.clone(),
                    occurrence: Some(*original),
                });
            }
        }
        Ok(commands)
    }
}
