//! The build phase of a replay, in bulk. The shadow tables start empty and the events come in
//! global order, so the batch-by-batch projector's work — load every touched row, fold, write
//! every touched row back — is mostly waste here: a meeting's twenty events span several
//! batches, and each batch rewrote its row, its attendees, its agenda rows and its document.
//!
//! Instead one [`Fold`] is kept across batches. A user or meeting stays in it while it is
//! being touched and is written once, whole, when it has not been touched for a while (or when
//! too many are held: [`Limits`]), so memory stays bounded whatever the log's length. One met
//! again after that is loaded back from the shadow tables (and overwritten when evicted
//! again). Chat and change rows go out with every batch, by `COPY`. No document is rendered
//! while building: each depends on the names of its people, which may change after the meeting
//! was written, so all are rendered at the end from the final rows.
//!
//! A batch's statement runs while the next batch is folded (in the same task: a statement
//! moved to another thread, its memory freed there, kept the allocator's pages alive longer
//! and the peak over 100 MiB), so PostgreSQL and the fold work at once on the two cores.
//!
//! The result is the same rows the batch path writes: `cli/tests/replay.rs` compares them with
//! `projector::rebuild`, under limits small enough that nearly every row is written, loaded
//! back and overwritten.

use std::collections::HashMap;

use platform::store::Position;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decoding::Read;
use crate::apply::PROJECTION;
use crate::error::ProjectionError;
use crate::fold::{Fold, Touched};
use crate::sql::{self, Batch, Bookkeeping};

/// How long users and meetings are held in memory while building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Events after its last touch that a user or meeting is still held for.
    pub keep_for: u64,
    /// Most users and meetings held at once (the oldest touched go first).
    pub most_held: usize,
}

impl Default for Limits {
    /// A meeting's events lie within a few thousand of one another in a busy log (those of
    /// `bench audit`: ~10,000); three thousand held users and meetings take a few MiB.
    fn default() -> Self {
        Limits {
            keep_for: 20_000,
            most_held: 3_000,
        }
    }
}

/// Meetings whose documents one statement renders at the end.
const DOCUMENT_CHUNK: i64 = 1_000;
/// Users and meetings one statement writes when the build ends.
const FLUSH_CHUNK: usize = 1_000;

/// A held aggregate: its type and the count of applied events at its last touch.
struct Held {
    aggregate_type: String,
    touched_at: u64,
}

/// The build: the shadow connection, the statement waiting to be written, what is held.
pub(super) struct Bulk {
    /// The shadow connection.
    conn: PgConnection,
    /// The statement of the last batch, written while the next batch is folded.
    pending: Option<Batch>,
    resident: Resident,
}

/// What the build holds in memory.
struct Resident {
    fold: Fold,
    /// The last applied sequence of every aggregate met, by (type, id).
    last: HashMap<(String, Uuid), i64>,
    /// The users and meetings in `fold`.
    held: HashMap<Uuid, Held>,
    /// Events applied so far.
    applied: u64,
    /// Users and meetings loaded back after they were written.
    reloaded: u64,
    channel: &'static str,
    limits: Limits,
}

impl Bulk {
    pub(super) fn new(conn: PgConnection, channel: &'static str, limits: Limits) -> Self {
        Bulk {
            conn,
            pending: None,
            resident: Resident {
                fold: Fold::default(),
                last: HashMap::new(),
                held: HashMap::new(),
                applied: 0,
                reloaded: 0,
                channel,
                limits,
            },
        }
    }

    /// Events applied so far, and users and meetings loaded back after they were written.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.resident.applied, self.resident.reloaded)
    }

    /// Folds `events` (the next ones in global order) in while the previous batch's statement
    /// runs; what falls out of memory, with the chat and change rows, makes the next one.
    pub(super) async fn apply(&mut self, events: &[Read]) -> anyhow::Result<()> {
        let Some(newest) = events.iter().map(|(e, _)| e.position).max() else {
            return Ok(());
        };
        let again = self.resident.met_again(events);
        if !again.users.is_empty() || !again.meetings.is_empty() {
            // After the statement that may have written them.
            self.write_pending().await?;
            self.resident.reloaded += (again.users.len() + again.meetings.len()) as u64;
            let (_, loaded) = sql::load(&mut self.conn, PROJECTION, &[], &again).await?;
            self.resident.fold.absorb(loaded);
        }
        let pending = self.pending.take();
        let (conn, resident) = (&mut self.conn, &mut self.resident);
        let write = async {
            match pending {
                Some(batch) => write(conn, batch).await,
                None => Ok(()),
            }
        };
        let fold = async { resident.fold_in(events, newest) };
        // The write first: once its statement is sent, the fold runs while PostgreSQL
        // executes it.
        let (written, next) = tokio::join!(biased; write, fold);
        written?;
        self.pending = Some(next?);
        Ok(())
    }

    async fn write_pending(&mut self) -> Result<(), sqlx::Error> {
        if let Some(batch) = self.pending.take() {
            write(&mut self.conn, batch).await?;
        }
        Ok(())
    }

    /// Writes everything still held; answers the connection. The documents are rendered
    /// after ([`render_documents`]).
    pub(super) async fn finish(mut self, newest: Option<Position>) -> anyhow::Result<PgConnection> {
        self.write_pending().await?;
        if let Some(newest) = newest {
            let all: Vec<Uuid> = self.resident.held.keys().copied().collect();
            // In chunks: one statement's arguments for everything held would be large.
            for chunk in all.chunks(FLUSH_CHUNK) {
                let batch = self.resident.batch(chunk, newest);
                write(&mut self.conn, batch).await?;
            }
        }
        Ok(self.conn)
    }
}

/// Renders every meeting's document from the built rows, in chunks.
pub(super) async fn render_documents(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let mut after = Uuid::nil();
    loop {
        let chunk: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM rm_meetings WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(DOCUMENT_CHUNK)
                .fetch_all(&mut *conn)
                .await?;
        let Some(&last) = chunk.last() else {
            return Ok(());
        };
        sql::documents::refresh(conn, &chunk).await?;
        after = last;
    }
}

/// Writes a batch of the build: the rows appended to `rm_changes` and `rm_chat_messages` by
/// `COPY` ([`sql::copy`]), the rest and the checkpoint in the batch statement.
async fn write(conn: &mut PgConnection, mut batch: Batch) -> Result<(), sqlx::Error> {
    let changes = std::mem::take(&mut batch.writes.changes);
    sql::copy::append_changes(conn, &changes).await?;
    drop(changes);
    let chat = std::mem::take(&mut batch.writes.chat);
    sql::copy::append_chat(conn, &chat).await?;
    drop(chat);
    sql::write(conn, &batch).await.map(|_| ())
}

impl Resident {
    /// The batch's users and meetings that were met before but are no longer held: their
    /// stored rows are loaded back.
    fn met_again(&self, events: &[Read]) -> Touched {
        let mut again = Touched::default();
        for (event, _) in events {
            let id = event.aggregate_id;
            let met = self.last.contains_key(&(event.aggregate_type.clone(), id));
            if !met || self.fold.holds(&id) {
                continue;
            }
            let ids = match event.aggregate_type.as_str() {
                "user" => &mut again.users,
                "meeting" => &mut again.meetings,
                _ => continue,
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        again
    }

    /// Folds `events` in; answers the statement writing what falls out of memory.
    fn fold_in(&mut self, events: &[Read], newest: Position) -> anyhow::Result<Batch> {
        for (event, decoded) in events {
            let key = (event.aggregate_type.clone(), event.aggregate_id);
            let applied = self.last.get(&key).copied().unwrap_or(0);
            if event.sequence <= applied {
                continue;
            }
            if event.sequence != applied + 1 {
                return Err(ProjectionError::unapplicable(
                    event,
                    format!("gap: the last applied sequence is {applied}"),
                )
                .into());
            }
            let decoded = decoded
                .as_ref()
                .map_err(|reason| ProjectionError::unapplicable(event, reason.as_str()))?;
            self.fold.apply(event, decoded)?;
            self.applied += 1;
            let held = self.held.entry(event.aggregate_id).or_insert_with(|| Held {
                aggregate_type: key.0.clone(),
                touched_at: 0,
            });
            held.touched_at = self.applied;
            self.last.insert(key, event.sequence);
        }
        let evicted = self.stale();
        Ok(self.batch(&evicted, newest))
    }

    /// The held users and meetings to write now: those untouched for `keep_for` events, and
    /// the oldest beyond `most_held`.
    fn stale(&self) -> Vec<Uuid> {
        let cutoff = self.applied.saturating_sub(self.limits.keep_for);
        let mut by_age: Vec<(u64, Uuid)> = self
            .held
            .iter()
            .map(|(id, held)| (held.touched_at, *id))
            .collect();
        let too_many = by_age.len().saturating_sub(self.limits.most_held);
        by_age.sort_unstable();
        by_age
            .iter()
            .enumerate()
            .take_while(|(i, (at, _))| *i < too_many || *at < cutoff)
            .map(|(_, (_, id))| *id)
            .collect()
    }

    /// The statement writing `evicted` whole (taking them out of memory), the chat and
    /// change rows gathered, the evicted aggregates' sequences and the checkpoint `newest`.
    fn batch(&mut self, evicted: &[Uuid], newest: Position) -> Batch {
        let mut sequences = Vec::with_capacity(evicted.len());
        let (mut users, mut meetings) = (Vec::new(), Vec::new());
        for id in evicted {
            let Some(held) = self.held.remove(id) else {
                continue;
            };
            let key = (held.aggregate_type, *id);
            let sequence = self.last[&key];
            if self.fold.holds_meeting(id) {
                meetings.push(*id);
            } else {
                users.push(*id);
            }
            sequences.push((key.0, *id, sequence));
        }
        let mut writes = self.fold.evict(&users, &meetings);
        (writes.chat, writes.changes) = self.fold.take_appended();
        Batch {
            writes,
            bookkeeping: Bookkeeping {
                projection: PROJECTION,
                sequences,
                position: newest.to_string(),
                stream_sequence: None,
                channel: self.channel,
            },
        }
    }
}
