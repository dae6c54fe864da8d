//! `GET /v1/changes`: the events the caller may see, in global order, from `rm_changes`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::auth::AuthUser;
use platform::http::{ApiQuery, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::is_admin;
use crate::params;
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

/// One event.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ChangeEvent {
    /// Global position (opaque; sorts as a string in global order).
    pub position: String,
    /// Event type, e.g. `MeetingScheduled`.
    #[serde(rename = "type")]
    #[sqlx(rename = "event_type")]
    pub kind: String,
    /// `user` or `meeting`.
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// Sequence of the event within its aggregate.
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
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
    let events: Vec<ChangeEvent> = sqlx::query_as(
        "SELECT position, event_type, aggregate_type, aggregate_id, sequence, recorded_at, data
         FROM rm_changes
         WHERE ($1 OR audience @> ARRAY[$2::uuid])
           AND ($3::text IS NULL OR position > $3)
         ORDER BY position
         LIMIT $4",
    )
    .bind(is_admin(&caller))
    .bind(caller.user_id)
    .bind(&after)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let next = events.last().map(|e| e.position.clone()).or(after);
    Ok(Json(Changes { events, next }))
}
