//! Commands on meetings: schedule, change, attendees, responses, lifecycle and chat.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, patch, post};
use axum::Router;
use chrono::{DateTime, Utc};
use domain::{
    Actor, AttendeeSpec, Meeting, MeetingCommand, Recurrence, ResponseStatus, ScheduleMeeting,
};
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiJson, ApiPath, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{by_caller, fingerprint, patch::double_option};
use crate::executor::{CommandMeta, CommandRequest};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/meetings", post(schedule))
        .route("/v1/meetings/{id}", patch(update))
        .route("/v1/meetings/{id}/attendees", post(invite))
        .route(
            "/v1/meetings/{id}/attendees/{user_id}",
            delete(remove_attendee),
        )
        .route("/v1/meetings/{id}/response", post(respond))
        .route("/v1/meetings/{id}/cancel", post(cancel))
        .route("/v1/meetings/{id}/start", post(start))
        .route("/v1/meetings/{id}/end", post(end))
        .route("/v1/meetings/{id}/messages", post(post_message))
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendeeBody {
    pub user_id: Uuid,
    /// Optional attendance; default `false`.
    #[serde(default)]
    pub optional: bool,
}

impl From<AttendeeBody> for AttendeeSpec {
    fn from(body: AttendeeBody) -> Self {
        AttendeeSpec {
            user_id: body.user_id,
            optional: body.optional,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceBody {
    /// RFC 5545 RRULE value without the `RRULE:` prefix, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    pub rrule: String,
    #[serde(default)]
    pub exdates: Vec<DateTime<Utc>>,
}

impl From<RecurrenceBody> for Recurrence {
    fn from(body: RecurrenceBody) -> Self {
        Recurrence {
            rrule: body.rrule,
            exdates: body.exdates,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleMeetingRequest {
    /// 1–200 characters.
    pub title: String,
    pub description: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`, at most 24 hours later.
    pub ends_at: DateTime<Utc>,
    /// IANA time zone the meeting is planned in, e.g. `Europe/Berlin`.
    pub time_zone: String,
    pub location: Option<String>,
    /// Up to 500 registered users; the organizer is not listed.
    #[serde(default)]
    pub attendees: Vec<AttendeeBody>,
    /// Recurring series are not supported yet (422).
    pub recurrence: Option<RecurrenceBody>,
}

/// Schedule a meeting organized by the caller (201, `Location: /v1/meetings/{id}`).
#[utoipa::path(post, path = "/v1/meetings", tag = "meetings", request_body = ScheduleMeetingRequest,
    security(("bearer" = [])),
    responses((status = 201, body = crate::executor::CommandBody), (status = 422, body = platform::http::Problem)))]
pub async fn schedule(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiJson(body): ApiJson<ScheduleMeetingRequest>,
) -> Result<Response> {
    state.limits.schedule(caller.user_id)?;
    let meeting_id = Uuid::now_v7();
    let fingerprint = fingerprint("/v1/meetings", (), &body);
    let command = MeetingCommand::Schedule(ScheduleMeeting {
        meeting_id,
        actor: caller.actor(),
        title: body.title,
        description: body.description,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        time_zone: body.time_zone,
        location: body.location,
        attendees: body.attendees.into_iter().map(Into::into).collect(),
        recurrence: body.recurrence.map(Into::into),
    });
    let request = by_caller(&caller, &meta, meeting_id, fingerprint, vec![command])
        .creating(format!("/v1/meetings/{meeting_id}"));
    execute(&state, request).await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeetingRequest {
    pub title: Option<String>,
    /// `null` clears it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub time_zone: Option<String>,
    /// `null` clears it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub location: Option<Option<String>>,
    /// Recurring series are not supported yet (422).
    pub recurrence: Option<RecurrenceBody>,
}

/// Change details and/or reschedule (organizer or admin). Rescheduling resets responses.
#[utoipa::path(patch, path = "/v1/meetings/{id}", tag = "meetings", request_body = UpdateMeetingRequest,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 403, body = platform::http::Problem), (status = 404, body = platform::http::Problem), (status = 409, body = platform::http::Problem), (status = 412, body = platform::http::Problem), (status = 422, body = platform::http::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateMeetingRequest>,
) -> Result<Response> {
    if body.recurrence.is_some() {
        return Err(ApiError::invalid(
            "recurrence",
            "recurring series are not supported yet",
        ));
    }
    let fingerprint = fingerprint("/v1/meetings/{id}", id, &body);
    let actor = caller.actor();
    let mut commands = vec![];
    if body.title.is_some()
        || body.description.is_some()
        || body.location.is_some()
        || body.time_zone.is_some()
    {
        commands.push(MeetingCommand::UpdateDetails {
            actor,
            title: body.title,
            description: body.description,
            location: body.location,
            time_zone: body.time_zone,
        });
    }
    if body.starts_at.is_some() || body.ends_at.is_some() {
        commands.push(MeetingCommand::Reschedule {
            actor,
            starts_at: body.starts_at,
            ends_at: body.ends_at,
        });
    }
    if commands.is_empty() {
        return Err(ApiError::invalid(
            "",
            "nothing to change: send at least one field",
        ));
    }
    change(&state, &caller, &meta, id, fingerprint, commands).await
}

/// Invite a registered user (organizer or admin).
#[utoipa::path(post, path = "/v1/meetings/{id}/attendees", tag = "meetings", request_body = AttendeeBody,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 409, description = "already an attendee", body = platform::http::Problem), (status = 422, body = platform::http::Problem)))]
pub async fn invite(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<AttendeeBody>,
) -> Result<Response> {
    let fingerprint = fingerprint("/v1/meetings/{id}/attendees", id, &body);
    let command = MeetingCommand::Invite {
        actor: caller.actor(),
        attendee: body.into(),
    };
    change(&state, &caller, &meta, id, fingerprint, vec![command]).await
}

/// Remove an attendee (organizer or admin).
#[utoipa::path(delete, path = "/v1/meetings/{id}/attendees/{user_id}", tag = "meetings",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 404, body = platform::http::Problem)))]
pub async fn remove_attendee(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response> {
    let fingerprint = fingerprint("/v1/meetings/{id}/attendees/{user_id}", (id, user_id), ());
    let command = MeetingCommand::RemoveAttendee {
        actor: caller.actor(),
        user_id,
    };
    change(&state, &caller, &meta, id, fingerprint, vec![command]).await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondRequest {
    #[schema(value_type = String, example = "accepted")]
    pub response: ResponseChoice,
    /// Up to 1 000 characters.
    pub comment: Option<String>,
    /// Original start of one occurrence of a series (recurring series come later).
    pub occurrence: Option<DateTime<Utc>>,
}

/// The answers an attendee can give (`needs_action` is only the initial state).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseChoice {
    Accepted,
    Declined,
    Tentative,
}

impl From<ResponseChoice> for ResponseStatus {
    fn from(choice: ResponseChoice) -> Self {
        match choice {
            ResponseChoice::Accepted => ResponseStatus::Accepted,
            ResponseChoice::Declined => ResponseStatus::Declined,
            ResponseChoice::Tentative => ResponseStatus::Tentative,
        }
    }
}

/// Answer an invitation (the caller's own response).
#[utoipa::path(post, path = "/v1/meetings/{id}/response", tag = "meetings", request_body = RespondRequest,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 403, body = platform::http::Problem), (status = 404, body = platform::http::Problem)))]
pub async fn respond(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RespondRequest>,
) -> Result<Response> {
    let fingerprint = fingerprint("/v1/meetings/{id}/response", id, &body);
    let command = MeetingCommand::Respond {
        actor: caller.actor(),
        response: body.response.into(),
        comment: body.comment,
        occurrence: body.occurrence,
    };
    change(&state, &caller, &meta, id, fingerprint, vec![command]).await
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Up to 1 000 characters; shown to attendees.
    pub reason: Option<String>,
}

/// Cancel a scheduled meeting (organizer or admin). The body is optional.
#[utoipa::path(post, path = "/v1/meetings/{id}/cancel", tag = "meetings", request_body = CancelRequest,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 409, body = platform::http::Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Result<Response> {
    let fingerprint = fingerprint("/v1/meetings/{id}/cancel", id, &body);
    let command = MeetingCommand::Cancel {
        actor: caller.actor(),
        reason: body.reason,
    };
    change(&state, &caller, &meta, id, fingerprint, vec![command]).await
}

/// An empty body (`{}` or none) for lifecycle commands.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// Start a scheduled meeting (organizer or admin).
#[utoipa::path(post, path = "/v1/meetings/{id}/start", tag = "meetings",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 409, body = platform::http::Problem)))]
pub async fn start(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(_body): ApiJson<EmptyRequest>,
) -> Result<Response> {
    let start = |actor, at| MeetingCommand::Start { actor, at };
    transition(&state, &caller, &meta, id, "/v1/meetings/{id}/start", start).await
}

/// End a meeting in progress (organizer or admin).
#[utoipa::path(post, path = "/v1/meetings/{id}/end", tag = "meetings",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 409, body = platform::http::Problem)))]
pub async fn end(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(_body): ApiJson<EmptyRequest>,
) -> Result<Response> {
    let end = |actor, at| MeetingCommand::End { actor, at };
    transition(&state, &caller, &meta, id, "/v1/meetings/{id}/end", end).await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessageRequest {
    /// 1–4 000 characters.
    pub text: String,
}

/// Post a chat message (organizer or attendee) (201).
#[utoipa::path(post, path = "/v1/meetings/{id}/messages", tag = "meetings", request_body = PostMessageRequest,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 201, body = crate::executor::CommandBody), (status = 404, body = platform::http::Problem), (status = 409, body = platform::http::Problem)))]
pub async fn post_message(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<PostMessageRequest>,
) -> Result<Response> {
    // The meeting's quota counts its members' messages only: a stranger's attempt is
    // refused by the aggregate (404) without using up the members' chat.
    let meeting = state.executor.load::<Meeting>(id).await?.aggregate;
    if meeting.is_member(caller.user_id) {
        state.limits.chat(id)?;
    }
    let fingerprint = fingerprint("/v1/meetings/{id}/messages", id, &body);
    let message_id = Uuid::now_v7();
    let command = MeetingCommand::PostMessage {
        actor: caller.actor(),
        message_id,
        text: body.text,
        at: Utc::now(),
    };
    let request = by_caller(&caller, &meta, id, fingerprint, vec![command]);
    execute(&state, request.answering(StatusCode::CREATED)).await
}

/// A lifecycle step of meeting `id`, taken now; its body is empty.
async fn transition(
    state: &AppState,
    caller: &AuthUser,
    meta: &CommandMeta,
    id: Uuid,
    route: &'static str,
    command: fn(Actor, DateTime<Utc>) -> MeetingCommand,
) -> Result<Response> {
    let command = command(caller.actor(), Utc::now());
    change(
        state,
        caller,
        meta,
        id,
        fingerprint(route, id, ()),
        vec![command],
    )
    .await
}

/// A change to an existing meeting: 200, no `Location`.
async fn change(
    state: &AppState,
    caller: &AuthUser,
    meta: &CommandMeta,
    meeting_id: Uuid,
    fingerprint: (&'static str, serde_json::Value),
    commands: Vec<MeetingCommand>,
) -> Result<Response> {
    execute(
        state,
        by_caller(caller, meta, meeting_id, fingerprint, commands),
    )
    .await
}

async fn execute(state: &AppState, request: CommandRequest<'_, Meeting>) -> Result<Response> {
    let services = &state.meeting_services;
    state.executor.execute::<Meeting>(services, request).await
}
