//! What every connection of a gateway shares: the hub, presence, token keys, the store it
//! replays from, and the limits.

use std::sync::Arc;

use platform::auth::JwtKeys;
use platform::bus::StreamName;
use platform::store::{EventStore, PgEventStore};
use sqlx::PgPool;

use super::changes::{ChangeLog, PgChangeLog};
use super::limits::Limits;
use super::metrics::ConnectionMetrics;
use crate::hub::Hub;
use crate::presence::Presence;

/// What every connection shares.
pub struct Shared {
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub jwt: Arc<JwtKeys>,
    pub store: Arc<dyn EventStore>,
    /// The change read model resumes replay from.
    pub changes: Arc<dyn ChangeLog>,
    pub limits: Limits,
    pub allowed_origins: Vec<String>,
    /// The NATS connection live events arrive on (`None`: fed in-process from the store).
    pub bus: Option<async_nats::Client>,
    /// Open connections and how they ended; registered by whoever hosts the gateway.
    pub metrics: ConnectionMetrics,
    /// Cancelled when the process stops: every socket closes with 1001.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Sockets being served, so that a stop waits for their close frames.
    pub sockets: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Counts a socket in [`Shared::sockets`] while it lives.
pub(super) struct CountedSocket(Arc<tokio::sync::watch::Sender<usize>>);

impl CountedSocket {
    pub(super) fn new(sockets: &Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        sockets.send_modify(|n| *n += 1);
        Self(sockets.clone())
    }
}

impl Drop for CountedSocket {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Builds the shared state of a gateway (hub, presence) over PostgreSQL.
pub fn shared(
    pool: PgPool,
    jwt: Arc<JwtKeys>,
    nats: Option<(async_nats::Client, &StreamName)>,
    allowed_origins: Vec<String>,
    limits: Limits,
) -> Arc<Shared> {
    shared_with(
        Arc::new(PgEventStore::new(pool.clone())),
        Arc::new(PgChangeLog(pool)),
        jwt,
        nats,
        allowed_origins,
        limits,
    )
}

/// Builds the shared state of a gateway over any backend: the event store live delivery
/// starts from and the change read model resumes replay from.
pub fn shared_with(
    store: Arc<dyn EventStore>,
    changes: Arc<dyn ChangeLog>,
    jwt: Arc<JwtKeys>,
    nats: Option<(async_nats::Client, &StreamName)>,
    allowed_origins: Vec<String>,
    limits: Limits,
) -> Arc<Shared> {
    let hub = Arc::new(Hub::new(store.clone()));
    let bus = nats.as_ref().map(|(client, _)| client.clone());
    let presence = Arc::new(Presence::new(
        hub.clone(),
        nats.map(|(client, stream)| (client, format!("{}-presence", stream.prefix()))),
        limits.presence_heartbeat,
        limits.presence_expiry,
    ));
    Arc::new(Shared {
        hub,
        presence,
        jwt,
        store,
        changes,
        limits,
        allowed_origins,
        bus,
        metrics: ConnectionMetrics::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        sockets: Arc::new(tokio::sync::watch::Sender::new(0)),
    })
}
