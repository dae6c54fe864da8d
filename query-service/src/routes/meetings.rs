//! Meetings and their chat history, from `rm_meetings`, `rm_meeting_attendees`,
//! `rm_chat_messages` (names from `rm_users`).
//!
//! Visibility: the organizer, the attendees and admins see a meeting; to anyone else it does
//! not exist (404, API.md "Meetings").

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, ApiQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{can_see_meeting, internal, is_admin, meeting_not_found, VISIBLE_TO_CALLER};
use crate::params::{self, decode_cursor, encode_cursor, like_escape, limit};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/meetings", get(list))
        .route("/v1/meetings/{id}", get(get_one))
        .route("/v1/meetings/{id}/messages", get(messages))
}

/// The status values of a meeting.
pub const STATUSES: [&str; 4] = ["scheduled", "in_progress", "ended", "cancelled"];

/// A user with the name to show.
#[derive(Debug, Serialize, ToSchema)]
pub struct Person {
    pub id: Uuid,
    /// `null` when the user is not (yet) in the read models.
    pub display_name: Option<String>,
}

/// An attendee and their answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Attendee {
    pub user_id: Uuid,
    /// `null` when the user is not (yet) in the read models.
    pub display_name: Option<String>,
    pub optional: bool,
    /// `needs_action`, `accepted`, `declined` or `tentative`.
    pub response: String,
    /// The attendee's comment with their answer, when they gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A meeting as its participants see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Meeting {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub organizer: Person,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// IANA time zone the meeting was planned in.
    pub time_zone: String,
    pub location: Option<String>,
    /// `scheduled`, `in_progress`, `ended` or `cancelled`.
    pub status: String,
    /// Attendees ordered by display name (the organizer is not one of them).
    pub attendees: Vec<Attendee>,
    /// `{rrule, exdates?}` for a series; absent for a single meeting.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub recurrence: Option<serde_json::Value>,
    /// Why the meeting was cancelled, when it was and a reason was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The aggregate's version; also the `ETag` and the `If-Match` of commands.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct MeetingRow {
    id: Uuid,
    organizer_id: Uuid,
    organizer_name: Option<String>,
    title: String,
    description: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    time_zone: String,
    location: Option<String>,
    status: String,
    recurrence: Option<serde_json::Value>,
    cancel_reason: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AttendeeRow {
    meeting_id: Uuid,
    user_id: Uuid,
    display_name: Option<String>,
    optional: bool,
    response: String,
    comment: Option<String>,
}

const MEETING_COLUMNS: &str = "m.id, m.organizer_id, o.display_name AS organizer_name, m.title,
    m.description, m.starts_at, m.ends_at, m.time_zone, m.location, m.status, m.recurrence,
    m.cancel_reason, m.version, m.created_at, m.updated_at";

/// `MeetingRow` plus the meeting's attendees as one JSON array, in [`Attendee`]'s shape and
/// the answer's order (by name, then id): `GET /v1/meetings/{id}` in a single statement.
#[derive(sqlx::FromRow)]
struct MeetingWithAttendeesRow {
    #[sqlx(flatten)]
    meeting: MeetingRow,
    attendees: sqlx::types::Json<Vec<Attendee>>,
}

/// The attendees of meeting `m` as a JSON array (`[]` when there are none), ordered like
/// [`assemble`] orders them.
const ATTENDEES_JSON: &str = "COALESCE((SELECT json_agg(json_build_object(
        'user_id', a.user_id, 'display_name', u.display_name, 'optional', a.optional,
        'response', a.response, 'comment', a.comment) ORDER BY lower(u.display_name), a.user_id)
     FROM rm_meeting_attendees a LEFT JOIN rm_users u ON u.id = a.user_id
     WHERE a.meeting_id = m.id), '[]')";

impl MeetingRow {
    fn into_meeting(self, attendees: Vec<Attendee>) -> Meeting {
        Meeting {
            attendees,
            id: self.id,
            title: self.title,
            description: self.description,
            organizer: Person {
                id: self.organizer_id,
                display_name: self.organizer_name,
            },
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            time_zone: self.time_zone,
            location: self.location,
            status: self.status,
            recurrence: self.recurrence.filter(|v| !v.is_null()),
            cancel_reason: self.cancel_reason,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Loads the attendees of `rows` in one query and assembles the meetings, keeping row order.
async fn assemble(state: &AppState, rows: Vec<MeetingRow>) -> Result<Vec<Meeting>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let attendees: Vec<AttendeeRow> = sqlx::query_as(
        "SELECT a.meeting_id, a.user_id, u.display_name, a.optional, a.response, a.comment
         FROM rm_meeting_attendees a LEFT JOIN rm_users u ON u.id = a.user_id
         WHERE a.meeting_id = ANY($1)
         ORDER BY lower(u.display_name), a.user_id",
    )
    .bind(&ids)
    .fetch_all(&state.pool)
    .await
    .map_err(internal)?;
    let mut by_meeting: HashMap<Uuid, Vec<Attendee>> = HashMap::new();
    for a in attendees {
        by_meeting.entry(a.meeting_id).or_default().push(Attendee {
            user_id: a.user_id,
            display_name: a.display_name,
            optional: a.optional,
            response: a.response,
            comment: a.comment,
        });
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let attendees = by_meeting.remove(&r.id).unwrap_or_default();
            r.into_meeting(attendees)
        })
        .collect())
}

/// `GET /v1/meetings/{id}`: `$1` admin flag, `$2` caller, `$3` meeting id.
static GET_ONE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {MEETING_COLUMNS}, {ATTENDEES_JSON} AS attendees
         FROM rm_meetings m LEFT JOIN rm_users o ON o.id = m.organizer_id
         WHERE m.id = $3 AND {VISIBLE_TO_CALLER}"
    )
});

/// Whether `If-None-Match` names the current version (`*`, and weak tags, match too).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// One meeting, with `ETag: "<version>"`. `If-None-Match` with the current ETag answers 304
/// without a body. Visible to its organizer, its attendees and admins; 404 to anyone else.
#[utoipa::path(get, path = "/v1/meetings/{id}", tag = "meetings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "meeting id"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client has")),
    responses(
        (status = 200, body = Meeting, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 400, description = "the id is not a UUID", body = platform::http::Problem),
        (status = 401, body = platform::http::Problem),
        (status = 404, description = "unknown, or not visible to the caller", body = platform::http::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // One statement, one round trip: the meeting, its organizer's name and its attendees
    // (aggregated in PostgreSQL). Two statements cost a second round trip and wakeup, and the
    // attendees' one was re-planned on every call on some pool connections (BENCHMARKS.md).
    let row: Option<MeetingWithAttendeesRow> = sqlx::query_as(GET_ONE_SQL.as_str())
        .bind(is_admin(&caller))
        .bind(caller.user_id)
        .bind(id)
        .fetch_optional(&state.pool)
        .await
        .map_err(internal)?;
    let MeetingWithAttendeesRow { meeting, attendees } = row.ok_or_else(meeting_not_found)?;
    let etag = format!("\"{}\"", meeting.version);
    let etag_header = HeaderValue::from_str(&etag).expect("BUG: a quoted number is a header");
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response());
    }
    let meeting = meeting.into_meeting(attendees.0);
    Ok(([(header::ETAG, etag_header)], Json(meeting)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// RFC 3339; only meetings that end after this time.
    pub from: Option<String>,
    /// RFC 3339; only meetings that start before this time.
    pub to: Option<String>,
    /// `scheduled`, `in_progress`, `ended` or `cancelled`.
    pub status: Option<String>,
    /// Substring of the title, case-insensitive.
    pub q: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of meetings.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingPage {
    pub items: Vec<Meeting>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Meetings the caller organizes or attends (admins: all meetings), ordered by start, then id.
/// `from`/`to` select meetings overlapping `[from, to)`; either may be given alone.
#[utoipa::path(get, path = "/v1/meetings", tag = "meetings", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, body = MeetingPage),
        (status = 401, body = platform::http::Problem),
        (status = 422, description = "bad time, status, limit or cursor; to not after from", body = platform::http::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<MeetingPage>, ApiError> {
    let limit = limit(query.limit.as_deref())?;
    let from = params::optional_time("from", query.from.as_deref())?;
    let to = params::optional_time("to", query.to.as_deref())?;
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            return Err(ApiError::invalid("to", "must be after from"));
        }
    }
    let status = query.status.filter(|s| !s.is_empty());
    if let Some(status) = &status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::invalid(
                "status",
                format!("must be one of {}", STATUSES.join(", ")),
            ));
        }
    }
    let title = query
        .q
        .filter(|q| !q.is_empty())
        .map(|q| format!("%{}%", like_escape(&q)));
    let after: Option<(DateTime<Utc>, Uuid)> = decode_cursor(query.cursor.as_deref())?;
    let (after_start, after_id) = after.unzip();
    // Members: start from their own meetings (both lookups are index scans), so the cost
    // follows the caller's meetings, not the whole table. Admins: every meeting (`$1` is true).
    let source = if is_admin(&caller) {
        "rm_meetings m"
    } else {
        "(SELECT a.meeting_id AS id FROM rm_meeting_attendees a WHERE a.user_id = $2
          UNION SELECT id FROM rm_meetings WHERE organizer_id = $2) mine
         JOIN rm_meetings m ON m.id = mine.id"
    };
    let sql = format!(
        r"SELECT {MEETING_COLUMNS} FROM {source} LEFT JOIN rm_users o ON o.id = m.organizer_id
          WHERE {VISIBLE_TO_CALLER}
            AND ($3::timestamptz IS NULL OR m.ends_at > $3)
            AND ($4::timestamptz IS NULL OR m.starts_at < $4)
            AND ($5::text IS NULL OR m.status = $5)
            AND ($6::text IS NULL OR m.title ILIKE $6 ESCAPE '\')
            AND ($7::timestamptz IS NULL OR (m.starts_at, m.id) > ($7, $8::uuid))
          ORDER BY m.starts_at, m.id
          LIMIT $9"
    );
    let mut rows: Vec<MeetingRow> = sqlx::query_as(&sql)
        .bind(is_admin(&caller))
        .bind(caller.user_id)
        .bind(from)
        .bind(to)
        .bind(status)
        .bind(title)
        .bind(after_start)
        .bind(after_id)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await
        .map_err(internal)?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode_cursor(&(r.starts_at, r.id)))
    } else {
        None
    };
    Ok(Json(MeetingPage {
        items: assemble(&state, rows).await?,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Position: only messages after it (exclusive).
    pub after: Option<String>,
    /// `next_cursor` of the previous page (a position, like `after`).
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<String>,
}

/// One chat message.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ChatMessage {
    pub message_id: Uuid,
    pub author_id: Uuid,
    pub text: String,
    pub posted_at: DateTime<Utc>,
    /// Global position of the message's event; pass as `after` to read on from here.
    pub position: String,
}

/// A page of chat history.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<ChatMessage>,
    /// Position of the last item when more messages follow (pass as `after` or `cursor`);
    /// `null` on the last page. To follow new messages, pass the last item's `position`.
    pub next_cursor: Option<String>,
}

/// Chat history of a meeting in posting (global) order, for its organizer, attendees and
/// admins; 404 to anyone else. `cursor`, when given, takes precedence over `after`.
#[utoipa::path(get, path = "/v1/meetings/{id}/messages", tag = "meetings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "meeting id"), MessagesQuery),
    responses(
        (status = 200, body = MessagePage),
        (status = 401, body = platform::http::Problem),
        (status = 404, description = "unknown, or not visible to the caller", body = platform::http::Problem),
        (status = 422, description = "bad position or limit", body = platform::http::Problem)))]
pub async fn messages(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = limit(query.limit.as_deref())?;
    let after = match params::position("cursor", query.cursor.as_deref())? {
        Some(cursor) => Some(cursor),
        None => params::position("after", query.after.as_deref())?,
    };
    if !can_see_meeting(&state.pool, &caller, id).await? {
        return Err(meeting_not_found());
    }
    let mut items: Vec<ChatMessage> = sqlx::query_as(
        "SELECT message_id, author_id, text, posted_at, position FROM rm_chat_messages
         WHERE meeting_id = $1 AND ($2::text IS NULL OR position > $2)
         ORDER BY position LIMIT $3",
    )
    .bind(id)
    .bind(after.map(|p| p.to_string()))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(internal)?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|m| m.position.clone())
    } else {
        None
    };
    Ok(Json(MessagePage { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        assert!(not_modified(&headers("\"3\""), "\"3\""));
        assert!(not_modified(&headers("\"1\", W/\"3\""), "\"3\""));
        assert!(not_modified(&headers("*"), "\"3\""));
        assert!(!not_modified(&headers("\"2\""), "\"3\""));
        assert!(!not_modified(&HeaderMap::new(), "\"3\""));
    }
}
