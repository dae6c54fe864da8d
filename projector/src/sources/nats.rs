//! The NATS source: an ordered JetStream consumer feeding batches to the projection.
//!
//! The consumer starts after the stream sequence stored with the projection's checkpoint, in
//! the same transaction as the read models, so the position can never run ahead of or lag
//! behind what was applied. Ordered consumers deliver strictly in stream order and recreate
//! themselves after a gap or a server restart; redelivered events are no-ops thanks to the
//! per-aggregate sequences. (Durable consumers with acks were tried first: after a crash
//! their redeliveries come after newer messages, so a projection sees a meeting's third
//! event before its first. See docs/adr/0004-projector-ordered-consumer.md.)

use std::sync::Arc;

use async_nats::jetstream;
use cqrs_es::persist::EventUpcaster;
use futures::{FutureExt, StreamExt};
use platform::bus::{EventEnvelope, StreamName};
use sqlx::PgPool;

use crate::error::ProjectionError;
use crate::projection;
use crate::run::{apply_counted, run_terms, ConsumeError, ProjectorMetrics};

/// The projector fed by the stream (`projector` binary, `meetings serve` with NATS).
pub struct Projector {
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub stream: StreamName,
    pub batch: usize,
    pub upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    pub metrics: ProjectorMetrics,
}

impl Projector {
    /// Consumes until `shutdown`, or until an event cannot be applied (then `Err`, after
    /// recording the failure for readiness and operators).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        run_terms(shutdown, &self.pool, &self.metrics, || self.consume()).await
    }

    /// One term as the active projector; `Ok` when another one is active.
    async fn consume(&self) -> Result<(), ConsumeError> {
        let Some(mut leader) = projection::lead(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!("take the projector lock: {e}"))?
        else {
            tracing::debug!("another projector of this database is active; standing by");
            return Ok(());
        };
        let mut stream = platform::bus::ensure_stream(&self.js, &self.stream).await?;
        let applied = self.resume_after(&mut stream).await?;
        let mut messages = platform::bus::ordered_messages(
            &stream,
            applied,
            jetstream::consumer::DeliverPolicy::All,
        )
        .await?;
        loop {
            let Some(first) = messages.next().await else {
                return Err(anyhow::anyhow!("message stream ended").into());
            };
            let mut batch = vec![first.map_err(|e| anyhow::anyhow!("pull: {e}"))?];
            // Take whatever is already here, without waiting: low latency when quiet, large
            // batches under load.
            while batch.len() < self.batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(e))) => return Err(anyhow::anyhow!("pull: {e}").into()),
                    Some(None) | None => break,
                }
            }
            let (envelopes, stream_sequence) = envelopes(&batch)?;
            apply_counted(
                &mut leader,
                &envelopes,
                Some(stream_sequence),
                &self.upcasters,
                &self.metrics,
            )
            .await
            .map_err(ConsumeError::from)?;
        }
    }

    /// The stream sequence after which to resume (`None`: from the start). Continuing from
    /// the checkpoint is only sound if the stream still holds what follows it; otherwise
    /// events would be skipped silently, so the projection stops instead.
    async fn resume_after(
        &self,
        stream: &mut jetstream::stream::Stream,
    ) -> Result<Option<u64>, ConsumeError> {
        let applied = projection::stream_sequence(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!("read checkpoint: {e}"))?;
        let state = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
            .state
            .clone();
        let rebuild = "rebuild from the event store (`meetings projections rebuild`)";
        let inconsistent = |reason: String| {
            Err(ConsumeError::Projection(ProjectionError::Inconsistent(
                reason,
            )))
        };
        match applied {
            Some(applied) if applied > state.last_sequence => inconsistent(format!(
                "the stream ends at sequence {} but the projection applied up to {applied}: \
                 the stream lost events; {rebuild}",
                state.last_sequence
            )),
            Some(applied) if state.messages > 0 && applied + 1 < state.first_sequence => {
                inconsistent(format!(
                    "the stream starts at sequence {} but the projection needs {}: {rebuild}",
                    state.first_sequence,
                    applied + 1
                ))
            }
            // Never built at all (a rebuild from the store leaves a checkpoint position), yet
            // the stream no longer starts at the first event.
            None if state.messages > 0
                && state.first_sequence > 1
                && projection::status(&self.pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("read checkpoint: {e}"))?
                    .0
                    .is_none() =>
            {
                inconsistent(format!(
                    "the stream no longer starts at the first event: {rebuild}"
                ))
            }
            _ => Ok(applied),
        }
    }
}

/// The events of `batch` (not empty), and the stream sequence of its last one. A message that
/// is not an event stops the projection.
fn envelopes(batch: &[jetstream::Message]) -> Result<(Vec<EventEnvelope>, u64), ConsumeError> {
    let mut envelopes = Vec::with_capacity(batch.len());
    for message in batch {
        let envelope: EventEnvelope = serde_json::from_slice(&message.payload).map_err(|e| {
            ConsumeError::Projection(ProjectionError::Unapplicable {
                event_type: "?".into(),
                aggregate_type: "?".into(),
                aggregate_id: uuid::Uuid::nil(),
                sequence: 0,
                reason: format!("undecodable message on {}: {e}", message.subject.as_str()),
            })
        })?;
        envelopes.push(envelope);
    }
    let stream_sequence = batch
        .last()
        .expect("BUG: the batch is not empty")
        .info()
        .map_err(|e| anyhow::anyhow!("message info: {e}"))?
        .stream_sequence;
    Ok((envelopes, stream_sequence))
}
