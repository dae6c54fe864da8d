//! The caller's profile and the user directory, from `rm_users`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use domain::Role;
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, ApiQuery, Result};
use platform::search;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::next_page;
use crate::params::{self, decode_cursor, encode_cursor, limit, SearchText};
use crate::repository::DirectorySearch;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me", get(me))
        .route("/v1/users/{id}", get(user))
        .route("/v1/users", get(directory))
}

/// The caller's profile as the read models know it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    /// IANA time zone.
    pub time_zone: String,
    /// `member` or `admin`.
    pub role: String,
    /// `{days: ["mon", …], start: "09:00", end: "17:00"}` in `time_zone`; absent when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub working_hours: Option<serde_json::Value>,
    /// The user aggregate's version (`If-Match` of PATCH /v1/users/me).
    pub version: i64,
}

/// The caller's profile. 404 while the projection has not seen the registration yet (send
/// `X-Min-Position` with the registration's position to wait for it).
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = Profile),
        (status = 401, body = platform::http::Problem),
        (status = 404, description = "the read models do not have this user (yet)", body = platform::http::Problem)))]
pub async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<Json<Profile>> {
    profile(&state, caller.user_id).await.map(Json)
}

/// A user's profile (where registration's `Location` points): for the user themself and for
/// admins. Anyone else gets 404, as for an unknown id, so ids cannot be probed; the
/// directory (`GET /v1/users?q=`) shows what everyone may see of other users.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = Profile),
        (status = 401, body = platform::http::Problem),
        (status = 404, description = "unknown, not (yet) in the read models, or neither the caller nor visible to a member", body = platform::http::Problem)))]
pub async fn user(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Profile>> {
    if id != caller.user_id && caller.role != Role::Admin {
        return Err(ApiError::NotFound("no such user".into()));
    }
    profile(&state, id).await.map(Json)
}

async fn profile(state: &AppState, id: Uuid) -> Result<Profile> {
    let row = state.read_models.profile(id).await?;
    let row = row.ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    Ok(Profile {
        id: row.id,
        email: row.email,
        display_name: row.display_name,
        time_zone: row.time_zone,
        role: row.role,
        working_hours: row.working_hours.filter(|v| !v.is_null()),
        version: row.version,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DirectoryQuery {
    /// Words that start words of the display name (any word: "lovelace" finds "Ada
    /// Lovelace"; every word of `q` must match), or the start of the email address; case- and
    /// accent-insensitive ("zoe" finds "Zoë"). One line of at most 200 characters once
    /// trimmed; at most 8 words are used. Absent or blank: everyone.
    #[param(value_type = Option<SearchText>)]
    pub q: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page, unchanged (anything else is 422). Empty is the
    /// same as none.
    pub cursor: Option<String>,
}

/// One entry of the user directory.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DirectoryEntry {
    pub id: Uuid,
    pub display_name: String,
    pub email: String,
}

/// A page of the directory.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryPage {
    pub items: Vec<DirectoryEntry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Directory search over active users: every word of `q` starts a word of the display name,
/// or `q` starts the email address (case- and accent-insensitive), ordered by display name
/// (case-insensitive), then id. Deactivated users are not listed. Any authenticated user may
/// search.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(DirectoryQuery),
    responses(
        (status = 200, body = DirectoryPage),
        (status = 401, body = platform::http::Problem),
        (status = 422, description = "bad q, limit or cursor", body = platform::http::Problem)))]
pub async fn directory(
    State(state): State<AppState>,
    _caller: AuthUser,
    ApiQuery(query): ApiQuery<DirectoryQuery>,
) -> Result<Json<DirectoryPage>> {
    let limit = limit(query.limit.as_deref())?;
    let after: Option<(String, Uuid)> = decode_cursor(query.cursor.as_deref())?;
    let query = params::search("q", query.q.as_deref())?.map(|q| search::Query::new(&q));
    let search = query.map(|query| {
        // Emails have no spaces; a query without punctuation is one of the words.
        let email = !query.email.contains(char::is_whitespace)
            && query.email.contains(|c: char| !c.is_alphanumeric());
        DirectorySearch {
            indexed: query.indexed(),
            long: query.long(),
            email: email.then(|| query.email.clone()),
        }
    });
    let mut rows = state
        .read_models
        .directory(search.as_ref(), after, limit + 1)
        .await?;
    let next_cursor = next_page(&mut rows, limit, |last| {
        encode_cursor(&(last.sort_name.clone(), last.id))
    });
    Ok(Json(DirectoryPage {
        items: rows
            .into_iter()
            .map(|r| DirectoryEntry {
                id: r.id,
                display_name: r.display_name,
                email: r.email,
            })
            .collect(),
        next_cursor,
    }))
}
