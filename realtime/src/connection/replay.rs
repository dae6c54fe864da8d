//! What a resume with `since` missed: the events of a channel after the client's position, up
//! to where its live delivery began (the session drops what both deliver, by position).
//!
//! Both channels replay from the change read model `rm_changes`, which holds each event with
//! the audience it had when it happened (the rule live delivery applies too) and the payload
//! as `/v1/changes` shows it, once the projector has reached the start of live delivery (else
//! there would be a hole). A meeting channel replays the meeting's part of it.

use std::time::Duration;

use platform::bus::EventEnvelope;
use platform::store::Position;
use tokio::time::Instant;
use uuid::Uuid;

use super::changes::{ChangeLog, Range};
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
        until: live_from,
    };
    let log = shared.changes.as_ref();
    match changes(log, &range, limits.max_replay, limits.replay_wait).await {
        Ok(Some(events)) => Replay::Events(events),
        Ok(None) => Replay::Reset,
        Err(error) => {
            tracing::warn!(%error, "replay failed");
            Replay::Reset
        }
    }
}

/// The changes of `range`, once the read models reached its end (waiting up to `wait`);
/// `None` when they did not, or there are more than `max`.
async fn changes(
    log: &dyn ChangeLog,
    range: &Range,
    max: usize,
    wait: Duration,
) -> anyhow::Result<Option<Vec<EventEnvelope>>> {
    if !read_models_reached(log, range.until, wait).await? {
        return Ok(None);
    }
    // One more than allowed tells "too many" apart from "exactly max".
    let limit = i64::try_from(max + 1).unwrap_or(i64::MAX);
    let events = log.changes(range, limit).await?;
    if events.len() > max {
        return Ok(None);
    }
    Ok(Some(events))
}

/// Whether the read models' checkpoint reaches `live_from` within `wait`, polled every 10 ms.
async fn read_models_reached(
    log: &dyn ChangeLog,
    live_from: Position,
    wait: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        let reached = log
            .checkpoint()
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
