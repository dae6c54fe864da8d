//! Invitations as iTIP (RFC 5546): for one meeting and one person, the `METHOD:REQUEST` or
//! `METHOD:CANCEL` calendar a mail notifier attaches (iMIP, RFC 6047), rendered from the same
//! meeting document as the feed.
//!
//! - an attendee of a meeting that goes on: `REQUEST` with the whole meeting (a series with its
//!   rule and overridden occurrences), so accepting it in a mail client files every occurrence;
//! - an attendee of a cancelled meeting: `CANCEL` of the whole meeting (its `SEQUENCE` was
//!   raised by the cancellation);
//! - anyone else (an attendee taken off the meeting): `CANCEL` naming only them, with
//!   `SEQUENCE` one above the meeting's, so their calendar drops it.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, Result};
use platform::ical::Method;
use platform::views::{Attendee, Meeting};
use uuid::Uuid;

use super::ical::{calendar_response, render};
use super::{is_admin, meeting_not_found};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/meetings/{id}/invitations/{user_id}", get(invitation))
}

/// The iTIP invitation of `user_id` to meeting `id`: `METHOD:REQUEST` for an attendee of a
/// meeting that goes on, `METHOD:CANCEL` when the meeting is cancelled or the user is no
/// longer an attendee. For the organizer and admins (a notifier), and for the attendee
/// themself; another attendee gets 403, anyone else 404.
#[utoipa::path(get, path = "/v1/meetings/{id}/invitations/{user_id}", tag = "calendar", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "meeting id"),
           ("user_id" = Uuid, Path, description = "the invited (or uninvited) user"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client has")),
    responses(
        (status = 200, description = "RFC 5546 calendar object; `Content-Type: text/calendar; method=REQUEST|CANCEL`", content_type = "text/calendar", body = String),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 401, body = platform::http::Problem),
        (status = 403, description = "an attendee asking for someone else's invitation", body = platform::http::Problem),
        (status = 404, description = "unknown meeting or user, or the meeting is not visible to the caller", body = platform::http::Problem)))]
pub async fn invitation(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
    headers: HeaderMap,
) -> Result<Response> {
    let document = state
        .documents
        .get(id, caller.user_id, is_admin(&caller))
        .await?
        .ok_or_else(meeting_not_found)?;
    let mut meeting: Meeting = serde_json::from_str(&document.body)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("unreadable meeting document: {e}")))?;
    let organizes = caller.user_id == meeting.organizer.id || is_admin(&caller);
    if !organizes && caller.user_id != user_id {
        return Err(ApiError::Forbidden(
            "only the organizer reads another attendee's invitation".into(),
        ));
    }
    let attends = meeting.attendees.iter().any(|a| a.user_id == user_id);
    let method = if attends && meeting.status != "cancelled" {
        Method::Request
    } else {
        Method::Cancel
    };
    if !attends {
        // An uninvitation: addressed to that user alone, newer than what they were sent.
        let display_name = state
            .read_models
            .display_name(user_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
        meeting.attendees = vec![Attendee {
            user_id,
            display_name: Some(display_name),
            optional: false,
            response: "needs_action".into(),
            comment: None,
            occurrence_responses: Default::default(),
        }];
        meeting.sequence += 1;
    }
    let body = render(std::slice::from_ref(&meeting), None, method, &state).await?;
    Ok(calendar_response(body, &headers, "invite.ics", method))
}
