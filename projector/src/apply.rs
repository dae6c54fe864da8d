//! Applying a batch of events effectively once: load what it touches, skip redeliveries, fold
//! the rest in stream order, and write the rows, the per-aggregate sequences and the
//! checkpoint atomically: in one statement on PostgreSQL, in one transaction on SQLite (the
//! backend is the [`ReadModelConnection`]). On PostgreSQL a notification at commit tells
//! waiting queries (`X-Min-Position`) how far the read models are.

use std::collections::HashMap;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::Position;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::fold::{decode, Decoded, Touched};
use crate::sql::{Batch, Bookkeeping};
use crate::store::ReadModelConnection;

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

/// Applies `events` (in stream order) on the connection of `projection::lead`, atomically,
/// in two round trips: one statement loads the per-aggregate sequences and the rows the batch
/// touches, the events are de-duplicated and folded in memory, and one statement writes the
/// rows, the sequences and the checkpoint (`sql::write`). `stream_sequence` is the
/// stream sequence of the last event, when they came from the stream; the consumer resumes
/// after it.
pub async fn apply_batch<C: ReadModelConnection>(
    conn: &mut C,
    events: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<BatchOutcome, ProjectionError> {
    apply_batch_announcing(conn, events, stream_sequence, upcasters, NOTIFY_CHANNEL).await
}

/// [`apply_batch`], announcing the checkpoint on `channel` (a replay builds shadow tables
/// nobody waits on yet, so it announces elsewhere).
pub async fn apply_batch_announcing<C: ReadModelConnection>(
    conn: &mut C,
    events: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
    channel: &'static str,
) -> Result<BatchOutcome, ProjectionError> {
    if events.is_empty() {
        return Ok(BatchOutcome::default());
    }
    // Decoded up front: the load needs the people the events name. A decoding error only
    // counts when its event is applied (a redelivered duplicate is skipped as before).
    let decoded: Vec<Result<Decoded, ProjectionError>> = events
        .iter()
        .map(|event| decode(event, upcasters))
        .collect();
    let touched = Touched::of(events, &decoded);
    if touched.renamed.is_empty() && C::ATOMIC_WRITE {
        return fold_and_write(conn, events, decoded, &touched, stream_sequence, channel).await;
    }
    // A transaction: the write is several statements (SQLite), or a rename re-renders the
    // documents of every meeting of the renamed users — possibly very many, so in chunks,
    // each rendered from the rows the batch just wrote, all in the batch's transaction, so
    // that no reader and no crash ever sees half of them.
    let mut tx = conn.begin().await?;
    let outcome = fold_and_write(
        &mut *tx,
        events,
        decoded,
        &touched,
        stream_sequence,
        channel,
    )
    .await?;
    let mut after = Uuid::nil();
    loop {
        let chunk = tx
            .meetings_of(&touched.renamed, after, RENDER_CHUNK)
            .await?;
        let Some(&last) = chunk.last() else { break };
        tx.refresh_documents(&chunk).await?;
        after = last;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Meetings whose documents one statement of a rename re-renders.
pub const RENDER_CHUNK: i64 = 500;

/// Loads what the batch touches, folds the events in and writes the rows, the documents of
/// the meetings it changed, the sequences and the checkpoint in one statement.
async fn fold_and_write<C: ReadModelConnection>(
    conn: &mut C,
    events: &[EventEnvelope],
    decoded: Vec<Result<Decoded, ProjectionError>>,
    touched: &Touched,
    stream_sequence: Option<u64>,
    channel: &'static str,
) -> Result<BatchOutcome, ProjectionError> {
    let mut outcome = BatchOutcome::default();
    let (mut last, mut fold) = conn.load(PROJECTION, events, touched).await?;
    let mut advanced: HashMap<(String, Uuid), i64> = HashMap::new();
    for (event, decoded) in events.iter().zip(decoded) {
        let key = (event.aggregate_type.clone(), event.aggregate_id);
        let applied = last.get(&key).copied().unwrap_or(0);
        if event.sequence <= applied {
            outcome.duplicates += 1;
            continue;
        }
        if event.sequence != applied + 1 {
            return Err(ProjectionError::unapplicable(
                event,
                format!("gap: the last applied sequence is {applied}"),
            ));
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
    let bookkeeping = Bookkeeping {
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
        channel,
    };
    let batch = Batch {
        writes: fold.into_writes(),
        bookkeeping,
    };
    let checkpoint = conn.write(&batch).await?;
    outcome.checkpoint = checkpoint.parse().ok();
    Ok(outcome)
}

/// [`apply_batch`], naming the event when the database refuses a batch: the batch is applied
/// again one event at a time, so the events before the culprit are applied and the
/// projection stops on exactly the one that cannot be (its type, aggregate and sequence in
/// the recorded failure), which an operator can then look up, fix and resume after.
pub async fn apply_isolating<C: ReadModelConnection>(
    conn: &mut C,
    events: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<BatchOutcome, ProjectionError> {
    apply_isolating_announcing(conn, events, stream_sequence, upcasters, NOTIFY_CHANNEL).await
}

/// [`apply_isolating`], announcing on `channel`.
pub async fn apply_isolating_announcing<C: ReadModelConnection>(
    conn: &mut C,
    events: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
    channel: &'static str,
) -> Result<BatchOutcome, ProjectionError> {
    let refused = |event: &EventEnvelope, error: sqlx::Error| {
        ProjectionError::unapplicable(event, format!("the read models refused it: {error}"))
    };
    match apply_batch_announcing(conn, events, stream_sequence, upcasters, channel).await {
        Err(ProjectionError::Rejected(_)) if events.len() > 1 => {}
        Err(ProjectionError::Rejected(error)) => return Err(refused(&events[0], error)),
        other => return other,
    }
    let mut outcome = BatchOutcome::default();
    for (i, event) in events.iter().enumerate() {
        // Only the last event moves the stream checkpoint: resuming earlier just redelivers
        // events the sequences recognise as applied.
        let sequence = stream_sequence.filter(|_| i + 1 == events.len());
        let single = apply_batch_announcing(
            conn,
            std::slice::from_ref(event),
            sequence,
            upcasters,
            channel,
        )
        .await
        .map_err(|error| match error {
            ProjectionError::Rejected(error) => refused(event, error),
            other => other,
        })?;
        outcome.applied += single.applied;
        outcome.duplicates += single.duplicates;
        outcome.checkpoint = single.checkpoint.or(outcome.checkpoint);
    }
    Ok(outcome)
}
