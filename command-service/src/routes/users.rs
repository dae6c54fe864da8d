//! Profile, password, role and deactivation of users.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post, put};
use axum::Router;
use domain::{validate_password, Role, User, UserCommand, Weekday, WorkingHours};
use platform::auth::{AuthUser, MaybeRevoked};
use platform::http::{ApiError, ApiJson, ApiPath, Result};
use platform::store::SideEffect;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use platform::openapi::schemas::{DisplayName, Password, TimeZone};

use super::auth::check_password;
use super::{by_caller, fingerprint, patch::double_option, CommandHeaders};
use crate::executor::CommandMeta;
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
    #[schema(schema_with = working_days)]
    pub days: Vec<Weekday>,
    /// `HH:MM`, 24-hour clock.
    #[schema(example = "09:00", pattern = "^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// `HH:MM`, 24-hour clock, after `start` (422 otherwise).
    #[schema(example = "17:00", pattern = "^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")]
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

/// `days` of [`WorkingHoursBody`]: 1–7 days of the week, each at most once.
fn working_days() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(WeekdayName::schema())
        .min_items(Some(1))
        .max_items(Some(7))
        .unique_items(true)
        .description(Some("Days of the week, each at most once."))
        .examples([serde_json::json!(["mon", "tue", "wed", "thu", "fri"])])
}

/// A day of the week (documents [`Weekday`]).
#[derive(ToSchema)]
#[schema(as = Weekday, rename_all = "lowercase")]
#[allow(dead_code)]
enum WeekdayName {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Fields absent or `null` are kept, except `working_hours`, which `null` clears. A body that
/// changes nothing (or none at all) is answered like a change, at the current version.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeProfileRequest {
    #[schema(value_type = Option<DisplayName>)]
    pub display_name: Option<String>,
    #[schema(value_type = Option<TimeZone>)]
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
#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = Option<ChangeProfileRequest>,
    params(CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 409, description = "the caller is deactivated", body = platform::http::Problem),
        (status = 422, description = "invalid display name or time zone, working hours that end before they start (or other invalid values), or an Idempotency-Key used for another request", body = platform::http::Problem)))]
pub async fn change_profile(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiJson(body): ApiJson<ChangeProfileRequest>,
) -> Result<Response> {
    let fingerprint = fingerprint("/v1/users/me", (), &body);
    let command = UserCommand::ChangeProfile {
        actor: caller.actor(),
        display_name: body.display_name,
        time_zone: body.time_zone,
        working_hours: body.working_hours.map(|w| w.map(Into::into)),
    };
    let request = by_caller(&caller, &meta, caller.user_id, fingerprint, vec![command]);
    state.executor.execute::<User>(&(), request).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    #[schema(value_type = Password)]
    pub new_password: String,
}

/// Change the caller's password (204). Ends every session of the user: refresh and access
/// tokens (the caller's own included) stop working in every service and the user's websockets
/// are closed with 4401; sign in again with the new password. A retry with the same
/// `Idempotency-Key` answers 204 again, with the token the first request revoked.
#[utoipa::path(post, path = "/v1/users/me/password", tag = "users", request_body = ChangePasswordRequest,
    params(CommandHeaders), security(("bearer" = [])),
    responses((status = 204, description = "changed; every refresh token of the user is revoked"),
        (status = 403, description = "current password is wrong", body = platform::http::Problem),
        (status = 409, description = "the caller is deactivated", body = platform::http::Problem),
        (status = 422, description = "the new password is too short, too long or common, or an Idempotency-Key used for another request", body = platform::http::Problem),
        (status = 429, description = "too many wrong current passwords, or the caller's commands are used up; retry after `Retry-After` seconds", body = platform::http::Problem)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: MaybeRevoked,
    meta: CommandMeta,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<Response> {
    // Never the passwords: a key reused with another new password replays anyway.
    let fingerprint = fingerprint("/v1/users/me/password", (), ());
    let command = UserCommand::ChangePassword {
        actor: caller.user.actor(),
        new_password: body.new_password.clone(),
    };
    let request = by_caller(
        &caller.user,
        &meta,
        caller.user.user_id,
        fingerprint,
        vec![command],
    )
    .answering(StatusCode::NO_CONTENT);
    // A retry of a change that went through: the current password is the new one by now and
    // the token is revoked by the change itself, so neither may be checked again.
    if let Some(replayed) = state.executor.replayed(&request).await? {
        return Ok(replayed);
    }
    let caller = caller.current()?;
    validate_password("new_password", &body.new_password)?;
    // Guessing the current password with a stolen access token is throttled like logins,
    // per user (the token, not the address, is what the guesser holds).
    let throttle_key = format!("password-change:{}", caller.user_id);
    let account = state.store().account(caller.user_id);
    check_password(
        &state,
        (&throttle_key, "any"),
        account,
        body.current_password,
        || ApiError::Forbidden("the current password is wrong".into()),
    )
    .await?;
    let password_hash = state.passwords.hash(body.new_password).await?;
    let request = request.with(SideEffect::SetPassword {
        user_id: caller.user_id,
        password_hash,
    });
    state.executor.execute::<User>(&(), request).await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    #[schema(value_type = RoleName, example = "admin")]
    pub role: Role,
}

/// A user's role (documents [`Role`]).
#[derive(ToSchema)]
#[schema(as = Role, rename_all = "lowercase")]
#[allow(dead_code)]
enum RoleName {
    Member,
    Admin,
}

/// Make a user an admin or a member (admins only).
#[utoipa::path(put, path = "/v1/users/{id}/role", tag = "users", request_body = ChangeRoleRequest,
    params(("id" = Uuid, Path, description = "user id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "the caller is not an admin (whether or not the user exists)", body = platform::http::Problem),
        (status = 404, description = "no such user (admins only)", body = platform::http::Problem)))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ChangeRoleRequest>,
) -> Result<Response> {
    // Before the user is looked up: a member must not learn which user ids exist.
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden("only admins change roles".into()));
    }
    let fingerprint = fingerprint("/v1/users/{id}/role", id, &body);
    let command = UserCommand::ChangeRole {
        actor: caller.actor(),
        role: body.role,
    };
    // The user's tokens carry the old role: they stop working everywhere, and the next
    // refresh issues one with the new role.
    let request = by_caller(&caller, &meta, id, fingerprint, vec![command])
        .with(SideEffect::RevokeAccess { user_id: id });
    state.executor.execute::<User>(&(), request).await
}

/// Deactivate a user (the user themself or an admin). Login and refresh stop working at once.
#[utoipa::path(post, path = "/v1/users/{id}/deactivate", tag = "users",
    params(("id" = Uuid, Path, description = "user id"), CommandHeaders), security(("bearer" = [])),
    responses((status = 200, body = crate::executor::CommandBody),
        (status = 403, description = "neither the user nor an admin", body = platform::http::Problem),
        (status = 404, description = "no such user", body = platform::http::Problem),
        (status = 409, description = "already deactivated", body = platform::http::Problem)))]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response> {
    let fingerprint = fingerprint("/v1/users/{id}/deactivate", id, ());
    let command = UserCommand::Deactivate {
        actor: caller.actor(),
    };
    let request = by_caller(&caller, &meta, id, fingerprint, vec![command])
        .with(SideEffect::DeactivateAccount { user_id: id });
    state.executor.execute::<User>(&(), request).await
}
