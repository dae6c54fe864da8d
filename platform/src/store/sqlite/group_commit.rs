//! Group commit: the commits that wait for the writer while another one is written go to the
//! file together, in one transaction and one `fsync`.
//!
//! With `synchronous=FULL` each transaction costs a sync of the WAL, and the single writer
//! makes concurrent commands queue for it: one transaction per command would cap the log at
//! the disk's syncs per second. Instead each commit joins a queue and a writer task takes
//! everything queued when it gets the connection. Each queued request runs inside its own
//! savepoint, so one that fails (a concurrency conflict, a taken email) is rolled back alone
//! and answered with its error while the others commit; nobody is answered before the one
//! `COMMIT` of their batch returned. The writer task is spawned, so a caller that goes away
//! (a client that disconnected) cannot cut a batch of other callers short.

use std::sync::{Arc, Mutex};

use sqlx::Connection;
use tokio::sync::oneshot;

use super::{commit_in, db_error};
use crate::auth::revocation::{Revocation, Revocations};
use crate::db::sqlite::SqliteFile;
use crate::store::{Commit, CommitOutcome, StoreError};

/// Most requests written in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Vec<CommitOutcome>, StoreError>>;

/// Commits waiting for the writer.
#[derive(Default)]
pub(super) struct Queue(Mutex<Vec<(Vec<Commit>, Reply)>>);

impl Queue {
    /// Writes `commits` (one request: all or nothing) with whatever else is queued.
    pub(super) async fn commit(
        self: &Arc<Self>,
        file: &SqliteFile,
        revocations: Option<&Arc<Revocations>>,
        commits: Vec<Commit>,
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .lock()
            .expect("BUG: commit queue poisoned")
            .push((commits, reply));
        let (queue, file, revocations) = (self.clone(), file.clone(), revocations.cloned());
        tokio::spawn(async move { queue.write(&file, revocations.as_deref()).await });
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the commit's writer stopped".into(),
            ))
        })
    }

    /// Takes the writer, then everything queued (nothing, when an earlier task wrote this
    /// task's request already), and writes it.
    async fn write(&self, file: &SqliteFile, revocations: Option<&Revocations>) {
        let mut connection = match file.writer.acquire().await {
            Ok(connection) => connection,
            Err(error) => return self.fail_all(&db_error(error)),
        };
        let batch: Vec<_> = {
            let mut queued = self.0.lock().expect("BUG: commit queue poisoned");
            let n = queued.len().min(MAX_BATCH);
            queued.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let mut written = Vec::with_capacity(batch.len());
        let committed = async {
            let mut tx = connection.begin().await?;
            for (commits, _) in &batch {
                let mut savepoint = tx.begin().await?;
                let mut revoked: Vec<Revocation> = Vec::new();
                let mut outcomes = Vec::with_capacity(commits.len());
                let mut failure = None;
                for commit in commits {
                    match commit_in(&mut savepoint, commit, &mut revoked).await {
                        Ok(outcome) => outcomes.push(outcome),
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                match failure {
                    None => {
                        savepoint.commit().await?;
                        written.push(Ok((outcomes, revoked)));
                    }
                    Some(error) => {
                        savepoint.rollback().await?;
                        written.push(Err(error));
                    }
                }
            }
            tx.commit().await
        }
        .await;
        if let Err(error) = committed {
            // Nothing of the batch is durable: every request gets the error.
            let error = db_error(error);
            for (_, reply) in batch {
                let _ = reply.send(Err(same(&error)));
            }
            return;
        }
        for ((_, reply), result) in batch.into_iter().zip(written) {
            let answer = result.map(|(outcomes, revoked)| {
                if let Some(revocations) = revocations {
                    for revocation in revoked {
                        revocations.apply(revocation);
                    }
                }
                outcomes
            });
            let _ = reply.send(answer);
        }
    }

    fn fail_all(&self, error: &StoreError) {
        let queued: Vec<_> = self
            .0
            .lock()
            .expect("BUG: commit queue poisoned")
            .drain(..)
            .collect();
        for (_, reply) in queued {
            let _ = reply.send(Err(same(error)));
        }
    }
}

/// `error` for one more request (store errors are not `Clone`: their sources are not).
fn same(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        other => StoreError::Unavailable(other.to_string()),
    }
}
