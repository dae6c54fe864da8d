//! Applying a batch of events effectively once: the read-model changes, the per-aggregate
//! sequences and the checkpoint commit in one statement (so atomically), and a notification
//! tells waiting queries (`X-Min-Position`) how far the read models are. One projector per
//! database is active at a time ([`lead`]).

use std::collections::HashMap;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::Position;
use sqlx::{Connection, PgConnection, PgPool};

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

/// Takes the projection's single-active lock on a connection of its own and answers it, or
/// `None` while another projector (or a rebuild) of this database holds it. The lock is a
/// session advisory lock: it lasts as long as the connection, which is detached from the
/// pool so that dropping it (a crash, a killed task) closes it and frees the lock.
///
/// Batches are applied on this connection only, so no two projectors ever interleave their
/// read-modify-write of the read models, and a projector that lost its connection cannot
/// write without the lock.
pub async fn lead(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut connection = pool.acquire().await?.detach();
    let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(format!("meetings-projector:{PROJECTION}"))
        .fetch_one(&mut connection)
        .await?;
    if acquired {
        // A database migrated from before meeting documents existed has meetings without
        // one; complete them before serving as the projector (cheap when none is missing),
        // with the planner's full choice: a backfill does read whole tables.
        let rendered = crate::documents::backfill(&mut connection).await?;
        if rendered > 0 {
            tracing::info!(rendered, "rendered missing meeting documents");
        }
        // Every statement of the projector looks rows up by key. Their plans are made once
        // per connection (generic, cached), possibly while the tables are still small, and
        // a plan made for a small table — scan it whole, hash it — stays in use as it grows:
        // a batch's load went from 1 to 15 ms within a minute of `bench pipeline-lag`. So
        // on this connection the planner may not scan a table or hash-join it at all.
        sqlx::query(
            "SELECT set_config('enable_seqscan', 'off', false), \
                    set_config('enable_hashjoin', 'off', false), \
                    set_config('enable_mergejoin', 'off', false)",
        )
        .execute(&mut connection)
        .await?;
        Ok(Some(connection))
    } else {
        connection.close().await.ok();
        Ok(None)
    }
}

/// Applies `events` (in stream order) on the connection of [`lead`], atomically, in two
/// round trips: one statement loads the per-aggregate sequences and the rows the batch
/// touches, the events are de-duplicated and folded in memory, and one statement writes the
/// rows, the sequences and the checkpoint (`read_models::write`). `stream_sequence` is the
/// stream sequence of the last event, when they came from the stream; the consumer resumes
/// after it.
pub async fn apply_batch(
    conn: &mut PgConnection,
    events: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<BatchOutcome, ProjectionError> {
    let mut outcome = BatchOutcome::default();
    if events.is_empty() {
        return Ok(outcome);
    }
    // Decoded up front: the load needs the people the events name. A decoding error only
    // counts when its event is applied (a redelivered duplicate is skipped as before).
    let decoded: Vec<Result<read_models::Decoded, ProjectionError>> = events
        .iter()
        .map(|event| read_models::decode(event, upcasters))
        .collect();
    let touched = read_models::Touched::of(events, &decoded);
    let (mut last, mut fold) = read_models::load(&mut *conn, PROJECTION, events, &touched).await?;
    let mut advanced: HashMap<(String, uuid::Uuid), i64> = HashMap::new();
    for (event, decoded) in events.iter().zip(decoded) {
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
        let decoded = decoded?;
        fold.apply(event, &decoded)?;
        last.insert(key.clone(), event.sequence);
        advanced.insert(key, event.sequence);
        outcome.applied += 1;
    }
    let newest = events
        .iter()
        .map(|e| e.position)
        .max()
        .expect("BUG: the batch is not empty");
    let bookkeeping = read_models::Bookkeeping {
        projection: PROJECTION,
        sequences: advanced
            .into_iter()
            .map(|((aggregate_type, aggregate_id), sequence)| {
                (aggregate_type, aggregate_id, sequence)
            })
            .collect(),
        position: newest.to_string(),
        stream_sequence: stream_sequence.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        // Delivered at commit, so a listener never hears of a position it cannot read yet.
        channel: NOTIFY_CHANNEL,
    };
    let checkpoint = read_models::write(&mut *conn, &fold.into_writes(), &bookkeeping).await?;
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
        "TRUNCATE rm_users, rm_meetings, rm_meeting_attendees, rm_meeting_documents, rm_agenda, \
         rm_chat_messages, rm_changes",
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
