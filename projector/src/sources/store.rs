//! The in-process alternative to the bus: follow the event store directly in global order.
//!
//! `meetings serve` without `MEETINGS_NATS_URL` uses it, so one process keeps its read models
//! current with no NATS at all. It reads exactly like the relay (a
//! [`StoreTail`], never past a running transaction, so a late commit is never skipped) and
//! applies exactly like the NATS consumer.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::store::tail::{StoreTail, IDLE_POLL};
use platform::store::{EventStore, Position};
use sqlx::PgPool;

use crate::error::ProjectionError;
use crate::projection;
use crate::run::{apply_counted, run_terms, ConsumeError, ProjectorMetrics};

/// Events read from the store per batch.
const BATCH: i64 = 500;

/// The projector fed by the event store (`meetings serve` without NATS).
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
            idle_poll: IDLE_POLL,
        }
    }

    /// Applies events until `shutdown`, or until one cannot be applied (then `Err`, after
    /// recording the failure for readiness). Stands by while another projector of the
    /// database is active; resumes from the checkpoint after a database failure.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        run_terms(shutdown, &self.pool, &self.metrics, || self.follow()).await
    }

    /// One term as the active projector; `Ok` when another one is active.
    async fn follow(&self) -> Result<(), ConsumeError> {
        let Some(mut leader) = projection::lead(&self.pool)
            .await
            .map_err(ProjectionError::from)?
        else {
            return Ok(());
        };
        let after = projection::status(&self.pool)
            .await
            .map_err(ProjectionError::from)?
            .0
            .unwrap_or(Position::START);
        let mut tail = StoreTail::new(self.store.as_ref(), after, BATCH).idle_poll(self.idle_poll);
        loop {
            let events = tail.next().await;
            let envelopes: Vec<EventEnvelope> = events.iter().map(EventEnvelope::from).collect();
            apply_counted(
                &mut leader,
                &envelopes,
                None,
                &self.upcasters,
                &self.metrics,
            )
            .await?;
        }
    }
}
