//! Access tokens: HS256 JWTs with `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, the caller's role,
//! the user's session version (`ver`) and the session (`sid`, the refresh family). Only HS256 is
//! accepted (`alg: none` and every other algorithm are refused), and every registered claim
//! above is required. A verified token must also not be revoked ([`revocation`]).

pub mod revocation;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use domain::{Actor, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{JwtSettings, Secret};
use crate::http::ApiError;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// Token id, so one token can be told from another in logs of security events.
    pub jti: Uuid,
    pub role: Role,
    /// The user's session version when the token was issued; a token below the user's
    /// current version is revoked (tokens from before versions existed count as 0).
    #[serde(default)]
    pub ver: i32,
    /// The session (refresh family) the token belongs to; absent on tokens minted outside a
    /// login (tests, tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// The session an access token is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionClaims {
    /// `accounts.session_version` at issue.
    pub version: i32,
    /// The refresh family.
    pub session_id: Uuid,
}

/// Why a presented token is refused.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    Immature,
    #[error("the access token is invalid")]
    Invalid,
    #[error(transparent)]
    Revoked(#[from] revocation::Revoked),
}

/// Signs and verifies access tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    revocations: Arc<revocation::Revocations>,
}

impl JwtKeys {
    pub fn new(secret: &Secret, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Self {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            revocations: Arc::default(),
        }
    }

    pub fn from_settings(settings: &JwtSettings) -> anyhow::Result<Self> {
        Ok(Self::new(
            &settings.secret()?,
            &settings.issuer,
            &settings.audience,
        ))
    }

    /// Issues an access token for `user_id` valid for `lifetime` from now, outside any
    /// session (tests, tools): only a change of the user revokes it.
    pub fn issue(&self, user_id: Uuid, role: Role, lifetime: Duration) -> String {
        self.issue_for(user_id, role, lifetime, None)
    }

    /// Issues the access token of a session (a login or a refresh).
    pub fn issue_session(
        &self,
        user_id: Uuid,
        role: Role,
        lifetime: Duration,
        session: SessionClaims,
    ) -> String {
        self.issue_for(user_id, role, lifetime, Some(session))
    }

    fn issue_for(
        &self,
        user_id: Uuid,
        role: Role,
        lifetime: Duration,
        session: Option<SessionClaims>,
    ) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            exp: now + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2),
            nbf: now,
            iat: now,
            jti: Uuid::now_v7(),
            role,
            ver: session.map_or(0, |s| s.version),
            sid: session.map(|s| s.session_id),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it to build expired or not-yet-valid tokens).
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("BUG: HS256 signing of serializable claims cannot fail")
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies signature, algorithm and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }

    /// Verifies the token and that it is not revoked: what every door checks.
    pub fn authenticate(&self, token: &str) -> Result<Claims, Rejection> {
        let claims = self.verify(token).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            tracing::debug!(%error, "bearer token rejected");
            match error.kind() {
                ErrorKind::ExpiredSignature => Rejection::Expired,
                ErrorKind::ImmatureSignature => Rejection::Immature,
                _ => Rejection::Invalid,
            }
        })?;
        self.revocations.check(&claims)?;
        Ok(claims)
    }

    /// What this process knows was revoked (fed by [`revocation::listen`]).
    pub fn revocations(&self) -> &Arc<revocation::Revocations> {
        &self.revocations
    }
}

/// The authenticated caller, extracted from `Authorization: Bearer …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub role: Role,
    /// The session (refresh family) of the token, when it came from a login.
    pub session_id: Option<Uuid>,
}

impl AuthUser {
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user_id,
            role: self.role,
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<JwtKeys>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = MaybeRevoked::from_request_parts(parts, state).await?;
        caller.current()
    }
}

/// A caller whose token is genuine and unexpired but may have been revoked since: only for
/// answering the idempotent retry of the very request that revoked it.
#[derive(Debug, Clone, Copy)]
pub struct MaybeRevoked {
    pub user: AuthUser,
    pub revoked: Option<revocation::Revoked>,
}

impl MaybeRevoked {
    /// The caller, unless the token was revoked (401).
    pub fn current(self) -> Result<AuthUser, ApiError> {
        match self.revoked {
            None => Ok(self.user),
            Some(revoked) => Err(ApiError::Unauthorized(revoked.to_string())),
        }
    }
}

impl<S> FromRequestParts<S> for MaybeRevoked
where
    Arc<JwtKeys>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = Arc::<JwtKeys>::from_ref(state);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110 §11.1).
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization must be `Bearer <access token>`".into())
            })?;
        let (claims, revoked) = match keys.authenticate(token) {
            Ok(claims) => (claims, None),
            Err(Rejection::Revoked(revoked)) => (
                keys.verify(token)
                    .map_err(|_| ApiError::Unauthorized(Rejection::Invalid.to_string()))?,
                Some(revoked),
            ),
            Err(rejection) => return Err(ApiError::Unauthorized(rejection.to_string())),
        };
        Ok(MaybeRevoked {
            user: AuthUser {
                user_id: claims.sub,
                role: claims.role,
                session_id: claims.sid,
            },
            revoked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("k".repeat(32)), "meetings", "meetings")
    }

    fn claims(exp_offset: i64, nbf_offset: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            iss: "meetings".into(),
            aud: "meetings".into(),
            sub: Uuid::now_v7(),
            exp: now + exp_offset,
            nbf: now + nbf_offset,
            iat: now,
            jti: Uuid::now_v7(),
            role: Role::Member,
            ver: 0,
            sid: None,
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let user = Uuid::now_v7();
        let token = keys.issue(user, Role::Admin, Duration::from_secs(60));
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.role, Role::Admin);
    }

    #[test]
    fn expired_and_immature_tokens_are_rejected() {
        let keys = keys();
        assert!(keys.verify(&keys.sign(&claims(-60, -120))).is_err());
        assert!(keys.verify(&keys.sign(&claims(600, 300))).is_err());
    }

    #[test]
    fn tokens_of_another_key_issuer_or_audience_are_rejected() {
        let other = JwtKeys::new(&Secret::new("x".repeat(32)), "meetings", "meetings");
        assert!(keys()
            .verify(&other.issue(Uuid::nil(), Role::Member, Duration::from_secs(60)))
            .is_err());
        let other_iss = JwtKeys::new(&Secret::new("k".repeat(32)), "evil", "meetings");
        assert!(keys()
            .verify(&other_iss.issue(Uuid::nil(), Role::Member, Duration::from_secs(60)))
            .is_err());
        let other_aud = JwtKeys::new(&Secret::new("k".repeat(32)), "meetings", "other");
        assert!(keys()
            .verify(&other_aud.issue(Uuid::nil(), Role::Member, Duration::from_secs(60)))
            .is_err());
    }

    #[test]
    fn alg_none_is_rejected() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_vec(&claims(600, -1)).unwrap());
        assert!(keys().verify(&format!("{header}.{payload}.")).is_err());
    }
}
