//! What this process knows of the aggregates it recently loaded or changed, and how it brings
//! that up to date from the store.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use platform::store::{load_aggregate, AggregateState, EventStore, StoreError};
use uuid::Uuid;

/// Aggregates this process recently loaded or changed, as of their last known event, so that
/// a command neither re-reads its aggregate's whole history (every chat message and response
/// would otherwise re-read and re-apply its meeting's) nor reads anything at all when no
/// other replica wrote since. An entry is only a guess: a command decided on it commits with
/// the entry's sequence, and if another writer appended in between the commit conflicts and
/// the command is decided again on a freshly loaded state (see `decide`). A stale entry costs
/// a round trip, never a wrong decision. Bounded; when full, an arbitrary entry makes room.
#[derive(Clone, Default)]
pub(super) struct AggregateCache {
    entries: Arc<Mutex<HashMap<CacheKey, CachedState>>>,
}

/// (aggregate type, id).
type CacheKey = (&'static str, Uuid);
/// An `AggregateState<A>` of the aggregate type in the key.
type CachedState = Arc<dyn Any + Send + Sync>;

impl AggregateCache {
    const CAPACITY: usize = 10_000;

    pub(super) fn get<A: Aggregate + Clone + 'static>(
        &self,
        id: Uuid,
    ) -> Option<AggregateState<A>> {
        let entries = self.entries.lock().expect("BUG: cache lock poisoned");
        let entry = entries.get(&(A::TYPE, id))?.clone();
        drop(entries);
        entry
            .downcast::<AggregateState<A>>()
            .ok()
            .map(|state| (*state).clone())
    }

    /// Keeps `state` unless the entry is already at a later version (a slower request
    /// finishing after a faster one must not move the entry back).
    pub(super) fn put<A: Aggregate + Clone + 'static>(&self, id: Uuid, state: AggregateState<A>) {
        let mut entries = self.entries.lock().expect("BUG: cache lock poisoned");
        let newer = entries
            .get(&(A::TYPE, id))
            .and_then(|entry| entry.downcast_ref::<AggregateState<A>>())
            .is_some_and(|cached| cached.version > state.version);
        if newer {
            return;
        }
        if entries.len() >= Self::CAPACITY && !entries.contains_key(&(A::TYPE, id)) {
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert((A::TYPE, id), Arc::new(state));
    }

    /// The aggregate as the store has it now: the cached state (on a miss, its snapshot, or
    /// the aggregate before its first event) plus the events after it, read in pages
    /// ([`load_aggregate`]), so a miss on a long stream costs bounded memory.
    pub(super) async fn load<A: Aggregate + Clone + 'static>(
        &self,
        store: &dyn EventStore,
        upcasters: &[Box<dyn EventUpcaster>],
        id: Uuid,
    ) -> Result<AggregateState<A>, StoreError> {
        let cached = self.get::<A>(id);
        let cached_version = cached.as_ref().map(|state| state.version);
        let state = load_aggregate(store, upcasters, id, cached).await?;
        // Unchanged, the state is either in the cache already or has no events to cache.
        if state.version > 0 && Some(state.version) != cached_version {
            self.put(id, state.clone());
        }
        Ok(state)
    }
}
