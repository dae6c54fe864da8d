//! Profile, password, role and deactivation of users.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post, put};
use axum::Router;
use domain::{validate_password, Role, User, UserCommand, Weekday, WorkingHours};
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiJson, ApiPath};
use platform::store::SideEffect;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{fingerprint, patch::double_option};
use crate::executor::{store_error, CommandMeta, CommandRequest};
use crate::sessions::Attempt;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me", patch(change_profile))
        .route("/v1/users/me/password", post(change_password))
        .route("/v1/users/{id}/role", put(change_role))
        .route("/v1/users/{id}/deactivate", post(deactivate))
}

/// Working hours in the user's time zone.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingHoursBody {
    /// Days of the week: `mon` … `sun`.
    #[schema(value_type = Vec<String>, example = json!(["mon", "tue", "wed", "thu", "fri"]))]
    pub days: Vec<Weekday>,
    /// `HH:MM`, 24-hour clock.
    #[schema(example = "09:00")]
    pub start: String,
    #[schema(example = "17:00")]
    pub end: String,
}

impl From<WorkingHoursBody> for WorkingHours {
    fn from(body: WorkingHoursBody) -> Self {
        WorkingHours {
            days: body.days,
            start: body.start,
            end: body.end,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeProfileRequest {
    pub display_name: Option<String>,
    pub time_zone: Option<String>,
    /// `null` clears the working hours.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<WorkingHoursBody>)]
    pub working_hours: Option<Option<WorkingHoursBody>>,
}

/// Change the caller's profile.
#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = ChangeProfileRequest,
    security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 412, body = platform::http::Problem), (status = 422, body = platform::http::Problem)))]
pub async fn change_profile(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiJson(body): ApiJson<ChangeProfileRequest>,
) -> Result<Response, ApiError> {
    let fingerprint = fingerprint("/v1/users/me", (), &body);
    state
        .executor
        .execute::<User>(
            &(),
            CommandRequest {
                aggregate_id: caller.user_id,
                actor_id: Some(caller.user_id),
                meta: &meta,
                fingerprint,
                commands: vec![UserCommand::ChangeProfile {
                    actor: caller.actor(),
                    display_name: body.display_name,
                    time_zone: body.time_zone,
                    working_hours: body.working_hours.map(|w| w.map(Into::into)),
                }],
                side_effects: vec![],
                success: StatusCode::OK,
                location: None,
                fresh_id: false,
            },
        )
        .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// 8–128 characters.
    pub new_password: String,
}

/// Change the caller's password (204). Ends every session (refresh tokens) of the user.
#[utoipa::path(post, path = "/v1/users/me/password", tag = "users", request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses((status = 204), (status = 403, description = "current password is wrong", body = platform::http::Problem), (status = 422, body = platform::http::Problem)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    validate_password("new_password", &body.new_password)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    // Guessing the current password with a stolen access token is throttled like logins,
    // per user (the token, not the address, is what the guesser holds).
    let throttle_key = format!("password-change:{}", caller.user_id);
    let blocked_if_wrong = match state
        .sessions
        .begin_attempt(&throttle_key, "any", &state.throttle)
        .await
        .map_err(store_error)?
    {
        Attempt::Blocked(until) => return Err(super::auth::throttled(until)),
        Attempt::Allowed {
            blocked_until_if_wrong,
        } => blocked_until_if_wrong,
    };
    let account = state
        .store()
        .account(caller.user_id)
        .await
        .map_err(store_error)?;
    let verified = state
        .passwords
        .verify(
            body.current_password,
            account.as_ref().map(|a| a.password_hash.clone()),
        )
        .await?;
    if !verified {
        if blocked_if_wrong > chrono::Utc::now() {
            return Err(super::auth::throttled(blocked_if_wrong));
        }
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    state
        .sessions
        .clear_failures(&throttle_key, "any")
        .await
        .map_err(store_error)?;
    let password_hash = state.passwords.hash(body.new_password.clone()).await?;
    state
        .executor
        .execute::<User>(
            &(),
            CommandRequest {
                aggregate_id: caller.user_id,
                actor_id: Some(caller.user_id),
                meta: &meta,
                // Never the passwords: a key reused with another new password replays anyway.
                fingerprint: fingerprint("/v1/users/me/password", (), ()),
                commands: vec![UserCommand::ChangePassword {
                    actor: caller.actor(),
                    new_password: body.new_password,
                }],
                side_effects: vec![SideEffect::SetPassword {
                    user_id: caller.user_id,
                    password_hash,
                }],
                success: StatusCode::NO_CONTENT,
                location: None,
                fresh_id: false,
            },
        )
        .await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
}

/// Make a user an admin or a member (admins only).
#[utoipa::path(put, path = "/v1/users/{id}/role", tag = "users", request_body = ChangeRoleRequest,
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 403, body = platform::http::Problem), (status = 404, body = platform::http::Problem)))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ChangeRoleRequest>,
) -> Result<Response, ApiError> {
    let fingerprint = fingerprint("/v1/users/{id}/role", id, &body);
    state
        .executor
        .execute::<User>(
            &(),
            CommandRequest {
                aggregate_id: id,
                actor_id: Some(caller.user_id),
                meta: &meta,
                fingerprint,
                commands: vec![UserCommand::ChangeRole {
                    actor: caller.actor(),
                    role: body.role,
                }],
                side_effects: vec![],
                success: StatusCode::OK,
                location: None,
                fresh_id: false,
            },
        )
        .await
}

/// Deactivate a user (the user themself or an admin). Login and refresh stop working at once.
#[utoipa::path(post, path = "/v1/users/{id}/deactivate", tag = "users",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody), (status = 403, body = platform::http::Problem), (status = 404, body = platform::http::Problem), (status = 409, body = platform::http::Problem)))]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    state
        .executor
        .execute::<User>(
            &(),
            CommandRequest {
                aggregate_id: id,
                actor_id: Some(caller.user_id),
                meta: &meta,
                fingerprint: fingerprint("/v1/users/{id}/deactivate", id, ()),
                commands: vec![UserCommand::Deactivate {
                    actor: caller.actor(),
                }],
                side_effects: vec![SideEffect::DeactivateAccount { user_id: id }],
                success: StatusCode::OK,
                location: None,
                fresh_id: false,
            },
        )
        .await
}
