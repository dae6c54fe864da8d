//! `GET /v1/admin/history/{aggregate_type}/{id}`: an aggregate's timeline for support tools,
//! the same entries as `meetings events history --json`. Read from the event log itself,
//! not from a read model: an audit shows what was recorded, not what a projection made of
//! it. Administrators only; everyone else gets 404, as for an unknown aggregate, so the
//! route reveals nothing.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use domain::Role;
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiPath, ApiQuery, Result};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/history/{aggregate_type}/{id}", get(history))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Events after this sequence (`next_after_sequence` of the previous page); default 0.
    #[param(value_type = i64, required = false, minimum = 0)]
    pub after_sequence: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// An aggregate's events in sequence order, each with its position, time, actor, a
/// one-line summary, the stored payload and metadata, and its hashes.
#[utoipa::path(get, path = "/v1/admin/history/{aggregate_type}/{id}", tag = "admin",
    security(("bearer" = [])),
    params(
        ("aggregate_type" = String, Path, description = "`meeting` or `user`"),
        ("id" = Uuid, Path, description = "aggregate id"),
        HistoryQuery),
    responses(
        (status = 200, body = audit::history::Page),
        (status = 401, body = platform::http::Problem),
        (status = 404, description = "not an administrator, an unknown aggregate type, or no events", body = platform::http::Problem),
        (status = 422, description = "a malformed id, `after_sequence` or `limit`", body = platform::http::Problem)))]
pub async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath((aggregate_type, id)): ApiPath<(String, Uuid)>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<audit::history::Page>> {
    let not_found = || ApiError::NotFound("no such history".into());
    if caller.role != Role::Admin {
        return Err(not_found());
    }
    let kind: audit::Kind = aggregate_type.parse().map_err(|_| not_found())?;
    let after_sequence = match query.after_sequence.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after_sequence", "must be an integer ≥ 0"))?,
    };
    let limit = match query.limit.as_deref().map(str::trim) {
        None | Some("") => 100,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=audit::history::MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 1000"))?,
    };
    let upcasters = domain::upcasters::upcasters();
    let page = audit::history::page(
        state.events.as_ref(),
        kind,
        id,
        after_sequence,
        limit,
        &upcasters,
    )
    .await?;
    if page.events.is_empty() && after_sequence == 0 {
        return Err(not_found());
    }
    Ok(Json(page))
}
