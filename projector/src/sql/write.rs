//! Writing a batch: its rows, the per-aggregate sequences and the checkpoint, and the
//! announcement of the checkpoint, in **one** statement.
//!
//! Each table contributes one data-modifying CTE fed by `unnest` of per-column arrays (empty
//! arrays write nothing), so the statement has one shape and one cached plan whatever the
//! batch holds. Round trips, not rows, bound the projector (each one waits for a busy CPU),
//! hence one. Rows are inserted or overwritten whole, so the SQL does not depend on which
//! events produced them. The CTEs cannot see one another's rows; none needs to: the removed
//! and the written (meeting, user) pairs are disjoint, and the foreign key from attendees to
//! meetings is checked at the end of the statement.

use std::sync::LazyLock;

use sqlx::PgConnection;
use uuid::Uuid;

use super::documents;
use super::statement::{json_map, json_text, Part, Statement};
use crate::fold::Writes;

/// Where the projection stands after a batch; it commits in the same statement as the rows.
#[derive(Debug)]
pub struct Bookkeeping {
    pub projection: &'static str,
    /// The last applied sequence of every aggregate the batch advanced.
    pub sequences: Vec<(String, Uuid, i64)>,
    /// The newest position of the batch (the checkpoint never moves backwards).
    pub position: String,
    /// The stream sequence of the batch's last message, when it came from the stream.
    pub stream_sequence: Option<i64>,
    /// Where the new checkpoint is announced (at commit).
    pub channel: &'static str,
}

/// What one statement writes.
#[derive(Debug)]
pub struct Batch {
    pub writes: Writes,
    pub bookkeeping: Bookkeeping,
}

static USERS: Part<Batch> = Part {
    name: "users",
    sql: "INSERT INTO rm_users (id, email, email_key, display_name, time_zone, role, \
                                working_hours, active, version, created_at, updated_at, \
                                search_words) \
          SELECT id, email, email_key, display_name, time_zone, role, working_hours::jsonb, \
                 active, version, created_at, updated_at, search_words \
          FROM {rows} \
          ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, \
             email_key = EXCLUDED.email_key, display_name = EXCLUDED.display_name, \
             search_words = EXCLUDED.search_words, \
             time_zone = EXCLUDED.time_zone, role = EXCLUDED.role, \
             working_hours = EXCLUDED.working_hours, active = EXCLUDED.active, \
             version = EXCLUDED.version, created_at = EXCLUDED.created_at, \
             updated_at = EXCLUDED.updated_at \
          RETURNING id, lower(display_name) AS sort_name, active, search_prefixes",
    columns: &[
        ("id", "uuid"),
        ("email", "text"),
        ("email_key", "text"),
        ("display_name", "text"),
        ("time_zone", "text"),
        ("role", "text"),
        ("working_hours", "text"),
        ("active", "bool"),
        ("version", "bigint"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("search_words", "text"),
    ],
    scalars: &[],
    bind: |batch, binder| {
        let rows = &batch.writes.users;
        binder.column(rows, |r| r.id)?;
        binder.column(rows, |r| r.email.as_str())?;
        binder.column(rows, |r| r.email_key.as_str())?;
        binder.column(rows, |r| r.display_name.as_str())?;
        binder.column(rows, |r| r.time_zone.as_str())?;
        binder.column(rows, |r| r.role.as_str())?;
        binder.column(rows, |r| json_text(r.working_hours.as_ref()))?;
        binder.column(rows, |r| r.active)?;
        binder.column(rows, |r| r.version)?;
        binder.column(rows, |r| r.created_at)?;
        binder.column(rows, |r| r.updated_at)?;
        binder.column(rows, |r| {
            platform::search::user_words(&r.display_name, &r.email)
        })
    },
};

/// The directory's prefix rows of the users written: those of the new name and words added,
/// the others (an old name's, a deactivated user's) removed.
static USER_PREFIXES: Part<Batch> = Part {
    name: "user_prefixes",
    sql: "INSERT INTO rm_user_prefixes (prefix, sort_name, user_id) \
          SELECT DISTINCT p, u.sort_name, u.id FROM users u, unnest(u.search_prefixes) p \
          WHERE u.active \
          ON CONFLICT DO NOTHING",
    columns: &[],
    scalars: &[],
    bind: |_, _| Ok(()),
};

static STALE_USER_PREFIXES: Part<Batch> = Part {
    name: "stale_user_prefixes",
    sql: "DELETE FROM rm_user_prefixes t USING users u \
          WHERE t.user_id = u.id \
            AND NOT (u.active AND t.sort_name = u.sort_name \
                     AND t.prefix = ANY (u.search_prefixes))",
    columns: &[],
    scalars: &[],
    bind: |_, _| Ok(()),
};

static MEETINGS: Part<Batch> = Part {
    name: "meetings",
    sql: "INSERT INTO rm_meetings (id, organizer_id, title, description, starts_at, ends_at, \
                                   time_zone, location, status, recurrence, occurrences, \
                                   sequence, cancel_reason, version, position, created_at, \
                                   updated_at) \
          SELECT id, organizer_id, title, description, starts_at, ends_at, time_zone, \
                 location, status, recurrence::jsonb, occurrences::jsonb, sequence, \
                 cancel_reason, version, position, created_at, updated_at \
          FROM {rows} \
          ON CONFLICT (id) DO UPDATE SET organizer_id = EXCLUDED.organizer_id, \
             title = EXCLUDED.title, description = EXCLUDED.description, \
             starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, \
             time_zone = EXCLUDED.time_zone, location = EXCLUDED.location, \
             status = EXCLUDED.status, recurrence = EXCLUDED.recurrence, \
             occurrences = EXCLUDED.occurrences, sequence = EXCLUDED.sequence, \
             cancel_reason = EXCLUDED.cancel_reason, version = EXCLUDED.version, \
             position = EXCLUDED.position, created_at = EXCLUDED.created_at, \
             updated_at = EXCLUDED.updated_at",
    columns: &[
        ("id", "uuid"),
        ("organizer_id", "uuid"),
        ("title", "text"),
        ("description", "text"),
        ("starts_at", "timestamptz"),
        ("ends_at", "timestamptz"),
        ("time_zone", "text"),
        ("location", "text"),
        ("status", "text"),
        ("recurrence", "text"),
        ("occurrences", "text"),
        ("sequence", "bigint"),
        ("cancel_reason", "text"),
        ("version", "bigint"),
        ("position", "text"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ],
    scalars: &[],
    bind: |batch, binder| {
        let rows = &batch.writes.meetings;
        binder.column(rows, |r| r.id)?;
        binder.column(rows, |r| r.organizer_id)?;
        binder.column(rows, |r| r.title.as_str())?;
        binder.column(rows, |r| r.description.as_deref())?;
        binder.column(rows, |r| r.starts_at)?;
        binder.column(rows, |r| r.ends_at)?;
        binder.column(rows, |r| r.time_zone.as_str())?;
        binder.column(rows, |r| r.location.as_deref())?;
        binder.column(rows, |r| r.status.as_str())?;
        binder.column(rows, |r| json_text(r.recurrence.as_ref()))?;
        binder.column(rows, |r| json_map(&r.occurrences))?;
        binder.column(rows, |r| r.sequence)?;
        binder.column(rows, |r| r.cancel_reason.as_deref())?;
        binder.column(rows, |r| r.version)?;
        binder.column(rows, |r| r.position.as_str())?;
        binder.column(rows, |r| r.created_at)?;
        binder.column(rows, |r| r.updated_at)
    },
};

/// The (meeting, user) pairs whose attendee and agenda rows go away.
static REMOVED: Part<Batch> = Part {
    name: "removed",
    sql: "SELECT * FROM {rows}",
    columns: &[("m", "uuid"), ("u", "uuid")],
    scalars: &[],
    bind: |batch, binder| {
        let pairs = &batch.writes.removed;
        binder.column(pairs, |(meeting, _)| *meeting)?;
        binder.column(pairs, |(_, user)| *user)
    },
};

static REMOVED_ATTENDEES: Part<Batch> = Part {
    name: "removed_attendees",
    sql: "DELETE FROM rm_meeting_attendees t USING removed r \
          WHERE t.meeting_id = r.m AND t.user_id = r.u",
    columns: &[],
    scalars: &[],
    bind: |_, _| Ok(()),
};

static REMOVED_AGENDA: Part<Batch> = Part {
    name: "removed_agenda",
    sql: "DELETE FROM rm_agenda t USING removed r \
          WHERE t.meeting_id = r.m AND t.user_id = r.u",
    columns: &[],
    scalars: &[],
    bind: |_, _| Ok(()),
};

static ATTENDEES: Part<Batch> = Part {
    name: "attendees",
    sql: "INSERT INTO rm_meeting_attendees (meeting_id, user_id, optional, response, comment, \
                                            occurrence_responses) \
          SELECT meeting_id, user_id, optional, response, comment, occurrence_responses::jsonb \
          FROM {rows} \
          ON CONFLICT (meeting_id, user_id) DO UPDATE SET optional = EXCLUDED.optional, \
             response = EXCLUDED.response, comment = EXCLUDED.comment, \
             occurrence_responses = EXCLUDED.occurrence_responses",
    columns: &[
        ("meeting_id", "uuid"),
        ("user_id", "uuid"),
        ("optional", "bool"),
        ("response", "text"),
        ("comment", "text"),
        ("occurrence_responses", "text"),
    ],
    scalars: &[],
    bind: |batch, binder| {
        let rows = &batch.writes.attendees;
        binder.column(rows, |r| r.meeting_id)?;
        binder.column(rows, |r| r.user_id)?;
        binder.column(rows, |r| r.optional)?;
        binder.column(rows, |r| r.response.as_str())?;
        binder.column(rows, |r| r.comment.as_deref())?;
        binder.column(rows, |r| json_map(&r.occurrence_responses))
    },
};

static AGENDA: Part<Batch> = Part {
    name: "agenda",
    sql: "INSERT INTO rm_agenda (user_id, meeting_id, starts_at, ends_at, title, status, \
                                 is_organizer, my_response, series, series_ends_at) \
          SELECT user_id, meeting_id, starts_at, ends_at, title, status, is_organizer, \
                 my_response, series::jsonb, series_ends_at \
          FROM {rows} \
          ON CONFLICT (user_id, meeting_id) DO UPDATE SET starts_at = EXCLUDED.starts_at, \
             ends_at = EXCLUDED.ends_at, title = EXCLUDED.title, status = EXCLUDED.status, \
             is_organizer = EXCLUDED.is_organizer, my_response = EXCLUDED.my_response, \
             series = EXCLUDED.series, series_ends_at = EXCLUDED.series_ends_at",
    columns: &[
        ("user_id", "uuid"),
        ("meeting_id", "uuid"),
        ("starts_at", "timestamptz"),
        ("ends_at", "timestamptz"),
        ("title", "text"),
        ("status", "text"),
        ("is_organizer", "bool"),
        ("my_response", "text"),
        ("series", "text"),
        ("series_ends_at", "timestamptz"),
    ],
    scalars: &[],
    bind: |batch, binder| {
        let rows = &batch.writes.agenda;
        binder.column(rows, |r| r.user_id)?;
        binder.column(rows, |r| r.meeting_id)?;
        binder.column(rows, |r| r.starts_at)?;
        binder.column(rows, |r| r.ends_at)?;
        binder.column(rows, |r| r.title.as_str())?;
        binder.column(rows, |r| r.status.as_str())?;
        binder.column(rows, |r| r.is_organizer)?;
        binder.column(rows, |r| r.my_response.as_deref())?;
        binder.column(rows, |r| json_text(r.series.as_ref()))?;
        binder.column(rows, |r| r.series_ends_at)
    },
};

static CHAT: Part<Batch> = Part {
    name: "chat",
    sql: "INSERT INTO rm_chat_messages (meeting_id, message_id, author_id, text, posted_at, \
                                        position) \
          SELECT * FROM {rows}",
    columns: &[
        ("meeting_id", "uuid"),
        ("message_id", "uuid"),
        ("author_id", "uuid"),
        ("text", "text"),
        ("posted_at", "timestamptz"),
        ("position", "text"),
    ],
    scalars: &[],
    bind: |batch, binder| {
        let rows = &batch.writes.chat;
        binder.column(rows, |r| r.meeting_id)?;
        binder.column(rows, |r| r.message_id)?;
        binder.column(rows, |r| r.author_id)?;
        binder.column(rows, |r| r.text.as_str())?;
        binder.column(rows, |r| r.posted_at)?;
        binder.column(rows, |r| r.position.as_str())
    },
};

/// A plain INSERT: the position and the event id are unique, so an event recorded twice is
/// refused rather than overwritten.
static CHANGES: Part<Batch> = Part {
    name: "changes",
    sql: "INSERT INTO rm_changes (position, event_id, event_type, aggregate_type, \
                                  aggregate_id, sequence, recorded_at, data, audience) \
          SELECT position, event_id, event_type, aggregate_type, aggregate_id, sequence, \
                 recorded_at, data::jsonb, ({audience_ids})[audience_from:audience_to] \
          FROM {rows}",
    columns: &[
        ("position", "text"),
        ("event_id", "uuid"),
        ("event_type", "text"),
        ("aggregate_type", "text"),
        ("aggregate_id", "uuid"),
        ("sequence", "bigint"),
        ("recorded_at", "timestamptz"),
        ("data", "text"),
        ("audience_from", "int4"),
        ("audience_to", "int4"),
    ],
    // Every row's audience, one after the other, as one binary `uuid[]`: each row takes its
    // slice. A `uuid[]` literal per row cost PostgreSQL 3 µs a row to parse, as much as
    // the row's JSON.
    scalars: &[("audience_ids", "uuid[]")],
    bind: |batch, binder| {
        let rows = &batch.writes.changes;
        let mut ranges = Vec::with_capacity(rows.len());
        let mut ids: Vec<uuid::Uuid> = Vec::new();
        for row in rows {
            let from = ids.len() as i32 + 1;
            ids.extend_from_slice(&row.audience);
            ranges.push((from, ids.len() as i32));
        }
        binder.column(rows, |r| r.position.as_str())?;
        binder.column(rows, |r| r.event_id)?;
        binder.column(rows, |r| r.event_type.as_str())?;
        binder.column(rows, |r| r.aggregate_type.as_str())?;
        binder.column(rows, |r| r.aggregate_id)?;
        binder.column(rows, |r| r.sequence)?;
        binder.column(rows, |r| r.recorded_at)?;
        binder.column(rows, |r| r.data.as_str())?;
        binder.column(&ranges, |(from, _)| *from)?;
        binder.column(&ranges, |(_, to)| *to)?;
        binder.scalar(ids)
    },
};

static DOCUMENTS: Part<Batch> = Part {
    name: "documents",
    sql: documents::UPSERT,
    columns: documents::COLUMNS,
    scalars: &[],
    bind: |batch, binder| documents::bind(&batch.writes.documents, binder),
};

static SEQUENCES: Part<Batch> = Part {
    name: "sequences",
    sql: "INSERT INTO projection_sequences (projection, aggregate_type, aggregate_id, \
                                            last_sequence) \
          SELECT {projection}, t, id, seq FROM {rows} \
          ON CONFLICT (projection, aggregate_type, aggregate_id) \
          DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
    columns: &[("t", "text"), ("id", "uuid"), ("seq", "bigint")],
    scalars: &[("projection", "text")],
    bind: |batch, binder| {
        let sequences = &batch.bookkeeping.sequences;
        binder.column(sequences, |(aggregate_type, _, _)| aggregate_type.as_str())?;
        binder.column(sequences, |(_, id, _)| *id)?;
        binder.column(sequences, |(_, _, sequence)| *sequence)?;
        binder.scalar(batch.bookkeeping.projection)
    },
};

static CHECKPOINT: Part<Batch> = Part {
    name: "checkpoint",
    sql: "INSERT INTO projection_checkpoints (projection, position, stream_sequence) \
          VALUES ({projection}, {position}, {stream_sequence}) \
          ON CONFLICT (projection) DO UPDATE \
             SET position = GREATEST(projection_checkpoints.position, EXCLUDED.position), \
                 stream_sequence = COALESCE(EXCLUDED.stream_sequence, \
                                            projection_checkpoints.stream_sequence), \
                 updated_at = now(), failed_at = NULL, failure = NULL \
          RETURNING position",
    columns: &[],
    scalars: &[
        ("projection", "text"),
        ("position", "text"),
        ("stream_sequence", "bigint"),
    ],
    bind: |batch, binder| {
        binder.scalar(batch.bookkeeping.projection)?;
        binder.scalar(batch.bookkeeping.position.as_str())?;
        binder.scalar(batch.bookkeeping.stream_sequence)
    },
};

/// Answers the checkpoint and announces it. The transaction commits without waiting for the
/// disk (`synchronous_commit` off, set here to save a round trip): read models are derived
/// data and the checkpoint commits with them, so if PostgreSQL crashes and loses the last
/// batches, they are lost together and applied again from the stream.
static ANNOUNCE: Part<Batch> = Part {
    name: "announce",
    sql: "SELECT position, pg_notify({channel}, position), \
                 set_config('synchronous_commit', 'off', true) \
          FROM checkpoint",
    columns: &[],
    scalars: &[("channel", "text")],
    bind: |batch, binder| binder.scalar(batch.bookkeeping.channel),
};

static WRITE: LazyLock<Statement<Batch>> = LazyLock::new(|| {
    Statement::new(
        &[
            &USERS,
            &USER_PREFIXES,
            &STALE_USER_PREFIXES,
            &MEETINGS,
            &REMOVED,
            &REMOVED_ATTENDEES,
            &REMOVED_AGENDA,
            &ATTENDEES,
            &AGENDA,
            &CHAT,
            &CHANGES,
            &SEQUENCES,
            &CHECKPOINT,
            &DOCUMENTS,
        ],
        &ANNOUNCE,
    )
});

/// Writes `batch` in one statement (see the module's doc) and answers the checkpoint
/// position.
pub async fn write(conn: &mut PgConnection, batch: &Batch) -> Result<String, sqlx::Error> {
    let arguments = WRITE.arguments(batch).map_err(sqlx::Error::Encode)?;
    sqlx::query_scalar_with(WRITE.sql(), arguments)
        .fetch_one(conn)
        .await
}

#[cfg(test)]
mod tests {
    use sqlx::Arguments;

    use super::*;

    #[test]
    fn the_batch_statement_binds_every_parameter_it_numbers() {
        let batch = Batch {
            writes: Writes::default(),
            bookkeeping: Bookkeeping {
                projection: "p",
                sequences: Vec::new(),
                position: String::new(),
                stream_sequence: None,
                channel: "c",
            },
        };
        let parameters = WRITE.arguments(&batch).unwrap().len();
        let sql = WRITE.sql();
        for n in 1..=parameters {
            assert!(sql.contains(&format!("${n}::")), "${n} missing");
        }
        assert!(!sql.contains(&format!("${}::", parameters + 1)));
        assert!(!sql.contains('{'), "a placeholder is left: {sql}");
    }
}
