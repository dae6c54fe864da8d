//! Running the projection: terms as the active projector, each applying batches from one
//! source (the NATS stream or the event store), with metrics; an event that cannot be
//! applied stops the projection loudly.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::AtomicU64;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::leader::RETRY_DELAY;
use platform::metrics::{seconds_histogram, size_histogram};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::PgPool;

use crate::apply::{apply_isolating, BatchOutcome};
use crate::error::ProjectionError;
use crate::projection;

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
    /// Age of the last event of the last committed batch when it committed: how far the read
    /// models trailed the event store then.
    pub lag_seconds: Gauge<f64, AtomicU64>,
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
            lag_seconds: Gauge::default(),
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
            registry.register(
                "projector_lag_seconds",
                "Age of the newest event of the last committed batch when it committed (event recorded to read models updated)",
                self.lag_seconds.clone(),
            );
        });
    }
}

/// Applies a batch on the leader connection and counts it. A database error is returned
/// like any other: the caller ends its term (the connection, and with it the lock, may be
/// gone) and resumes from the checkpoint, so the batch is neither lost nor skipped.
pub(crate) async fn apply_counted<C: crate::store::ReadModelConnection>(
    conn: &mut C,
    envelopes: &[EventEnvelope],
    stream_sequence: Option<u64>,
    upcasters: &[Box<dyn EventUpcaster>],
    metrics: &ProjectorMetrics,
) -> Result<BatchOutcome, ProjectionError> {
    let started = std::time::Instant::now();
    let outcome = apply_isolating(conn, envelopes, stream_sequence, upcasters).await?;
    metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_events.observe(envelopes.len() as f64);
    metrics.applied.inc_by(outcome.applied as u64);
    metrics.duplicates.inc_by(outcome.duplicates as u64);
    metrics.batches.inc();
    if let Some(newest) = envelopes.last() {
        let age = (chrono::Utc::now() - newest.recorded_at).to_std();
        metrics
            .lag_seconds
            .set(age.map_or(0.0, |age| age.as_secs_f64()));
    }
    for envelope in envelopes {
        envelope
            .metadata
            .log_stage("projected", &envelope.event_type, envelope.position);
    }
    Ok(outcome)
}

/// Stops the projection loudly: error log, metric, and the failure recorded for readiness.
pub(crate) async fn stop<Recorded: Future<Output = ()>>(
    metrics: &ProjectorMetrics,
    error: ProjectionError,
    record: impl FnOnce(String) -> Recorded,
) -> anyhow::Error {
    let failure = error.to_string();
    tracing::error!(%failure, "projection stopped: an event cannot be applied");
    metrics.failed.set(1);
    record(failure.clone()).await;
    anyhow::anyhow!(failure)
}

/// Runs `term` (one term as the active projector) again and again until `shutdown`
/// ([`platform::leader::run_terms`]): after a transient failure (or while another projector
/// is active, `Ok`) it starts a new term from the checkpoint after [`RETRY_DELAY`]; an event
/// that cannot be applied stops the projection loudly ([`stop`]).
pub(crate) async fn run_terms<Term>(
    shutdown: impl Future<Output = ()>,
    pool: &PgPool,
    metrics: &ProjectorMetrics,
    term: impl FnMut() -> Term,
) -> anyhow::Result<()>
where
    Term: Future<Output = Result<(), ConsumeError>>,
{
    let record = |failure: String| async move {
        projection::mark_failed(pool, &failure).await.ok();
    };
    run_terms_recording(shutdown, metrics, record, term).await
}

/// [`run_terms`], recording a stop with `record` (the failure, for readiness).
pub(crate) async fn run_terms_recording<Term, Recorded>(
    shutdown: impl Future<Output = ()>,
    metrics: &ProjectorMetrics,
    record: impl FnOnce(String) -> Recorded,
    mut term: impl FnMut() -> Term,
) -> anyhow::Result<()>
where
    Term: Future<Output = Result<(), ConsumeError>>,
    Recorded: Future<Output = ()>,
{
    let stopped = platform::leader::run_terms(shutdown, RETRY_DELAY, || {
        let term = term();
        async move {
            match term.await {
                Err(ConsumeError::Projection(error)) => ControlFlow::Break(error),
                Err(ConsumeError::Transient(error)) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "projector interrupted, resuming"
                    );
                    ControlFlow::Continue(())
                }
                Ok(()) => ControlFlow::Continue(()),
            }
        }
    })
    .await;
    match stopped {
        Some(error) => Err(stop(metrics, error, record).await),
        None => Ok(()),
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
