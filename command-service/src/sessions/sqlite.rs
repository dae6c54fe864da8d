//! [`SessionStore`] on the SQLite file of embedded mode. Every transaction runs on the file's
//! single writer connection, one after the other, so what PostgreSQL gets from row locks
//! (exactly one rotation of a presented token, attempts of one account queueing on the
//! throttle) holds here by construction; times are this process's clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use platform::auth::revocation::{Revocation, Revocations, REVOCATION_WINDOW};
use platform::db::sqlite::{from_micros, micros, SqliteFile};
use platform::store::sqlite::db_error;
use platform::store::StoreError;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::{Attempt, Ends, Rotation, SessionStore, ThrottlePolicy};

pub struct SqliteSessionStore {
    file: SqliteFile,
    revocations: Option<Arc<Revocations>>,
}

impl SqliteSessionStore {
    pub fn new(file: SqliteFile) -> Self {
        Self {
            file,
            revocations: None,
        }
    }

    /// Applies logouts and reuse revocations to `revocations` once they are committed.
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    fn revoked(&self, revocation: Revocation) {
        if let Some(revocations) = &self.revocations {
            revocations.apply(revocation);
        }
    }
}

fn duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

async fn insert_token(
    connection: &mut SqliteConnection,
    token_hash: &[u8],
    family_id: Uuid,
    user_id: Uuid,
    ends: Ends,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens \
            (token_hash, family_id, user_id, issued_at, expires_at, family_expires_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(family_id)
    .bind(user_id)
    .bind(micros(Utc::now()))
    .bind(micros(ends.token))
    .bind(micros(ends.family))
    .execute(connection)
    .await?;
    Ok(())
}

async fn revoke_family(connection: &mut SqliteConnection, family_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
    )
    .bind(micros(Utc::now()))
    .bind(family_id)
    .execute(connection)
    .await?;
    Ok(())
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn issue_refresh(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &[u8],
        expires_at: DateTime<Utc>,
        family_expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ends = Ends::new(expires_at, family_expires_at);
        let mut connection = self.file.writer.acquire().await.map_err(db_error)?;
        insert_token(&mut connection, token_hash, family_id, user_id, ends)
            .await
            .map_err(db_error)
    }

    async fn rotate_refresh(
        &self,
        presented: &[u8],
        replacement: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.file.writer.begin().await.map_err(db_error)?;
        let row = sqlx::query(
            "SELECT family_id, user_id, used_at, revoked_at, expires_at, family_expires_at \
             FROM refresh_tokens WHERE token_hash = ?",
        )
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let now = micros(Utc::now());
        let family_id: Uuid = row.get("family_id");
        let user_id: Uuid = row.get("user_id");
        let family_ends: i64 = row.get("family_expires_at");
        let expired = row.get::<i64, _>("expires_at") <= now || family_ends <= now;
        if row.get::<Option<i64>, _>("revoked_at").is_some() || expired {
            return Ok(Rotation::Invalid);
        }
        if row.get::<Option<i64>, _>("used_at").is_some() {
            revoke_family(&mut tx, family_id).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            self.revoked(Revocation::Session {
                user_id,
                session_id: family_id,
            });
            return Ok(Rotation::Reused { user_id, family_id });
        }
        sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?")
            .bind(now)
            .bind(presented)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let family_ends = from_micros(family_ends);
        let ends = Ends::new(expires_at, family_ends);
        insert_token(&mut tx, replacement, family_id, user_id, ends)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Rotation::Rotated { user_id, family_id })
    }

    async fn revoke_family(&self, token_hash: &[u8], user_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.file.writer.begin().await.map_err(db_error)?;
        let family: Option<Uuid> = sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = ? AND user_id = ?",
        )
        .bind(token_hash)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(family_id) = family {
            revoke_family(&mut tx, family_id).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            self.revoked(Revocation::Session {
                user_id,
                session_id: family_id,
            });
        }
        Ok(())
    }

    async fn begin_attempt(
        &self,
        email_key: &str,
        source: &str,
        policy: &ThrottlePolicy,
    ) -> Result<Attempt, StoreError> {
        let mut tx = self.file.writer.begin().await.map_err(db_error)?;
        let now = Utc::now();
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT failures, last_failure_at, blocked_until FROM login_throttle \
             WHERE email_key = ? AND source = ?",
        )
        .bind(email_key)
        .bind(source)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let failures = match row {
            Some((_, _, blocked_until)) if blocked_until > micros(now) => {
                return Ok(Attempt::Blocked(from_micros(blocked_until)));
            }
            Some((failures, last_failure_at, _))
                if from_micros(last_failure_at) >= now - duration(policy.forget_after) =>
            {
                failures + 1
            }
            _ => 1,
        };
        let delay = policy.delay_after(u32::try_from(failures).unwrap_or(u32::MAX));
        let blocked_until = now + duration(delay);
        sqlx::query(
            "INSERT INTO login_throttle (email_key, source, failures, last_failure_at, \
                                         blocked_until) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (email_key, source) DO UPDATE SET failures = excluded.failures, \
                last_failure_at = excluded.last_failure_at, \
                blocked_until = excluded.blocked_until",
        )
        .bind(email_key)
        .bind(source)
        .bind(failures)
        .bind(micros(now))
        .bind(micros(blocked_until))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Attempt::Allowed {
            blocked_until_if_wrong: from_micros(micros(blocked_until)),
        })
    }

    async fn clear_failures(&self, email_key: &str, source: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_throttle WHERE email_key = ? AND source = ?")
            .bind(email_key)
            .bind(source)
            .execute(&self.file.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn purge(&self, forget_after: Duration) -> Result<u64, StoreError> {
        let now = Utc::now();
        let throttles = sqlx::query(
            "DELETE FROM login_throttle WHERE last_failure_at < ? AND blocked_until < ?",
        )
        .bind(micros(now - duration(forget_after)))
        .bind(micros(now))
        .execute(&self.file.writer)
        .await
        .map_err(db_error)?;
        // Kept through the revocation window after expiry, as on PostgreSQL.
        let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < ?")
            .bind(micros(now - duration(REVOCATION_WINDOW)))
            .execute(&self.file.writer)
            .await
            .map_err(db_error)?;
        Ok(throttles.rows_affected() + tokens.rows_affected())
    }
}
