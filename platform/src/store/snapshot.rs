//! Loading an aggregate in bounded memory and time, however long its stream: from its newest
//! snapshot plus the events after it, read in pages.
//!
//! A snapshot is the aggregate's serde form after `sequence`, with the hash of that event so
//! the next commit can chain onto it. It is a cache, never the truth: the event log is. A
//! snapshot that no longer decodes (the aggregate's shape changed in a release) is ignored,
//! and the aggregate is rebuilt from its events and snapshotted again. Snapshots are taken
//! whenever a load or a commit leaves the aggregate [`SNAPSHOT_EVERY`] or more events past
//! its last one, so a load never applies more than about that many events.

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use uuid::Uuid;

use super::{apply_stored, AggregateState, EventStore, StoreError};

/// Events between two snapshots of an aggregate.
pub const SNAPSHOT_EVERY: i64 = 100;

/// Events read per query while catching up, so a long stream is never held whole in memory.
pub const LOAD_PAGE: i64 = 500;

/// An aggregate's state after `sequence`, as stored in `snapshots`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub state: serde_json::Value,
    /// Hash of the event at `sequence`.
    pub last_hash: Vec<u8>,
}

/// The aggregate `id` as the store has it now, starting from `known` (a cached state) when
/// given, else from its snapshot, else from nothing; then its events after that, page by
/// page. Takes a new snapshot when the load applied [`SNAPSHOT_EVERY`] events or more.
pub async fn load_aggregate<A: Aggregate>(
    store: &dyn EventStore,
    upcasters: &[Box<dyn EventUpcaster>],
    id: Uuid,
    known: Option<AggregateState<A>>,
) -> Result<AggregateState<A>, StoreError> {
    let mut state = match known {
        Some(state) => state,
        None => from_snapshot(store, id).await?.unwrap_or_default(),
    };
    let started_at = state.version;
    loop {
        let page = store
            .load_page(A::TYPE, id, state.version, LOAD_PAGE)
            .await?;
        let full = page.len() as i64 == LOAD_PAGE;
        apply_stored(&mut state, page, upcasters)?;
        if !full {
            break;
        }
    }
    if state.version - started_at >= SNAPSHOT_EVERY {
        save(store, id, &state).await;
    }
    Ok(state)
}

/// The aggregate `id` as it was right after its event `until` (its version then): for a
/// reader that follows the event stream, which may be behind the store. Starts from the
/// snapshot when that is not newer; never takes one.
pub async fn load_aggregate_until<A: Aggregate>(
    store: &dyn EventStore,
    upcasters: &[Box<dyn EventUpcaster>],
    id: Uuid,
    until: i64,
) -> Result<AggregateState<A>, StoreError> {
    let mut state = match from_snapshot::<A>(store, id).await? {
        Some(state) if state.version <= until => state,
        _ => AggregateState::default(),
    };
    while state.version < until {
        let wanted = (until - state.version).min(LOAD_PAGE);
        let page = store.load_page(A::TYPE, id, state.version, wanted).await?;
        let full = page.len() as i64 == wanted;
        apply_stored(&mut state, page, upcasters)?;
        if !full {
            break;
        }
    }
    Ok(state)
}

/// Takes a snapshot of `state` when a commit moved it from `before` across a multiple of
/// [`SNAPSHOT_EVERY`] (so a hot aggregate that never leaves a cache is snapshotted too).
pub async fn after_commit<A: Aggregate>(
    store: &dyn EventStore,
    id: Uuid,
    before: i64,
    state: &AggregateState<A>,
) {
    if state.version / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY {
        save(store, id, state).await;
    }
}

/// The aggregate from its snapshot, `None` without a usable one.
async fn from_snapshot<A: Aggregate>(
    store: &dyn EventStore,
    id: Uuid,
) -> Result<Option<AggregateState<A>>, StoreError> {
    let Some(snapshot) = store.snapshot(A::TYPE, id).await? else {
        return Ok(None);
    };
    match serde_json::from_value::<A>(snapshot.state) {
        Ok(aggregate) => Ok(Some(AggregateState {
            aggregate,
            version: snapshot.sequence,
            last_hash: Some(snapshot.last_hash),
        })),
        Err(error) => {
            tracing::info!(aggregate_type = A::TYPE, aggregate_id = %id, %error,
                "snapshot no longer decodes; rebuilding from the events");
            Ok(None)
        }
    }
}

/// Stores a snapshot of `state`; a failure only costs a longer load later, so it is logged.
async fn save<A: Aggregate>(store: &dyn EventStore, id: Uuid, state: &AggregateState<A>) {
    let Some(last_hash) = state.last_hash.clone() else {
        return;
    };
    let snapshot = match serde_json::to_value(&state.aggregate) {
        Ok(value) => Snapshot {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: id,
            sequence: state.version,
            state: value,
            last_hash,
        },
        Err(error) => {
            tracing::warn!(aggregate_type = A::TYPE, %error, "cannot serialize a snapshot");
            return;
        }
    };
    if let Err(error) = store.save_snapshot(snapshot).await {
        tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id, %error,
            "cannot store a snapshot");
    }
}
