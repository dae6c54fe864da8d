//! Reads of meeting documents (`GET /v1/meetings/{id}`) that arrive together share one
//! statement.
//!
//! A document read is a primary-key lookup; what it costs is the round trip around it: a
//! send and a receive on the PostgreSQL socket in this process, a wakeup, a receive and a
//! send in the backend (`perf` of `bench get-meeting`: most of the service's and much of
//! PostgreSQL's time is loopback TCP and wakeups). So lookups queue here and are answered
//! in batches of up to `max_batch` ids per statement, with at most [`IN_FLIGHT`] statements
//! running: an idle service answers a lookup at once, alone; a busy one answers many per
//! round trip. Each lookup keeps its own visibility check (`admin` or a member), and a
//! lookup is only queued once its request's `X-Min-Position` wait is over, so a batch never
//! reads an older state than any of its requests asked for.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

pub use crate::repository::Document;
use crate::repository::ReadModels;

/// Statements of batched lookups running at once; more requests wait and join the next ones.
/// Measured with `bench get-meeting` (32 clients, 2 cores): 4 gave batches of ~3 lookups,
/// 2 gave ~5 and a third more throughput.
pub const IN_FLIGHT: usize = 2;

/// Ids per statement unless configured (`MEETINGS_READ_BATCH`); 1 turns batching off.
pub const DEFAULT_MAX_BATCH: usize = 64;

/// Lookups waiting for a statement, at most; a full queue makes requests wait to enqueue.
const QUEUE: usize = 4096;

struct Lookup {
    meeting: Uuid,
    caller: Uuid,
    admin: bool,
    reply: oneshot::Sender<Result<Option<Document>, sqlx::Error>>,
}

/// Answers document lookups, batching those that arrive together. Cheap to clone.
#[derive(Clone)]
pub struct DocumentReader {
    read_models: Arc<dyn ReadModels>,
    /// `None`: batching is off, every lookup runs on its own.
    queue: Option<mpsc::Sender<Lookup>>,
}

impl DocumentReader {
    /// Starts the batching task (needs a Tokio runtime) unless `max_batch` is 1. The task
    /// ends when the last clone of the reader is dropped.
    pub fn start(read_models: Arc<dyn ReadModels>, max_batch: usize) -> Self {
        if max_batch <= 1 {
            return Self {
                read_models,
                queue: None,
            };
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(batch_forever(read_models.clone(), receiver, max_batch));
        Self {
            read_models,
            queue: Some(sender),
        }
    }

    /// The document of `meeting` if `caller` may see it (its organizer, an attendee, or any
    /// meeting for an admin); `None` when it does not exist or is not visible.
    pub async fn get(
        &self,
        meeting: Uuid,
        caller: Uuid,
        admin: bool,
    ) -> Result<Option<Document>, sqlx::Error> {
        let Some(queue) = &self.queue else {
            let mut found = self
                .read_models
                .documents(&[(meeting, caller, admin)])
                .await?;
            return Ok(found.pop().flatten());
        };
        let (reply, answer) = oneshot::channel();
        let queued = Lookup {
            meeting,
            caller,
            admin,
            reply,
        };
        if queue.send(queued).await.is_err() {
            return Err(sqlx::Error::WorkerCrashed);
        }
        answer.await.unwrap_or(Err(sqlx::Error::WorkerCrashed))
    }
}

/// Takes whatever lookups are queued (up to `max_batch`) whenever a statement slot is free.
async fn batch_forever(
    read_models: Arc<dyn ReadModels>,
    mut queue: mpsc::Receiver<Lookup>,
    max_batch: usize,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        let read_models = read_models.clone();
        tokio::spawn(async move {
            let keys: Vec<(Uuid, Uuid, bool)> = batch
                .iter()
                .map(|l| (l.meeting, l.caller, l.admin))
                .collect();
            match read_models.documents(&keys).await {
                Ok(found) => {
                    for (lookup, document) in batch.into_iter().zip(found) {
                        // A request that went away no longer waits for its answer.
                        let _ = lookup.reply.send(Ok(document));
                    }
                }
                Err(error) => {
                    for lookup in batch {
                        let _ = lookup.reply.send(Err(shared_error(&error)));
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Every lookup of a failed batch gets the failure; `sqlx::Error` is not `Clone`, so the
/// others get what decides their answer: whether it was the connection (503) or not (500).
fn shared_error(error: &sqlx::Error) -> sqlx::Error {
    if platform::db::is_transient(error) {
        sqlx::Error::Io(std::io::Error::other(error.to_string()))
    } else {
        sqlx::Error::Decode(format!("batched document read failed: {error}").into())
    }
}
