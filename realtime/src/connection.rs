//! One websocket connection: authentication, subscriptions, resume, and the bounded queue
//! between the hub and the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use platform::auth::JwtKeys;
use platform::bus::EventEnvelope;
use platform::store::Position;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hub::{Outbound, Subscriber};
use crate::protocol::{event_frame, Channel, ClientMessage, ServerMessage};
use crate::Shared;

/// Close codes of API.md.
pub mod close {
    pub const BAD_AUTH: u16 = 4401;
    pub const AUTH_TIMEOUT: u16 = 4408;
    pub const TOO_SLOW: u16 = 4429;
    pub const TOO_BIG: u16 = 1009;
    pub const GOING_AWAY: u16 = 1001;
}

/// Tuning of connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub auth_timeout: Duration,
    /// Messages buffered for a connection before it counts as too slow.
    pub queue: usize,
    pub ping_interval: Duration,
    /// Closed when nothing (not even a pong) arrived for this long.
    pub idle_timeout: Duration,
    /// Client messages per second allowed on average, and the burst above it.
    pub messages_per_second: f64,
    pub burst: f64,
    /// A resume that would replay more than this answers `reset` instead.
    pub max_replay: usize,
    /// How long a `user:me` resume waits for the read models to catch up.
    pub replay_wait: Duration,
    /// How often an instance tells the others whom it has present.
    pub presence_heartbeat: Duration,
    /// A remote instance's presence is dropped when not refreshed for this long.
    pub presence_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(5),
            queue: 1024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            messages_per_second: 20.0,
            burst: 100.0,
            max_replay: 10_000,
            replay_wait: Duration::from_secs(2),
            presence_heartbeat: Duration::from_secs(5),
            presence_expiry: Duration::from_secs(15),
        }
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Queued messages written to the socket with one flush at most.
const MAX_BATCH: usize = 64;

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

fn text(message: &ServerMessage<'_>) -> Message {
    Message::Text(Utf8Bytes::from(message.to_text()))
}

/// Serves one upgraded socket until it closes.
pub async fn serve(socket: WebSocket, shared: Arc<Shared>) {
    let (mut sink, mut stream) = socket.split();
    let limits = shared.limits.clone();

    // 1. Authentication: the first message, within the timeout.
    let first = tokio::time::timeout(limits.auth_timeout, stream.next()).await;
    let user_id = match first {
        Err(_) => {
            let _ = sink
                .send(close_frame(close::AUTH_TIMEOUT, "authenticate within 5 s"))
                .await;
            return;
        }
        Ok(Some(Ok(Message::Text(text)))) => match authenticate(&text, &shared.jwt) {
            Some(user_id) => user_id,
            None => {
                let _ = sink
                    .send(close_frame(close::BAD_AUTH, "bad or missing token"))
                    .await;
                return;
            }
        },
        Ok(Some(Err(error))) if is_too_big(&error) => {
            let _ = sink
                .send(close_frame(close::TOO_BIG, "frame too big"))
                .await;
            return;
        }
        Ok(_) => {
            let _ = sink
                .send(close_frame(
                    close::BAD_AUTH,
                    "the first message must be auth",
                ))
                .await;
            return;
        }
    };
    if sink
        .send(text(&ServerMessage::Ready { user_id }))
        .await
        .is_err()
    {
        return;
    }

    let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (queue, mut inbox) = mpsc::channel::<Outbound>(limits.queue);
    let too_slow = CancellationToken::new();
    let subscriber = Subscriber {
        user_id,
        queue,
        too_slow: too_slow.clone(),
    };
    let mut session = Session {
        shared: shared.clone(),
        user_id,
        connection,
        subscriber,
        channels: HashMap::new(),
        tokens: limits.burst,
        refilled: Instant::now(),
    };
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.tick().await;
    let mut last_heard = Instant::now();

    let close: Option<Message> = loop {
        tokio::select! {
            () = too_slow.cancelled() => {
                break Some(close_frame(close::TOO_SLOW, "too slow: resume with `since`"));
            }
            Some(outbound) = inbox.recv() => {
                // Everything already queued goes out with one flush (one write to the socket):
                // a fan-out queues the meeting and the `user:me` frame of an event together.
                let mut next = Some(outbound);
                let (mut fed, mut failed) = (0, false);
                while let Some(outbound) = next.take() {
                    if let Some(message) = session.outbound(outbound) {
                        if sink.feed(message).await.is_err() {
                            failed = true;
                            break;
                        }
                        fed += 1;
                    }
                    if fed < MAX_BATCH {
                        next = inbox.try_recv().ok();
                    }
                }
                if failed || (fed > 0 && sink.flush().await.is_err()) {
                    break None;
                }
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    None => break None,
                    Some(Err(error)) if is_too_big(&error) => {
                        break Some(close_frame(close::TOO_BIG, "frame too big (limit 64 KiB)"));
                    }
                    Some(Err(_)) => break None,
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Binary(_))) => {
                        let reply = ServerMessage::Error {
                            channel: None,
                            code: "bad_request",
                            message: "send JSON text frames".into(),
                        };
                        if sink.send(text(&reply)).await.is_err() { break None; }
                    }
                    Some(Ok(Message::Text(message))) => {
                        if !session.take_token() {
                            break Some(close_frame(close::TOO_SLOW, "flooding"));
                        }
                        let replies = session.handle(&message).await;
                        let mut failed = false;
                        for reply in replies {
                            if sink.send(reply).await.is_err() { failed = true; break; }
                        }
                        if failed { break None; }
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    break Some(close_frame(close::GOING_AWAY, "idle"));
                }
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break None;
                }
            }
        }
    };
    session.leave_all();
    if let Some(close) = close {
        if sink.send(close).await.is_ok() {
            // Closing handshake: read (and drop) until the client's close, briefly, so the
            // socket is not reset under unread data and the client gets to read our code.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    let _ = sink.close().await;
}

fn authenticate(text: &str, jwt: &JwtKeys) -> Option<Uuid> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Auth { token }) => jwt.verify(&token).ok().map(|claims| claims.sub),
        _ => None,
    }
}

fn is_too_big(error: &axum::Error) -> bool {
    let text = format!("{error:?}");
    text.contains("Capacity") || text.contains("too long") || text.contains("too big")
}

/// One row of `rm_changes`: position, event id, type, aggregate type and id, sequence,
/// recorded at, data.
type ChangeRow = (
    String,
    Uuid,
    String,
    String,
    Uuid,
    i64,
    chrono::DateTime<chrono::Utc>,
    serde_json::Value,
);

/// Per-channel delivery state: events at or before `delivered` were already sent (replay).
struct ChannelState {
    delivered: Position,
}

struct Session {
    shared: Arc<Shared>,
    user_id: Uuid,
    connection: u64,
    subscriber: Subscriber,
    channels: HashMap<Channel, ChannelState>,
    tokens: f64,
    refilled: Instant,
}

impl Session {
    /// Token bucket against flooding.
    fn take_token(&mut self) -> bool {
        let limits = &self.shared.limits;
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * limits.messages_per_second).min(limits.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn outbound(&mut self, outbound: Outbound) -> Option<Message> {
        match outbound {
            Outbound::Event {
                channel,
                position,
                frame,
            } => {
                let state = self.channels.get_mut(&channel)?;
                if position <= state.delivered {
                    return None; // already sent by a resume replay
                }
                state.delivered = position;
                Some(Message::Text(frame))
            }
            Outbound::Revoked { channel } => {
                self.channels.remove(&channel)?;
                self.shared
                    .presence
                    .leave(channel, self.user_id, self.connection);
                let name = channel.name();
                Some(text(&ServerMessage::Error {
                    channel: Some(&name),
                    code: "forbidden",
                    message: "you are no longer a member of this meeting".into(),
                }))
            }
            Outbound::Control(frame) => Some(Message::Text(frame)),
        }
    }

    async fn handle(&mut self, text: &str) -> Vec<Message> {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(error) => {
                return vec![self::text(&ServerMessage::Error {
                    channel: None,
                    code: "bad_request",
                    message: format!("malformed message: {error}"),
                })]
            }
        };
        match message {
            ClientMessage::Ping {} => vec![self::text(&ServerMessage::Pong)],
            ClientMessage::Auth { .. } => vec![self::text(&ServerMessage::Error {
                channel: None,
                code: "bad_request",
                message: "already authenticated".into(),
            })],
            ClientMessage::Unsubscribe { channel: name } => {
                if let Some(channel) = Channel::parse(&name, self.user_id) {
                    if self.channels.remove(&channel).is_some() {
                        self.shared.hub.unsubscribe(channel, self.connection);
                        self.shared
                            .presence
                            .leave(channel, self.user_id, self.connection);
                    }
                }
                vec![self::text(&ServerMessage::Unsubscribed { channel: &name })]
            }
            ClientMessage::Subscribe {
                channel: name,
                since,
            } => self.subscribe(&name, since.as_deref()).await,
        }
    }

    async fn subscribe(&mut self, name: &str, since: Option<&str>) -> Vec<Message> {
        let error = |code: &str, message: &str| {
            vec![text(&ServerMessage::Error {
                channel: Some(name),
                code,
                message: message.into(),
            })]
        };
        let Some(channel) = Channel::parse(name, self.user_id) else {
            return error("bad_request", "channels are `user:me` and `meeting:<id>`");
        };
        let since = match since.map(str::parse::<Position>) {
            None => None,
            Some(Ok(position)) => Some(position),
            Some(Err(_)) => return error("bad_request", "`since` is not a position"),
        };
        if let Channel::Meeting(meeting) = channel {
            match self.shared.hub.is_member(meeting, self.user_id).await {
                Ok(true) => {}
                // Not revealing whether the meeting exists.
                Ok(false) => return error("forbidden", "not a member of this meeting"),
                Err(error_) => {
                    tracing::warn!(error = %error_, "membership check failed");
                    return error("unavailable", "try again shortly");
                }
            }
        }
        if self.channels.contains_key(&channel) {
            self.shared.hub.unsubscribe(channel, self.connection);
        }
        let live_from =
            self.shared
                .hub
                .subscribe(channel, self.connection, self.subscriber.clone());
        let mut replies = vec![text(&ServerMessage::Subscribed {
            channel: name,
            position: live_from,
        })];
        let mut delivered = live_from;
        if let Some(since) = since {
            // The client may already be past this instance (it was on a faster one): never
            // send it what it has.
            delivered = delivered.max(since);
            match self.replay(channel, since, live_from).await {
                Ok(Some(events)) => {
                    for event in &events {
                        replies.push(Message::Text(Utf8Bytes::from(event_frame(name, event))));
                    }
                    if let Some(last) = events.last() {
                        delivered = delivered.max(last.position);
                    }
                }
                Ok(None) => replies.push(text(&ServerMessage::Reset { channel: name })),
                Err(error_) => {
                    tracing::warn!(error = %error_, "replay failed");
                    replies.push(text(&ServerMessage::Reset { channel: name }));
                }
            }
        }
        self.channels.insert(channel, ChannelState { delivered });
        if let Channel::Meeting(_) = channel {
            let users = self
                .shared
                .presence
                .join(channel, self.user_id, self.connection);
            replies.push(text(&ServerMessage::Presence {
                channel: name,
                users,
            }));
        }
        replies
    }

    /// Events of `channel` after `since` up to `live_from`; `None` when a gapless replay is
    /// impossible (too many, or the read models did not catch up in time).
    async fn replay(
        &self,
        channel: Channel,
        since: Position,
        live_from: Position,
    ) -> anyhow::Result<Option<Vec<EventEnvelope>>> {
        let max = self.shared.limits.max_replay;
        match channel {
            Channel::Meeting(meeting) => {
                // The store is authoritative and at least as far as the stream.
                let events: Vec<EventEnvelope> = self
                    .shared
                    .store
                    .load("meeting", meeting)
                    .await?
                    .iter()
                    .filter(|e| e.position > since)
                    .map(EventEnvelope::from)
                    .collect();
                Ok((events.len() <= max).then_some(events))
            }
            Channel::User(user) => {
                // What the user may see is in the read models; they must have reached the
                // point where live delivery starts, or there would be a hole.
                let deadline = Instant::now() + self.shared.limits.replay_wait;
                loop {
                    let checkpoint: Option<String> = sqlx::query_scalar(
                        "SELECT position FROM projection_checkpoints WHERE projection = $1",
                    )
                    .bind(platform::projection::READ_MODELS)
                    .fetch_optional(&self.shared.pool)
                    .await?;
                    let reached = checkpoint
                        .and_then(|c| c.parse::<Position>().ok())
                        .is_some_and(|c| c >= live_from);
                    if reached || live_from == Position::START {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
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
                .fetch_all(&self.shared.pool)
                .await?;
                if rows.len() > max {
                    return Ok(None);
                }
                let mut events = Vec::with_capacity(rows.len());
                for (
                    position,
                    event_id,
                    event_type,
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    recorded_at,
                    data,
                ) in rows
                {
                    events.push(EventEnvelope {
                        event_id,
                        position: position
                            .parse()
                            .map_err(|_| anyhow::anyhow!("bad position"))?,
                        event_type,
                        event_version: String::new(),
                        aggregate_type,
                        aggregate_id,
                        sequence,
                        recorded_at,
                        data,
                        metadata: platform::store::EventMetadata {
                            event_id,
                            actor_id: None,
                            request_id: String::new(),
                            correlation_id: String::new(),
                            causation_id: String::new(),
                        },
                    });
                }
                Ok(Some(events))
            }
        }
    }

    fn leave_all(&mut self) {
        for (channel, _) in self.channels.drain() {
            self.shared.hub.unsubscribe(channel, self.connection);
            self.shared
                .presence
                .leave(channel, self.user_id, self.connection);
        }
    }
}
