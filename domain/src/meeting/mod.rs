//! The `Meeting` aggregate: scheduling, details, attendees and their
//! responses, the meeting lifecycle (start/end/cancel) and in-meeting chat.
//!
//! One job per module, each depending only on those listed before it:
//! - `values`: status, attendees, answers, recurrence;
//! - `recurrence`: a series' rule in its time zone, expanded into occurrences ([`Series`]);
//! - `events`: the stored facts ([`MeetingEvent`]);
//! - `membership`: who belongs to a meeting ([`Membership`]), folded from the events;
//! - `commands`: what can be asked ([`MeetingCommand`]) and the services asked to decide;
//! - `state`: the [`Meeting`] as its events left it, and its accessors;
//! - `rules`: limits, input validation, and the existence → access → status checks;
//! - `decide`: each command's decision;
//! - `continuation`: the new series a "this and following" edit starts;
//! - this file: the `Aggregate` wiring (decide, record, apply) and the public names.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

mod commands;
mod continuation;
mod decide;
mod events;
mod membership;
mod recurrence;
mod rules;
mod state;
mod values;

#[cfg(test)]
mod tests;

pub use commands::{MeetingCommand, MeetingServices, ScheduleMeeting, UserDirectory};
pub use continuation::SeriesChanges;
pub use events::{MeetingEvent, MEETING_EVENT_VERSION};
pub use membership::{Invitee, Membership, MembershipError};
pub use recurrence::{
    validate_recurrence, Occurrence, OccurrenceChange, Series, MAX_CHANGED_OCCURRENCES, MAX_COUNT,
    MAX_EXDATES, MAX_EXPANDED, MAX_RRULE_CHARS,
};
pub use rules::{
    MAX_ATTENDEES, MAX_COMMENT_CHARS, MAX_DESCRIPTION_CHARS, MAX_DURATION_HOURS,
    MAX_LOCATION_CHARS, MAX_MESSAGE_CHARS, MAX_REASON_CHARS, MAX_TITLE_CHARS,
};
pub use state::{Meeting, OccurrenceAnswer};
pub use values::{Attendee, AttendeeSpec, MeetingStatus, Recurrence, ResponseStatus};

use crate::common::DomainError;

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
        if let Some(event) = self.decide(command, services).await? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        // Organizer and attendees follow the membership events; the rest is read below.
        self.membership.apply(&event);
        match event {
            MeetingEvent::MeetingScheduled {
                meeting_id,
                title,
                description,
                starts_at,
                ends_at,
                time_zone,
                location,
                recurrence,
                ..
            } => {
                self.id = Some(meeting_id);
                self.title = title;
                self.description = description;
                self.starts_at = starts_at;
                self.ends_at = ends_at;
                self.time_zone = time_zone;
                self.location = location;
                self.status = MeetingStatus::Scheduled;
                self.recurrence = recurrence;
                self.occurrence_changes.clear();
                self.occurrence_answers.clear();
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
                // A moved series starts over: its occurrences' own times and cancellations
                // named the old ones.
                self.occurrence_changes.clear();
                self.occurrence_answers.clear();
                // A moved meeting needs a fresh answer from everyone.
                for attendee in self.membership.attendees_mut() {
                    attendee.response = ResponseStatus::NeedsAction;
                }
            }
            MeetingEvent::RecurrenceChanged { recurrence } => {
                self.recurrence = recurrence;
                self.occurrence_changes.clear();
                self.occurrence_answers.clear();
            }
            MeetingEvent::OccurrenceRescheduled {
                occurrence,
                starts_at,
                ends_at,
            } => OccurrenceChange::reschedule(
                &mut self.occurrence_changes,
                occurrence,
                starts_at,
                ends_at,
                self.ends_at - self.starts_at,
            ),
            MeetingEvent::SeriesSplit {
                occurrence,
                recurrence,
                ..
            } => {
                self.recurrence = Some(recurrence);
                self.occurrence_changes
                    .retain(|original, _| *original < occurrence);
                self.occurrence_answers
                    .retain(|(original, _), _| *original < occurrence);
            }
            MeetingEvent::OccurrenceCancelled { occurrence } => OccurrenceChange::cancel(
                &mut self.occurrence_changes,
                occurrence,
                self.ends_at - self.starts_at,
            ),
            // An answer for one occurrence leaves the series' answer as it is.
            MeetingEvent::AttendeeResponded {
                occurrence: Some(occurrence),
                user_id,
                response,
                comment,
            } => {
                self.occurrence_answers.insert(
                    (occurrence, user_id),
                    OccurrenceAnswer { response, comment },
                );
            }
            MeetingEvent::AttendeeResponded {
                user_id,
                response,
                comment,
                ..
            } => {
                if let Some(attendee) = self.membership.attendee_mut(user_id) {
                    attendee.response = response;
                    attendee.comment = comment;
                }
            }
            MeetingEvent::MeetingCancelled { .. } => self.status = MeetingStatus::Cancelled,
            MeetingEvent::MeetingStarted { .. } => self.status = MeetingStatus::InProgress,
            MeetingEvent::MeetingEnded { .. } => self.status = MeetingStatus::Ended,
            // A removed attendee's answers go with them (invited again, they answer afresh).
            MeetingEvent::AttendeeRemoved { user_id } => self
                .occurrence_answers
                .retain(|(_, answered_by), _| *answered_by != user_id),
            MeetingEvent::AttendeeInvited { .. } | MeetingEvent::ChatMessagePosted { .. } => {}
        }
    }
}
