//! Access tokens: HS256 JWTs with `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, and the caller's
//! role. Only HS256 is accepted (`alg: none` and every other algorithm are refused), and every
//! registered claim above is required.

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
}

/// Signs and verifies access tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
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
        }
    }

    pub fn from_settings(settings: &JwtSettings) -> anyhow::Result<Self> {
        Ok(Self::new(
            &settings.secret()?,
            &settings.issuer,
            &settings.audience,
        ))
    }

    /// Issues an access token for `user_id` valid for `lifetime` from now.
    pub fn issue(&self, user_id: Uuid, role: Role, lifetime: Duration) -> String {
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
}

/// The authenticated caller, extracted from `Authorization: Bearer …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub role: Role,
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
        let claims = keys.verify(token).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            let reason = match error.kind() {
                ErrorKind::ExpiredSignature => "the access token has expired",
                ErrorKind::ImmatureSignature => "the access token is not valid yet",
                _ => "the access token is invalid",
            };
            tracing::debug!(%error, "bearer token rejected");
            ApiError::Unauthorized(reason.into())
        })?;
        Ok(AuthUser {
            user_id: claims.sub,
            role: claims.role,
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
