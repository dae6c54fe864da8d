//! How the meeting answers each command: with the event it records, with nothing (the
//! command changes nothing), or with the rule it breaks. Pure but for the user directory,
//! which scheduling and inviting ask whether the invited users exist.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::commands::{MeetingCommand, MeetingServices, ScheduleMeeting};
use super::events::MeetingEvent;
use super::recurrence::{validate_recurrence, Series, MAX_CHANGED_OCCURRENCES};
use super::rules::{
    validate_attendees, validate_description, validate_location, validate_times, validate_title,
    MAX_COMMENT_CHARS, MAX_MESSAGE_CHARS, MAX_REASON_CHARS,
};
use super::state::Meeting;
use super::values::{AttendeeSpec, MeetingStatus, Recurrence, ResponseStatus};
use crate::common::{Actor, DomainError, FieldError, Violations};
use crate::validation::{validate_long_text, validate_optional_long_text, validate_time_zone};

/// What a command decides: at most one event.
type Decision = Result<Option<MeetingEvent>, DomainError>;

impl Meeting {
    /// Decides `command` against the meeting as it stands.
    pub(super) async fn decide(
        &self,
        command: MeetingCommand,
        services: &MeetingServices,
    ) -> Decision {
        match command {
            MeetingCommand::Schedule(command) => self.schedule(services, command).await,
            MeetingCommand::UpdateDetails {
                actor,
                title,
                description,
                location,
                time_zone,
            } => self.update_details(actor, title, description, location, time_zone),
            MeetingCommand::Reschedule {
                actor,
                starts_at,
                ends_at,
            } => self.reschedule(actor, starts_at, ends_at),
            MeetingCommand::ChangeRecurrence { actor, recurrence } => {
                self.change_recurrence(actor, recurrence)
            }
            MeetingCommand::ChangeOccurrence {
                actor,
                occurrence,
                starts_at,
                ends_at,
                cancelled,
            } => self.change_occurrence(actor, occurrence, starts_at, ends_at, cancelled),
            MeetingCommand::SplitSeries {
                actor,
                occurrence,
                continued_as,
            } => self.split_series(actor, occurrence, continued_as),
            MeetingCommand::Invite { actor, attendee } => {
                self.invite(services, actor, attendee).await
            }
            MeetingCommand::RemoveAttendee { actor, user_id } => {
                self.remove_attendee(actor, user_id)
            }
            MeetingCommand::Respond {
                actor,
                response,
                comment,
                occurrence,
            } => self.respond(actor, response, comment, occurrence),
            MeetingCommand::Cancel { actor, reason } => self.cancel(actor, reason),
            MeetingCommand::Start { actor, at } => self.start(actor, at),
            MeetingCommand::End { actor, at } => self.end(actor, at),
            MeetingCommand::PostMessage {
                actor,
                message_id,
                text,
                at,
            } => self.post_message(actor, message_id, &text, at),
        }
    }

    async fn schedule(&self, services: &MeetingServices, command: ScheduleMeeting) -> Decision {
        if self.exists() {
            return Err(DomainError::conflict("meeting already exists"));
        }
        let organizer_id = command.actor.user_id;
        let mut violations = Violations::new();
        let title = violations.check(validate_title(&command.title));
        let description = violations
            .check(validate_description(command.description.as_deref()))
            .flatten();
        let location = violations
            .check(validate_location(command.location.as_deref()))
            .flatten();
        let times = violations.check(validate_times(command.starts_at, command.ends_at));
        let time_zone = violations.check(validate_time_zone("time_zone", &command.time_zone));
        for error in validate_attendees(organizer_id, &command.attendees) {
            violations.push(error);
        }
        if let (Some(recurrence), Some(()), Some(time_zone)) =
            (&command.recurrence, times, &time_zone)
        {
            violations.check(validate_recurrence(
                command.starts_at,
                command.ends_at,
                time_zone,
                recurrence,
            ));
        }
        violations.into_result()?;

        if !command.attendees.is_empty() {
            let ids: Vec<Uuid> = command.attendees.iter().map(|a| a.user_id).collect();
            let missing: HashSet<Uuid> = services.missing_users(&ids).await?.into_iter().collect();
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
            meeting_id: command.meeting_id,
            organizer_id,
            title: title.expect("BUG: title validated"),
            description,
            starts_at: command.starts_at,
            ends_at: command.ends_at,
            time_zone: time_zone.expect("BUG: time zone validated"),
            location,
            attendees: command.attendees,
            recurrence: command.recurrence,
        }))
    }

    fn update_details(
        &self,
        actor: Actor,
        title: Option<String>,
        description: Option<Option<String>>,
        location: Option<Option<String>>,
        time_zone: Option<String>,
    ) -> Decision {
        self.require_organizer(actor)?;
        self.require_open()?;
        let mut violations = Violations::new();
        let new_title = violations.update(title, &self.title, |t| validate_title(&t));
        let new_description = violations.update(description, &self.description, |d| {
            validate_description(d.as_deref())
        });
        let new_location = violations.update(location, &self.location, |l| {
            validate_location(l.as_deref())
        });
        let new_time_zone = violations.update(time_zone, &self.time_zone, |tz| {
            validate_time_zone("time_zone", &tz)
        });
        violations.into_result()?;
        if let Some(recurrence) = &self.recurrence {
            // The rule is read in the zone: it must still start the series there.
            validate_recurrence(self.starts_at, self.ends_at, &new_time_zone, recurrence)?;
        }
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
    ) -> Decision {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        let new_starts_at = starts_at.unwrap_or(self.starts_at);
        let new_ends_at = ends_at.unwrap_or(self.ends_at);
        validate_times(new_starts_at, new_ends_at)?;
        if new_starts_at == self.starts_at && new_ends_at == self.ends_at {
            return Ok(None);
        }
        if let Some(recurrence) = &self.recurrence {
            validate_recurrence(new_starts_at, new_ends_at, &self.time_zone, recurrence)?;
        }
        Ok(Some(MeetingEvent::MeetingRescheduled {
            starts_at: new_starts_at,
            ends_at: new_ends_at,
            previous_starts_at: self.starts_at,
            previous_ends_at: self.ends_at,
        }))
    }

    fn change_recurrence(&self, actor: Actor, recurrence: Option<Recurrence>) -> Decision {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        if let Some(recurrence) = &recurrence {
            validate_recurrence(self.starts_at, self.ends_at, &self.time_zone, recurrence)?;
        }
        if recurrence == self.recurrence {
            return Ok(None);
        }
        Ok(Some(MeetingEvent::RecurrenceChanged { recurrence }))
    }

    fn change_occurrence(
        &self,
        actor: Actor,
        occurrence: DateTime<Utc>,
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
        cancelled: Option<bool>,
    ) -> Decision {
        self.require_organizer(actor)?;
        self.require_open()?;
        let series: Series = self
            .series()
            .ok_or_else(|| DomainError::not_found("the meeting is not recurring"))?;
        if !series.is_occurrence(occurrence) {
            return Err(DomainError::not_found("no such occurrence"));
        }
        let current = self.occurrence_changes.get(&occurrence);
        if current.is_none() && self.occurrence_changes.len() >= MAX_CHANGED_OCCURRENCES {
            return Err(DomainError::conflict(format!(
                "at most {MAX_CHANGED_OCCURRENCES} occurrences of a series have their own \
                 time or cancellation; split the series"
            )));
        }
        let (now_starts, now_ends, now_cancelled) = match current {
            Some(change) => (change.starts_at, change.ends_at, change.cancelled),
            None => (occurrence, occurrence + series.duration(), false),
        };
        let moves = starts_at.is_some() || ends_at.is_some();
        if cancelled == Some(true) {
            if moves {
                return Err(DomainError::invalid(
                    "cancelled",
                    "cancel an occurrence or move it, not both",
                ));
            }
            return Ok((!now_cancelled).then_some(MeetingEvent::OccurrenceCancelled { occurrence }));
        }
        // A new start alone moves the occurrence, keeping its length.
        let new_starts = starts_at.unwrap_or(now_starts);
        let new_ends = ends_at.unwrap_or(new_starts + (now_ends - now_starts));
        validate_times(new_starts, new_ends)?;
        if now_cancelled && cancelled != Some(false) {
            return Err(DomainError::conflict(
                "the occurrence is cancelled; send \"cancelled\": false to put it back on",
            ));
        }
        if !moves && cancelled.is_none() {
            return Err(DomainError::invalid(
                "",
                "nothing to change: send starts_at, ends_at or cancelled",
            ));
        }
        if !now_cancelled && new_starts == now_starts && new_ends == now_ends {
            return Ok(None);
        }
        Ok(Some(MeetingEvent::OccurrenceRescheduled {
            occurrence,
            starts_at: new_starts,
            ends_at: new_ends,
        }))
    }

    fn split_series(
        &self,
        actor: Actor,
        occurrence: DateTime<Utc>,
        continued_as: Uuid,
    ) -> Decision {
        let (series, recurrence) = self.series_to_split(actor, occurrence)?;
        let (before, _) = series.split(recurrence, occurrence)?;
        Ok(Some(MeetingEvent::SeriesSplit {
            occurrence,
            continued_as,
            recurrence: before,
        }))
    }

    async fn invite(
        &self,
        services: &MeetingServices,
        actor: Actor,
        attendee: AttendeeSpec,
    ) -> Decision {
        self.require_organizer(actor)?;
        self.require_open()?;
        self.require_invitable(attendee.user_id)?;
        let missing = services.missing_users(&[attendee.user_id]).await?;
        if missing.contains(&attendee.user_id) {
            return Err(DomainError::invalid("user_id", "unknown user"));
        }
        Ok(Some(MeetingEvent::AttendeeInvited {
            user_id: attendee.user_id,
            optional: attendee.optional,
        }))
    }

    fn remove_attendee(&self, actor: Actor, user_id: Uuid) -> Decision {
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
    ) -> Decision {
        self.require_attendee(actor)?;
        self.require_open()?;
        let mut violations = Violations::new();
        let comment = violations
            .check(validate_optional_long_text(
                "comment",
                comment.as_deref(),
                MAX_COMMENT_CHARS,
            ))
            .flatten();
        if let Some(occurrence) = occurrence {
            match self.series() {
                None => violations.push(FieldError::new(
                    "occurrence",
                    "the meeting is not recurring",
                )),
                Some(series) if !series.is_occurrence(occurrence) => violations.push(
                    FieldError::new("occurrence", "not an occurrence of the series"),
                ),
                Some(_) => {
                    if self
                        .occurrence_changes
                        .get(&occurrence)
                        .is_some_and(|c| c.cancelled)
                    {
                        return Err(DomainError::conflict("the occurrence is cancelled"));
                    }
                    let answered = self
                        .occurrence_answers
                        .keys()
                        .filter(|(_, user)| *user == actor.user_id);
                    if !self
                        .occurrence_answers
                        .contains_key(&(occurrence, actor.user_id))
                        && answered.count() >= MAX_CHANGED_OCCURRENCES
                    {
                        return Err(DomainError::conflict(format!(
                            "at most {MAX_CHANGED_OCCURRENCES} occurrences of a series are \
                             answered one by one; answer the series"
                        )));
                    }
                }
            }
        }
        violations.into_result()?;
        Ok(Some(MeetingEvent::AttendeeResponded {
            user_id: actor.user_id,
            response,
            comment,
            occurrence,
        }))
    }

    fn cancel(&self, actor: Actor, reason: Option<String>) -> Decision {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        let reason = validate_optional_long_text("reason", reason.as_deref(), MAX_REASON_CHARS)?;
        Ok(Some(MeetingEvent::MeetingCancelled { reason }))
    }

    fn start(&self, actor: Actor, at: DateTime<Utc>) -> Decision {
        self.require_organizer(actor)?;
        self.require_scheduled()?;
        Ok(Some(MeetingEvent::MeetingStarted { at }))
    }

    fn end(&self, actor: Actor, at: DateTime<Utc>) -> Decision {
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
    ) -> Decision {
        self.require_member(actor)?;
        self.require_open()?;
        let text = validate_long_text("text", text, 1, MAX_MESSAGE_CHARS)?;
        Ok(Some(MeetingEvent::ChatMessagePosted {
            message_id,
            author_id: actor.user_id,
            text,
            at,
        }))
    }
}
