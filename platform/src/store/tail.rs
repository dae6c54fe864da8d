//! Following the event store in global order from a position: how the relay, the projector's
//! store follower and the realtime gateway without NATS learn of new events.
//!
//! It polls [`EventStore::read_all`], which never reads past a running transaction, so a late
//! commit is never skipped. Polling rather than LISTEN/NOTIFY keeps the write path free of
//! PostgreSQL's global notification lock, which would serialize commits.

use std::time::Duration;

use super::{EventStore, Position, StoreError, StoredEvent};
use crate::leader::RETRY_DELAY;

/// Pause between two reads while caught up: a few milliseconds of latency for one cheap
/// query per poll.
pub const IDLE_POLL: Duration = Duration::from_millis(5);

/// Events read at a time when skipping to the end of the store.
const SKIP_CHUNK: i64 = 10_000;

/// A reader of the event store that remembers how far it has read.
pub struct StoreTail<'a> {
    store: &'a dyn EventStore,
    after: Position,
    batch: i64,
    idle_poll: Duration,
}

impl<'a> StoreTail<'a> {
    /// Reads the events after `after`, at most `batch` at a time, polling every [`IDLE_POLL`]
    /// while caught up.
    pub fn new(store: &'a dyn EventStore, after: Position, batch: i64) -> Self {
        Self {
            store,
            after,
            batch,
            idle_poll: IDLE_POLL,
        }
    }

    /// Polls every `idle_poll` while caught up instead.
    pub fn idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }

    /// The position after which the next read starts.
    pub fn position(&self) -> Position {
        self.after
    }

    /// Continues after `after` instead (for a reader that used only part of what it read).
    pub fn seek(&mut self, after: Position) {
        self.after = after;
    }

    /// The next events, at most `batch`, and moves past them; empty when caught up. Does not
    /// wait.
    pub async fn read(&mut self) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_at_most(self.batch).await
    }

    /// Waits one poll interval: what a reader does when [`read`](Self::read) found nothing.
    pub async fn pause(&self) {
        tokio::time::sleep(self.idle_poll).await;
    }

    /// Waits for the next events and moves past them. A failing store is logged and retried
    /// every [`RETRY_DELAY`], so this never fails.
    pub async fn next(&mut self) -> Vec<StoredEvent> {
        loop {
            let events = self.read_retrying(self.batch).await;
            if !events.is_empty() {
                return events;
            }
            self.pause().await;
        }
    }

    /// Moves to the end of the store, so that only events committed from now on are read.
    /// A failing store is logged and retried every [`RETRY_DELAY`].
    pub async fn skip_to_end(&mut self) {
        while !self.read_retrying(SKIP_CHUNK).await.is_empty() {}
    }

    async fn read_at_most(&mut self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.store.read_all(Some(self.after), limit).await?;
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        Ok(events)
    }

    async fn read_retrying(&mut self, limit: i64) -> Vec<StoredEvent> {
        loop {
            match self.read_at_most(limit).await {
                Ok(events) => return events,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the event store; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
}
