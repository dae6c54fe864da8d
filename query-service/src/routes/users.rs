//! The caller's profile and the user directory, from `rm_users`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use domain::Role;
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, ApiQuery, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::next_page;
use crate::params::{self, decode_cursor, encode_cursor, like_escape, limit, SearchText};
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

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: Uuid,
    email: String,
    display_name: String,
    time_zone: String,
    role: String,
    working_hours: Option<serde_json::Value>,
    version: i64,
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
    let row: Option<ProfileRow> = sqlx::query_as(
        "SELECT id, email, display_name, time_zone, role, working_hours, version
         FROM rm_users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
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
    /// Prefix of the display name or of the email address, case-insensitive, one line of at
    /// most 200 characters once trimmed. Absent or blank: everyone.
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

#[derive(sqlx::FromRow)]
struct DirectoryRow {
    id: Uuid,
    display_name: String,
    email: String,
    sort_name: String,
}

/// Directory search over active users: display name or email address starting with `q`
/// (case-insensitive), ordered by display name (case-insensitive), then id. Deactivated users
/// are not listed. Any authenticated user may search.
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
    let pattern = params::search("q", query.q.as_deref())?
        .map(|q| format!("{}%", like_escape(&q.to_lowercase())));
    let (after_name, after_id) = after.unzip();
    let mut rows: Vec<DirectoryRow> = sqlx::query_as(
        r"SELECT id, display_name, email, lower(display_name) AS sort_name
          FROM rm_users
          WHERE active
            AND ($1::text IS NULL
                 OR lower(display_name) LIKE $1 ESCAPE '\'
                 OR email_key LIKE $1 ESCAPE '\')
            AND ($2::text IS NULL OR (lower(display_name), id) > ($2, $3::uuid))
          ORDER BY lower(display_name), id
          LIMIT $4",
    )
    .bind(pattern)
    .bind(after_name)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(&state.pool)
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
