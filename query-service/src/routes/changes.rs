//! `GET /v1/changes`: the events the caller may see, in global order, from `rm_changes`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use platform::auth::AuthUser;
use platform::http::{ApiQuery, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::params;
pub use crate::repository::ChangeEvent;
use crate::AppState;
use platform::openapi::schemas::OptionalPosition;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/changes", get(changes))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Only events after this position (exclusive). Absent: from the beginning.
    #[param(value_type = Option<OptionalPosition>)]
    pub after: Option<String>,
    /// Most events to return, 1–500 (default 50).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// A batch of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changes {
    pub events: Vec<ChangeEvent>,
    /// The `after` of the next call: the position of the last event returned; the given
    /// `after` when nothing new is visible; `null` only when nothing is visible at all and no
    /// `after` was given (call again without `after`).
    pub next: Option<String>,
}

/// Events the caller may see, in global order: a meeting's events for its organizer and
/// attendees (at the time of the event), a user's events for that user; admins see every
/// event. An empty `events` means the caller is up to date; ask again with `after = next`.
#[utoipa::path(get, path = "/v1/changes", tag = "changes", security(("bearer" = [])), params(ChangesQuery),
    responses(
        (status = 200, body = Changes),
        (status = 401, body = platform::http::Problem),
        (status = 422, description = "bad position or limit", body = platform::http::Problem)))]
pub async fn changes(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Json<Changes>> {
    let limit = params::limit(query.limit.as_deref())?;
    let after = params::position("after", query.after.as_deref())?.map(|p| p.to_string());
    let events = state
        .read_models
        .changes(super::viewer(&caller), after.clone(), limit)
        .await?;
    let next = events.last().map(|e| e.position.clone()).or(after);
    Ok(Json(Changes { events, next }))
}
