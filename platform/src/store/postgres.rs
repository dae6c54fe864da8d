//! PostgreSQL backend of the write-side store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::codec::chain;
use super::{
    Account, Commit, CommitOutcome, EventMetadata, EventStore, IdempotentResponse, Position,
    SideEffect, Snapshot, StoreError, StoredEvent,
};

/// The event store and command-side tables in one PostgreSQL database.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
}

impl PgEventStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Note: `transaction_id` is selected as text (sqlx has no xid8 type), so ORDER BY must name
/// `events.transaction_id` — a bare name would sort by the text alias ("999" > "1000").
const EVENT_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata, recorded_at, transaction_id::text AS transaction_id, id, prev_hash, hash";

fn stored_event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let aggregate_type: String = row.try_get("aggregate_type").map_err(db_error)?;
    let aggregate_id: Uuid = row.try_get("aggregate_id").map_err(db_error)?;
    let sequence: i64 = row.try_get("sequence").map_err(db_error)?;
    // Decoded straight into its type: no `Value` in between (a replay reads millions).
    let metadata: EventMetadata = match row.try_get::<sqlx::types::Json<_>, _>("metadata") {
        Ok(metadata) => metadata.0,
        Err(sqlx::Error::ColumnDecode { source, .. }) => {
            return Err(StoreError::Corrupt {
                aggregate_type,
                aggregate_id,
                sequence,
                reason: format!("metadata: {source}"),
            })
        }
        Err(error) => return Err(db_error(error)),
    };
    let transaction_id: String = row.try_get("transaction_id").map_err(db_error)?;
    Ok(StoredEvent {
        event_type: row.try_get("event_type").map_err(db_error)?,
        event_version: row.try_get("event_version").map_err(db_error)?,
        payload: row.try_get("payload").map_err(db_error)?,
        metadata,
        recorded_at: row.try_get("recorded_at").map_err(db_error)?,
        position: Position {
            transaction_id: transaction_id.parse().map_err(|_| {
                StoreError::Other(anyhow::anyhow!("bad transaction id {transaction_id}"))
            })?,
            id: row.try_get("id").map_err(db_error)?,
        },
        prev_hash: row.try_get("prev_hash").map_err(db_error)?,
        hash: row.try_get("hash").map_err(db_error)?,
        aggregate_type,
        aggregate_id,
        sequence,
    })
}

/// The one mapping of PostgreSQL errors to [`StoreError`], for every statement of the command
/// side (the event store here, sessions in the command service): unique violations to their
/// meaning by constraint name, transient trouble (connection, overload, serialization; see
/// [`crate::db::is_transient`]) to `Unavailable`, the rest to `Other`.
pub fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            match db.constraint() {
                Some("events_pkey") => StoreError::Concurrency,
                Some("accounts_email_key_key") => StoreError::Duplicate("email"),
                Some("idempotency_keys_pkey") => StoreError::IdempotencyKeyTaken,
                _ => StoreError::Other(error.into()),
            }
        }
        _ if crate::db::is_transient(&error) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Other(error.into()),
    }
}

/// The rows of one commit, as parallel arrays for a single `INSERT … SELECT FROM unnest`.
struct Rows {
    sequences: Vec<i64>,
    event_types: Vec<String>,
    event_versions: Vec<String>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
    event_ids: Vec<Uuid>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hashes: Vec<Option<Vec<u8>>>,
    hashes: Vec<Vec<u8>>,
}

fn rows(commit: &Commit) -> Result<Rows, StoreError> {
    let mut rows = Rows {
        sequences: vec![],
        event_types: vec![],
        event_versions: vec![],
        payloads: vec![],
        metadata: vec![],
        event_ids: vec![],
        recorded_at: vec![],
        prev_hashes: vec![],
        hashes: vec![],
    };
    for chained in chain(commit)? {
        let event = chained.event;
        rows.sequences.push(chained.sequence);
        rows.event_types.push(event.event_type.clone());
        rows.event_versions.push(event.event_version.clone());
        rows.payloads.push(event.payload.clone());
        rows.metadata.push(chained.metadata);
        rows.event_ids.push(event.metadata.event_id);
        rows.recorded_at.push(chained.recorded_at);
        rows.prev_hashes.push(chained.prev_hash);
        rows.hashes.push(chained.hash);
    }
    Ok(rows)
}

const INSERT_EVENTS: &str = "
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, event_id, recorded_at, prev_hash, hash)
    SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata,
           e.event_id, e.recorded_at, e.prev_hash, e.hash
    FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::uuid[],
                $9::timestamptz[], $10::bytea[], $11::bytea[])
         AS e(sequence, event_type, event_version, payload, metadata, event_id, recorded_at,
              prev_hash, hash)
    RETURNING sequence, transaction_id::text AS transaction_id, id";

async fn insert_events<'e, E>(
    executor: E,
    commit: &Commit,
    rows: Rows,
) -> Result<CommitOutcome, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let last_hash = rows.hashes.last().cloned().unwrap_or_default();
    let returned = sqlx::query(INSERT_EVENTS)
        .bind(commit.aggregate_type)
        .bind(commit.aggregate_id)
        .bind(rows.sequences)
        .bind(rows.event_types)
        .bind(rows.event_versions)
        .bind(rows.payloads)
        .bind(rows.metadata)
        .bind(rows.event_ids)
        .bind(rows.recorded_at)
        .bind(rows.prev_hashes)
        .bind(rows.hashes)
        .fetch_all(executor)
        .await
        .map_err(db_error)?;
    let mut last: Option<(i64, Position)> = None;
    for row in &returned {
        let sequence: i64 = row.try_get("sequence").map_err(db_error)?;
        let transaction_id: String = row.try_get("transaction_id").map_err(db_error)?;
        let position = Position {
            transaction_id: transaction_id
                .parse()
                .map_err(|_| StoreError::Other(anyhow::anyhow!("bad xid8 {transaction_id}")))?,
            id: row.try_get("id").map_err(db_error)?,
        };
        if last.is_none_or(|(s, _)| sequence > s) {
            last = Some((sequence, position));
        }
    }
    let (version, position) =
        last.ok_or_else(|| StoreError::Other(anyhow::anyhow!("insert returned no rows")))?;
    Ok(CommitOutcome {
        aggregate_id: commit.aggregate_id,
        version,
        position,
        last_hash,
    })
}

/// Appends `commit` inside the caller's transaction, as [`EventStore::commit`] would: for
/// moving a log in (`meetings events copy`) together with the rows that go with it.
pub async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    commit: &Commit,
) -> Result<CommitOutcome, StoreError> {
    let rows = rows(commit)?;
    commit_in(tx, commit, rows).await
}

/// One commit's events, side effects and idempotency record inside `tx`.
async fn commit_in(
    tx: &mut Transaction<'_, Postgres>,
    commit: &Commit,
    rows: Rows,
) -> Result<CommitOutcome, StoreError> {
    let outcome = insert_events(&mut **tx, commit, rows).await?;
    for effect in &commit.side_effects {
        apply_side_effect(tx, effect).await?;
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
             (principal, key, request_hash, status, response, etag, location) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(i16::try_from(key.status).unwrap_or(200))
        .bind(body)
        .bind(format!("\"{}\"", outcome.version))
        .bind(&key.location)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(outcome)
}

async fn apply_side_effect(
    tx: &mut Transaction<'_, Postgres>,
    effect: &SideEffect,
) -> Result<(), StoreError> {
    match effect {
        SideEffect::CreateAccount {
            user_id,
            email_key,
            password_hash,
        } => {
            sqlx::query(
                "INSERT INTO accounts (user_id, email_key, password_hash) VALUES ($1, $2, $3)",
            )
            .bind(user_id)
            .bind(email_key)
            .bind(password_hash)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        }
        SideEffect::SetPassword {
            user_id,
            password_hash,
        } => {
            sqlx::query(
                "UPDATE accounts SET password_hash = $2, updated_at = now() WHERE user_id = $1",
            )
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            revoke_refresh_tokens(tx, *user_id).await?;
            revoke_access(tx, *user_id).await?;
        }
        SideEffect::RevokeAccess { user_id } => revoke_access(tx, *user_id).await?,
        SideEffect::DeactivateAccount { user_id } => {
            sqlx::query(
                "UPDATE accounts SET active = false, updated_at = now() WHERE user_id = $1",
            )
            .bind(user_id)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            revoke_refresh_tokens(tx, *user_id).await?;
            revoke_access(tx, *user_id).await?;
        }
    }
    Ok(())
}

/// Voids every access token issued to the user so far, in every service, once the
/// transaction commits (see `platform::auth::revocation`).
async fn revoke_access(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<(), StoreError> {
    let version: i32 = sqlx::query_scalar(
        "UPDATE accounts SET session_version = session_version + 1, \
            sessions_revoked_at = now() WHERE user_id = $1 RETURNING session_version",
    )
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    crate::auth::revocation::notify(&mut **tx, &Revocation::User { user_id, version })
        .await
        .map_err(db_error)
}

/// A new password or a deactivation ends every session of the user.
async fn revoke_refresh_tokens(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

use crate::auth::revocation::Revocation;

#[async_trait]
impl EventStore for PgEventStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn load_after(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_sequence: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
             ORDER BY sequence"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(stored_event).collect()
    }

    async fn load_page(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_sequence: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
             ORDER BY sequence LIMIT $4"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(stored_event).collect()
    }

    async fn load_since(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        since: Position,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // Sequence order is commit order within an aggregate; the first event past `since`
        // is found by walking the aggregate's index, not by reading rows into memory.
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 \
               AND (transaction_id, id) > ($3::text::xid8, $4) \
             ORDER BY sequence LIMIT $5"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(since.transaction_id.to_string())
        .bind(since.id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(stored_event).collect()
    }

    async fn snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, serde_json::Value, Vec<u8>)> = sqlx::query_as(
            "SELECT sequence, state, last_hash FROM snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.map(|(sequence, state, last_hash)| Snapshot {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id,
            sequence,
            state,
            last_hash,
        }))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, state, last_hash) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                SET sequence = EXCLUDED.sequence, state = EXCLUDED.state, \
                    last_hash = EXCLUDED.last_hash, taken_at = now() \
                WHERE snapshots.sequence < EXCLUDED.sequence",
        )
        .bind(&snapshot.aggregate_type)
        .bind(snapshot.aggregate_id)
        .bind(snapshot.sequence)
        .bind(&snapshot.state)
        .bind(&snapshot.last_hash)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(aggregate_type = commit.aggregate_type, aggregate_id = %commit.aggregate_id, events = commit.events.len()), err(level = "debug"))]
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        if commit.events.is_empty() {
            return Err(StoreError::Other(anyhow::anyhow!("BUG: empty commit")));
        }
        let rows = rows(&commit)?;
        if commit.side_effects.is_empty() && commit.idempotency.is_none() {
            // One statement is one implicit transaction: a single round trip on the hot path.
            return insert_events(&self.pool, &commit, rows).await;
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let outcome = commit_in(&mut tx, &commit, rows).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn commit_together(
        &self,
        commits: Vec<Commit>,
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        if commits.iter().any(|c| c.events.is_empty()) {
            return Err(StoreError::Other(anyhow::anyhow!("BUG: empty commit")));
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut outcomes = Vec::with_capacity(commits.len());
        for commit in &commits {
            let rows = rows(commit)?;
            outcomes.push(commit_in(&mut tx, commit, rows).await?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(outcomes)
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after = after.unwrap_or(Position::START);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, id) > ($1::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY events.transaction_id, events.id LIMIT $3"
        ))
        .bind(after.transaction_id.to_string())
        .bind(after.id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(stored_event).collect()
    }

    async fn idempotent_response(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT request_hash, status, response, etag, location FROM idempotency_keys \
             WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| {
            Ok(IdempotentResponse {
                request_hash: row.try_get("request_hash").map_err(db_error)?,
                status: u16::try_from(row.try_get::<i16, _>("status").map_err(db_error)?)
                    .unwrap_or(200),
                body: row.try_get("response").map_err(db_error)?,
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
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(retention.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(deleted.rows_affected())
    }

    async fn account_by_email(&self, email_key: &str) -> Result<Option<Account>, StoreError> {
        sqlx::query("SELECT user_id, password_hash, active, session_version FROM accounts WHERE email_key = $1")
            .bind(email_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(|row| account(&row))
            .transpose()
    }

    async fn account(&self, user_id: Uuid) -> Result<Option<Account>, StoreError> {
        sqlx::query("SELECT user_id, password_hash, active, session_version FROM accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(|row| account(&row))
            .transpose()
    }

    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        sqlx::query_scalar(
            "SELECT u FROM unnest($1::uuid[]) AS u \
             WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.user_id = u AND a.active)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn ready(&self) -> Result<(), String> {
        crate::db::ready(&self.pool).await
    }
}

fn account(row: &PgRow) -> Result<Account, StoreError> {
    Ok(Account {
        user_id: row.try_get("user_id").map_err(db_error)?,
        password_hash: row.try_get("password_hash").map_err(db_error)?,
        active: row.try_get("active").map_err(db_error)?,
        session_version: row.try_get("session_version").map_err(db_error)?,
    })
}
