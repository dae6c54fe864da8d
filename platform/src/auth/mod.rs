//! Access tokens: HS256 JWTs with `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, the caller's role,
//! the user's session version (`ver`) and the session (`sid`, the refresh family). Only HS256 is
//! accepted (`alg: none` and every other algorithm are refused), and every registered claim
//! above is required. A verified token must also not be revoked ([`revocation`]).

pub mod keys;
pub mod revocation;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use domain::{Actor, Role};
use jsonwebtoken::{Algorithm, Header, Validation};
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

/// Signs and verifies access tokens (see [`keys`] for which keys).
pub struct JwtKeys {
    /// `None` in services that only verify.
    signer: Option<keys::Signer>,
    /// Each key with the validation of its algorithm, built once (every request uses one).
    verifiers: Vec<(keys::Verifier, Validation)>,
    issuer: String,
    audience: String,
    revocations: Arc<revocation::Revocations>,
}

impl JwtKeys {
    /// Keys of the HS256 `secret` alone (the legacy key; tests).
    pub fn new(secret: &Secret, issuer: &str, audience: &str) -> Self {
        Self::from_keys(vec![keys::hs256(secret)], issuer, audience)
    }

    /// Signs with the Ed25519 private key `current` and also accepts the tokens of the
    /// `previous` keys (PEM, private or public).
    pub fn ed25519(
        current: &str,
        previous: &[&str],
        issuer: &str,
        audience: &str,
    ) -> anyhow::Result<Self> {
        let mut all = vec![keys::ed25519_from_pem(current)?];
        for key in previous {
            all.push(keys::ed25519_from_pem(key)?);
        }
        Ok(Self::from_keys(all, issuer, audience))
    }

    /// Verifies with the Ed25519 public (or private) keys `accepted`; cannot sign.
    pub fn verifying(accepted: &[&str], issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let mut all = vec![];
        for key in accepted {
            let mut key = keys::ed25519_from_pem(key)?;
            key.signer = None;
            all.push(key);
        }
        Ok(Self::from_keys(all, issuer, audience))
    }

    /// The first key that can sign signs; every key verifies.
    fn from_keys(all: Vec<keys::PemKey>, issuer: &str, audience: &str) -> Self {
        let mut signer = None;
        let mut verifiers = vec![];
        for key in all {
            if signer.is_none() {
                signer = key.signer;
            }
            let validation = validation(key.verifier.algorithm, issuer, audience);
            verifiers.push((key.verifier, validation));
        }
        Self {
            signer,
            verifiers,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            revocations: Arc::default(),
        }
    }

    /// The keys the settings name: the private key signs (with the previous key still
    /// accepted), public keys verify, and a legacy HS256 secret, when also given, keeps
    /// verifying the tokens it signed (and signs only when no Ed25519 key does).
    pub fn from_settings(settings: &JwtSettings) -> anyhow::Result<Self> {
        let read = |path: &std::path::Path, setting: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{setting} {}: {e}", path.display()))
        };
        let parse = |path: &std::path::Path, setting: &str| -> anyhow::Result<keys::PemKey> {
            keys::ed25519_from_pem(&read(path, setting)?)
                .map_err(|e| anyhow::anyhow!("{setting} {}: {e}", path.display()))
        };
        let mut all = vec![];
        if let Some(path) = &settings.private_key_file {
            let key = parse(path, "MEETINGS_JWT_PRIVATE_KEY_FILE")?;
            anyhow::ensure!(
                key.signer.is_some(),
                "MEETINGS_JWT_PRIVATE_KEY_FILE {} holds a public key; give the private one",
                path.display()
            );
            all.push(key);
        }
        if let Some(path) = &settings.previous_key_file {
            let mut key = parse(path, "MEETINGS_JWT_PREVIOUS_KEY_FILE")?;
            key.signer = None;
            all.push(key);
        }
        for path in &settings.public_key_files {
            let mut key = parse(path, "MEETINGS_JWT_PUBLIC_KEY_FILES")?;
            key.signer = None;
            all.push(key);
        }
        if settings.has_secret() {
            all.push(keys::hs256(&settings.secret()?));
        }
        anyhow::ensure!(
            !all.is_empty(),
            "no token key: set MEETINGS_JWT_PRIVATE_KEY_FILE (command-service), \
             MEETINGS_JWT_PUBLIC_KEY_FILES (query-service, realtime) or the legacy \
             MEETINGS_JWT_SECRET / MEETINGS_JWT_SECRET_FILE"
        );
        Ok(Self::from_keys(all, &settings.issuer, &settings.audience))
    }

    /// Whether this process holds a key that signs.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// The Ed25519 public keys accepted, for `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> keys::JwkSet {
        keys::JwkSet {
            keys: self
                .verifiers
                .iter()
                .filter_map(|(verifier, _)| verifier.jwk())
                .collect(),
        }
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
    ///
    /// # Panics
    /// In a process that holds no signing key (a verifier: query-service, gateway).
    pub fn sign(&self, claims: &Claims) -> String {
        let signer = self
            .signer
            .as_ref()
            .expect("BUG: only the command side signs tokens, with a private key");
        let mut header = Header::new(signer.algorithm);
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &signer.key)
            .expect("BUG: signing serializable claims cannot fail")
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies signature, algorithm and claims, with the key the token's `kid` names (a
    /// token without one: the HS256 secret, which signed before keys had ids).
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.as_deref().unwrap_or(keys::HS256_KID);
        let (verifier, validation) = self
            .verifiers
            .iter()
            .find(|(v, _)| v.kid == kid)
            .ok_or(ErrorKind::InvalidSignature)?;
        // The algorithm is the key's, never the header's: no HS256 token "signed" with a
        // public key, no `none`.
        jsonwebtoken::decode::<Claims>(token, &verifier.key, validation).map(|d| d.claims)
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

/// What a token of `algorithm` must satisfy: only that algorithm, the issuer and audience,
/// every registered claim, `exp` and `nbf` within the leeway.
fn validation(algorithm: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    validation
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
    use jsonwebtoken::EncodingKey;

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

    fn ed25519_pair() -> (String, String) {
        let private = keys::generate_ed25519_pem();
        let public = keys::public_pem(&private).unwrap();
        (private, public)
    }

    #[test]
    fn a_rotation_keeps_the_previous_keys_tokens_valid_and_signs_with_the_new_key() {
        let (old_private, old_public) = ed25519_pair();
        let (new_private, new_public) = ed25519_pair();
        let before = JwtKeys::ed25519(&old_private, &[], "meetings", "meetings").unwrap();
        let old_token = before.issue(Uuid::now_v7(), Role::Member, Duration::from_secs(60));

        // The command side after the rotation: new key, the old one as previous (public).
        let after = JwtKeys::ed25519(&new_private, &[&old_public], "meetings", "meetings").unwrap();
        assert!(after.verify(&old_token).is_ok(), "old tokens stay valid");
        let new_token = after.issue(Uuid::now_v7(), Role::Member, Duration::from_secs(60));
        let header = jsonwebtoken::decode_header(&new_token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid, after.jwks().keys.first().map(|k| k.kid.clone()));
        assert_ne!(
            header.kid,
            jsonwebtoken::decode_header(&old_token).unwrap().kid
        );
        // A verifier given both public keys accepts both; once the old key is dropped, its
        // tokens are refused and the new ones are not.
        let both = JwtKeys::verifying(&[&new_public, &old_public], "meetings", "meetings").unwrap();
        assert!(!both.can_sign());
        assert!(both.verify(&old_token).is_ok() && both.verify(&new_token).is_ok());
        let only_new = JwtKeys::verifying(&[&new_public], "meetings", "meetings").unwrap();
        assert!(only_new.verify(&old_token).is_err());
        assert!(only_new.verify(&new_token).is_ok());
        assert_eq!(after.jwks().keys.len(), 2);
    }

    #[test]
    fn a_token_signed_with_a_public_key_as_an_hs256_secret_is_refused() {
        let (private, public) = ed25519_pair();
        let verifier = JwtKeys::verifying(&[&public], "meetings", "meetings").unwrap();
        let jwk = JwtKeys::ed25519(&private, &[], "meetings", "meetings")
            .unwrap()
            .jwks()
            .keys
            .remove(0);
        // An attacker knows the public key and its kid: an HS256 "signature" with it.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(jwk.kid);
        let forged = jsonwebtoken::encode(
            &header,
            &claims(600, -1),
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        assert!(verifier.verify(&forged).is_err());
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&jwk.x)
            .unwrap();
        let forged =
            jsonwebtoken::encode(&header, &claims(600, -1), &EncodingKey::from_secret(&raw))
                .unwrap();
        assert!(verifier.verify(&forged).is_err());
    }

    #[test]
    fn a_legacy_hs256_secret_kept_beside_a_new_key_keeps_its_tokens_valid() {
        let secret = Secret::new("k".repeat(32));
        let legacy = JwtKeys::new(&secret, "meetings", "meetings");
        let legacy_claims = claims(600, -1);
        // Tokens from before keys had ids carry no `kid`.
        let untagged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &legacy_claims,
            &EncodingKey::from_secret(secret.expose()),
        )
        .unwrap();
        let (private, _) = ed25519_pair();
        let mut all = vec![keys::ed25519_from_pem(&private).unwrap()];
        all.push(keys::hs256(&secret));
        let migrated = JwtKeys::from_keys(all, "meetings", "meetings");
        assert!(migrated.verify(&untagged).is_ok());
        assert!(migrated.verify(&legacy.sign(&legacy_claims)).is_ok());
        let issued = migrated.issue(Uuid::now_v7(), Role::Member, Duration::from_secs(60));
        assert_eq!(
            jsonwebtoken::decode_header(&issued).unwrap().alg,
            Algorithm::EdDSA,
            "the Ed25519 key signs"
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_vec(&claims(600, -1)).unwrap());
        assert!(keys().verify(&format!("{header}.{payload}.")).is_err());
    }
}
