//! Meetings and their chat history. A meeting is answered as the projector rendered it
//! (`rm_meeting_documents`, with names); lists filter on `rm_meetings`; chat comes from
//! `rm_chat_messages`.
//!
//! Visibility: the organizer, the attendees and admins see a meeting; to anyone else it does
//! not exist (404, docs/api.md "Meetings").

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, ApiQuery, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{can_see_meeting, is_admin, meeting_not_found, next_page, not_modified, viewer};
use crate::params::{self, decode_cursor, encode_cursor, limit, SearchText};
pub use crate::repository::ChatMessage;
use crate::repository::MeetingFilter;
use crate::AppState;
use platform::openapi::schemas::{OptionalInstant, OptionalPosition};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/meetings", get(list))
        .route("/v1/meetings/{id}", get(get_one))
        .route("/v1/meetings/{id}/messages", get(messages))
}

/// The status values of a meeting.
pub const STATUSES: [&str; 4] = ["scheduled", "in_progress", "ended", "cancelled"];

platform::schema_type!(
    /// `status` of a list: one of [`STATUSES`], or empty (no filter).
    StatusFilter => platform::openapi::schemas::or_empty(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(STATUSES)),
    )
);

/// Meetings are answered as the projector rendered them (`rm_meeting_documents`).
pub use platform::views::{Attendee, Meeting, Person};

/// A stored JSON document as the body of a `200`.
fn json_body(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
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
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    // `{id}.ics` shares the route: the router matches whole segments only.
    let (id, ics) = match id.strip_suffix(".ics") {
        Some(id) => (id, true),
        None => (id.as_str(), false),
    };
    let id: Uuid = id.parse().map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid path parameter: cannot parse `{id}` as a meeting id (UUID): {e}"
        ))
    })?;
    if ics {
        return super::ical::meeting_ics(&state, &caller, id, &headers).await;
    }
    // The document was rendered when the meeting last changed: a read is one primary-key
    // lookup, no join or aggregation per request, and lookups that arrive together share a
    // statement (crate::documents; BENCHMARKS.md, get-meeting).
    let document = state
        .documents
        .get(id, caller.user_id, is_admin(&caller))
        .await?;
    let crate::documents::Document { version, body } = document.ok_or_else(meeting_not_found)?;
    let etag = format!("\"{version}\"");
    let etag_header = HeaderValue::from_str(&etag).expect("BUG: a quoted number is a header");
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response());
    }
    let mut response = json_body(body);
    response.headers_mut().insert(header::ETAG, etag_header);
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only meetings that end after this time.
    #[param(value_type = Option<OptionalInstant>)]
    pub from: Option<String>,
    /// Only meetings that start before this time; after `from`.
    #[param(value_type = Option<OptionalInstant>)]
    pub to: Option<String>,
    /// Only meetings with this status.
    #[param(value_type = Option<StatusFilter>)]
    pub status: Option<String>,
    /// Substring of the title, case-insensitive, one line of at most 200 characters once
    /// trimmed. Absent or blank: any title.
    #[param(value_type = Option<SearchText>)]
    pub q: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page, unchanged (anything else is 422). Empty is the
    /// same as none.
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
) -> Result<Response> {
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
    let title = params::search("q", query.q.as_deref())?;
    let after: Option<(DateTime<Utc>, Uuid)> = decode_cursor(query.cursor.as_deref())?;
    if let Some((starts_at, _)) = after {
        params::instant("cursor", starts_at)?;
    }
    let filter = MeetingFilter {
        from,
        to,
        status,
        title,
        after,
        limit: limit + 1,
    };
    let mut rows = state
        .read_models
        .meeting_page(viewer(&caller), &filter)
        .await?;
    let next_cursor = next_page(&mut rows, limit, |(starts_at, id, _)| {
        encode_cursor(&(*starts_at, *id))
    });
    // A `MeetingPage` written around the stored documents, which are already JSON.
    let mut page =
        String::with_capacity(rows.iter().map(|(_, _, b)| b.len() + 1).sum::<usize>() + 64);
    page.push_str("{\"items\":[");
    for (i, (_, _, body)) in rows.iter().enumerate() {
        if i > 0 {
            page.push(',');
        }
        page.push_str(body);
    }
    page.push_str("],\"next_cursor\":");
    page.push_str(&serde_json::to_string(&next_cursor).expect("BUG: a cursor serializes"));
    page.push('}');
    Ok(json_body(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Only messages after this position (exclusive).
    #[param(value_type = Option<OptionalPosition>)]
    pub after: Option<String>,
    /// `next_cursor` of the previous page (a position, like `after`).
    #[param(value_type = Option<OptionalPosition>)]
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
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
) -> Result<Json<MessagePage>> {
    let limit = limit(query.limit.as_deref())?;
    let after = match params::position("cursor", query.cursor.as_deref())? {
        Some(cursor) => Some(cursor),
        None => params::position("after", query.after.as_deref())?,
    };
    if !can_see_meeting(&state, &caller, id).await? {
        return Err(meeting_not_found());
    }
    let mut items = state
        .read_models
        .messages(id, after.map(|p| p.to_string()), limit + 1)
        .await?;
    let next_cursor = next_page(&mut items, limit, |m| m.position.clone());
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
