//! HTTP routes of the query side, one module per resource. Every handler reads the read models
//! only, and every one requires a bearer token ([`platform::auth::AuthUser`]).

pub mod admin;
pub mod calendar;
pub mod changes;
pub mod ical;
pub mod invitations;
pub mod meetings;
pub mod users;

use axum::Router;
use domain::Role;
use platform::auth::AuthUser;
use platform::http::{ApiError, Result};
use uuid::Uuid;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(admin::router())
        .merge(meetings::router())
        .merge(calendar::router())
        .merge(changes::router())
        .merge(ical::router())
        .merge(invitations::router())
}

/// Whether the caller is an administrator (role from the verified token).
pub fn is_admin(caller: &AuthUser) -> bool {
    caller.role == Role::Admin
}

/// Whether the meeting exists and the caller may see it. Unknown and invisible meetings are
/// alike to the caller (404 either way: existence is not revealed).
pub async fn can_see_meeting(
    state: &AppState,
    caller: &AuthUser,
    meeting_id: Uuid,
) -> Result<bool> {
    Ok(state
        .read_models
        .can_see_meeting(viewer(caller), meeting_id)
        .await?)
}

/// The caller as the read models filter for them.
pub fn viewer(caller: &AuthUser) -> crate::repository::Viewer {
    crate::repository::Viewer {
        user_id: caller.user_id,
        admin: is_admin(caller),
    }
}

/// Cuts rows fetched with `LIMIT limit + 1` down to the page; the cursor of its last row when
/// there is more to read, else `None`.
pub fn next_page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    cursor: impl FnOnce(&T) -> String,
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(cursor)
}

/// The 404 of a meeting that does not exist or is not the caller's to see.
pub fn meeting_not_found() -> ApiError {
    ApiError::NotFound("no such meeting".into())
}

/// Whether `If-None-Match` names the current version (`*`, and weak tags, match too).
pub fn not_modified(headers: &axum::http::HeaderMap, etag: &str) -> bool {
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}
