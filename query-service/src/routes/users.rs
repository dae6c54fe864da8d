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

#[derive(sqlx::FromRow)]
struct DirectoryRow {
    id: Uuid,
    display_name: String,
    email: String,
    sort_name: String,
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
    let (after_name, after_id) = after.unzip();
    let mut rows: Vec<DirectoryRow> = match query {
        None => {
            sqlx::query_as(
                r"SELECT id, display_name, email, lower(display_name) AS sort_name
                  FROM rm_users
                  WHERE active
                    AND ($1::text IS NULL OR (lower(display_name), id) > ($1, $2::uuid))
                  ORDER BY lower(display_name), id
                  LIMIT $3",
            )
            .bind(after_name)
            .bind(after_id)
            .bind(limit + 1)
            .fetch_all(&state.pool)
            .await?
        }
        Some(query) => {
            let long = query.long();
            // Emails have no spaces; a query without punctuation is one of the words.
            let email = !query.email.contains(char::is_whitespace)
                && query.email.contains(|c: char| !c.is_alphanumeric());
            match directory_search_sql(query.words.len(), !long.is_empty(), email) {
                None => Vec::new(),
                Some(sql) => {
                    let mut statement = sqlx::query_as(sql)
                        .bind(format!("{}%", like_escape(&query.email)))
                        .bind(after_name)
                        .bind(after_id)
                        .bind(limit + 1)
                        .bind(
                            query
                                .email
                                .chars()
                                .take(search::INDEXED_PREFIX)
                                .collect::<String>(),
                        )
                        .bind(long);
                    for word in query.indexed() {
                        statement = statement.bind(word);
                    }
                    statement.fetch_all(&state.pool).await?
                }
            }
        }
    };
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

/// The directory search for a query of `words` words (0 to [`search::MAX_QUERY_WORDS`]), with
/// or without words longer than the indexed prefixes (`long`) and the whole query as the start
/// of an email address (`email`): one statement each. `rm_user_prefixes` is keyed (prefix,
/// name, id), so each query word is an ordered index range in the directory's order, merge-
/// joined with the others, and a page stops after its rows. Long words are then checked whole.
/// A single word finds email starts by itself (the address is one of the user's words); the
/// email branch is for a query with punctuation ("ada.lo"), which no name word contains.
///
/// `$1` email pattern, `$2`/`$3` cursor, `$4` page size + 1, `$5` the whole query as a prefix,
/// `$6` long words, `$7…` the words. `None` when there is nothing to look up.
pub fn directory_search_sql(words: usize, long: bool, email: bool) -> Option<&'static str> {
    static STATEMENTS: std::sync::LazyLock<Vec<Option<String>>> = std::sync::LazyLock::new(|| {
        let mut statements = Vec::new();
        for words in 0..=search::MAX_QUERY_WORDS {
            for long in [false, true] {
                for email in [false, true] {
                    statements.push(search_statement(words, long, email));
                }
            }
        }
        statements
    });
    let index = words.min(search::MAX_QUERY_WORDS) * 4 + usize::from(long) * 2 + usize::from(email);
    STATEMENTS[index].as_deref()
}

fn search_statement(words: usize, long: bool, email: bool) -> Option<String> {
    let after = |alias: &str| {
        format!("($2::text IS NULL OR ({alias}.sort_name, {alias}.user_id) > ($2, $3::uuid))")
    };
    let mut branches = Vec::new();
    if words > 0 {
        let joins: String = (2..=words)
            .map(|n| {
                format!(
                    " JOIN rm_user_prefixes p{n} ON p{n}.prefix = ${} \
                     AND p{n}.sort_name = p1.sort_name AND p{n}.user_id = p1.user_id",
                    n + 6
                )
            })
            .collect();
        let whole = if long {
            " AND NOT EXISTS (SELECT 1 FROM unnest($6::text[]) w \
                              WHERE NOT EXISTS (SELECT 1 FROM rm_users u, \
                                     unnest(u.search_prefixes) s \
                                     WHERE u.id = p1.user_id AND starts_with(s, w)))"
        } else {
            ""
        };
        branches.push(format!(
            "(SELECT p1.sort_name, p1.user_id FROM rm_user_prefixes p1{joins} \
             WHERE p1.prefix = $7 AND {}{whole} \
             ORDER BY p1.sort_name, p1.user_id LIMIT $4)",
            after("p1")
        ));
    }
    if email {
        branches.push(format!(
            "(SELECT e.sort_name, e.user_id FROM rm_user_prefixes e \
              JOIN rm_users eu ON eu.id = e.user_id \
              WHERE e.prefix = $5 AND eu.email_key LIKE $1 ESCAPE '\\' AND {} \
              ORDER BY e.sort_name, e.user_id LIMIT $4)",
            after("e")
        ));
    }
    (!branches.is_empty()).then(|| {
        format!(
            "SELECT u.id, u.display_name, u.email, h.sort_name \
             FROM ({}) h JOIN rm_users u ON u.id = h.user_id AND u.active \
             ORDER BY h.sort_name, h.user_id LIMIT $4",
            branches.join(" UNION ")
        )
    })
}
