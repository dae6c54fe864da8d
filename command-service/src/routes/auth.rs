//! Registration, login, token refresh and logout.

use std::future::Future;

use axum::http::header::CACHE_CONTROL;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{extract::State, Json, Router};
use chrono::Utc;
use domain::{normalize_email, validate_email, validate_registration, User, UserCommand};
use platform::auth::{AuthUser, SessionClaims};
use platform::http::{ApiError, ApiJson, Result};
use platform::store::{Account, SideEffect, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use platform::openapi::schemas::{DisplayName, Email, Password, TimeZone};

use super::{fingerprint, ClientAddr, CommandHeaders};
use crate::executor::{CommandMeta, CommandRequest};
use crate::sessions::{hash_token, Attempt, RefreshToken, Rotation, ALL_SOURCES};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/.well-known/jwks.json", get(jwks))
}

/// The Ed25519 public keys access tokens are signed with (current and previous), chosen by
/// `kid`: what other services and API gateways verify tokens against. Cacheable for 5 minutes.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, body = platform::auth::keys::JwkSet)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(CACHE_CONTROL, "public, max-age=300")],
        Json(state.jwt.jwks()),
    )
        .into_response()
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(value_type = Email)]
    pub email: String,
    #[schema(value_type = Password)]
    pub password: String,
    #[schema(value_type = DisplayName)]
    pub display_name: String,
    /// IANA time zone; default (absent or `null`) `UTC`.
    #[schema(value_type = Option<TimeZone>)]
    pub time_zone: Option<String>,
}

/// Register a user (201, `Location: /v1/users/{id}`). Anonymous; registrations per client
/// address are limited (429). An `Idempotency-Key` is scoped to the e-mail address.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    params(CommandHeaders),
    responses((status = 201, body = crate::executor::CommandBody),
        (status = 409, description = "email already registered", body = platform::http::Problem),
        (status = 422, description = "invalid or common password, invalid e-mail address, display name or time zone, or an Idempotency-Key used for another request", body = platform::http::Problem),
        (status = 429, description = "too many registrations from this client address; retry after `Retry-After` seconds", body = platform::http::Problem)))]
pub async fn register(
    State(state): State<AppState>,
    meta: CommandMeta,
    client: ClientAddr,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response> {
    // Everything is checked before the password is hashed, and registrations per address
    // are limited, so anonymous requests cannot keep argon2 busy (see `Passwords`).
    validate_registration(
        &body.email,
        &body.password,
        &body.display_name,
        body.time_zone.as_deref(),
    )?;
    state.limits.register(&client.key())?;
    let user_id = Uuid::now_v7();
    // Fingerprint without the password: the idempotency record must not hold it in any form.
    let fingerprint = fingerprint(
        "/v1/auth/register",
        (),
        (&body.email, &body.display_name, &body.time_zone),
    );
    let password_hash = state
        .passwords
        .hash_anonymous(body.password.clone())
        .await?;
    // Registration is anonymous: scope its idempotency keys by the email, so two strangers
    // who happen to pick the same key do not collide.
    let mut meta = meta;
    meta.idempotency_key = meta
        .idempotency_key
        .map(|key| format!("register:{}:{key}", normalize_email(&body.email)));
    let account = SideEffect::CreateAccount {
        user_id,
        email_key: normalize_email(&body.email),
        password_hash,
    };
    let register = UserCommand::Register {
        user_id,
        email: body.email,
        password: body.password,
        display_name: body.display_name,
        time_zone: body.time_zone,
    };
    let request = CommandRequest::new(user_id, None, &meta, fingerprint, vec![register])
        .creating(format!("/v1/users/{user_id}"))
        .with(account);
    state.executor.execute::<User>(&(), request).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(value_type = Email)]
    pub email: String,
    pub password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Bearer token for the other operations (a JWT; opaque to clients).
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[schema(minimum = 0)]
    pub expires_in: u64,
    pub refresh_token: String,
    pub user_id: Uuid,
}

/// Log in with email and password.
///
/// Failures of one account from one client address are throttled with growing delays
/// (429 + `Retry-After`); other addresses are not affected, so an attacker cannot lock the
/// real user out.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "wrong e-mail address or password", body = platform::http::Problem),
        (status = 403, description = "account deactivated", body = platform::http::Problem),
        (status = 422, description = "not an e-mail address", body = platform::http::Problem),
        (status = 429, description = "too many failed logins of this account (from this address, or from everywhere); retry after `Retry-After` seconds", body = platform::http::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response> {
    // A malformed address cannot be an account: refused before it becomes a throttle row.
    validate_email("email", &body.email)?;
    let email_key = normalize_email(&body.email);
    let source = client.key();
    let account = state.store().account_by_email(&email_key);
    let account = check_password(
        &state,
        (&email_key, &source),
        account,
        body.password,
        || {
            tracing::info!(source = %source, "login failed");
            ApiError::Unauthorized("invalid email or password".into())
        },
    )
    .await?;
    if !account.active {
        return Err(ApiError::Forbidden("this account is deactivated".into()));
    }
    issue_tokens(&state, account.user_id, Uuid::now_v7(), None).await
}

/// Checks a password under the throttle of (key, source) (see [`crate::sessions::Attempt`]):
/// 429 while blocked, without checking; a wrong password (`wrong`, or 429 when this failure
/// earned a delay) counts as a failure, a right one clears the failures. `account` is looked
/// up only once the attempt is allowed. Returns the account whose password it is.
pub(crate) async fn check_password(
    state: &AppState,
    (key, source): (&str, &str),
    account: impl Future<Output = Result<Option<Account>, StoreError>>,
    password: String,
    wrong: impl FnOnce() -> ApiError,
) -> Result<Account> {
    // Counted before the password check, so concurrent guesses cannot outrun the block:
    // once for this address, once for the account from everywhere.
    let mut blocked_if_wrong = chrono::DateTime::<Utc>::MIN_UTC;
    for (source, policy) in [
        (source, &state.throttle),
        (ALL_SOURCES, &state.account_throttle),
    ] {
        match state.sessions.begin_attempt(key, source, policy).await? {
            Attempt::Blocked(until) => return Err(throttled(until)),
            Attempt::Allowed {
                blocked_until_if_wrong,
            } => blocked_if_wrong = blocked_if_wrong.max(blocked_until_if_wrong),
        }
    }
    let account = account.await?;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let verified = state.passwords.verify(password, hash).await?;
    let Some(account) = account.filter(|_| verified) else {
        let wrong = wrong();
        if blocked_if_wrong > Utc::now() {
            return Err(throttled(blocked_if_wrong));
        }
        return Err(wrong);
    };
    state.sessions.clear_failures(key, source).await?;
    state.sessions.clear_failures(key, ALL_SOURCES).await?;
    Ok(account)
}

fn throttled(until: chrono::DateTime<Utc>) -> ApiError {
    let seconds = ((until - Utc::now()).num_milliseconds().max(0) + 999) / 1000;
    ApiError::TooManyRequests {
        detail: format!("too many failed logins; retry in {seconds} s"),
        retry_after: u64::try_from(seconds.max(1)).unwrap_or(1),
    }
}

/// Issues an access token and a refresh token. With `rotated`, the refresh token was already
/// stored by the rotation; otherwise a new one starts the family.
async fn issue_tokens(
    state: &AppState,
    user_id: Uuid,
    family_id: Uuid,
    rotated: Option<RefreshToken>,
) -> Result<Response> {
    let user = state.executor.load::<User>(user_id).await?.aggregate;
    // Read after the rotation: a revocation that committed before it is seen here, and one
    // that commits after it voids the token issued now (its version is lower).
    let account = state.store().account(user_id).await?;
    let Some(account) = account.filter(|a| a.active && user.is_active()) else {
        return Err(ApiError::Unauthorized("this account is deactivated".into()));
    };
    let refresh = match rotated {
        Some(token) => token,
        None => {
            let token = RefreshToken::generate();
            let session_ends = Utc::now()
                + chrono::Duration::from_std(state.auth.session_lifetime)
                    .unwrap_or(chrono::Duration::days(30));
            state
                .sessions
                .issue_refresh(
                    user_id,
                    family_id,
                    &token.hash,
                    refresh_expiry(state),
                    session_ends,
                )
                .await?;
            token
        }
    };
    let ttl = state.auth.access_token_ttl;
    let session = SessionClaims {
        version: account.session_version,
        session_id: family_id,
    };
    Ok(Json(TokenResponse {
        access_token: state.jwt.issue_session(user_id, user.role(), ttl, session),
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
        refresh_token: refresh.token,
        user_id,
    })
    .into_response())
}

fn refresh_expiry(state: &AppState) -> chrono::DateTime<Utc> {
    Utc::now()
        + chrono::Duration::from_std(state.auth.refresh_token_ttl)
            .unwrap_or(chrono::Duration::days(30))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Trade a refresh token for new tokens. The presented token is spent; presenting a spent
/// token again revokes its whole family (every token descended from the same login).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "unknown, expired or already used refresh token (a used one revokes its family), a session past its absolute lifetime (`MEETINGS_SESSION_LIFETIME` from login), or the account is deactivated", body = platform::http::Problem)))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Response> {
    let replacement = RefreshToken::generate();
    let rotation = state
        .sessions
        .rotate_refresh(
            &hash_token(&body.refresh_token),
            &replacement.hash,
            refresh_expiry(&state),
        )
        .await?;
    match rotation {
        Rotation::Rotated { user_id, family_id } => {
            issue_tokens(&state, user_id, family_id, Some(replacement)).await
        }
        Rotation::Reused { user_id, family_id } => {
            tracing::warn!(%user_id, %family_id, "spent refresh token presented again; family revoked");
            Err(ApiError::Unauthorized(
                "refresh token already used; the session has been revoked".into(),
            ))
        }
        Rotation::Invalid => Err(ApiError::Unauthorized(
            "refresh token is invalid or expired".into(),
        )),
    }
}

/// End the session the refresh token belongs to (204, also when it was already ended): its
/// refresh tokens and its access tokens stop working in every service, and its websockets
/// are closed with 4401.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])),
    responses((status = 204, description = "the session is ended")))]
pub async fn logout(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<StatusCode> {
    state
        .sessions
        .revoke_family(&hash_token(&body.refresh_token), caller.user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
