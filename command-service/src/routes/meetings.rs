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
use platform::http::{ApiError, ApiJson, ApiPath, Problem as P, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use platform::openapi::schemas::{
    Comment, Description, Instant, Location, MessageText, Reason, TimeZone, Title,
};

use super::{by_caller, fingerprint, patch::double_option, CommandHeaders};
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

/// The repetition of a series: an RFC 5545 rule read in the meeting's `time_zone`, whose first
/// occurrence is the meeting's `starts_at`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceBody {
    /// RFC 5545 RRULE value without the `RRULE:` prefix, e.g. `FREQ=WEEKLY;BYDAY=MO`: FREQ
    /// DAILY, WEEKLY, MONTHLY or YEARLY; COUNT at most 5,000; UNTIL in UTC (`…Z`); no
    /// BYHOUR/BYMINUTE/BYSECOND (the start gives the time of day). At most 500 characters.
    #[schema(example = "FREQ=WEEKLY;BYDAY=MO", max_length = 500)]
    pub rrule: String,
    /// Original starts of occurrences left out (UTC), at most 1,000.
    #[serde(default)]
    #[schema(value_type = Vec<Instant>, max_items = 1000)]
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
    #[schema(value_type = Title)]
    pub title: String,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    #[schema(value_type = Instant)]
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`, at most 24 hours later (422 otherwise).
    #[schema(value_type = Instant)]
    pub ends_at: DateTime<Utc>,
    /// IANA time zone the meeting is planned in, e.g. `Europe/Berlin`.
    #[schema(value_type = TimeZone)]
    pub time_zone: String,
    #[schema(value_type = Option<Location>)]
    pub location: Option<String>,
    /// Up to 500 registered users (an unknown one is 422), each at most once; the organizer
    /// is not an attendee (422).
    #[serde(default)]
    #[schema(max_items = 500)]
    pub attendees: Vec<AttendeeBody>,
    /// Makes the meeting a series: `starts_at`/`ends_at` are its first occurrence.
    pub recurrence: Option<RecurrenceBody>,
}

/// Schedule a meeting organized by the caller (201, `Location: /v1/meetings/{id}`).
#[utoipa::path(post, path = "/v1/meetings", tag = "meetings", request_body = ScheduleMeetingRequest,
    params(CommandHeaders), security(("bearer" = [])),
    responses((status = 201, body = crate::executor::CommandBody),
        (status = 422, description = "invalid values, including rules between fields: ends_at not after starts_at or more than 24 hours later, an unknown, repeated or organizing attendee, a rule starts_at is not the first occurrence of; or an Idempotency-Key used for another request", body = platform::http::Problem),
        (status = 429, description = "the caller's commands, or the meetings an organizer may schedule a day, are used up; retry after `Retry-After` seconds", body = platform::http::Problem)))]
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

/// The fields to change; absent or `null` keeps a field, except `description` and
/// `location`, which `null` clears. At least one field must change something (422 otherwise).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeetingRequest {
    #[schema(value_type = Option<Title>)]
    pub title: Option<String>,
    /// `null` clears it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
    /// Rescheduling (meetings not started yet) resets the attendees' responses.
    #[schema(value_type = Option<Instant>)]
    pub starts_at: Option<DateTime<Utc>>,
    /// After the (new) start, at most 24 hours later (422 otherwise).
    #[schema(value_type = Option<Instant>)]
    pub ends_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<TimeZone>)]
    pub time_zone: Option<String>,
    /// `null` clears it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Location>)]
    pub location: Option<Option<String>>,
    /// A new rule (a single meeting becomes a series); `null` makes a series a single
    /// meeting. Either drops the occurrences' own times, cancellations and answers.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<RecurrenceBody>)]
    pub recurrence: Option<Option<RecurrenceBody>>,
}

/// Change details and/or reschedule (organizer or admin). Rescheduling resets responses.
#[utoipa::path(patch, path = "/v1/meetings/{id}", tag = "meetings", request_body = UpdateMeetingRequest,
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown, or the caller is neither organizer, attendee nor admin", body = P),
        (status = 409, description = "the meeting is cancelled or ended (or, to reschedule, started)", body = P),
        (status = 422, description = "invalid values, nothing to change, the end not after the start or more than 24 hours later, or an Idempotency-Key used for another request", body = P)))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateMeetingRequest>,
) -> Result<Response> {
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
    if let Some(recurrence) = body.recurrence {
        // After a move, so the rule is checked against the new start.
        commands.push(MeetingCommand::ChangeRecurrence {
            actor,
            recurrence: recurrence.map(Into::into),
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
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown, or the caller is neither organizer, attendee nor admin", body = P),
        (status = 409, description = "already an attendee, 500 attendees already, or the meeting is cancelled or ended", body = P),
        (status = 422, description = "an unknown user or the organizer, or an Idempotency-Key used for another request", body = P)))]
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
    params(("id" = Uuid, Path, description = "meeting id"), ("user_id" = Uuid, Path, description = "the attendee"), CommandHeaders),
    security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown meeting (or not visible to the caller), or not an attendee", body = P),
        (status = 409, description = "the meeting is cancelled or ended", body = P)))]
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
    #[schema(example = "accepted")]
    pub response: ResponseChoice,
    #[schema(value_type = Option<Comment>)]
    pub comment: Option<String>,
    /// Answers one occurrence of a series only (its original start); the series' answer
    /// stays.
    #[schema(value_type = Option<Instant>)]
    pub occurrence: Option<DateTime<Utc>>,
}

/// The answers an attendee can give (`needs_action` is only the initial state).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
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
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "the organizer, who does not respond", body = P),
        (status = 404, description = "unknown, or the caller is not an attendee", body = P),
        (status = 409, description = "the meeting is cancelled or ended", body = P)))]
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
    #[schema(value_type = Option<Reason>)]
    pub reason: Option<String>,
}

/// Cancel a scheduled meeting (organizer or admin). The body is optional.
#[utoipa::path(post, path = "/v1/meetings/{id}/cancel", tag = "meetings", request_body = Option<CancelRequest>,
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown, or the caller is neither organizer, attendee nor admin", body = P),
        (status = 409, description = "the meeting is already cancelled, in progress or ended", body = P)))]
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

/// Start a scheduled meeting (organizer or admin). The body is optional.
#[utoipa::path(post, path = "/v1/meetings/{id}/start", tag = "meetings", request_body = Option<EmptyRequest>,
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown, or the caller is neither organizer, attendee nor admin", body = P),
        (status = 409, description = "the meeting is cancelled, already in progress or ended", body = P)))]
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

/// End a meeting in progress (organizer or admin). The body is optional.
#[utoipa::path(post, path = "/v1/meetings/{id}/end", tag = "meetings", request_body = Option<EmptyRequest>,
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "an attendee, not the organizer", body = P),
        (status = 404, description = "unknown, or the caller is neither organizer, attendee nor admin", body = P),
        (status = 409, description = "the meeting has not started, is cancelled or already ended", body = P)))]
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
    #[schema(value_type = MessageText)]
    pub text: String,
}

/// Post a chat message (organizer or attendee) (201).
#[utoipa::path(post, path = "/v1/meetings/{id}/messages", tag = "meetings", request_body = PostMessageRequest,
    params(("id" = Uuid, Path, description = "meeting id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 201, body = crate::executor::CommandBody),
        (status = 404, description = "unknown, or the caller is neither organizer nor attendee", body = P),
        (status = 409, description = "the meeting is cancelled or ended", body = P),
        (status = 429, description = "the caller's commands, or the messages the meeting may receive a minute, are used up; retry after `Retry-After` seconds", body = P)))]
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
    let request = by_caller(&caller, &meta, id, fingerprint, vec![command]).posting(message_id);
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
pub(super) async fn change(
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

pub(super) async fn execute(
    state: &AppState,
    request: CommandRequest<'_, Meeting>,
) -> Result<Response> {
    let services = &state.meeting_services;
    state.executor.execute::<Meeting>(services, request).await
}
