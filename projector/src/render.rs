//! Rendering meeting documents (`rm_meeting_documents`): each meeting exactly as
//! `GET /v1/meetings/{id}` answers it, with its organizer's and attendees' names, rendered
//! here once per change instead of joined and aggregated by PostgreSQL on every read. Pure:
//! the fold renders the documents a batch changes, `sql::documents` those of stored rows.

use chrono::{DateTime, Utc};
use domain::Membership;
use platform::views::{self, Attendee, ChangedOccurrence, Meeting, Person};
use uuid::Uuid;

use crate::rows::{AttendeeRow, MeetingRow};

/// A rendered row of `rm_meeting_documents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub meeting_id: Uuid,
    /// Organizer and attendees, sorted: who besides admins may read the document.
    pub members: Vec<Uuid>,
    pub version: i64,
    /// The JSON answer of `GET /v1/meetings/{id}`.
    pub body: String,
}

/// Renders one meeting: `row`, with `membership` and the rows of its attendees. `name_of`
/// answers a user's display name (`None`: not in the read models).
pub fn render<'a>(
    row: &MeetingRow,
    membership: &Membership,
    attendees: impl IntoIterator<Item = &'a AttendeeRow>,
    name_of: impl Fn(Uuid) -> Option<String>,
) -> Document {
    let mut people: Vec<Attendee> = attendees
        .into_iter()
        .map(|a| Attendee {
            user_id: a.user_id,
            display_name: name_of(a.user_id),
            optional: a.optional,
            response: a.response.clone(),
            comment: a.comment.clone(),
            occurrence_responses: a.occurrence_responses.clone(),
        })
        .collect();
    views::sort_attendees(&mut people);
    let meeting = Meeting {
        id: row.id,
        title: row.title.clone(),
        description: row.description.clone(),
        organizer: Person {
            id: row.organizer_id,
            display_name: name_of(row.organizer_id),
        },
        starts_at: as_stored(row.starts_at),
        ends_at: as_stored(row.ends_at),
        time_zone: row.time_zone.clone(),
        location: row.location.clone(),
        status: row.status.clone(),
        attendees: people,
        recurrence: row.recurrence.clone().filter(|r| !r.is_null()),
        occurrences: row
            .occurrences
            .iter()
            .map(|(occurrence, change)| ChangedOccurrence {
                occurrence: as_stored(*occurrence),
                starts_at: as_stored(change.starts_at),
                ends_at: as_stored(change.ends_at),
                cancelled: change.cancelled,
            })
            .collect(),
        cancel_reason: row.cancel_reason.clone(),
        version: row.version,
        sequence: row.sequence,
        created_at: as_stored(row.created_at),
        updated_at: as_stored(row.updated_at),
    };
    Document {
        meeting_id: row.id,
        members: membership.sorted_members(),
        version: row.version,
        body: serde_json::to_string(&meeting).expect("BUG: a meeting serializes"),
    }
}

/// A time as PostgreSQL keeps it (microseconds; the driver truncates), so a document rendered
/// from an event and one rendered from the stored row are the same text.
fn as_stored(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}
