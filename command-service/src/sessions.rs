//! Refresh tokens and login throttling: command-side state that is not part of any aggregate.
//!
//! Behind a trait: [`PgSessionStore`] here, [`SqliteSessionStore`] for embedded mode.

mod sqlite;

pub use sqlite::SqliteSessionStore;

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use platform::auth::revocation::Revocation;
use platform::store::postgres::db_error;
use platform::store::StoreError;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

/// A refresh token as handed to the client (never stored in clear).
pub struct RefreshToken {
    pub token: String,
    pub hash: Vec<u8>,
}

impl RefreshToken {
    /// 256 random bits, URL-safe.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_token(&token);
        Self { token, hash }
    }
}

/// SHA-256 of a presented token; a fast hash is right for 256-bit random secrets.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// What presenting a refresh token led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Valid: it is now spent and the new token (same family) replaces it.
    Rotated { user_id: Uuid, family_id: Uuid },
    /// It was already spent: probably stolen. The whole family is now revoked.
    Reused { user_id: Uuid, family_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
}

/// What a login attempt may do, decided atomically before its password is checked, so that
/// concurrent attempts cannot all slip past the block while the slow password checks run.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Refused unchecked and not counted: earlier failures block logins until then.
    Blocked(DateTime<Utc>),
    /// Allowed, and already counted as a failure (a success clears it). Should the password be
    /// wrong, logins are blocked until `blocked_until_if_wrong` (in the past: no delay); that
    /// block is already in force for concurrent attempts.
    Allowed {
        blocked_until_if_wrong: DateTime<Utc>,
    },
}

/// Growing delays after repeated failures of one account from one client address.
#[derive(Clone, Debug)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// First delay; doubles with every further failure.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl ThrottlePolicy {
    /// The throttle of one account from all addresses together (source [`ALL_SOURCES`]):
    /// 20 free failures, then delays doubling from 1 s up to 5 minutes. Ten times what one
    /// address gets, so strangers elsewhere cannot lock the owner out for long, but a guesser
    /// spread over many addresses is down to one try every 5 minutes.
    pub fn account_wide() -> Self {
        Self {
            free_failures: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5 * 60),
            forget_after: Duration::from_secs(24 * 3600),
        }
    }

    /// Delay imposed after the `failures`-th consecutive failure.
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures <= self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures - 1).min(30);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn issue_refresh(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &[u8],
        expires_at: DateTime<Utc>,
        family_expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Spends `presented` and stores `replacement` in its family, atomically. The
    /// replacement expires at `expires_at` or when its family ends, whichever is first; a
    /// family past its end rotates no more.
    async fn rotate_refresh(
        &self,
        presented: &[u8],
        replacement: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError>;

    /// Revokes the family of `token_hash` if it belongs to `user_id` (logout), and with it
    /// the family's access tokens, everywhere.
    async fn revoke_family(&self, token_hash: &[u8], user_id: Uuid) -> Result<(), StoreError>;

    /// Starts a login attempt: refuses it while blocked, otherwise counts it as a failure in
    /// advance and imposes the block that failure earns, atomically, before the password is
    /// checked. Call [`SessionStore::clear_failures`] when the password turns out right.
    async fn begin_attempt(
        &self,
        email_key: &str,
        source: &str,
        policy: &ThrottlePolicy,
    ) -> Result<Attempt, StoreError>;

    async fn clear_failures(&self, email_key: &str, source: &str) -> Result<(), StoreError>;

    /// Deletes throttles whose last failure is older than `forget_after` and that block
    /// nothing any more, and refresh tokens past their expiry (useless, whether spent or
    /// not). Returns how many rows went.
    async fn purge(&self, forget_after: Duration) -> Result<u64, StoreError>;
}

/// The `source` of the throttle row that counts an account's failures from every address.
pub const ALL_SOURCES: &str = "*";

pub struct PgSessionStore {
    pool: PgPool,
}

impl PgSessionStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Each method is one statement or one transaction written with `sqlx::Result`; its errors
/// are mapped once, by the store's mapping of PostgreSQL errors.
#[async_trait]
impl SessionStore for PgSessionStore {
    async fn issue_refresh(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &[u8],
        expires_at: DateTime<Utc>,
        family_expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ends = Ends::new(expires_at, family_expires_at);
        insert_token(&self.pool, token_hash, family_id, user_id, ends)
            .await
            .map_err(db_error)
    }

    async fn rotate_refresh(
        &self,
        presented: &[u8],
        replacement: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        rotate(&self.pool, presented, replacement, expires_at)
            .await
            .map_err(db_error)
    }

    async fn revoke_family(&self, token_hash: &[u8], user_id: Uuid) -> Result<(), StoreError> {
        logout(&self.pool, token_hash, user_id)
            .await
            .map_err(db_error)
    }

    async fn begin_attempt(
        &self,
        email_key: &str,
        source: &str,
        policy: &ThrottlePolicy,
    ) -> Result<Attempt, StoreError> {
        throttle_attempt(&self.pool, email_key, source, policy)
            .await
            .map_err(db_error)
    }

    async fn clear_failures(&self, email_key: &str, source: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_throttle WHERE email_key = $1 AND source = $2")
            .bind(email_key)
            .bind(source)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn purge(&self, forget_after: Duration) -> Result<u64, StoreError> {
        let throttles = sqlx::query(
            "DELETE FROM login_throttle \
             WHERE last_failure_at < now() - make_interval(secs => $1) AND blocked_until < now()",
        )
        .bind(forget_after.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        // Kept through the revocation window after expiry: a revoked family's row is what
        // services reload its revocation from (`platform::auth::revocation`).
        let tokens = sqlx::query(
            "DELETE FROM refresh_tokens WHERE expires_at < now() - make_interval(secs => $1)",
        )
        .bind(platform::auth::revocation::REVOCATION_WINDOW.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(throttles.rows_affected() + tokens.rows_affected())
    }
}

/// When a refresh token stops working: its own expiry, and its family's absolute end.
struct Ends {
    token: DateTime<Utc>,
    family: DateTime<Utc>,
}

impl Ends {
    /// A token asked to live until `expires_at` in a family that ends at `family`: it ends
    /// with its family if that comes first.
    fn new(expires_at: DateTime<Utc>, family: DateTime<Utc>) -> Self {
        Self {
            token: expires_at.min(family),
            family,
        }
    }
}

/// Stores a new refresh token of the family: at login, or replacing a rotated one.
async fn insert_token<'e, E>(
    executor: E,
    token_hash: &[u8],
    family_id: Uuid,
    user_id: Uuid,
    ends: Ends,
) -> sqlx::Result<()>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query(
        "INSERT INTO refresh_tokens \
            (token_hash, family_id, user_id, expires_at, family_expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(family_id)
    .bind(user_id)
    .bind(ends.token)
    .bind(ends.family)
    .execute(executor)
    .await?;
    Ok(())
}

/// [`SessionStore::revoke_family`] in one transaction: the family's tokens, then the
/// notification that voids its access tokens in every service.
async fn logout(pool: &PgPool, token_hash: &[u8], user_id: Uuid) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let family: Option<Uuid> = sqlx::query_scalar(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
    )
    .bind(token_hash)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(family_id) = family {
        revoke_family(&mut tx, user_id, family_id).await?;
    }
    tx.commit().await
}

/// Revokes every token of the family and, on commit, its access tokens everywhere.
async fn revoke_family(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    user_id: Uuid,
    family_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() \
         WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .execute(&mut **tx)
    .await?;
    let revocation = Revocation::Session {
        user_id,
        session_id: family_id,
    };
    platform::auth::revocation::notify(&mut **tx, &revocation).await
}

/// [`SessionStore::rotate_refresh`] in one transaction.
async fn rotate(
    pool: &PgPool,
    presented: &[u8],
    replacement: &[u8],
    expires_at: DateTime<Utc>,
) -> sqlx::Result<Rotation> {
    let mut tx = pool.begin().await?;
    // Every change to a user's tokens (rotation, reuse revocation, password change,
    // deactivation) first locks the user's accounts row, so a revocation cannot miss a
    // replacement token that a concurrent rotation is about to insert.
    sqlx::query(
        "SELECT 1 FROM accounts WHERE user_id = \
            (SELECT user_id FROM refresh_tokens WHERE token_hash = $1) FOR UPDATE",
    )
    .bind(presented)
    .fetch_optional(&mut *tx)
    .await?;
    // FOR UPDATE serializes concurrent presentations of one token: exactly one rotates.
    let row = sqlx::query(
        "SELECT family_id, user_id, used_at IS NOT NULL AS used, \
                revoked_at IS NOT NULL AS revoked, \
                expires_at <= now() OR family_expires_at <= now() AS expired, \
                family_expires_at \
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(presented)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Rotation::Invalid);
    };
    let family_id: Uuid = row.get("family_id");
    let user_id: Uuid = row.get("user_id");
    if row.get::<bool, _>("revoked") || row.get::<bool, _>("expired") {
        return Ok(Rotation::Invalid);
    }
    if row.get::<bool, _>("used") {
        revoke_family(&mut tx, user_id, family_id).await?;
        tx.commit().await?;
        return Ok(Rotation::Reused { user_id, family_id });
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1")
        .bind(presented)
        .execute(&mut *tx)
        .await?;
    let family_ends: DateTime<Utc> = row.get("family_expires_at");
    let ends = Ends::new(expires_at, family_ends);
    insert_token(&mut *tx, replacement, family_id, user_id, ends).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated { user_id, family_id })
}

/// [`SessionStore::begin_attempt`] in one transaction.
async fn throttle_attempt(
    pool: &PgPool,
    email_key: &str,
    source: &str,
    policy: &ThrottlePolicy,
) -> sqlx::Result<Attempt> {
    let forget = policy.forget_after.as_secs_f64();
    let mut tx = pool.begin().await?;
    // The upsert locks the row until commit, so concurrent attempts of one account from one
    // source queue here and each sees the block the previous one imposed. Times are the
    // statement's (`clock_timestamp()`), not the transaction's start (`now()`): an attempt
    // that queued on the lock must not see a zero-length block set after it started as
    // still running. While blocked
    // (the WHERE fails) nothing is counted; the row stays locked for the read below.
    let failures: Option<i32> = sqlx::query_scalar(
        "INSERT INTO login_throttle (email_key, source, failures, last_failure_at, blocked_until) \
         VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp()) \
         ON CONFLICT (email_key, source) DO UPDATE SET \
            failures = CASE WHEN login_throttle.last_failure_at < clock_timestamp() - make_interval(secs => $3) \
                            THEN 1 ELSE login_throttle.failures + 1 END, \
            last_failure_at = clock_timestamp() \
         WHERE login_throttle.blocked_until <= clock_timestamp() \
         RETURNING failures",
    )
    .bind(email_key)
    .bind(source)
    .bind(forget)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(failures) = failures else {
        let until: DateTime<Utc> = sqlx::query_scalar(
            "SELECT blocked_until FROM login_throttle WHERE email_key = $1 AND source = $2",
        )
        .bind(email_key)
        .bind(source)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Attempt::Blocked(until));
    };
    let delay = policy.delay_after(u32::try_from(failures).unwrap_or(u32::MAX));
    let blocked_until: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE login_throttle SET blocked_until = clock_timestamp() + make_interval(secs => $3) \
         WHERE email_key = $1 AND source = $2 RETURNING blocked_until",
    )
    .bind(email_key)
    .bind(source)
    .bind(delay.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Attempt::Allowed {
        blocked_until_if_wrong: blocked_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_double_and_cap() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.delay_after(1), Duration::ZERO);
        assert_eq!(policy.delay_after(4), Duration::ZERO);
        assert_eq!(policy.delay_after(5), Duration::from_secs(1));
        assert_eq!(policy.delay_after(6), Duration::from_secs(2));
        assert_eq!(policy.delay_after(9), Duration::from_secs(16));
        assert_eq!(policy.delay_after(20), Duration::from_secs(900));
        assert_eq!(policy.delay_after(u32::MAX), Duration::from_secs(900));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, hash_token(&a.token));
        assert_eq!(a.token.len(), 43);
    }
}
