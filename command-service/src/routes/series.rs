//! Commands on series: one occurrence moved, cancelled or restored, and "this and
//! following" (the series split into two).

use axum::extract::State;
use axum::response::Response;
use axum::routing::{patch, post};
use axum::Router;
use chrono::{DateTime, Utc};
use domain::{Meeting, MeetingCommand, SeriesChanges};
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiJson, ApiPath, Problem as P, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use platform::openapi::schemas::Instant;

use super::meetings::{change, UpdateMeetingRequest};
use super::{by_caller, fingerprint, CommandHeaders};
use crate::executor::CommandMeta;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/meetings/{id}/occurrences/{occurrence_start}",
            patch(change_occurrence),
        )
        .route(
            "/v1/meetings/{id}/occurrences/{occurrence_start}/split",
            post(split),
        )
}

/// An occurrence's name in a path: its original start, RFC 3339.
fn occurrence_start(text: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .map_err(|_| {
            ApiError::invalid(
                "occurrence_start",
                "must be the occurrence's original start, RFC 3339 (2027-03-29T07:00:00Z)",
            )
        })?
        .with_timezone(&Utc))
}

/// What to do with one occurrence of a series.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeOccurrenceRequest {
    /// Its new start; given alone, the occurrence keeps its length.
    #[schema(value_type = Option<Instant>)]
    pub starts_at: Option<DateTime<Utc>>,
    /// Its new end: after the start, at most 24 hours later.
    #[schema(value_type = Option<Instant>)]
    pub ends_at: Option<DateTime<Utc>>,
    /// `true` calls this occurrence off (the series goes on); `false` puts a cancelled one
    /// back on (with `starts_at`/`ends_at`, at a new time).
    pub cancelled: Option<bool>,
}

/// Move, cancel or restore one occurrence of a series (organizer or admin). The occurrence is
/// named by its original start in UTC, RFC 3339, percent-encoded
/// (`2027-03-29T07:00:00Z`), as agenda items give it in `occurrence`.
#[utoipa::path(patch, path = "/v1/meetings/{id}/occurrences/{occurrence_start}", tag = "meetings", request_body = ChangeOccurrenceRequest,
    params(("id" = Uuid, Path, description = "meeting id"),
        ("occurrence_start" = String, Path, description = "the occurrence's original start, RFC 3339"),
        CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown meeting (or not visible to the caller), not a series, or no such occurrence", body = P),
        (status = 409, description = "the series is cancelled or ended, the occurrence is cancelled (send `cancelled: false` to put it back on), or 1,000 occurrences already changed", body = P),
        (status = 422, description = "a malformed occurrence start, bad times, nothing to change, cancel and move at once, or an Idempotency-Key used for another request", body = P)))]
pub async fn change_occurrence(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath((id, occurrence)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<ChangeOccurrenceRequest>,
) -> Result<Response> {
    let occurrence = occurrence_start(&occurrence)?;
    let fingerprint = fingerprint(
        "/v1/meetings/{id}/occurrences/{occurrence_start}",
        (id, occurrence),
        &body,
    );
    let command = MeetingCommand::ChangeOccurrence {
        actor: caller.actor(),
        occurrence,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        cancelled: body.cancelled,
    };
    change(&state, &caller, &meta, id, fingerprint, vec![command]).await
}

/// "This and following": the series ends before this occurrence and a new series, with the
/// changes in the body, carries on from it (201, `Location` of the new series; one
/// transaction). Fields as in `PATCH /v1/meetings/{id}`; an empty body splits without
/// changes. When the times stay (no `starts_at`, `ends_at`, `time_zone` or `recurrence`), the
/// later occurrences' own times and cancellations and the attendees' answers to the series
/// carry over; otherwise they start afresh, as when a series is rescheduled.
#[utoipa::path(post, path = "/v1/meetings/{id}/occurrences/{occurrence_start}/split", tag = "meetings", request_body = UpdateMeetingRequest,
    params(("id" = Uuid, Path, description = "meeting id"),
        ("occurrence_start" = String, Path, description = "original start of the first occurrence of the new series, RFC 3339"),
        CommandHeaders), security(("bearer" = [])),
    responses((status = 201, description = "the new series", body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown meeting (or not visible to the caller), not a series, or no such occurrence", body = P),
        (status = 409, description = "the series is cancelled or ended", body = P),
        (status = 412, description = "`If-Match` names a version that is not the series' current one", body = P),
        (status = 422, description = "the series' first occurrence (change the whole series instead), invalid values for the new series, or an Idempotency-Key used for another request", body = P),
        (status = 429, description = "the caller's commands, or the meetings an organizer may schedule a day, are used up", body = P)))]
pub async fn split(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath((id, occurrence)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<UpdateMeetingRequest>,
) -> Result<Response> {
    let occurrence = occurrence_start(&occurrence)?;
    let fingerprint = fingerprint(
        "/v1/meetings/{id}/occurrences/{occurrence_start}/split",
        (id, occurrence),
        &body,
    );
    // A new meeting: it counts against the organizer's daily meetings.
    state.limits.schedule(caller.user_id)?;
    let meeting = state.executor.load::<Meeting>(id).await?.aggregate;
    let ids: Vec<Uuid> = meeting.attendees().iter().map(|a| a.user_id).collect();
    // Attendees deactivated since they were invited are not invited to the new series.
    let dropped = match ids.is_empty() {
        true => vec![],
        false => state
            .meeting_services
            .users
            .missing_users(&ids)
            .await
            .map_err(ApiError::unavailable)?,
    };
    let continued_as = Uuid::now_v7();
    let actor = caller.actor();
    let changes = SeriesChanges {
        title: body.title,
        description: body.description,
        location: body.location,
        time_zone: body.time_zone,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        recurrence: body.recurrence.map(|r| r.map(Into::into)),
    };
    let command = MeetingCommand::SplitSeries {
        actor,
        occurrence,
        continued_as,
    };
    let request = by_caller(&caller, &meta, id, fingerprint, vec![command])
        .answering(axum::http::StatusCode::CREATED)
        .located(format!("/v1/meetings/{continued_as}"));
    state
        .executor
        .execute_with_new::<Meeting>(&state.meeting_services, request, continued_as, |meeting| {
            meeting.continuation(actor, occurrence, continued_as, changes.clone(), &dropped)
        })
        .await
}
