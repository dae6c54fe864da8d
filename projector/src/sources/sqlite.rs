//! The projector of embedded mode: follows the event store (an SQLite file) in global order
//! and keeps the read models of another SQLite file, in this process. After each batch it
//! publishes the new checkpoint on a watch channel, which `X-Min-Position` waits on: what
//! PostgreSQL's `NOTIFY` does between processes.
//!
//! One process owns the data directory (`meetings serve` takes a lock on it), so there is no
//! leader election here: the follower is the only writer of the read models.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::EventUpcaster;
use platform::bus::EventEnvelope;
use platform::db::sqlite::{micros, SqliteFile};
use platform::store::tail::{StoreTail, IDLE_POLL};
use platform::store::{EventStore, Position};
use tokio::sync::watch;

use crate::apply::PROJECTION;
use crate::error::ProjectionError;
use crate::run::{apply_counted, run_terms_recording, ConsumeError, ProjectorMetrics};

/// Events read from the store per batch.
const BATCH: i64 = 500;

/// The projector of embedded mode.
pub struct SqliteFollower {
    pub store: Arc<dyn EventStore>,
    pub read_models: SqliteFile,
    pub upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    pub metrics: ProjectorMetrics,
    /// Where each new checkpoint is published.
    pub checkpoints: watch::Sender<Option<Position>>,
    /// Pause when caught up.
    pub idle_poll: Duration,
}

impl SqliteFollower {
    pub fn new(
        store: Arc<dyn EventStore>,
        read_models: SqliteFile,
        metrics: &platform::metrics::Metrics,
    ) -> Self {
        let projector_metrics = ProjectorMetrics::default();
        projector_metrics.register(metrics);
        Self {
            store,
            read_models,
            upcasters: Arc::new(domain::upcasters::upcasters()),
            metrics: projector_metrics,
            checkpoints: watch::Sender::new(None),
            idle_poll: IDLE_POLL,
        }
    }

    /// The checkpoints as they are published (the query side's `ProjectionWatch`).
    pub fn checkpoints(&self) -> watch::Receiver<Option<Position>> {
        self.checkpoints.subscribe()
    }

    /// Applies events until `shutdown`, or until one cannot be applied (then `Err`, after
    /// recording the failure for readiness); resumes from the checkpoint after an error of
    /// the files.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let writer = self.read_models.writer.clone();
        let record = move |failure: String| async move {
            let recorded = sqlx::query(
                "INSERT INTO projection_checkpoints (projection, position, updated_at, failed_at, \
                                                     failure) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (projection) DO UPDATE SET failed_at = excluded.failed_at, \
                    failure = excluded.failure",
            )
            .bind(PROJECTION)
            .bind(Position::START.to_string())
            .bind(micros(chrono::Utc::now()))
            .bind(micros(chrono::Utc::now()))
            .bind(failure)
            .execute(&writer)
            .await;
            if let Err(error) = recorded {
                tracing::error!(%error, "cannot record the projection's failure");
            }
        };
        run_terms_recording(shutdown, &self.metrics, record, || self.follow()).await
    }

    async fn follow(&self) -> Result<(), ConsumeError> {
        let mut writer = self
            .read_models
            .writer
            .acquire()
            .await
            .map_err(ProjectionError::from)?;
        let checkpoint: Option<String> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = ?")
                .bind(PROJECTION)
                .fetch_optional(&mut *writer)
                .await
                .map_err(ProjectionError::from)?;
        let after = checkpoint
            .and_then(|text| text.parse().ok())
            .unwrap_or(Position::START);
        if after != Position::START {
            self.checkpoints.send_replace(Some(after));
        }
        let mut tail = StoreTail::new(self.store.as_ref(), after, BATCH).idle_poll(self.idle_poll);
        loop {
            let events = tail.next().await;
            let envelopes: Vec<EventEnvelope> = events.iter().map(EventEnvelope::from).collect();
            let outcome = apply_counted(
                &mut *writer,
                &envelopes,
                None,
                &self.upcasters,
                &self.metrics,
            )
            .await?;
            if let Some(checkpoint) = outcome.checkpoint {
                // Never backwards: a waiting query only ever learns of progress.
                self.checkpoints.send_if_modified(|current| {
                    let newer = current.is_none_or(|c| checkpoint > c);
                    if newer {
                        *current = Some(checkpoint);
                    }
                    newer
                });
            }
        }
    }
}

/// Projects every event of `store` into `read_models`, a file nobody serves yet (a fresh copy
/// to compare with, the target of a move); the number of events applied.
pub async fn rebuild(store: &dyn EventStore, read_models: &SqliteFile) -> anyhow::Result<usize> {
    let mut writer = read_models.writer.acquire().await?;
    crate::project_all(&mut *writer, store).await
}

/// `meetings events replay` in embedded mode: empties every table of `read_models` and
/// projects the whole log again, in **one** transaction, so a reader (or a crash) sees the
/// old read models or the new ones, never a mix. Embedded mode is one process; the caller
/// holds its lock, so no follower writes meanwhile. The number of events applied.
pub async fn replay(store: &dyn EventStore, read_models: &SqliteFile) -> anyhow::Result<usize> {
    let mut conn = read_models.writer.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // Every table of the file is derived data; the migration bookkeeping stays.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for table in tables {
        sqlx::query(&format!("DELETE FROM \"{table}\""))
            .execute(&mut *tx)
            .await?;
    }
    let applied = crate::project_all(&mut *tx, store).await?;
    tx.commit().await?;
    Ok(applied)
}

/// The checkpoint of the read models and the failure that stopped them, if any (what
/// `projector::projection::status` tells of PostgreSQL's).
pub async fn status(
    read_models: &SqliteFile,
) -> Result<(Option<Position>, Option<String>), sqlx::Error> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT position, failure FROM projection_checkpoints WHERE projection = ?")
            .bind(PROJECTION)
            .fetch_optional(&read_models.reader)
            .await?;
    Ok(row.map_or((None, None), |(position, failure)| {
        (position.parse().ok(), failure)
    }))
}
