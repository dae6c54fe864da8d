//! A fold kept across batches (`replay::bulk`): rows added as they are loaded back, and taken
//! out whole when they leave memory.

use uuid::Uuid;

use super::{Fold, Writes};
use crate::rows::{ChangeRow, ChatRow};

impl Fold {
    /// Adds the stored rows of users and meetings not in this fold yet: a fold kept across
    /// batches (`replay::bulk`) loads only what it evicted before and meets again. (It renders
    /// no documents, so it needs no names.)
    pub(crate) fn absorb(&mut self, loaded: Fold) {
        self.users.extend(loaded.users);
        self.meetings.extend(loaded.meetings);
    }

    /// Whether the fold holds this user's or meeting's rows.
    pub(crate) fn holds(&self, id: &Uuid) -> bool {
        self.users.contains_key(id) || self.meetings.contains_key(id)
    }

    /// Whether the fold holds this meeting's rows.
    pub(crate) fn holds_meeting(&self, id: &Uuid) -> bool {
        self.meetings.contains_key(id)
    }

    /// Takes the rows of `users` and `meetings` out of the fold, whole: each meeting's row,
    /// every attendee row (and the pairs of attendees removed since it was loaded), every
    /// member's agenda row; each user's row. Documents are not rendered (the bulk build
    /// renders them all at its end); chat and change rows are taken by
    /// [`Fold::take_appended`].
    pub(crate) fn evict(&mut self, users: &[Uuid], meetings: &[Uuid]) -> Writes {
        let mut writes = Writes::default();
        for id in users {
            if let Some(user) = self.users.remove(id) {
                self.changed_users.remove(id);
                writes.users.push(user);
            }
        }
        for id in meetings {
            let Some(meeting) = self.meetings.remove(id) else {
                continue;
            };
            self.changed_meetings.remove(id);
            writes.attendees.extend(meeting.attendees.values().cloned());
            writes.removed.extend(
                meeting
                    .touched
                    .iter()
                    .filter(|u| !meeting.attendees.contains_key(u))
                    .map(|u| (*id, *u)),
            );
            writes.agenda.extend(
                meeting
                    .membership
                    .members()
                    .map(|user_id| meeting.agenda_row(user_id)),
            );
            writes.meetings.push(meeting.row);
        }
        writes
    }

    /// Takes the chat and change rows gathered so far (they are only ever appended).
    pub(crate) fn take_appended(&mut self) -> (Vec<ChatRow>, Vec<ChangeRow>) {
        (
            std::mem::take(&mut self.chat),
            std::mem::take(&mut self.changes),
        )
    }
}
