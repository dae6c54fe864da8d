//! SQLite backend of the write-side store (embedded mode): the same tables, commits and
//! guarantees as [`super::postgres`], in one file (`migrations/sqlite/events`).
//!
//! Writes go through the file's single writer connection ([`SqliteFile`]), so a commit is
//! never interleaved with another and the events' ids are their global order: a reader sees
//! a prefix of the log, never a later event without an earlier one. Positions are
//! `(0, id)`.

mod group_commit;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::codec::chain;
use super::{
    Account, Commit, CommitOutcome, EventMetadata, EventStore, IdempotentResponse, Position,
    SideEffect, Snapshot, StoreError, StoredEvent,
};
use crate::auth::revocation::{Revocation, Revocations};
use crate::db::sqlite::{from_micros, micros, unique_violation, SqliteFile, EVENTS_MIGRATOR};

/// The event store and command-side tables in one SQLite file.
#[derive(Clone)]
pub struct SqliteEventStore {
    file: SqliteFile,
    /// Where revocations go once their commit is durable: this process is the only one.
    revocations: Option<Arc<Revocations>>,
    /// Commits waiting for the writer (one per file: clones share it).
    queue: Arc<group_commit::Queue>,
}

impl SqliteEventStore {
    pub fn new(file: SqliteFile) -> Self {
        Self {
            file,
            revocations: None,
            queue: Arc::default(),
        }
    }

    /// Applies the revocations of committed side effects to `revocations` (the tokens checked
    /// by this process), as PostgreSQL's `NOTIFY` does for other processes.
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    pub fn file(&self) -> &SqliteFile {
        &self.file
    }
}

const SELECT_EVENTS: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, recorded_at, id, prev_hash, hash FROM events";

fn corrupt(row: &SqliteRow, reason: String) -> StoreError {
    StoreError::Corrupt {
        aggregate_type: row.try_get("aggregate_type").unwrap_or_default(),
        aggregate_id: row.try_get("aggregate_id").unwrap_or_default(),
        sequence: row.try_get("sequence").unwrap_or_default(),
        reason,
    }
}

fn json(row: &SqliteRow, column: &str) -> Result<Value, StoreError> {
    let text: &str = row.try_get(column).map_err(db_error)?;
    serde_json::from_str(text).map_err(|e| corrupt(row, format!("{column}: {e}")))
}

fn stored_event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let metadata: EventMetadata = serde_json::from_value(json(row, "metadata")?)
        .map_err(|e| corrupt(row, format!("metadata: {e}")))?;
    Ok(StoredEvent {
        aggregate_type: row.try_get("aggregate_type").map_err(db_error)?,
        aggregate_id: row.try_get("aggregate_id").map_err(db_error)?,
        sequence: row.try_get("sequence").map_err(db_error)?,
        event_type: row.try_get("event_type").map_err(db_error)?,
        event_version: row.try_get("event_version").map_err(db_error)?,
        payload: json(row, "payload")?,
        metadata,
        recorded_at: from_micros(row.try_get("recorded_at").map_err(db_error)?),
        position: Position {
            transaction_id: 0,
            id: row.try_get("id").map_err(db_error)?,
        },
        prev_hash: row.try_get("prev_hash").map_err(db_error)?,
        hash: row.try_get("hash").map_err(db_error)?,
    })
}

/// The one mapping of SQLite errors to [`StoreError`] for the command side: unique
/// violations by the columns they name, a locked or unreachable file to `Unavailable`.
pub fn db_error(error: sqlx::Error) -> StoreError {
    match unique_violation(&error) {
        Some(columns) if columns.starts_with("events.aggregate_type") => StoreError::Concurrency,
        Some("accounts.email_key") => StoreError::Duplicate("email"),
        Some(columns) if columns.starts_with("idempotency_keys.") => {
            StoreError::IdempotencyKeyTaken
        }
        _ if crate::db::sqlite::is_transient(&error) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Other(error.into()),
    }
}

/// Appends `commit`'s events on the writer connection (inside the caller's transaction) and
/// returns its outcome.
async fn insert_events(
    connection: &mut SqliteConnection,
    commit: &Commit,
) -> Result<CommitOutcome, StoreError> {
    let mut last = None;
    for chained in chain(commit)? {
        let event = chained.event;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata, event_id, recorded_at, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(commit.aggregate_type)
        .bind(commit.aggregate_id)
        .bind(chained.sequence)
        .bind(&event.event_type)
        .bind(&event.event_version)
        .bind(event.payload.to_string())
        .bind(chained.metadata.to_string())
        .bind(event.metadata.event_id)
        .bind(micros(chained.recorded_at))
        .bind(chained.prev_hash.as_deref())
        .bind(&chained.hash)
        .fetch_one(&mut *connection)
        .await
        .map_err(db_error)?;
        last = Some((chained.sequence, id, chained.hash));
    }
    let (version, id, last_hash) =
        last.ok_or_else(|| StoreError::Other(anyhow::anyhow!("BUG: no events")))?;
    Ok(CommitOutcome {
        aggregate_id: commit.aggregate_id,
        version,
        position: Position {
            transaction_id: 0,
            id,
        },
        last_hash,
    })
}

/// One commit's events, side effects and idempotency record; the revocations it causes.
async fn commit_in(
    connection: &mut SqliteConnection,
    commit: &Commit,
    revoked: &mut Vec<Revocation>,
) -> Result<CommitOutcome, StoreError> {
    let outcome = insert_events(connection, commit).await?;
    for effect in &commit.side_effects {
        apply_side_effect(connection, effect, revoked).await?;
    }
    if let Some(key) = &commit.idempotency {
        let mut body = json!({
            "id": outcome.aggregate_id,
            "version": outcome.version,
            "position": outcome.position,
        });
        if let Some(message_id) = key.message_id {
            body["message_id"] = json!(message_id);
        }
        sqlx::query(
            "INSERT INTO idempotency_keys \
             (principal, key, request_hash, status, response, etag, location, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(i64::from(key.status))
        .bind(body.to_string())
        .bind(format!("\"{}\"", outcome.version))
        .bind(&key.location)
        .bind(micros(Utc::now()))
        .execute(&mut *connection)
        .await
        .map_err(db_error)?;
    }
    Ok(outcome)
}

async fn apply_side_effect(
    connection: &mut SqliteConnection,
    effect: &SideEffect,
    revoked: &mut Vec<Revocation>,
) -> Result<(), StoreError> {
    let now = micros(Utc::now());
    match effect {
        SideEffect::CreateAccount {
            user_id,
            email_key,
            password_hash,
        } => {
            sqlx::query(
                "INSERT INTO accounts (user_id, email_key, password_hash, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(user_id)
            .bind(email_key)
            .bind(password_hash)
            .bind(now)
            .bind(now)
            .execute(&mut *connection)
            .await
            .map_err(db_error)?;
        }
        SideEffect::SetPassword {
            user_id,
            password_hash,
        } => {
            sqlx::query("UPDATE accounts SET password_hash = ?, updated_at = ? WHERE user_id = ?")
                .bind(password_hash)
                .bind(now)
                .bind(user_id)
                .execute(&mut *connection)
                .await
                .map_err(db_error)?;
            end_sessions(connection, *user_id, now, revoked).await?;
        }
        SideEffect::RevokeAccess { user_id } => {
            revoke_access(connection, *user_id, now, revoked).await?
        }
        SideEffect::DeactivateAccount { user_id } => {
            sqlx::query("UPDATE accounts SET active = 0, updated_at = ? WHERE user_id = ?")
                .bind(now)
                .bind(user_id)
                .execute(&mut *connection)
                .await
                .map_err(db_error)?;
            end_sessions(connection, *user_id, now, revoked).await?;
        }
    }
    Ok(())
}

/// A new password or a deactivation: every refresh token revoked, every access token void.
async fn end_sessions(
    connection: &mut SqliteConnection,
    user_id: Uuid,
    now: i64,
    revoked: &mut Vec<Revocation>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut *connection)
    .await
    .map_err(db_error)?;
    revoke_access(connection, user_id, now, revoked).await
}

/// Voids every access token issued to the user so far, once the transaction commits.
async fn revoke_access(
    connection: &mut SqliteConnection,
    user_id: Uuid,
    now: i64,
    revoked: &mut Vec<Revocation>,
) -> Result<(), StoreError> {
    let version: i32 = sqlx::query_scalar(
        "UPDATE accounts SET session_version = session_version + 1, sessions_revoked_at = ? \
         WHERE user_id = ? RETURNING session_version",
    )
    .bind(now)
    .bind(user_id)
    .fetch_one(&mut *connection)
    .await
    .map_err(db_error)?;
    revoked.push(Revocation::User { user_id, version });
    Ok(())
}

impl SqliteEventStore {
    async fn events<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = query.fetch_all(&self.file.reader).await.map_err(db_error)?;
        rows.iter().map(stored_event).collect()
    }

    /// Writes `commits` together, all or nothing, with the other commits waiting for the
    /// writer ([`group_commit`]); revocations are applied after the commit, never for a
    /// rolled-back one.
    async fn commit_all(&self, commits: Vec<Commit>) -> Result<Vec<CommitOutcome>, StoreError> {
        if commits.is_empty() || commits.iter().any(|c| c.events.is_empty()) {
            return Err(StoreError::Other(anyhow::anyhow!("BUG: empty commit")));
        }
        self.queue
            .commit(&self.file, self.revocations.as_ref(), commits)
            .await
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn load_after(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_sequence: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // A page without a bound (SQLite takes any LIMIT).
        self.load_page(aggregate_type, aggregate_id, after_sequence, i64::MAX)
            .await
    }

    async fn load_page(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_sequence: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events(
            sqlx::query(&format!(
                "{SELECT_EVENTS} WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ? \
                 ORDER BY sequence LIMIT ?"
            ))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after_sequence)
            .bind(limit),
        )
        .await
    }

    async fn load_since(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        since: Position,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events(
            sqlx::query(&format!(
                "{SELECT_EVENTS} WHERE aggregate_type = ? AND aggregate_id = ? AND id > ? \
                 ORDER BY sequence LIMIT ?"
            ))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(sqlite_id(since))
            .bind(limit),
        )
        .await
    }

    async fn snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT sequence, state, last_hash FROM snapshots \
             WHERE aggregate_type = ? AND aggregate_id = ?",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.file.reader)
        .await
        .map_err(db_error)?;
        row.map(|(sequence, state, last_hash)| {
            Ok(Snapshot {
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id,
                sequence,
                state: serde_json::from_str(&state)
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("snapshot state: {e}")))?,
                last_hash,
            })
        })
        .transpose()
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, state, last_hash, \
                                    taken_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                SET sequence = excluded.sequence, state = excluded.state, \
                    last_hash = excluded.last_hash, taken_at = excluded.taken_at \
                WHERE snapshots.sequence < excluded.sequence",
        )
        .bind(&snapshot.aggregate_type)
        .bind(snapshot.aggregate_id)
        .bind(snapshot.sequence)
        .bind(snapshot.state.to_string())
        .bind(&snapshot.last_hash)
        .bind(micros(Utc::now()))
        .execute(&self.file.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let mut outcomes = self.commit_all(vec![commit]).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("BUG: no outcome")))
    }

    async fn commit_together(
        &self,
        commits: Vec<Commit>,
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        self.commit_all(commits).await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after = sqlite_id(after.unwrap_or(Position::START));
        self.events(
            sqlx::query(&format!("{SELECT_EVENTS} WHERE id > ? ORDER BY id LIMIT ?"))
                .bind(after)
                .bind(limit),
        )
        .await
    }

    async fn idempotent_response(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT request_hash, status, response, etag, location FROM idempotency_keys \
             WHERE principal = ? AND key = ?",
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(&self.file.reader)
        .await
        .map_err(db_error)?;
        row.map(|row| {
            let response: String = row.try_get("response").map_err(db_error)?;
            Ok(IdempotentResponse {
                request_hash: row.try_get("request_hash").map_err(db_error)?,
                status: u16::try_from(row.try_get::<i64, _>("status").map_err(db_error)?)
                    .unwrap_or(200),
                body: serde_json::from_str(&response)
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("stored response: {e}")))?,
                etag: row.try_get("etag").map_err(db_error)?,
                location: row.try_get("location").map_err(db_error)?,
            })
        })
        .transpose()
    }

    async fn purge_idempotency_keys(
        &self,
        retention: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let retention = chrono::Duration::from_std(retention)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("retention: {e}")))?;
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(micros(Utc::now() - retention))
            .execute(&self.file.writer)
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected())
    }

    async fn account_by_email(&self, email_key: &str) -> Result<Option<Account>, StoreError> {
        sqlx::query(
            "SELECT user_id, password_hash, active, session_version FROM accounts \
             WHERE email_key = ?",
        )
        .bind(email_key)
        .fetch_optional(&self.file.reader)
        .await
        .map_err(db_error)?
        .map(|row| account(&row))
        .transpose()
    }

    async fn account(&self, user_id: Uuid) -> Result<Option<Account>, StoreError> {
        sqlx::query(
            "SELECT user_id, password_hash, active, session_version FROM accounts \
             WHERE user_id = ?",
        )
        .bind(user_id)
        .fetch_optional(&self.file.reader)
        .await
        .map_err(db_error)?
        .map(|row| account(&row))
        .transpose()
    }

    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        // One primary-key lookup per id (`IN (?, …)`); callers send at most a few hundred.
        let placeholders = vec!["?"; ids.len()].join(", ");
        let sql =
            format!("SELECT user_id FROM accounts WHERE active AND user_id IN ({placeholders})");
        let mut query = sqlx::query_scalar(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let active: Vec<Uuid> = query.fetch_all(&self.file.reader).await.map_err(db_error)?;
        Ok(ids
            .iter()
            .filter(|id| !active.contains(id))
            .copied()
            .collect())
    }

    async fn ready(&self) -> Result<(), String> {
        self.file.ready(&EVENTS_MIGRATOR).await
    }
}

/// The event id a position names in this store (`(0, id)`); a position of another store
/// (a PostgreSQL transaction id) names nothing here, so it reads from past the end.
fn sqlite_id(position: Position) -> i64 {
    if position.transaction_id == 0 {
        position.id
    } else {
        i64::MAX
    }
}

fn account(row: &SqliteRow) -> Result<Account, StoreError> {
    Ok(Account {
        user_id: row.try_get("user_id").map_err(db_error)?,
        password_hash: row.try_get("password_hash").map_err(db_error)?,
        active: row.try_get("active").map_err(db_error)?,
        session_version: row.try_get("session_version").map_err(db_error)?,
    })
}
