//! What a resume with `since` missed: the events of a channel after the client's position, up
//! to where its live delivery began (the session drops what both deliver, by position).
//!
//! Both channels replay from the change read model `rm_changes`, which holds each event with
//! the audience it had when it happened (the rule live delivery applies too) and the payload
//! as `/v1/changes` shows it, once the projector has reached the start of live delivery (else
//! there would be a hole). A meeting channel replays the meeting's part of it.

use std::time::Duration;

use platform::bus::EventEnvelope;
use platform::store::{EventMetadata, Position};
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

/// Events of `channel` that `user` may see after `since`, up to `live_from`.
pub(super) async fn replay(
    shared: &Shared,
    user: Uuid,
    channel: Channel,
    since: Position,
    live_from: Position,
) -> Replay {
    let limits = &shared.limits;
    let meeting = match channel {
        Channel::Meeting(meeting) => Some(meeting),
        Channel::User(_) => None,
    };
    let range = Range {
        user,
        meeting,
        since,
        live_from,
    };
    match changes(&shared.pool, &range, limits.max_replay, limits.replay_wait).await {
        Ok(Some(events)) => Replay::Events(events),
        Ok(None) => Replay::Reset,
        Err(error) => {
            tracing::warn!(%error, "replay failed");
            Replay::Reset
        }
    }
}

/// What a replay reads: `user`'s changes (of `meeting` only, when given) in
/// (`since`, `live_from`].
struct Range {
    user: Uuid,
    meeting: Option<Uuid>,
    since: Position,
    live_from: Position,
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
                traceparent: None,
            },
        })
    }
}

/// The changes of `range`, once the read models reached its end (waiting up to `wait`);
/// `None` when they did not, or there are more than `max`.
async fn changes(
    pool: &PgPool,
    range: &Range,
    max: usize,
    wait: Duration,
) -> anyhow::Result<Option<Vec<EventEnvelope>>> {
    if !read_models_reached(pool, range.live_from, wait).await? {
        return Ok(None);
    }
    const COLUMNS: &str = "position, event_id, event_type, aggregate_type, aggregate_id, \
                           sequence, recorded_at, data";
    // One more than allowed tells "too many" apart from "exactly max".
    let limit = i64::try_from(max + 1).unwrap_or(i64::MAX);
    let sql = match range.meeting {
        None => format!(
            "SELECT {COLUMNS} FROM rm_changes \
             WHERE audience @> ARRAY[$1]::uuid[] AND position > $2 AND position <= $3 \
             ORDER BY position LIMIT $4"
        ),
        Some(_) => format!(
            "SELECT {COLUMNS} FROM rm_changes \
             WHERE aggregate_id = $5 AND position > $2 AND position <= $3 \
               AND audience @> ARRAY[$1]::uuid[] \
             ORDER BY position LIMIT $4"
        ),
    };
    let query = sqlx::query_as::<_, ChangeRow>(&sql)
        .bind(range.user)
        .bind(range.since.to_string())
        .bind(range.live_from.to_string())
        .bind(limit);
    let query = match range.meeting {
        Some(meeting) => query.bind(meeting),
        None => query,
    };
    let rows = query.fetch_all(pool).await?;
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
