//! What every connection of a gateway shares: the hub, presence, token keys, the store it
//! replays from, and the limits.

use std::sync::Arc;

use platform::auth::JwtKeys;
use platform::bus::StreamName;
use platform::store::{EventStore, PgEventStore};
use sqlx::PgPool;

use super::limits::Limits;
use crate::hub::Hub;
use crate::presence::Presence;

/// What every connection shares.
pub struct Shared {
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub jwt: Arc<JwtKeys>,
    pub store: Arc<dyn EventStore>,
    pub pool: PgPool,
    pub limits: Limits,
    pub allowed_origins: Vec<String>,
}

/// Builds the shared state of a gateway (hub, presence) for a process that hosts it.
pub fn shared(
    pool: PgPool,
    jwt: Arc<JwtKeys>,
    nats: Option<(async_nats::Client, &StreamName)>,
    allowed_origins: Vec<String>,
    limits: Limits,
) -> Arc<Shared> {
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let hub = Arc::new(Hub::new(store.clone()));
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
        pool,
        limits,
        allowed_origins,
    })
}
