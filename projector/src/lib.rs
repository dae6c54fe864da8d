//! `projector`: consumes the event stream from NATS JetStream and maintains the read models
//! the query-service serves (docs/architecture.md). Also rebuilds them from the event store.
//!
//! Layers, each using only those listed before it:
//! - [`error`] and [`rows`]: the error type and the rows of the `rm_*` tables;
//! - [`render`]: meeting documents rendered from rows (pure);
//! - [`fold`]: how events change the rows, in memory (pure, unit-tested);
//! - [`sql`]: loading and writing rows in PostgreSQL, one statement each per batch;
//! - [`sqlite`]: the same in the SQLite file of embedded mode; [`store`]: the seam over both;
//! - [`apply`]: one batch, load → fold → write;
//! - [`projection`]: the single-active lock and the checkpoint;
//! - [`run`]: terms as the active projector, metrics, stopping on failure;
//! - [`sources`]: the NATS consumer and the event-store follower that feed the run loop;
//! - [`replay`]: rebuilding the read models beside the live ones and swapping them in.

pub mod apply;
pub mod error;
pub mod fold;
pub mod projection;
pub mod render;
pub mod replay;
pub mod rows;
pub mod run;
pub mod sources;
pub mod sql;
pub mod sqlite;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use futures::future::BoxFuture;
use futures::FutureExt;
use platform::bus::{EventEnvelope, EventSource, StreamName};
use platform::config::{DatabaseSettings, HttpLimits, LogSettings, NatsSettings};
use platform::http::health::{self, ReadinessCheck};
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::tail::StoreTail;
use platform::store::{EventStore, Position};
use sqlx::PgPool;
use tokio_util::sync::WaitForCancellationFutureOwned;

pub use apply::{apply_batch, apply_isolating, BatchOutcome};
pub use error::ProjectionError;
pub use run::ProjectorMetrics;
pub use sources::nats::Projector;
pub use sources::store::StoreFollower;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8084";

#[derive(Parser, Clone, Debug)]
#[command(name = "projector", version, about = "meetings projector")]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub http: HttpLimits,
    /// Address of /healthz, /readyz and /metrics, `host:port` such as `0.0.0.0:8084`.
    #[arg(long = "listen", env = "MEETINGS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

/// Readiness: the database is reachable and migrated, and the projection has not stopped.
struct ProjectionReady(PgPool);

#[async_trait::async_trait]
impl ReadinessCheck for ProjectionReady {
    fn name(&self) -> &'static str {
        "projection"
    }

    async fn check(&self) -> Result<(), String> {
        match platform::db::migrations_applied(&self.0).await {
            Ok(true) => {}
            Ok(false) => return Err("migrations not applied".into()),
            Err(error) => return Err(format!("database unreachable: {error}")),
        }
        match projection::status(&self.0).await {
            Ok((_, Some(failure))) => Err(format!("stopped: {failure}")),
            Ok(_) => Ok(()),
            Err(error) => Err(format!("database unreachable: {error}")),
        }
    }
}

/// Builds the projector exactly as its binary runs it: connects to a migrated database and
/// to NATS, binds its health endpoints, and projects the stream beside them.
pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
    let pool = platform::service::connect_migrated(&settings.database).await?;
    let (client, stream) =
        platform::service::connect_nats(&settings.nats, "meetings-projector").await?;
    let metrics = Metrics::new();
    metrics.observe_pool(&pool);
    metrics.observe_nats("meetings-projector", &client);
    let source = EventSource::Stream(async_nats::jetstream::new(client.clone()), stream);
    let listener = platform::service::bind(settings.listen).await?;
    let server = Server::new(
        "projector health endpoints",
        listener,
        health_router(pool.clone(), Some(client.clone()), metrics.clone()),
    )
    .with_limits(settings.http.clone());
    Ok(with_task(server, pool, source, &metrics))
}

/// Adds the read-model projection of `pool`, fed by `source`, to `server`.
///
/// An event the projection cannot apply stops the projection (error log, metric, the failure
/// recorded for readiness) but not the process: it keeps answering health checks with the
/// reason, so operators see which event stopped it, instead of a process that exits and
/// restarts into the same event.
pub fn with_task(server: Server, pool: PgPool, source: EventSource, metrics: &Metrics) -> Server {
    type Run = Box<
        dyn FnOnce(WaitForCancellationFutureOwned) -> BoxFuture<'static, anyhow::Result<()>> + Send,
    >;
    let run: Run = match source {
        EventSource::Stream(js, stream) => {
            let projector = new_projector(pool, js, stream, metrics);
            Box::new(move |shutdown| projector.run(shutdown).boxed())
        }
        EventSource::Store(store) => {
            let follower = StoreFollower::new(store, pool, metrics);
            Box::new(move |shutdown| follower.run(shutdown).boxed())
        }
    };
    server.with_task("projector", move |stop| async move {
        if run(stop.clone().cancelled_owned()).await.is_err() {
            // Already logged and recorded by the run loop.
            stop.cancelled().await;
        }
        Ok(())
    })
}

pub fn new_projector(
    pool: PgPool,
    js: async_nats::jetstream::Context,
    stream: StreamName,
    metrics: &Metrics,
) -> Projector {
    let projector_metrics = ProjectorMetrics::default();
    projector_metrics.register(metrics);
    Projector {
        pool,
        js,
        stream,
        // Short transactions: the relay cannot read past any running transaction of the
        // cluster, so a long projector batch would stall event delivery itself.
        batch: 200,
        upcasters: Arc::new(domain::upcasters::upcasters()),
        metrics: projector_metrics,
    }
}

/// `/healthz`, `/readyz`, `/metrics` of the projector (ready only while connected to `nats`,
/// when it consumes from NATS).
pub fn health_router(
    pool: PgPool,
    nats: Option<async_nats::Client>,
    metrics: Metrics,
) -> axum::Router {
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(ProjectionReady(pool))];
    if let Some(client) = nats {
        checks.push(Arc::new(health::NatsReady(client)));
    }
    platform::http::finish_router(health::router(checks, metrics.clone()), metrics)
}

/// Rebuilds the read models of `pool` from scratch out of `store`, in place and in global
/// order: for a database nobody reads yet (a fresh copy to compare with, a new installation).
/// Refuses while a projector of this database is active (it holds the projector lock, which
/// the rebuild holds until it ends). To rebuild the read models of a running system, use
/// [`replay::replay`] (`meetings events replay`), which readers never see half-done.
pub async fn rebuild(store: &dyn EventStore, pool: &PgPool) -> anyhow::Result<usize> {
    let Some(mut leader) = projection::lead(pool).await? else {
        anyhow::bail!(
            "a projector of this database is running: stop it before rebuilding the read models"
        );
    };
    projection::reset(pool).await?;
    project_all(&mut leader, store).await
}

/// Applies every event of `store`, in global order, to the read models behind `conn`; the
/// number applied. The loop of both backends' rebuilds ([`rebuild`],
/// [`sources::sqlite::rebuild`]).
pub(crate) async fn project_all<C: store::ReadModelConnection>(
    conn: &mut C,
    store: &dyn EventStore,
) -> anyhow::Result<usize> {
    let upcasters = domain::upcasters::upcasters();
    let mut tail = StoreTail::new(store, Position::START, 1000);
    let mut total = 0;
    loop {
        let events = tail.read().await?;
        if events.is_empty() {
            return Ok(total);
        }
        let envelopes: Vec<EventEnvelope> = events.iter().map(EventEnvelope::from).collect();
        let outcome = apply_isolating(conn, &envelopes, None, &upcasters).await?;
        total += outcome.applied;
    }
}
