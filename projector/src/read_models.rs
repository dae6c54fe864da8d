//! The read models: how each event changes the `rm_*` tables.
//!
//! Every timestamp written here comes from the event (`recorded_at` or the event's own
//! times), never from the clock, so a rebuild from the event store produces identical rows.

use cqrs_es::persist::EventUpcaster;
use domain::{MeetingEvent, UserEvent};
use platform::bus::EventEnvelope;
use platform::store::{decode_event, encode_event};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// Why an event could not be applied. The projection stops on it; it never skips.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event does not fit the read models (unknown type, undecodable data, a missing row).
    #[error("cannot apply {event_type} {aggregate_type}/{aggregate_id}#{sequence}: {reason}")]
    Unapplicable {
        event_type: String,
        aggregate_type: String,
        aggregate_id: Uuid,
        sequence: i64,
        reason: String,
    },
    /// The database is unavailable; retrying may succeed.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The stream cannot continue the projection (it lost or trimmed events the projection
    /// needs); rebuild from the event store.
    #[error("{0}")]
    Inconsistent(String),
    /// The database refused the change (a constraint): the read models and the stream
    /// disagree; retrying would fail forever, so the projection stops.
    #[error("the read models refused the change: {0}")]
    Rejected(sqlx::Error),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        if platform::db::is_transient(&error) {
            ProjectionError::Database(error)
        } else {
            ProjectionError::Rejected(error)
        }
    }
}

impl ProjectionError {
    fn unapplicable(event: &EventEnvelope, reason: impl Into<String>) -> Self {
        ProjectionError::Unapplicable {
            event_type: event.event_type.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            reason: reason.into(),
        }
    }
}

/// Applies one event to the read models (the caller has already de-duplicated it).
pub async fn apply(
    conn: &mut PgConnection,
    event: &EventEnvelope,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<(), ProjectionError> {
    let data = match event.aggregate_type.as_str() {
        "user" => {
            let decoded: UserEvent = decode(event, upcasters)?;
            apply_user(conn, event, &decoded).await?;
            encode_event(&decoded)
                .map_err(|e| ProjectionError::unapplicable(event, e.to_string()))?
                .2
        }
        "meeting" => {
            let decoded: MeetingEvent = decode(event, upcasters)?;
            apply_meeting(conn, event, &decoded).await?;
            encode_event(&decoded)
                .map_err(|e| ProjectionError::unapplicable(event, e.to_string()))?
                .2
        }
        other => {
            return Err(ProjectionError::unapplicable(
                event,
                format!("unknown aggregate type `{other}`"),
            ))
        }
    };
    record_change(conn, event, data).await
}

fn decode<E: cqrs_es::DomainEvent>(
    event: &EventEnvelope,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<E, ProjectionError> {
    decode_event(
        &event.event_type,
        &event.event_version,
        event.data.clone(),
        upcasters,
    )
    .map_err(|reason| ProjectionError::unapplicable(event, reason))
}

/// Fails unless exactly one row changed: a missing row means the read model and the stream
/// disagree, which must stop the projection rather than be papered over.
fn one_row(
    event: &EventEnvelope,
    result: sqlx::postgres::PgQueryResult,
    what: &str,
) -> Result<(), ProjectionError> {
    match result.rows_affected() {
        1 => Ok(()),
        n => Err(ProjectionError::unapplicable(
            event,
            format!("expected one {what} row, changed {n}"),
        )),
    }
}

async fn apply_user(
    conn: &mut PgConnection,
    event: &EventEnvelope,
    decoded: &UserEvent,
) -> Result<(), ProjectionError> {
    let id = event.aggregate_id;
    let result =
        match decoded {
            UserEvent::UserRegistered {
                email,
                display_name,
                time_zone,
                role,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO rm_users (id, email, email_key, display_name, time_zone, role, \
                 working_hours, active, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, true, $7, $8, $8)",
                )
                .bind(id)
                .bind(email)
                .bind(domain::normalize_email(email))
                .bind(display_name)
                .bind(time_zone)
                .bind(role.as_str())
                .bind(event.sequence)
                .bind(event.recorded_at)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::ProfileChanged {
                display_name,
                time_zone,
                working_hours,
            } => {
                let working_hours = working_hours
                    .as_ref()
                    .map(|w| serde_json::to_value(w).expect("BUG: working hours serialize"));
                sqlx::query(
                    "UPDATE rm_users SET display_name = $2, time_zone = $3, working_hours = $4, \
                 version = $5, updated_at = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(display_name)
                .bind(time_zone)
                .bind(working_hours)
                .bind(event.sequence)
                .bind(event.recorded_at)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::PasswordChanged {} => {
                sqlx::query("UPDATE rm_users SET version = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(event.sequence)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await?
            }
            UserEvent::RoleChanged { role } => {
                sqlx::query(
                    "UPDATE rm_users SET role = $2, version = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(role.as_str())
                .bind(event.sequence)
                .bind(event.recorded_at)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::UserDeactivated { .. } => sqlx::query(
                "UPDATE rm_users SET active = false, version = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(event.sequence)
            .bind(event.recorded_at)
            .execute(&mut *conn)
            .await?,
        };
    one_row(event, result, "rm_users")
}

async fn apply_meeting(
    conn: &mut PgConnection,
    event: &EventEnvelope,
    decoded: &MeetingEvent,
) -> Result<(), ProjectionError> {
    let id = event.aggregate_id;
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
        sqlx::query(
            "INSERT INTO rm_meetings (id, organizer_id, title, description, starts_at, ends_at, \
             time_zone, location, status, recurrence, version, position, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'scheduled', $9, $10, $11, $12, $12)",
        )
        .bind(id)
        .bind(organizer_id)
        .bind(title)
        .bind(description)
        .bind(starts_at)
        .bind(ends_at)
        .bind(time_zone)
        .bind(location)
        .bind(
            recurrence
                .as_ref()
                .map(|r| serde_json::to_value(r).expect("BUG: recurrence serializes")),
        )
        .bind(event.sequence)
        .bind(event.position.to_string())
        .bind(event.recorded_at)
        .execute(&mut *conn)
        .await?;
        if !attendees.is_empty() {
            let ids: Vec<Uuid> = attendees.iter().map(|a| a.user_id).collect();
            let optional: Vec<bool> = attendees.iter().map(|a| a.optional).collect();
            sqlx::query(
                "INSERT INTO rm_meeting_attendees (meeting_id, user_id, optional, response) \
                 SELECT $1, u, o, 'needs_action' FROM unnest($2::uuid[], $3::bool[]) AS a(u, o)",
            )
            .bind(id)
            .bind(&ids)
            .bind(&optional)
            .execute(&mut *conn)
            .await?;
        }
        let mut agenda: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO rm_agenda (user_id, meeting_id, starts_at, ends_at, title, status, \
             is_organizer, my_response) ",
        );
        let rows = std::iter::once((*organizer_id, true))
            .chain(attendees.iter().map(|a| (a.user_id, false)));
        agenda.push_values(rows, |mut row, (user_id, is_organizer)| {
            row.push_bind(user_id)
                .push_bind(id)
                .push_bind(*starts_at)
                .push_bind(*ends_at)
                .push_bind(title.clone())
                .push_bind("scheduled")
                .push_bind(is_organizer)
                .push_bind((!is_organizer).then_some("needs_action"));
        });
        agenda.build().execute(&mut *conn).await?;
        return Ok(());
    }

    // Every later event moves the meeting's version.
    let touched = sqlx::query(
        "UPDATE rm_meetings SET version = $2, position = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(event.sequence)
    .bind(event.position.to_string())
    .bind(event.recorded_at)
    .execute(&mut *conn)
    .await?;
    one_row(event, touched, "rm_meetings")?;

    match decoded {
        MeetingEvent::MeetingScheduled { .. } => unreachable!("handled above"),
        MeetingEvent::MeetingDetailsUpdated {
            title,
            description,
            location,
            time_zone,
        } => {
            sqlx::query(
                "UPDATE rm_meetings SET title = $2, description = $3, location = $4, \
                 time_zone = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(title)
            .bind(description)
            .bind(location)
            .bind(time_zone)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE rm_agenda SET title = $2 WHERE meeting_id = $1")
                .bind(id)
                .bind(title)
                .execute(&mut *conn)
                .await?;
        }
        MeetingEvent::MeetingRescheduled {
            starts_at, ends_at, ..
        } => {
            sqlx::query("UPDATE rm_meetings SET starts_at = $2, ends_at = $3 WHERE id = $1")
                .bind(id)
                .bind(starts_at)
                .bind(ends_at)
                .execute(&mut *conn)
                .await?;
            // A new time asks every attendee again (as the aggregate does).
            sqlx::query(
                "UPDATE rm_meeting_attendees SET response = 'needs_action' WHERE meeting_id = $1",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE rm_agenda SET starts_at = $2, ends_at = $3, \
                 my_response = CASE WHEN is_organizer THEN NULL ELSE 'needs_action' END \
                 WHERE meeting_id = $1",
            )
            .bind(id)
            .bind(starts_at)
            .bind(ends_at)
            .execute(&mut *conn)
            .await?;
        }
        MeetingEvent::AttendeeInvited { user_id, optional } => {
            sqlx::query(
                "INSERT INTO rm_meeting_attendees (meeting_id, user_id, optional, response) \
                 VALUES ($1, $2, $3, 'needs_action')",
            )
            .bind(id)
            .bind(user_id)
            .bind(optional)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO rm_agenda (user_id, meeting_id, starts_at, ends_at, title, status, \
                 is_organizer, my_response) \
                 SELECT $2, id, starts_at, ends_at, title, status, false, 'needs_action' \
                 FROM rm_meetings WHERE id = $1",
            )
            .bind(id)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        }
        MeetingEvent::AttendeeRemoved { user_id } => {
            let removed = sqlx::query(
                "DELETE FROM rm_meeting_attendees WHERE meeting_id = $1 AND user_id = $2",
            )
            .bind(id)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            one_row(event, removed, "rm_meeting_attendees")?;
            sqlx::query("DELETE FROM rm_agenda WHERE meeting_id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
        }
        MeetingEvent::AttendeeResponded {
            user_id,
            response,
            comment,
            ..
        } => {
            let updated = sqlx::query(
                "UPDATE rm_meeting_attendees SET response = $3, comment = $4 \
                 WHERE meeting_id = $1 AND user_id = $2",
            )
            .bind(id)
            .bind(user_id)
            .bind(response.as_str())
            .bind(comment)
            .execute(&mut *conn)
            .await?;
            one_row(event, updated, "rm_meeting_attendees")?;
            sqlx::query(
                "UPDATE rm_agenda SET my_response = $3 WHERE meeting_id = $1 AND user_id = $2",
            )
            .bind(id)
            .bind(user_id)
            .bind(response.as_str())
            .execute(&mut *conn)
            .await?;
        }
        MeetingEvent::MeetingCancelled { reason } => {
            set_status(conn, id, "cancelled").await?;
            sqlx::query("UPDATE rm_meetings SET cancel_reason = $2 WHERE id = $1")
                .bind(id)
                .bind(reason)
                .execute(&mut *conn)
                .await?;
        }
        MeetingEvent::MeetingStarted { .. } => set_status(conn, id, "in_progress").await?,
        MeetingEvent::MeetingEnded { .. } => set_status(conn, id, "ended").await?,
        MeetingEvent::ChatMessagePosted {
            message_id,
            author_id,
            text,
            at,
        } => {
            sqlx::query(
                "INSERT INTO rm_chat_messages (meeting_id, message_id, author_id, text, \
                 posted_at, position) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(message_id)
            .bind(author_id)
            .bind(text)
            .bind(at)
            .bind(event.position.to_string())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn set_status(conn: &mut PgConnection, id: Uuid, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rm_meetings SET status = $2 WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE rm_agenda SET status = $2 WHERE meeting_id = $1")
        .bind(id)
        .bind(status)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records the event for `GET /v1/changes` with who may see it: a user's own events go to
/// that user; a meeting's to its organizer and attendees after the event, plus a removed
/// attendee, who must learn of the removal.
async fn record_change(
    conn: &mut PgConnection,
    event: &EventEnvelope,
    data: serde_json::Value,
) -> Result<(), ProjectionError> {
    let audience: Vec<Uuid> = match event.aggregate_type.as_str() {
        "meeting" => {
            let mut audience: Vec<Uuid> = sqlx::query_scalar(
                "SELECT organizer_id FROM rm_meetings WHERE id = $1 \
                 UNION SELECT user_id FROM rm_meeting_attendees WHERE meeting_id = $1",
            )
            .bind(event.aggregate_id)
            .fetch_all(&mut *conn)
            .await?;
            if event.event_type == "AttendeeRemoved" {
                if let Some(removed) = data.get("user_id").and_then(|v| v.as_str()) {
                    if let Ok(removed) = removed.parse() {
                        audience.push(removed);
                    }
                }
            }
            audience.sort_unstable();
            audience.dedup();
            audience
        }
        _ => vec![event.aggregate_id],
    };
    sqlx::query(
        "INSERT INTO rm_changes (position, event_id, event_type, aggregate_type, aggregate_id, \
         sequence, recorded_at, data, audience) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(event.position.to_string())
    .bind(event.event_id)
    .bind(&event.event_type)
    .bind(&event.aggregate_type)
    .bind(event.aggregate_id)
    .bind(event.sequence)
    .bind(event.recorded_at)
    .bind(data)
    .bind(&audience)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
