//! Global anchors: a running hash over the whole log in global order, checkpointed into
//! `event_anchors` (see the migration and `docs/adr/0010-audit-anchors.md`).
//!
//! `chain(n) = SHA-256(chain(n-1) ‖ position(n) ‖ hash(n))`, starting from [`genesis`].
//! Each event's own hash already covers its content and its aggregate predecessor, so the
//! running hash commits to every event, to their global order, and to their number: deleting
//! a whole aggregate or the newest events changes it even though every per-aggregate chain
//! stays intact.
//!
//! One anchor task per database writes them (a PostgreSQL advisory lock, like the relay),
//! following the store exactly as the relay does: only below the oldest running transaction,
//! so an anchored position never gains an earlier event later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::store::tail::StoreTail;
use platform::store::{EventStore, Position};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

/// An anchor every this many events…
pub const EVERY: i64 = 1000;
/// …and at most this long after the newest event, so that little of the tail is ever
/// unanchored.
pub const WITHIN: Duration = Duration::from_secs(10);
/// Pause between two reads of the store while caught up.
const POLL: Duration = Duration::from_millis(250);

/// The running hash before the first event.
pub fn genesis() -> [u8; 32] {
    Sha256::digest(b"meetings event log anchor v1").into()
}

/// The running hash after one more event.
pub fn link(chain: &[u8; 32], position: Position, hash: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(chain);
    hasher.update(position.transaction_id.to_be_bytes());
    hasher.update(position.id.to_be_bytes());
    hasher.update(hash);
    hasher.finalize().into()
}

/// A checkpoint of the running hash at the event at `position`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub position: Position,
    /// Events up to and including `position`, in global order.
    pub events: i64,
    pub chain: [u8; 32],
}

impl Anchor {
    /// The state before the first event.
    pub fn start() -> Self {
        Self {
            position: Position::START,
            events: 0,
            chain: genesis(),
        }
    }

    /// Moves past one more event.
    pub fn extend(&mut self, position: Position, hash: &[u8]) {
        self.chain = link(&self.chain, position, hash);
        self.position = position;
        self.events += 1;
    }
}

type AnchorRow = (String, i64, Vec<u8>);

fn anchor(row: AnchorRow) -> Result<Anchor, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("event_anchors: bad {what}").into());
    Ok(Anchor {
        position: row.0.parse().map_err(|_| bad("position"))?,
        events: row.1,
        chain: row.2.try_into().map_err(|_| bad("chain"))?,
    })
}

/// The anchors after `after`, at most `limit`, in position order.
pub async fn after(
    conn: &mut PgConnection,
    after: Position,
    limit: i64,
) -> Result<Vec<Anchor>, sqlx::Error> {
    let rows: Vec<AnchorRow> = sqlx::query_as(
        "SELECT position, events, chain FROM event_anchors WHERE position > $1 \
         ORDER BY position LIMIT $2",
    )
    .bind(after.to_string())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(anchor).collect()
}

/// The anchor at exactly `position`, if one was written there.
pub async fn at(
    conn: &mut PgConnection,
    position: Position,
) -> Result<Option<Anchor>, sqlx::Error> {
    let row: Option<AnchorRow> =
        sqlx::query_as("SELECT position, events, chain FROM event_anchors WHERE position = $1")
            .bind(position.to_string())
            .fetch_optional(conn)
            .await?;
    row.map(anchor).transpose()
}

/// The newest anchor.
pub async fn last(conn: &mut PgConnection) -> Result<Option<Anchor>, sqlx::Error> {
    let row: Option<AnchorRow> = sqlx::query_as(
        "SELECT position, events, chain FROM event_anchors ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    row.map(anchor).transpose()
}

async fn write(conn: &mut PgConnection, anchor: &Anchor) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_anchors (position, events, chain) VALUES ($1, $2, $3) \
         ON CONFLICT (position) DO NOTHING",
    )
    .bind(anchor.position.to_string())
    .bind(anchor.events)
    .bind(&anchor.chain[..])
    .execute(conn)
    .await?;
    Ok(())
}

/// Name of the advisory lock that makes one anchor task active per database.
const LOCK: &str = "meetings-anchor";

/// Writes anchors as the log grows, until `shutdown`. Stands by while another process's
/// anchor task is active; restarts from the newest anchor after a failure.
pub async fn run(
    pool: PgPool,
    store: Arc<dyn EventStore>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    platform::leader::run_terms(shutdown, platform::leader::RETRY_DELAY, || async {
        if let Err(error) = term(&pool, store.as_ref(), None).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "anchor task interrupted, resuming"
            );
        }
        std::ops::ControlFlow::<()>::Continue(())
    })
    .await;
}

/// Anchors everything readable now (one anchor at the current end of the log, plus one
/// every [`EVERY`] events on the way) and answers the newest anchor. For tests and
/// benchmarks, and for operators who want an anchor before an export; `None` when another
/// anchor task holds the lock or the log is empty.
pub async fn catch_up(pool: &PgPool, store: &dyn EventStore) -> anyhow::Result<Option<Anchor>> {
    term(pool, store, Some(())).await
}

/// One term as the active anchor task: from the newest anchor, link every event read, write
/// an anchor every [`EVERY`] events and [`WITHIN`] after the newest. With `once`, stops (after
/// anchoring the end) when caught up.
async fn term(
    pool: &PgPool,
    store: &dyn EventStore,
    once: Option<()>,
) -> anyhow::Result<Option<Anchor>> {
    let Some(mut conn) = platform::leader::try_lead(pool, LOCK).await? else {
        return Ok(None);
    };
    let mut anchored = last(&mut conn).await?.unwrap_or_else(Anchor::start);
    let mut current = anchored.clone();
    let mut tail = StoreTail::new(store, current.position, EVERY);
    let mut oldest_unanchored: Option<Instant> = None;
    loop {
        let events = tail.read().await?;
        for event in &events {
            current.extend(event.position, &event.hash);
            oldest_unanchored.get_or_insert_with(Instant::now);
            if current.events % EVERY == 0 {
                write(&mut conn, &current).await?;
                anchored = current.clone();
                oldest_unanchored = None;
            }
        }
        if !events.is_empty() {
            continue;
        }
        let due = oldest_unanchored.is_some_and(|since| since.elapsed() >= WITHIN);
        if current.events > anchored.events && (due || once.is_some()) {
            write(&mut conn, &current).await?;
            anchored = current.clone();
            oldest_unanchored = None;
        }
        if once.is_some() {
            return Ok((anchored.events > 0).then_some(anchored));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Adds the anchor task of `pool`'s log to `server` (the command side hosts it).
pub fn with_task(
    server: platform::service::Server,
    pool: PgPool,
    store: Arc<dyn EventStore>,
) -> platform::service::Server {
    server.with_task("anchors", move |stop| async move {
        run(pool, store, stop.cancelled_owned()).await;
        Ok(())
    })
}
