//! The read models in the SQLite file of embedded mode (`migrations/sqlite/read-models`):
//! what [`crate::sql`] does for PostgreSQL, statement by statement. In-process, a statement
//! costs microseconds, not a round trip, so there is no need to fold a batch into one
//! statement; [`crate::apply`] runs load and write in one transaction instead.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use platform::bus::EventEnvelope;
use platform::db::sqlite::{json_column, micros, optional_json_column, time_column};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use crate::fold::{Fold, Touched};
use crate::render::Document;
use crate::rows::{AttendeeRow, MeetingRow, UserRow};
use crate::sql::{json_map, Batch, Sequences};

fn user(row: &SqliteRow) -> sqlx::Result<UserRow> {
    Ok(UserRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        email_key: row.try_get("email_key")?,
        display_name: row.try_get("display_name")?,
        time_zone: row.try_get("time_zone")?,
        role: row.try_get("role")?,
        working_hours: optional_json_column(row, "working_hours")?,
        active: row.try_get("active")?,
        version: row.try_get("version")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

fn meeting(row: &SqliteRow) -> sqlx::Result<MeetingRow> {
    Ok(MeetingRow {
        id: row.try_get("id")?,
        organizer_id: row.try_get("organizer_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        starts_at: time_column(row, "starts_at")?,
        ends_at: time_column(row, "ends_at")?,
        time_zone: row.try_get("time_zone")?,
        location: row.try_get("location")?,
        status: row.try_get("status")?,
        recurrence: optional_json_column(row, "recurrence")?,
        occurrences: json_column(row, "occurrences")?,
        sequence: row.try_get("sequence")?,
        cancel_reason: row.try_get("cancel_reason")?,
        version: row.try_get("version")?,
        position: row.try_get("position")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

fn attendee(row: &SqliteRow) -> sqlx::Result<AttendeeRow> {
    Ok(AttendeeRow {
        meeting_id: row.try_get("meeting_id")?,
        user_id: row.try_get("user_id")?,
        optional: row.try_get("optional")?,
        response: row.try_get("response")?,
        comment: row.try_get("comment")?,
        occurrence_responses: json_column(row, "occurrence_responses")?,
    })
}

/// [`crate::sql::load`]: the batch's sequences, users, meetings with their attendees, and the
/// names of their people, by primary-key lookups.
pub async fn load(
    conn: &mut SqliteConnection,
    projection: &str,
    events: &[EventEnvelope],
    touched: &Touched,
) -> sqlx::Result<(Sequences, Fold)> {
    let mut sequences = Sequences::new();
    let mut seen = HashSet::new();
    for event in events {
        let key = (event.aggregate_type.clone(), event.aggregate_id);
        if !seen.insert(key.clone()) {
            continue;
        }
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT last_sequence FROM projection_sequences \
             WHERE projection = ? AND aggregate_type = ? AND aggregate_id = ?",
        )
        .bind(projection)
        .bind(&key.0)
        .bind(key.1)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(last) = last {
            sequences.insert(key, last);
        }
    }
    let mut users = Vec::new();
    for id in &touched.users {
        if let Some(row) = sqlx::query("SELECT * FROM rm_users WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        {
            users.push(user(&row)?);
        }
    }
    let (mut meetings, mut attendees) = (Vec::new(), Vec::new());
    let mut people: Vec<Uuid> = touched.people.clone();
    for id in &touched.meetings {
        let Some(row) = sqlx::query("SELECT * FROM rm_meetings WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            continue;
        };
        let row = meeting(&row)?;
        people.push(row.organizer_id);
        meetings.push(row);
        for row in sqlx::query("SELECT * FROM rm_meeting_attendees WHERE meeting_id = ?")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = attendee(&row)?;
            people.push(row.user_id);
            attendees.push(row);
        }
    }
    people.sort_unstable();
    people.dedup();
    let mut names = HashMap::new();
    for id in people {
        let name: Option<String> =
            sqlx::query_scalar("SELECT display_name FROM rm_users WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(name) = name {
            names.insert(id, name);
        }
    }
    Ok((
        sequences,
        Fold::new(users, meetings, attendees).with_names(names),
    ))
}

/// [`crate::sql::meetings_of`].
pub async fn meetings_of(
    conn: &mut SqliteConnection,
    users: &[Uuid],
    after: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    let mut ids = std::collections::BTreeSet::new();
    for user in users {
        let organized: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM rm_meetings WHERE organizer_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(user)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let attended: Vec<Uuid> = sqlx::query_scalar(
            "SELECT meeting_id FROM rm_meeting_attendees WHERE user_id = ? AND meeting_id > ? \
             ORDER BY meeting_id LIMIT ?",
        )
        .bind(user)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        ids.extend(organized);
        ids.extend(attended);
    }
    Ok(ids
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect())
}

async fn write_documents(
    conn: &mut SqliteConnection,
    documents: &[Document],
) -> sqlx::Result<usize> {
    for document in documents {
        sqlx::query(
            "INSERT INTO rm_meeting_documents (meeting_id, members, version, body) \
             VALUES (?, ?, ?, ?) \
             ON CONFLICT (meeting_id) DO UPDATE SET members = excluded.members, \
                version = excluded.version, body = excluded.body",
        )
        .bind(document.meeting_id)
        .bind(serde_json::to_string(&document.members).expect("BUG: ids serialize"))
        .bind(document.version)
        .bind(&document.body)
        .execute(&mut *conn)
        .await?;
    }
    Ok(documents.len())
}

/// [`crate::sql::documents::refresh`].
pub async fn refresh_documents(
    conn: &mut SqliteConnection,
    meetings: &[Uuid],
) -> sqlx::Result<usize> {
    let touched = Touched {
        meetings: meetings.to_vec(),
        ..Touched::default()
    };
    let (_, fold) = load(&mut *conn, platform::projection::READ_MODELS, &[], &touched).await?;
    write_documents(conn, &fold.documents()).await
}

/// The directory's rows of one user: every word prefix (up to
/// [`platform::search::INDEXED_PREFIX`] characters) and every whole word, as
/// `meetings_word_prefixes` makes them on PostgreSQL; none for an inactive user.
async fn write_prefixes(conn: &mut SqliteConnection, user: &UserRow) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM rm_user_prefixes WHERE user_id = ?")
        .bind(user.id)
        .execute(&mut *conn)
        .await?;
    if !user.active {
        return Ok(());
    }
    let sort_name = user.display_name.to_lowercase();
    let words = platform::search::user_words(&user.display_name, &user.email);
    for prefix in platform::search::prefixes(&words) {
        sqlx::query(
            "INSERT OR IGNORE INTO rm_user_prefixes (prefix, sort_name, user_id) VALUES (?, ?, ?)",
        )
        .bind(prefix)
        .bind(&sort_name)
        .bind(user.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// [`crate::sql::write`]: the rows, documents, sequences and checkpoint of `batch`, statement
/// by statement (the caller's transaction makes them one). Answers the checkpoint.
pub async fn write(conn: &mut SqliteConnection, batch: &Batch) -> sqlx::Result<String> {
    let writes = &batch.writes;
    for u in &writes.users {
        sqlx::query(
            "INSERT INTO rm_users (id, email, email_key, display_name, sort_name, time_zone, \
                                   role, working_hours, active, version, created_at, \
                                   updated_at, search_words) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET email = excluded.email, \
                email_key = excluded.email_key, display_name = excluded.display_name, \
                sort_name = excluded.sort_name, time_zone = excluded.time_zone, \
                role = excluded.role, working_hours = excluded.working_hours, \
                active = excluded.active, version = excluded.version, \
                created_at = excluded.created_at, updated_at = excluded.updated_at, \
                search_words = excluded.search_words",
        )
        .bind(u.id)
        .bind(&u.email)
        .bind(&u.email_key)
        .bind(&u.display_name)
        .bind(u.display_name.to_lowercase())
        .bind(&u.time_zone)
        .bind(&u.role)
        .bind(u.working_hours.as_ref().map(|v| v.to_string()))
        .bind(u.active)
        .bind(u.version)
        .bind(micros(u.created_at))
        .bind(micros(u.updated_at))
        .bind(platform::search::user_words(&u.display_name, &u.email))
        .execute(&mut *conn)
        .await?;
        write_prefixes(conn, u).await?;
    }
    for m in &writes.meetings {
        sqlx::query(
            "INSERT INTO rm_meetings (id, organizer_id, title, title_key, description, starts_at, \
                                      ends_at, time_zone, location, status, recurrence, \
                                      occurrences, sequence, cancel_reason, version, position, \
                                      created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET organizer_id = excluded.organizer_id, \
                title = excluded.title, title_key = excluded.title_key, \
                description = excluded.description, \
                starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
                time_zone = excluded.time_zone, location = excluded.location, \
                status = excluded.status, recurrence = excluded.recurrence, \
                occurrences = excluded.occurrences, sequence = excluded.sequence, \
                cancel_reason = excluded.cancel_reason, version = excluded.version, \
                position = excluded.position, created_at = excluded.created_at, \
                updated_at = excluded.updated_at",
        )
        .bind(m.id)
        .bind(m.organizer_id)
        .bind(&m.title)
        .bind(m.title.to_lowercase())
        .bind(&m.description)
        .bind(micros(m.starts_at))
        .bind(micros(m.ends_at))
        .bind(&m.time_zone)
        .bind(&m.location)
        .bind(&m.status)
        .bind(m.recurrence.as_ref().map(|v| v.to_string()))
        .bind(json_map(&m.occurrences))
        .bind(m.sequence)
        .bind(&m.cancel_reason)
        .bind(m.version)
        .bind(&m.position)
        .bind(micros(m.created_at))
        .bind(micros(m.updated_at))
        .execute(&mut *conn)
        .await?;
    }
    for (meeting_id, user_id) in &writes.removed {
        for table in ["rm_meeting_attendees", "rm_agenda"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE meeting_id = ? AND user_id = ?"
            ))
            .bind(meeting_id)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    for a in &writes.attendees {
        sqlx::query(
            "INSERT INTO rm_meeting_attendees (meeting_id, user_id, optional, response, comment, \
                                               occurrence_responses) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (meeting_id, user_id) DO UPDATE SET optional = excluded.optional, \
                response = excluded.response, comment = excluded.comment, \
                occurrence_responses = excluded.occurrence_responses",
        )
        .bind(a.meeting_id)
        .bind(a.user_id)
        .bind(a.optional)
        .bind(&a.response)
        .bind(&a.comment)
        .bind(json_map(&a.occurrence_responses))
        .execute(&mut *conn)
        .await?;
    }
    for a in &writes.agenda {
        sqlx::query(
            "INSERT INTO rm_agenda (user_id, meeting_id, starts_at, ends_at, title, status, \
                                    is_organizer, my_response, series, series_ends_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (user_id, meeting_id) DO UPDATE SET starts_at = excluded.starts_at, \
                ends_at = excluded.ends_at, title = excluded.title, status = excluded.status, \
                is_organizer = excluded.is_organizer, my_response = excluded.my_response, \
                series = excluded.series, series_ends_at = excluded.series_ends_at",
        )
        .bind(a.user_id)
        .bind(a.meeting_id)
        .bind(micros(a.starts_at))
        .bind(micros(a.ends_at))
        .bind(&a.title)
        .bind(&a.status)
        .bind(a.is_organizer)
        .bind(&a.my_response)
        .bind(a.series.as_ref().map(|v| v.to_string()))
        .bind(a.series_ends_at.map(micros))
        .execute(&mut *conn)
        .await?;
    }
    for c in &writes.chat {
        sqlx::query(
            "INSERT INTO rm_chat_messages (meeting_id, message_id, author_id, text, posted_at, \
                                           position) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(c.meeting_id)
        .bind(c.message_id)
        .bind(c.author_id)
        .bind(&c.text)
        .bind(micros(c.posted_at))
        .bind(&c.position)
        .execute(&mut *conn)
        .await?;
    }
    // A plain INSERT, as on PostgreSQL: an event recorded twice is refused.
    for c in &writes.changes {
        sqlx::query(
            "INSERT INTO rm_changes (position, event_id, event_type, aggregate_type, \
                                     aggregate_id, sequence, recorded_at, data) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.position)
        .bind(c.event_id)
        .bind(&c.event_type)
        .bind(&c.aggregate_type)
        .bind(c.aggregate_id)
        .bind(c.sequence)
        .bind(micros(c.recorded_at))
        .bind(&c.data)
        .execute(&mut *conn)
        .await?;
        for user in &c.audience {
            sqlx::query(
                "INSERT OR IGNORE INTO rm_change_audience (user_id, position) VALUES (?, ?)",
            )
            .bind(user)
            .bind(&c.position)
            .execute(&mut *conn)
            .await?;
        }
    }
    write_documents(conn, &writes.documents).await?;
    let bookkeeping = &batch.bookkeeping;
    for (aggregate_type, aggregate_id, sequence) in &bookkeeping.sequences {
        sqlx::query(
            "INSERT INTO projection_sequences (projection, aggregate_type, aggregate_id, \
                                               last_sequence) VALUES (?, ?, ?, ?) \
             ON CONFLICT (projection, aggregate_type, aggregate_id) \
             DO UPDATE SET last_sequence = excluded.last_sequence",
        )
        .bind(bookkeeping.projection)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query_scalar(
        "INSERT INTO projection_checkpoints (projection, position, stream_sequence, updated_at) \
         VALUES (?, ?, ?, ?) \
         ON CONFLICT (projection) DO UPDATE \
            SET position = max(projection_checkpoints.position, excluded.position), \
                stream_sequence = coalesce(excluded.stream_sequence, \
                                           projection_checkpoints.stream_sequence), \
                updated_at = excluded.updated_at, failed_at = NULL, failure = NULL \
         RETURNING position",
    )
    .bind(bookkeeping.projection)
    .bind(&bookkeeping.position)
    .bind(bookkeeping.stream_sequence)
    .bind(micros(Utc::now()))
    .fetch_one(&mut *conn)
    .await
}
