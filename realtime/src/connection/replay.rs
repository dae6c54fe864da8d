//! What a resume with `since` missed: the events of a channel after the client's position, up
//! to where its live delivery began (the session drops what both deliver, by position).
//!
//! Meeting channels replay from the event store, which is authoritative and at least as far
//! as the stream. `user:me` replays from the change read model `rm_changes`, which holds what
//! the user may see, once the projector has reached the start of live delivery (else there
//! would be a hole).

use std::time::Duration;

use platform::bus::EventEnvelope;
use platform::store::{EventMetadata, EventStore, Position};
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use super::shared::Shared;
use crate::protocol::Channel;

/// The outcome of a resume.
pub(super) enum Replay {
    /// The missed events, in order.
    Events(Vec<EventEnvelope>),
    /// A gapless replay is impossible (too many events, the read models did not catch up in
    /// time, or the database failed): the client must reload and subscribe afresh.
    Reset,
}

/// Events of `channel` after `since`; for `user:me`, up to `live_from`.
pub(super) async fn replay(
    shared: &Shared,
    channel: Channel,
    since: Position,
    live_from: Position,
) -> Replay {
    let limits = &shared.limits;
    let loaded = match channel {
        Channel::Meeting(meeting) => {
            meeting_events(shared.store.as_ref(), meeting, since, limits.max_replay).await
        }
        Channel::User(user) => {
            user_changes(
                &shared.pool,
                user,
                since,
                live_from,
                limits.max_replay,
                limits.replay_wait,
            )
            .await
        }
    };
    match loaded {
        Ok(Some(events)) => Replay::Events(events),
        Ok(None) => Replay::Reset,
        Err(error) => {
            tracing::warn!(%error, "replay failed");
            Replay::Reset
        }
    }
}

/// The meeting's stored events after `since`; `None` when there are more than `max`.
async fn meeting_events(
    store: &dyn EventStore,
    meeting: Uuid,
    since: Position,
    max: usize,
) -> anyhow::Result<Option<Vec<EventEnvelope>>> {
    // One more than allowed tells "too many" apart from "exactly max", without reading
    // the rest of a long stream.
    let limit = i64::try_from(max).unwrap_or(i64::MAX - 1) + 1;
    let events: Vec<EventEnvelope> = store
        .load_since("meeting", meeting, since, limit)
        .await?
        .into_iter()
        .map(EventEnvelope::from)
        .collect();
    Ok((events.len() <= max).then_some(events))
}

/// One row of `rm_changes`.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    position: String,
    event_id: Uuid,
    event_type: String,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    data: serde_json::Value,
}

impl ChangeRow {
    /// An envelope with what an event frame shows; the read model keeps no metadata.
    fn into_envelope(self) -> anyhow::Result<EventEnvelope> {
        Ok(EventEnvelope {
            event_id: self.event_id,
            position: self
                .position
                .parse()
                .map_err(|_| anyhow::anyhow!("bad position"))?,
            event_type: self.event_type,
            event_version: String::new(),
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            recorded_at: self.recorded_at,
            data: self.data,
            metadata: EventMetadata {
                event_id: self.event_id,
                actor_id: None,
                request_id: String::new(),
                correlation_id: String::new(),
                causation_id: String::new(),
            },
        })
    }
}

/// The user's changes after `since` up to `live_from`, once the read models reached
/// `live_from` (waiting up to `wait`); `None` when they did not, or there are more than `max`.
async fn user_changes(
    pool: &PgPool,
    user: Uuid,
    since: Position,
    live_from: Position,
    max: usize,
    wait: Duration,
) -> anyhow::Result<Option<Vec<EventEnvelope>>> {
    if !read_models_reached(pool, live_from, wait).await? {
        return Ok(None);
    }
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT position, event_id, event_type, aggregate_type, aggregate_id, \
             sequence, recorded_at, data FROM rm_changes \
             WHERE audience @> ARRAY[$1]::uuid[] AND position > $2 AND position <= $3 \
             ORDER BY position LIMIT $4",
    )
    .bind(user)
    .bind(since.to_string())
    .bind(live_from.to_string())
    .bind(i64::try_from(max + 1).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    if rows.len() > max {
        return Ok(None);
    }
    let events = rows
        .into_iter()
        .map(ChangeRow::into_envelope)
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(events))
}

/// Whether the read models' checkpoint reaches `live_from` within `wait`, polled every 10 ms.
async fn read_models_reached(
    pool: &PgPool,
    live_from: Position,
    wait: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        let reached = platform::projection::checkpoint(pool)
            .await?
            .is_some_and(|checkpoint| checkpoint >= live_from);
        // Nothing was dispatched yet: there is nothing the read models must have reached.
        if reached || live_from == Position::START {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
