//! The log read for the bulk build: batches of events read and decoded on a task of their
//! own, so that the store's rows are parsed and the events decoded on one core while the build
//! folds and encodes on the other (in one task, reading and decoding took a third of the
//! build's time on the core the fold needed).

use std::sync::Arc;

use platform::bus::{Decoded, EventEnvelope};
use platform::store::tail::StoreTail;
use platform::store::{EventStore, Position, StoreError};
use tokio::sync::mpsc;

/// An event and its decoded, upcast form, or why it does not decode. Its `data` is dropped
/// once decoded (nothing after needs it), which halves what a batch holds.
pub(super) type Read = (EventEnvelope, Result<Decoded, String>);

/// The events after a position in batches, read ahead on a task of their own: the next batch
/// is read while the current one is folded, and not before the one ahead was taken, so two
/// are in memory at most.
pub(super) struct Decoding {
    batches: mpsc::Receiver<Result<Vec<Read>, StoreError>>,
    /// The reading task, until it was seen to end.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Decoding {
    /// Starts reading after `after`, `batch` events at a time, up to what is readable now.
    pub(super) fn start(store: Arc<dyn EventStore>, after: Position, batch: i64) -> Self {
        let (sender, batches) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let upcasters = domain::upcasters::upcasters();
            let mut tail = StoreTail::new(store.as_ref(), after, batch);
            loop {
                let Ok(slot) = sender.reserve().await else {
                    return;
                };
                let read = tail.read().await.map(|events| {
                    events
                        .into_iter()
                        .map(|stored| {
                            let mut event = EventEnvelope::from(stored);
                            let decoded = event.decode(&upcasters);
                            event.data = serde_json::Value::Null;
                            (event, decoded)
                        })
                        .collect::<Vec<_>>()
                });
                // A short batch is the end of what is readable now; an error ends it too.
                let more = matches!(&read, Ok(events) if events.len() as i64 == batch);
                let empty = matches!(&read, Ok(events) if events.is_empty());
                if empty {
                    return;
                }
                slot.send(read);
                if !more {
                    return;
                }
            }
        });
        Decoding {
            batches,
            task: Some(task),
        }
    }

    /// The next batch, `None` after the last. A reader that died without saying why (a
    /// panic) is an error, never an early end of the log.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<Read>>, StoreError> {
        match self.batches.recv().await {
            Some(batch) => batch.map(Some),
            None => match self.task.take() {
                Some(task) => match task.await {
                    Err(error) if error.is_panic() => Err(StoreError::Other(anyhow::anyhow!(
                        "the replay's reader failed: {error}"
                    ))),
                    _ => Ok(None),
                },
                None => Ok(None),
            },
        }
    }
}

impl Drop for Decoding {
    /// A build that fails stops the reading.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
