//! A meeting as one batch of the fold sees it: its rows, its members, and what the batch
//! changed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use domain::{Membership, Recurrence};
use platform::views::AgendaSeries;
use uuid::Uuid;

use crate::rows::{AgendaRow, AttendeeRow, MeetingRow};

/// A meeting as the batch sees it, with what the batch changed.
#[derive(Debug, Clone)]
pub(super) struct MeetingState {
    pub(super) row: MeetingRow,
    /// Who belongs to the meeting: which events fit it, who sees them, whose agenda and name
    /// it has. Its attendees are the keys of `attendees`.
    pub(super) membership: Membership,
    pub(super) attendees: BTreeMap<Uuid, AttendeeRow>,
    /// Attendees added, changed or removed: their attendee and agenda rows are rewritten.
    pub(super) touched: BTreeSet<Uuid>,
    /// Whether every agenda row of the meeting must be rewritten (its time, title or status
    /// changed).
    pub(super) agenda_all: bool,
}

impl MeetingState {
    /// Keeps the answers to single occurrences that `keep` names; an attendee who loses one
    /// gets their agenda rewritten.
    pub(super) fn keep_occurrence_answers(&mut self, keep: impl Fn(&DateTime<Utc>) -> bool) {
        for attendee in self.attendees.values_mut() {
            let before = attendee.occurrence_responses.len();
            attendee.occurrence_responses.retain(|at, _| keep(at));
            if attendee.occurrence_responses.len() != before {
                self.touched.insert(attendee.user_id);
            }
        }
    }

    pub(super) fn agenda_row(&self, user_id: Uuid) -> AgendaRow {
        let attendee = self.attendees.get(&user_id);
        let series = self
            .row
            .recurrence
            .as_ref()
            .and_then(|r| serde_json::from_value::<Recurrence>(r.clone()).ok())
            .map(|recurrence| AgendaSeries {
                recurrence,
                time_zone: self.row.time_zone.clone(),
                starts_at: self.row.starts_at,
                ends_at: self.row.ends_at,
                changes: self.row.occurrences.clone(),
                responses: attendee
                    .map(|a| a.occurrence_responses.clone())
                    .unwrap_or_default(),
            });
        let (starts_at, series_ends_at) = match &series {
            Some(series) => series.bounds(),
            None => (self.row.starts_at, None),
        };
        AgendaRow {
            user_id,
            meeting_id: self.row.id,
            starts_at,
            ends_at: self.row.ends_at,
            title: self.row.title.clone(),
            status: self.row.status.clone(),
            is_organizer: user_id == self.row.organizer_id,
            my_response: attendee.map(|a| a.response.clone()),
            series: series
                .map(|s| serde_json::to_value(s).expect("BUG: an agenda series serializes")),
            series_ends_at,
        }
    }
}
