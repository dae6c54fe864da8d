//! iCalendar out: one meeting as `text/calendar` (`GET /v1/meetings/{id}.ics`), and each user's
//! subscription feed at a secret, revocable address (`GET /v1/calendar/feed`,
//! `POST /v1/calendar/feed/rotate`, `GET /v1/calendar/feeds/{token}.ics` without auth).
//!
//! Both render the meeting documents the JSON API serves (`platform::ical`), with `DTSTAMP` at
//! each meeting's last change, so the same read models give the same bytes and the `ETag` (a
//! hash of them) only changes when the calendar does.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, Result};
use platform::ical::{self, Method};
use platform::views::Meeting;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{is_admin, meeting_not_found};
use crate::AppState;

/// Most meetings one feed lists (the most recent by start; older ones are left out).
pub const MAX_FEED_MEETINGS: i64 = 2_000;
/// How far back a feed reaches: meetings (or series) that ended longer ago are left out.
pub const FEED_HISTORY_DAYS: i64 = 180;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/calendar/feed", get(feed))
        .route("/v1/calendar/feed/rotate", post(rotate))
        .route("/v1/calendar/feeds/{token}", get(feed_ics))
}

/// The address of a feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedUrl {
    /// Absolute URL to subscribe to in a calendar app; anyone holding it reads the feed, so
    /// treat it like a password (rotate it when it leaked).
    pub url: String,
}

/// One meeting as iCalendar (`METHOD:PUBLISH`), for the same callers as its JSON: organizer,
/// attendees, admins; 404 to anyone else. `ETag`/`If-None-Match` as for the feed.
#[utoipa::path(get, path = "/v1/meetings/{id}.ics", tag = "calendar", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "meeting id"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client has")),
    responses(
        (status = 200, description = "RFC 5545 calendar with the meeting (a series with its overridden occurrences)", content_type = "text/calendar", body = String),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 400, description = "the id is not a UUID", body = platform::http::Problem),
        (status = 401, body = platform::http::Problem),
        (status = 404, description = "unknown, or not visible to the caller", body = platform::http::Problem)))]
pub async fn meeting_ics(
    state: &AppState,
    caller: &AuthUser,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<Response> {
    let document = state
        .documents
        .get(id, caller.user_id, is_admin(caller))
        .await?
        .ok_or_else(meeting_not_found)?;
    let meeting: Meeting = serde_json::from_str(&document.body)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("unreadable meeting document: {e}")))?;
    let body = render(std::slice::from_ref(&meeting), None, Method::Publish, state).await?;
    Ok(calendar_response(
        body,
        headers,
        "meeting.ics",
        Method::Publish,
    ))
}

/// The caller's feed address, made on first use. Calendar apps poll it without logging in.
#[utoipa::path(get, path = "/v1/calendar/feed", tag = "calendar", security(("bearer" = [])),
    responses(
        (status = 200, body = FeedUrl),
        (status = 401, body = platform::http::Problem)))]
pub async fn feed(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
) -> Result<Json<FeedUrl>> {
    let candidate = new_token();
    let token = state
        .read_models
        .feed_token(caller.user_id, &candidate, &hash(&candidate))
        .await?;
    Ok(Json(FeedUrl {
        url: feed_url(&state, &headers, &token)?,
    }))
}

/// Revokes the caller's feed address (it answers 404 from now on) and answers a new one.
#[utoipa::path(post, path = "/v1/calendar/feed/rotate", tag = "calendar", security(("bearer" = [])),
    responses(
        (status = 200, body = FeedUrl),
        (status = 401, body = platform::http::Problem)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
) -> Result<Json<FeedUrl>> {
    let token = new_token();
    state
        .read_models
        .rotate_feed_token(caller.user_id, &token, &hash(&token))
        .await?;
    Ok(Json(FeedUrl {
        url: feed_url(&state, &headers, &token)?,
    }))
}

/// A user's meetings as an iCalendar feed, for calendar apps: no login, the token in the path
/// is the credential (never logged). Unknown, revoked or malformed tokens, and deactivated
/// users' feeds, are 404. Lists the meetings and series the user organizes or attends that
/// ended at most 180 days ago (at most 2,000, the latest first); `ETag`/`If-None-Match`.
#[utoipa::path(get, path = "/v1/calendar/feeds/{token}.ics", tag = "calendar",
    params(("token" = String, Path, description = "the secret of the feed's address"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client has")),
    responses(
        (status = 200, description = "RFC 5545 calendar", content_type = "text/calendar", body = String),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 404, description = "unknown or revoked token", body = platform::http::Problem)))]
pub async fn feed_ics(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let unknown = || ApiError::NotFound("no such calendar feed".into());
    let token = file.strip_suffix(".ics").ok_or_else(unknown)?;
    if token.is_empty() || token.len() > 64 {
        return Err(unknown());
    }
    let owner = state.read_models.feed_owner(&hash(token)).await?;
    let (user_id, name) = owner.ok_or_else(unknown)?;
    let bodies = state
        .read_models
        .feed_documents(user_id, FEED_HISTORY_DAYS as i32, MAX_FEED_MEETINGS)
        .await?;
    let mut meetings = bodies
        .iter()
        .map(|body| serde_json::from_str::<Meeting>(body))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("unreadable meeting document: {e}")))?;
    meetings.sort_by_key(|m| (m.starts_at, m.id));
    let body = render(&meetings, Some(&name), Method::Publish, &state).await?;
    Ok(calendar_response(
        body,
        &headers,
        "meetings.ics",
        Method::Publish,
    ))
}

/// The calendar of `meetings`, with the e-mail addresses of their people.
pub(super) async fn render(
    meetings: &[Meeting],
    name: Option<&str>,
    method: Method,
    state: &AppState,
) -> Result<String> {
    let people: Vec<Uuid> = meetings
        .iter()
        .flat_map(|m| std::iter::once(m.organizer.id).chain(m.attendees.iter().map(|a| a.user_id)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let emails: HashMap<Uuid, String> = state.read_models.emails(&people).await?;
    let stamp = meetings
        .iter()
        .map(|m| m.updated_at)
        .max()
        .unwrap_or_default();
    let domain = uid_domain(state);
    Ok(ical::calendar(
        meetings,
        method,
        &ical::Context {
            emails: &emails,
            uid_domain: &domain,
            name: name.map(|n| format!("{n} — meetings")).as_deref(),
            stamp,
        },
    ))
}

/// The host part of `UID`s: the public URL's host, else `meetings` (stable across restarts
/// and instances, so calendar apps recognise a meeting they have seen).
fn uid_domain(state: &AppState) -> String {
    state
        .public_url
        .as_deref()
        .and_then(|url| url.split("://").nth(1))
        .map(|rest| rest.split(['/', ':']).next().unwrap_or(rest).to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "meetings".to_owned())
}

/// `text/calendar` (with its iTIP `method`) and a strong `ETag` over the bytes; 304 when
/// `If-None-Match` names it.
pub(super) fn calendar_response(
    body: String,
    headers: &HeaderMap,
    filename: &str,
    method: Method,
) -> Response {
    let etag = format!(
        "\"{}\"",
        hex::encode(&Sha256::digest(body.as_bytes())[..16])
    );
    let etag_header = HeaderValue::from_str(&etag).expect("BUG: a quoted hex string is a header");
    if super::not_modified(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                // iMIP (RFC 6047) names the method of an invitation; feeds stay plain.
                match method {
                    Method::Publish => HeaderValue::from_static("text/calendar; charset=utf-8"),
                    other => HeaderValue::from_str(&format!(
                        "text/calendar; charset=utf-8; method={}",
                        other.as_str()
                    ))
                    .expect("BUG: a method name is a header"),
                },
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("inline; filename=\"{filename}\""))
                    .expect("BUG: a plain file name is a header"),
            ),
            (header::ETAG, etag_header),
        ],
        body,
    )
        .into_response()
}

/// 32 random bytes, URL-safe base64 (43 characters).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// `<public URL or http://Host>/v1/calendar/feeds/<token>.ics`.
fn feed_url(state: &AppState, headers: &HeaderMap, token: &str) -> Result<String> {
    let base = match &state.public_url {
        Some(base) => base.to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "no Host header to build the feed's address from (set MEETINGS_PUBLIC_URL)"
                            .into(),
                    )
                })?;
            format!("http://{host}")
        }
    };
    Ok(format!("{base}/v1/calendar/feeds/{token}.ics"))
}
