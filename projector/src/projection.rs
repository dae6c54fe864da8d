//! Applying a batch of events effectively once: the read-model changes, the per-aggregate
//! sequences and the checkpoint commit in one transaction, and a notification tells waiting
//! queries (`X-Min-Position`) how far the read models are.

use std::collections::HashMap;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::Position;
use sqlx::PgPool;

use crate::read_models::{self, ProjectionError};

/// The one projection this crate maintains (all `rm_*` tables).
pub const PROJECTION: &str = platform::projection::READ_MODELS;

/// Channel on which the new checkpoint position is announced after each commit.
pub const NOTIFY_CHANNEL: &str = platform::projection::NOTIFY_CHANNEL;

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: usize,
    /// Redeliveries recognized by their sequence and skipped as already applied.
    pub duplicates: usize,
    pub checkpoint: Option<Position>,
}

/// Applies `events` (in stream order) in one transaction. `stream_sequence` is the stream
/// sequence of the last of them, when they came from the stream; the consumer resumes after it.
pub async fn apply_batch(
    pool: &PgPool,
    events: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<BatchOutcome, ProjectionError> {
    let mut outcome = BatchOutcome::default();
    if events.is_empty() {
        return Ok(outcome);
    }
    let mut tx = pool.begin().await?;
    // Read models are derived data and the checkpoint commits with them: if PostgreSQL
    // crashes and loses the last batches, they are lost together and applied again from the
    // stream. So the projector need not wait for each commit to reach the disk.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    // The last applied sequence of every aggregate in the batch, in one statement, locked
    // against a concurrent projector of the same database.
    let keys: (Vec<String>, Vec<uuid::Uuid>) = events
        .iter()
        .map(|e| (e.aggregate_type.clone(), e.aggregate_id))
        .unzip();
    let rows: Vec<(String, uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, last_sequence FROM projection_sequences \
         WHERE projection = $1 AND (aggregate_type, aggregate_id) IN \
               (SELECT * FROM unnest($2::text[], $3::uuid[])) \
         FOR UPDATE",
    )
    .bind(PROJECTION)
    .bind(&keys.0)
    .bind(&keys.1)
    .fetch_all(&mut *tx)
    .await?;
    let mut last: HashMap<(String, uuid::Uuid), i64> = rows
        .into_iter()
        .map(|(t, id, seq)| ((t, id), seq))
        .collect();
    let mut advanced: HashMap<(String, uuid::Uuid), i64> = HashMap::new();
    let mut fresh: Vec<&EventEnvelope> = Vec::with_capacity(events.len());
    for event in events {
        let key = (event.aggregate_type.clone(), event.aggregate_id);
        let applied = last.get(&key).copied().unwrap_or(0);
        if event.sequence <= applied {
            outcome.duplicates += 1;
            continue;
        }
        if event.sequence != applied + 1 {
            return Err(ProjectionError::Unapplicable {
                event_type: event.event_type.clone(),
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id,
                sequence: event.sequence,
                reason: format!("gap: the last applied sequence is {applied}"),
            });
        }
        last.insert(key.clone(), event.sequence);
        advanced.insert(key, event.sequence);
        fresh.push(event);
    }
    if !fresh.is_empty() {
        // Set-wise: load what the batch touches, fold the events in memory, write back.
        let decoded = fresh
            .iter()
            .map(|event| read_models::decode(event, upcasters))
            .collect::<Result<Vec<_>, _>>()?;
        let mut fold = read_models::load(&mut tx, &read_models::Touched::of(&fresh)).await?;
        for (event, decoded) in fresh.iter().zip(&decoded) {
            fold.apply(event, decoded)?;
        }
        read_models::write(&mut tx, &fold.into_writes()).await?;
        outcome.applied = fresh.len();
    }
    if !advanced.is_empty() {
        let mut types = Vec::with_capacity(advanced.len());
        let mut ids = Vec::with_capacity(advanced.len());
        let mut sequences = Vec::with_capacity(advanced.len());
        for ((aggregate_type, aggregate_id), sequence) in advanced {
            types.push(aggregate_type);
            ids.push(aggregate_id);
            sequences.push(sequence);
        }
        sqlx::query(
            "INSERT INTO projection_sequences (projection, aggregate_type, aggregate_id, \
             last_sequence) SELECT $1, t, id, seq FROM unnest($2::text[], $3::uuid[], $4::bigint[]) \
             AS a(t, id, seq) \
             ON CONFLICT (projection, aggregate_type, aggregate_id) \
             DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
        )
        .bind(PROJECTION)
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .execute(&mut *tx)
        .await?;
    }
    let newest = events
        .iter()
        .map(|e| e.position)
        .max()
        .expect("BUG: the batch is not empty");
    // GREATEST: a batch of pure redeliveries never moves the checkpoint backwards.
    let checkpoint: String = sqlx::query_scalar(
        "INSERT INTO projection_checkpoints (projection, position, stream_sequence) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (projection) DO UPDATE \
            SET position = GREATEST(projection_checkpoints.position, EXCLUDED.position), \
                stream_sequence = COALESCE(EXCLUDED.stream_sequence, \
                                           projection_checkpoints.stream_sequence), \
                updated_at = now() \
         RETURNING position",
    )
    .bind(PROJECTION)
    .bind(newest.to_string())
    .bind(stream_sequence.map(|s| i64::try_from(s).unwrap_or(i64::MAX)))
    .fetch_one(&mut *tx)
    .await?;
    // Delivered at commit, so a listener never hears of a position it cannot read yet.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(&checkpoint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    outcome.checkpoint = checkpoint.parse().ok();
    Ok(outcome)
}

/// Records that the projection stopped, so readiness fails until an operator acts.
pub async fn mark_failed(pool: &PgPool, failure: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position, failed_at, failure) \
         VALUES ($1, $2, now(), $3) \
         ON CONFLICT (projection) DO UPDATE SET failed_at = now(), failure = EXCLUDED.failure",
    )
    .bind(PROJECTION)
    .bind(Position::START.to_string())
    .bind(failure)
    .execute(pool)
    .await?;
    Ok(())
}

/// The stream sequence after which the consumer resumes (`None`: from the start).
pub async fn stream_sequence(pool: &PgPool) -> Result<Option<u64>, sqlx::Error> {
    let sequence: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT stream_sequence FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(PROJECTION)
    .fetch_optional(pool)
    .await?;
    Ok(sequence.flatten().and_then(|s| u64::try_from(s).ok()))
}

/// The stored checkpoint and failure, if any.
pub async fn status(pool: &PgPool) -> Result<(Option<Position>, Option<String>), sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT position, failure FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(PROJECTION)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((position, failure)) => (position.parse().ok(), failure),
        None => (None, None),
    })
}

/// Empties the read models and this projection's bookkeeping (before a rebuild).
pub async fn reset(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "TRUNCATE rm_users, rm_meetings, rm_meeting_attendees, rm_agenda, rm_chat_messages, \
         rm_changes",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_sequences WHERE projection = $1")
        .bind(PROJECTION)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
        .bind(PROJECTION)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
