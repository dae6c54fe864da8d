//! The in-process alternative to the bus: follow the event store directly in global order.
//!
//! `meetings serve` without `MEETINGS_NATS_URL` uses it, so one process keeps its read models
//! current with no NATS at all. It reads exactly like the relay (below the xmin horizon, so a
//! late commit is never skipped) and applies exactly like the NATS consumer.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::{EventStore, Position};
use sqlx::PgPool;

use crate::consumer::ProjectorMetrics;
use crate::projection::{self, apply_batch};
use crate::read_models::ProjectionError;

pub struct StoreFollower {
    pub store: Arc<dyn EventStore>,
    pub pool: PgPool,
    pub upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    pub metrics: ProjectorMetrics,
    /// Pause when caught up.
    pub idle_poll: Duration,
}

impl StoreFollower {
    pub fn new(
        store: Arc<dyn EventStore>,
        pool: PgPool,
        metrics: &platform::metrics::Metrics,
    ) -> Self {
        let projector_metrics = ProjectorMetrics::default();
        projector_metrics.register(metrics);
        Self {
            store,
            pool,
            upcasters: Arc::new(domain::upcasters::upcasters()),
            metrics: projector_metrics,
            idle_poll: Duration::from_millis(5),
        }
    }

    /// Applies events until `shutdown`, or until one cannot be applied (then `Err`, after
    /// recording the failure for readiness).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut after = projection::status(&self.pool)
            .await?
            .0
            .unwrap_or(Position::START);
        loop {
            let events = tokio::select! {
                () = &mut shutdown => return Ok(()),
                events = self.store.read_all(Some(after), 500) => events,
            };
            let events = match events {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the event store; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let Some(last) = events.last() else {
                tokio::time::sleep(self.idle_poll).await;
                continue;
            };
            let next = last.position;
            let envelopes: Vec<EventEnvelope> = events.iter().map(EventEnvelope::from).collect();
            match apply_batch(&self.pool, &envelopes, None, &self.upcasters).await {
                Ok(outcome) => {
                    self.metrics.applied.inc_by(outcome.applied as u64);
                    self.metrics.duplicates.inc_by(outcome.duplicates as u64);
                    self.metrics.batches.inc();
                    after = next;
                }
                Err(ProjectionError::Database(error)) => {
                    tracing::warn!(%error, "read-model database failed; retrying the batch");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => {
                    let failure = error.to_string();
                    tracing::error!(%failure, "projection stopped: an event cannot be applied");
                    self.metrics.failed.set(1);
                    projection::mark_failed(&self.pool, &failure).await.ok();
                    return Err(anyhow::anyhow!(failure));
                }
            }
        }
    }
}
