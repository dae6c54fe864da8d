//! The JetStream side: an ordered consumer feeding batches to the projection.
//!
//! The consumer starts after the stream sequence stored with the projection's checkpoint, in
//! the same transaction as the read models, so the position can never run ahead of or lag
//! behind what was applied. Ordered consumers deliver strictly in stream order and recreate
//! themselves after a gap or a server restart; redelivered events are no-ops thanks to the
//! per-aggregate sequences. (Durable consumers with acks were tried first: after a crash
//! their redeliveries come after newer messages, so a projection sees a meeting's third
//! event before its first. See docs/adr/0004-projector-ordered-consumer.md.)

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use cqrs_es::persist::EventUpcaster;
use futures::{FutureExt, StreamExt};
use platform::bus::{EventEnvelope, StreamName};
use platform::metrics::{seconds_histogram, size_histogram};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::{PgConnection, PgPool};

use crate::projection::{self, apply_batch};
use crate::read_models::ProjectionError;

/// Metrics of the projector.
#[derive(Clone)]
pub struct ProjectorMetrics {
    pub applied: Counter,
    pub duplicates: Counter,
    pub batches: Counter,
    /// Time to apply and commit one batch.
    pub batch_seconds: Histogram,
    /// Events per committed batch.
    pub batch_events: Histogram,
    /// 1 while the projection is stopped on an event it cannot apply.
    pub failed: Gauge,
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        Self {
            applied: Counter::default(),
            duplicates: Counter::default(),
            batches: Counter::default(),
            batch_seconds: seconds_histogram(),
            batch_events: size_histogram(),
            failed: Gauge::default(),
        }
    }
}

impl ProjectorMetrics {
    pub fn register(&self, metrics: &platform::metrics::Metrics) {
        metrics.register(|registry| {
            registry.register(
                "projector_events_applied",
                "Events applied to the read models",
                self.applied.clone(),
            );
            registry.register(
                "projector_events_duplicate",
                "Redelivered events recognized and skipped",
                self.duplicates.clone(),
            );
            registry.register(
                "projector_batches",
                "Committed batches",
                self.batches.clone(),
            );
            registry.register(
                "projector_batch_seconds",
                "Time to apply and commit one batch",
                self.batch_seconds.clone(),
            );
            registry.register(
                "projector_batch_events",
                "Events per committed batch",
                self.batch_events.clone(),
            );
            registry.register(
                "projector_failed",
                "1 while the projection is stopped on an event it cannot apply",
                self.failed.clone(),
            );
        });
    }
}

/// Applies a batch on the leader connection and counts it. A database error is returned
/// like any other: the caller ends its term (the connection, and with it the lock, may be
/// gone) and resumes from the checkpoint, so the batch is neither lost nor skipped.
pub(crate) async fn apply_counted(
    conn: &mut PgConnection,
    envelopes: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
    metrics: &ProjectorMetrics,
) -> Result<projection::BatchOutcome, ProjectionError> {
    let started = std::time::Instant::now();
    let outcome = apply_batch(conn, envelopes, stream_sequence, upcasters).await?;
    metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_events.observe(envelopes.len() as f64);
    metrics.applied.inc_by(outcome.applied as u64);
    metrics.duplicates.inc_by(outcome.duplicates as u64);
    metrics.batches.inc();
    Ok(outcome)
}

/// Stops the projection loudly: error log, metric, and the failure recorded for readiness.
pub(crate) async fn stop(
    pool: &PgPool,
    metrics: &ProjectorMetrics,
    error: ProjectionError,
) -> anyhow::Error {
    let failure = error.to_string();
    tracing::error!(%failure, "projection stopped: an event cannot be applied");
    metrics.failed.set(1);
    projection::mark_failed(pool, &failure).await.ok();
    anyhow::anyhow!(failure)
}

/// Runs `term` (one term as the active projector) again and again until `shutdown`: after
/// a transient failure (or while another projector is active, `Ok`) it waits 500 ms and
/// starts a new term from the checkpoint; an event that cannot be applied stops the
/// projection loudly ([`stop`]).
pub(crate) async fn run_terms<Term>(
    shutdown: impl std::future::Future<Output = ()>,
    pool: &PgPool,
    metrics: &ProjectorMetrics,
    mut term: impl FnMut() -> Term,
) -> anyhow::Result<()>
where
    Term: std::future::Future<Output = Result<(), ConsumeError>>,
{
    tokio::pin!(shutdown);
    loop {
        let outcome = tokio::select! {
            () = &mut shutdown => return Ok(()),
            outcome = term() => outcome,
        };
        match outcome {
            Err(ConsumeError::Projection(error)) => {
                return Err(stop(pool, metrics, error).await);
            }
            Err(ConsumeError::Transient(error)) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "projector interrupted, resuming"
                );
            }
            Ok(()) => {}
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

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

    async fn consume(&self) -> Result<(), ConsumeError> {
        let Some(mut leader) = projection::lead(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!("take the projector lock: {e}"))?
        else {
            tracing::debug!("another projector of this database is active; standing by");
            return Ok(());
        };
        let mut stream = platform::bus::ensure_stream(&self.js, &self.stream).await?;
        let applied = projection::stream_sequence(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!("read checkpoint: {e}"))?;
        let state = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
            .state
            .clone();
        // Continuing from the checkpoint is only sound if the stream still holds what follows
        // it; otherwise events would be skipped silently.
        match applied {
            Some(applied) if applied > state.last_sequence => {
                return Err(ConsumeError::Projection(ProjectionError::Inconsistent(
                    format!(
                    "the stream ends at sequence {} but the projection applied up to {applied}: \
                     the stream lost events; rebuild from the event store \
                     (`meetings projections rebuild`)",
                    state.last_sequence
                ),
                )));
            }
            Some(applied) if state.messages > 0 && applied + 1 < state.first_sequence => {
                return Err(ConsumeError::Projection(ProjectionError::Inconsistent(
                    format!(
                    "the stream starts at sequence {} but the projection needs {}: rebuild from \
                     the event store (`meetings projections rebuild`)",
                    state.first_sequence,
                    applied + 1
                ),
                )));
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
                return Err(ConsumeError::Projection(ProjectionError::Inconsistent(
                    "the stream no longer starts at the first event: rebuild from the event \
                     store (`meetings projections rebuild`)"
                        .into(),
                )));
            }
            _ => {}
        }
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
            let mut envelopes = Vec::with_capacity(batch.len());
            for message in &batch {
                let envelope: EventEnvelope =
                    serde_json::from_slice(&message.payload).map_err(|e| {
                        ConsumeError::Projection(ProjectionError::Unapplicable {
                            event_type: "?".into(),
                            aggregate_type: "?".into(),
                            aggregate_id: uuid::Uuid::nil(),
                            sequence: 0,
                            reason: format!(
                                "undecodable message on {}: {e}",
                                message.subject.as_str()
                            ),
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
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    #[error(transparent)]
    Projection(ProjectionError),
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl From<ProjectionError> for ConsumeError {
    /// An unavailable database ends the term (resumed from the checkpoint); anything else
    /// stops the projection.
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Database(error) => {
                ConsumeError::Transient(anyhow::anyhow!("read-model database: {error}"))
            }
            other => ConsumeError::Projection(other),
        }
    }
}
