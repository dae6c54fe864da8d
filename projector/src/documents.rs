//! Meeting documents (`rm_meeting_documents`): each meeting exactly as `GET /v1/meetings/{id}`
//! answers it, with its organizer's and attendees' names, rendered here once per change
//! instead of joined and aggregated by PostgreSQL on every read.
//!
//! Batches render the documents of the meetings they change (and of every meeting of a user
//! they rename) in the same statement as the rows ([`crate::read_models::write`]). [`refresh`]
//! renders documents from the stored rows with the same [`render`]; a new leader uses it to
//! complete documents missing from a database migrated before they existed ([`backfill`]),
//! and tests and seeds use it after writing rows by SQL. It loads rows the way a batch does
//! (`read_models::load`), so both see the same rows and names.

use chrono::{DateTime, Utc};
use platform::views::{self, Attendee, Meeting, Person};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::read_models::{self, uuid_array_literal, AttendeeRow, MeetingRow, Touched};

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

/// Renders one meeting. `name_of` answers a user's display name (`None`: not in the read
/// models).
pub fn render<'a>(
    row: &MeetingRow,
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
        })
        .collect();
    views::sort_attendees(&mut people);
    let mut members: Vec<Uuid> = std::iter::once(row.organizer_id)
        .chain(people.iter().map(|a| a.user_id))
        .collect();
    members.sort_unstable();
    members.dedup();
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
        cancel_reason: row.cancel_reason.clone(),
        version: row.version,
        created_at: as_stored(row.created_at),
        updated_at: as_stored(row.updated_at),
    };
    Document {
        meeting_id: row.id,
        members,
        version: row.version,
        body: serde_json::to_string(&meeting).expect("BUG: a meeting serializes"),
    }
}

/// A time as PostgreSQL keeps it (microseconds; the driver truncates), so a document rendered
/// from an event and one rendered from the stored row are the same text.
fn as_stored(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// `INSERT … ON CONFLICT` of documents from four parallel arrays starting at parameter
/// `$first` (ids, member-array literals, versions, bodies): a CTE of the batch statement, or
/// a statement of its own.
pub(crate) fn upsert_sql(first: usize) -> String {
    let [id, members, version, body] = [first, first + 1, first + 2, first + 3];
    format!(
        "INSERT INTO rm_meeting_documents (meeting_id, members, version, body) \
         SELECT id, members::uuid[], version, body::json \
         FROM unnest(${id}::uuid[], ${members}::text[], ${version}::bigint[], ${body}::text[]) \
           AS r(id, members, version, body) \
         ON CONFLICT (meeting_id) DO UPDATE SET members = EXCLUDED.members, \
            version = EXCLUDED.version, body = EXCLUDED.body"
    )
}

/// `documents` as the four arrays of [`upsert_sql`], in that order.
pub(crate) struct Columns<'a> {
    pub ids: Vec<Uuid>,
    pub members: Vec<String>,
    pub versions: Vec<i64>,
    pub bodies: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    pub fn of(documents: &'a [Document]) -> Self {
        Columns {
            ids: documents.iter().map(|d| d.meeting_id).collect(),
            members: documents
                .iter()
                .map(|d| uuid_array_literal(&d.members))
                .collect(),
            versions: documents.iter().map(|d| d.version).collect(),
            bodies: documents.iter().map(|d| d.body.as_str()).collect(),
        }
    }
}

/// Renders the documents of `meetings` from the stored rows and writes them; answers how many
/// it wrote (unknown ids are skipped). For rows written by other means than a batch: a
/// migrated database ([`backfill`]), tests and seeds.
pub async fn refresh(conn: &mut PgConnection, meetings: &[Uuid]) -> Result<usize, sqlx::Error> {
    // The rows and names as a batch loads them, with no events to fold.
    let touched = Touched {
        meetings: meetings.to_vec(),
        ..Touched::default()
    };
    let (_, fold) =
        read_models::load(&mut *conn, crate::projection::PROJECTION, &[], &touched).await?;
    let documents = fold.documents();
    if documents.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "WITH written AS ({} RETURNING 1) SELECT count(*) FROM written",
        upsert_sql(1)
    );
    let columns = Columns::of(&documents);
    let written: i64 = sqlx::query_scalar(&sql)
        .bind(columns.ids)
        .bind(columns.members)
        .bind(columns.versions)
        .bind(columns.bodies)
        .fetch_one(&mut *conn)
        .await?;
    Ok(usize::try_from(written).unwrap_or(0))
}

/// Renders every meeting that has no document yet, in chunks; answers how many. Cheap when
/// nothing is missing (one anti-join), which is the usual case.
pub async fn backfill(conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
    const CHUNK: i64 = 2_000;
    let mut total = 0;
    loop {
        let missing: Vec<Uuid> = sqlx::query_scalar(
            "SELECT m.id FROM rm_meetings m WHERE NOT EXISTS \
               (SELECT 1 FROM rm_meeting_documents d WHERE d.meeting_id = m.id) \
             ORDER BY m.id LIMIT $1",
        )
        .bind(CHUNK)
        .fetch_all(&mut *conn)
        .await?;
        if missing.is_empty() {
            return Ok(total);
        }
        total += refresh(conn, &missing).await?;
    }
}
