//! The fold: how events change the read-model rows, in memory and in stream order. Pure (no
//! database, no bus), so it is unit-tested here and the SQL layer only loads and writes rows.
//!
//! Every timestamp it writes comes from the event (`recorded_at` or the event's own times),
//! never from the clock, so a rebuild from the event store produces identical rows.

mod decode;
mod meeting;
mod resident;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use domain::{MeetingEvent, Membership, OccurrenceChange, ResponseStatus, UserEvent};
use platform::bus::EventEnvelope;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::render::{self, Document};
use crate::rows::{AgendaRow, AttendeeRow, ChangeRow, ChatRow, MeetingRow, UserRow};

pub use decode::{decode, Decoded, Touched};
use meeting::MeetingState;

/// The rows a batch writes, computed by [`Fold`].
#[derive(Debug, Default, PartialEq)]
pub struct Writes {
    pub users: Vec<UserRow>,
    pub meetings: Vec<MeetingRow>,
    /// Attendee rows to insert or overwrite.
    pub attendees: Vec<AttendeeRow>,
    /// (meeting, user) pairs whose attendee and agenda rows go away.
    pub removed: Vec<(Uuid, Uuid)>,
    pub agenda: Vec<AgendaRow>,
    pub chat: Vec<ChatRow>,
    pub changes: Vec<ChangeRow>,
    /// Documents of the changed meetings (those of a renamed user's other meetings are
    /// re-rendered after the write, in chunks: `apply`).
    pub documents: Vec<Document>,
}

/// The rows a batch touches, folded through its events in memory.
#[derive(Debug, Default)]
pub struct Fold {
    users: BTreeMap<Uuid, UserRow>,
    changed_users: BTreeSet<Uuid>,
    /// Display names of the people of the loaded meetings, as stored before the batch (the
    /// batch's own users, in `users`, take precedence).
    names: HashMap<Uuid, String>,
    /// Users whose display name the batch changed.
    renamed: BTreeSet<Uuid>,
    meetings: BTreeMap<Uuid, MeetingState>,
    changed_meetings: BTreeSet<Uuid>,
    chat: Vec<ChatRow>,
    changes: Vec<ChangeRow>,
}

impl Fold {
    /// Starts from the stored rows of the touched users and meetings.
    pub fn new(
        users: Vec<UserRow>,
        meetings: Vec<MeetingRow>,
        attendees: Vec<AttendeeRow>,
    ) -> Self {
        let mut fold = Fold {
            users: users.into_iter().map(|u| (u.id, u)).collect(),
            meetings: meetings
                .into_iter()
                .map(|row| {
                    (
                        row.id,
                        MeetingState {
                            row,
                            membership: Membership::default(),
                            attendees: BTreeMap::new(),
                            touched: BTreeSet::new(),
                            agenda_all: false,
                        },
                    )
                })
                .collect(),
            ..Fold::default()
        };
        for attendee in attendees {
            if let Some(meeting) = fold.meetings.get_mut(&attendee.meeting_id) {
                meeting.attendees.insert(attendee.user_id, attendee);
            }
        }
        // The stored rows keep no invitation order; the projections need none.
        for meeting in fold.meetings.values_mut() {
            let attendees = meeting.attendees.keys().copied().collect();
            meeting.membership = Membership::new(meeting.row.organizer_id, attendees);
        }
        fold
    }

    /// The stored display names of the loaded meetings' people.
    pub fn with_names(mut self, names: HashMap<Uuid, String>) -> Self {
        self.names = names;
        self
    }

    fn name_of(&self, user_id: Uuid) -> Option<String> {
        match self.users.get(&user_id) {
            Some(user) => Some(user.display_name.clone()),
            None => self.names.get(&user_id).cloned(),
        }
    }

    fn document(&self, meeting: &MeetingState) -> Document {
        render::render(
            &meeting.row,
            &meeting.membership,
            meeting.attendees.values(),
            |id| self.name_of(id),
        )
    }

    /// The document of every loaded meeting, as the rows stand: what
    /// `sql::documents::refresh` writes.
    pub(crate) fn documents(&self) -> Vec<Document> {
        self.meetings
            .values()
            .map(|meeting| self.document(meeting))
            .collect()
    }

    /// Applies one event (already de-duplicated, in stream order).
    pub fn apply(
        &mut self,
        event: &EventEnvelope,
        decoded: &Decoded,
    ) -> Result<(), ProjectionError> {
        let audience = match decoded {
            Decoded::User(user_event) => {
                self.apply_user(event, user_event)?;
                vec![event.aggregate_id]
            }
            Decoded::Meeting(meeting_event) => self.apply_meeting(event, meeting_event)?,
        };
        // What `rm_changes` stores: the upcast, current form.
        let data = decoded
            .data_json()
            .map_err(|reason| ProjectionError::unapplicable(event, reason))?;
        self.changes.push(ChangeRow {
            position: event.position.to_string(),
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            recorded_at: event.recorded_at,
            data,
            audience,
        });
        Ok(())
    }

    fn apply_user(
        &mut self,
        event: &EventEnvelope,
        decoded: &UserEvent,
    ) -> Result<(), ProjectionError> {
        let id = event.aggregate_id;
        if let UserEvent::UserRegistered {
            email,
            display_name,
            time_zone,
            role,
            ..
        } = decoded
        {
            if self.users.contains_key(&id) {
                return Err(ProjectionError::unapplicable(
                    event,
                    "the user is already registered",
                ));
            }
            self.users.insert(
                id,
                UserRow {
                    id,
                    email: email.clone(),
                    email_key: domain::normalize_email(email),
                    display_name: display_name.clone(),
                    time_zone: time_zone.clone(),
                    role: role.as_str().to_owned(),
                    working_hours: None,
                    active: true,
                    version: event.sequence,
                    created_at: event.recorded_at,
                    updated_at: event.recorded_at,
                },
            );
            self.changed_users.insert(id);
            return Ok(());
        }
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| ProjectionError::unapplicable(event, "no rm_users row"))?;
        match decoded {
            UserEvent::UserRegistered { .. } => unreachable!("handled above"),
            UserEvent::ProfileChanged {
                display_name,
                time_zone,
                working_hours,
            } => {
                if user.display_name != *display_name {
                    self.renamed.insert(id);
                }
                user.display_name = display_name.clone();
                user.time_zone = time_zone.clone();
                user.working_hours = working_hours
                    .as_ref()
                    .map(|w| serde_json::to_value(w).expect("BUG: working hours serialize"));
            }
            UserEvent::PasswordChanged {} => {}
            UserEvent::RoleChanged { role } => user.role = role.as_str().to_owned(),
            UserEvent::UserDeactivated { .. } => user.active = false,
        }
        user.version = event.sequence;
        user.updated_at = event.recorded_at;
        self.changed_users.insert(id);
        Ok(())
    }

    /// Applies a meeting event; answers the meeting's audience after it.
    fn apply_meeting(
        &mut self,
        event: &EventEnvelope,
        decoded: &MeetingEvent,
    ) -> Result<Vec<Uuid>, ProjectionError> {
        let id = event.aggregate_id;
        self.changed_meetings.insert(id);
        if let MeetingEvent::MeetingScheduled {
            organizer_id,
            title,
            description,
            starts_at,
            ends_at,
            time_zone,
            location,
            attendees,
            recurrence,
            ..
        } = decoded
        {
            if self.meetings.contains_key(&id) {
                return Err(ProjectionError::unapplicable(
                    event,
                    "the meeting already exists",
                ));
            }
            let mut membership = Membership::default();
            fold_membership(&mut membership, event, decoded)?;
            let mut state = MeetingState {
                row: MeetingRow {
                    id,
                    organizer_id: *organizer_id,
                    title: title.clone(),
                    description: description.clone(),
                    starts_at: *starts_at,
                    ends_at: *ends_at,
                    time_zone: time_zone.clone(),
                    location: location.clone(),
                    status: "scheduled".to_owned(),
                    recurrence: recurrence
                        .as_ref()
                        .map(|r| serde_json::to_value(r).expect("BUG: recurrence serializes")),
                    occurrences: BTreeMap::new(),
                    sequence: 0,
                    cancel_reason: None,
                    version: event.sequence,
                    position: event.position.to_string(),
                    created_at: event.recorded_at,
                    updated_at: event.recorded_at,
                },
                membership,
                attendees: BTreeMap::new(),
                touched: BTreeSet::new(),
                agenda_all: true,
            };
            for attendee in attendees {
                state.attendees.insert(
                    attendee.user_id,
                    new_attendee(id, attendee.user_id, attendee.optional),
                );
                state.touched.insert(attendee.user_id);
            }
            let audience = state.membership.audience(decoded);
            self.meetings.insert(id, state);
            return Ok(audience);
        }

        let meeting = self
            .meetings
            .get_mut(&id)
            .ok_or_else(|| ProjectionError::unapplicable(event, "no rm_meetings row"))?;
        fold_membership(&mut meeting.membership, event, decoded)?;
        // Every later event moves the meeting's version.
        meeting.row.version = event.sequence;
        meeting.row.position = event.position.to_string();
        meeting.row.updated_at = event.recorded_at;
        if significant(decoded, &meeting.row) {
            meeting.row.sequence += 1;
        }
        match decoded {
            MeetingEvent::MeetingScheduled { .. } => unreachable!("handled above"),
            MeetingEvent::MeetingDetailsUpdated {
                title,
                description,
                location,
                time_zone,
            } => {
                meeting.row.title = title.clone();
                meeting.row.description = description.clone();
                meeting.row.location = location.clone();
                meeting.row.time_zone = time_zone.clone();
                meeting.agenda_all = true;
            }
            MeetingEvent::MeetingRescheduled {
                starts_at, ends_at, ..
            } => {
                meeting.row.starts_at = *starts_at;
                meeting.row.ends_at = *ends_at;
                // A moved series starts over (as the aggregate does): its occurrences' own
                // times, cancellations and answers named the old ones.
                meeting.row.occurrences.clear();
                // A new time asks every attendee again (as the aggregate does).
                for attendee in meeting.attendees.values_mut() {
                    attendee.response = ResponseStatus::NeedsAction.as_str().to_owned();
                    attendee.occurrence_responses.clear();
                    meeting.touched.insert(attendee.user_id);
                }
                meeting.agenda_all = true;
            }
            MeetingEvent::RecurrenceChanged { recurrence } => {
                meeting.row.recurrence = recurrence
                    .as_ref()
                    .map(|r| serde_json::to_value(r).expect("BUG: recurrence serializes"));
                meeting.row.occurrences.clear();
                meeting.keep_occurrence_answers(|_| false);
                meeting.agenda_all = true;
            }
            MeetingEvent::SeriesSplit {
                occurrence,
                recurrence,
                ..
            } => {
                // The occurrences from the split on, with their changes and answers, belong
                // to the new series now (its own events bring them there).
                meeting.row.recurrence =
                    Some(serde_json::to_value(recurrence).expect("BUG: recurrence serializes"));
                meeting
                    .row
                    .occurrences
                    .retain(|original, _| original < occurrence);
                meeting.keep_occurrence_answers(|original| original < occurrence);
                meeting.agenda_all = true;
            }
            MeetingEvent::OccurrenceRescheduled {
                occurrence,
                starts_at,
                ends_at,
            } => {
                OccurrenceChange::reschedule(
                    &mut meeting.row.occurrences,
                    *occurrence,
                    *starts_at,
                    *ends_at,
                    meeting.row.ends_at - meeting.row.starts_at,
                );
                meeting.agenda_all = true;
            }
            MeetingEvent::OccurrenceCancelled { occurrence } => {
                OccurrenceChange::cancel(
                    &mut meeting.row.occurrences,
                    *occurrence,
                    meeting.row.ends_at - meeting.row.starts_at,
                );
                meeting.agenda_all = true;
            }
            MeetingEvent::AttendeeInvited { user_id, optional } => {
                meeting
                    .attendees
                    .insert(*user_id, new_attendee(id, *user_id, *optional));
                meeting.touched.insert(*user_id);
            }
            MeetingEvent::AttendeeRemoved { user_id } => {
                meeting.attendees.remove(user_id);
                meeting.touched.insert(*user_id);
            }
            MeetingEvent::AttendeeResponded {
                user_id,
                response,
                comment,
                occurrence,
            } => {
                let attendee = meeting
                    .attendees
                    .get_mut(user_id)
                    .expect("BUG: every attendee of the membership has a row");
                match occurrence {
                    // One occurrence: the series' answer and comment stay.
                    Some(occurrence) => {
                        attendee
                            .occurrence_responses
                            .insert(*occurrence, response.as_str().to_owned());
                    }
                    None => {
                        attendee.response = response.as_str().to_owned();
                        attendee.comment = comment.clone();
                    }
                }
                meeting.touched.insert(*user_id);
            }
            MeetingEvent::MeetingCancelled { reason } => {
                meeting.row.status = "cancelled".to_owned();
                meeting.row.cancel_reason = reason.clone();
                meeting.agenda_all = true;
            }
            MeetingEvent::MeetingStarted { .. } => {
                meeting.row.status = "in_progress".to_owned();
                meeting.agenda_all = true;
            }
            MeetingEvent::MeetingEnded { .. } => {
                meeting.row.status = "ended".to_owned();
                meeting.agenda_all = true;
            }
            MeetingEvent::ChatMessagePosted {
                message_id,
                author_id,
                text,
                at,
            } => self.chat.push(ChatRow {
                meeting_id: id,
                message_id: *message_id,
                author_id: *author_id,
                text: text.clone(),
                posted_at: *at,
                position: event.position.to_string(),
            }),
        }
        Ok(meeting.membership.audience(decoded))
    }

    /// The rows to write: every changed user and meeting, the attendee and agenda rows the
    /// batch changed (all of a meeting's agenda rows when its time, title or status changed),
    /// new chat messages and one change row per event.
    pub fn into_writes(self) -> Writes {
        let documents = self
            .meetings
            .iter()
            .filter(|(id, meeting)| {
                self.changed_meetings.contains(id)
                    || meeting
                        .membership
                        .members()
                        .any(|u| self.renamed.contains(&u))
            })
            .map(|(_, meeting)| self.document(meeting))
            .collect();
        let mut writes = Writes {
            documents,
            users: self
                .changed_users
                .iter()
                .map(|id| self.users[id].clone())
                .collect(),
            chat: self.chat,
            changes: self.changes,
            ..Writes::default()
        };
        for id in &self.changed_meetings {
            let meeting = &self.meetings[id];
            writes.meetings.push(meeting.row.clone());
            for user_id in &meeting.touched {
                match meeting.attendees.get(user_id) {
                    Some(attendee) => writes.attendees.push(attendee.clone()),
                    None => writes.removed.push((*id, *user_id)),
                }
            }
            if meeting.agenda_all {
                for user_id in meeting.membership.members() {
                    writes.agenda.push(meeting.agenda_row(user_id));
                }
            } else {
                for user_id in meeting
                    .touched
                    .iter()
                    .filter(|u| meeting.attendees.contains_key(u))
                {
                    writes.agenda.push(meeting.agenda_row(*user_id));
                }
            }
        }
        writes
    }
}

/// Whether `event` changes what makes a calendar entry (RFC 5545 §3.8.7.4: start, end, rule,
/// status — and the zone the times are read in): calendar apps then take it as a new version.
fn significant(event: &MeetingEvent, row: &MeetingRow) -> bool {
    match event {
        MeetingEvent::MeetingRescheduled { .. }
        | MeetingEvent::RecurrenceChanged { .. }
        | MeetingEvent::SeriesSplit { .. }
        | MeetingEvent::OccurrenceRescheduled { .. }
        | MeetingEvent::OccurrenceCancelled { .. }
        | MeetingEvent::MeetingCancelled { .. } => true,
        MeetingEvent::MeetingDetailsUpdated { time_zone, .. } => *time_zone != row.time_zone,
        _ => false,
    }
}

fn new_attendee(meeting_id: Uuid, user_id: Uuid, optional: bool) -> AttendeeRow {
    AttendeeRow {
        meeting_id,
        user_id,
        optional,
        response: ResponseStatus::NeedsAction.as_str().to_owned(),
        comment: None,
        occurrence_responses: BTreeMap::new(),
    }
}

/// Folds a meeting event into `membership` if it fits it (the aggregate never records one that
/// does not; a projection that meets one has a broken stream).
fn fold_membership(
    membership: &mut Membership,
    event: &EventEnvelope,
    decoded: &MeetingEvent,
) -> Result<(), ProjectionError> {
    membership
        .check(decoded)
        .map_err(|e| ProjectionError::unapplicable(event, e.to_string()))?;
    membership.apply(decoded);
    Ok(())
}
