//! The state of one authenticated connection: its subscriptions, what each client message
//! does to them, and which queued frames still go out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use platform::auth::Claims;
use platform::store::Position;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::replay::{self, Replay};
use super::shared::Shared;
use crate::hub::{Admission, Outbound, Subscriber};
use crate::protocol::{event_frame, Channel, ClientMessage, Refusal, ServerMessage};

/// Identifies a connection in the hub and in presence (per process).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Per-channel delivery state: events at or before `delivered` were already sent (replay).
struct ChannelState {
    delivered: Position,
}

pub(super) struct Session {
    shared: Arc<Shared>,
    user_id: Uuid,
    /// The token in force: the first one, or the latest renewal.
    claims: Claims,
    /// When `claims` expire, on this process's clock.
    expires_at: Instant,
    connection: u64,
    /// This connection's handle in the hub (its queue and too-slow signal).
    subscriber: Subscriber,
    channels: HashMap<Channel, ChannelState>,
}

impl Session {
    /// A session without subscriptions, and the receiving end of its queue.
    pub(super) fn open(shared: Arc<Shared>, claims: Claims) -> (Self, mpsc::Receiver<Outbound>) {
        let user_id = claims.sub;
        let (queue, inbox) = mpsc::channel(shared.limits.queue);
        let subscriber = Subscriber {
            user_id,
            queue,
            too_slow: CancellationToken::new(),
        };
        let session = Self {
            shared,
            user_id,
            expires_at: expiry(&claims),
            claims,
            connection: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            subscriber,
            channels: HashMap::new(),
        };
        (session, inbox)
    }

    /// When the token in force expires: the connection is closed then (4401) unless the
    /// client renewed it.
    pub(super) fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether the token in force has been revoked since it was checked.
    pub(super) fn revoked(&self) -> bool {
        self.shared.jwt.revocations().check(&self.claims).is_err()
    }

    /// Changes whenever this process learns of a revocation.
    pub(super) fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.jwt.revocations().watch()
    }

    /// Cancelled by the hub when this connection's queue overflowed.
    pub(super) fn too_slow(&self) -> CancellationToken {
        self.subscriber.too_slow.clone()
    }

    /// Cancelled when the instance stops.
    pub(super) fn shutdown(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// The frame a queued message becomes, if it is still to be sent.
    pub(super) fn outbound(&mut self, outbound: Outbound) -> Option<Message> {
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
                // The hub already dropped the subscription.
                self.channels.remove(&channel)?;
                self.shared
                    .presence
                    .leave(channel, self.user_id, self.connection);
                Some(Refusal::Revoked.to_message(Some(&channel.name())))
            }
            Outbound::Control(frame) => Some(Message::Text(frame)),
        }
    }

    /// Answers one text message of the client.
    pub(super) async fn handle(&mut self, text: &str) -> Vec<Message> {
        match serde_json::from_str::<ClientMessage>(text) {
            Err(error) => vec![Refusal::from(error).to_message(None)],
            Ok(ClientMessage::Ping {}) => vec![ServerMessage::Pong.to_message()],
            Ok(ClientMessage::Auth { token }) => vec![self.renew(&token)],
            Ok(ClientMessage::Unsubscribe { channel }) => vec![self.unsubscribe(&channel)],
            Ok(ClientMessage::Subscribe { channel, since }) => {
                self.subscribe(&channel, since.as_deref()).await
            }
        }
    }

    /// Puts a fresh token of the same user in force (`ready`), or refuses it and keeps the
    /// current one.
    fn renew(&mut self, token: &str) -> Message {
        match self.shared.jwt.authenticate(token) {
            Ok(claims) if claims.sub == self.user_id => {
                self.expires_at = expiry(&claims);
                self.claims = claims;
                ServerMessage::Ready {
                    user_id: self.user_id,
                }
                .to_message()
            }
            Ok(_) => Refusal::Reauth("it is another user's".into()).to_message(None),
            Err(rejection) => Refusal::Reauth(rejection.to_string()).to_message(None),
        }
    }

    fn unsubscribe(&mut self, name: &str) -> Message {
        if let Some(channel) = Channel::parse(name, self.user_id) {
            if self.channels.remove(&channel).is_some() {
                self.leave(channel);
            }
        }
        ServerMessage::Unsubscribed { channel: name }.to_message()
    }

    /// `subscribed`, then the replay of what the client missed since `since` (or `reset`),
    /// then, for a meeting, who is present.
    async fn subscribe(&mut self, name: &str, since: Option<&str>) -> Vec<Message> {
        let (channel, since, admission) = match self.admit(name, since).await {
            Ok(admitted) => admitted,
            Err(refusal) => return vec![refusal.to_message(Some(name))],
        };
        // Right after a start the hub does not yet know where live delivery begins.
        if !self
            .shared
            .hub
            .started(self.shared.limits.replay_wait)
            .await
        {
            return vec![Refusal::Unavailable.to_message(Some(name))];
        }
        if self.channels.contains_key(&channel) {
            self.shared.hub.unsubscribe(channel, self.connection);
        }
        // Live delivery is registered first, so the replay can stop where it begins.
        let subscribed =
            self.shared
                .hub
                .subscribe(channel, self.connection, self.subscriber.clone(), admission);
        let live_from = match subscribed {
            Ok(live_from) => live_from,
            Err(refusal) => {
                if self.channels.remove(&channel).is_some() {
                    self.leave(channel);
                }
                return vec![refusal.to_message(Some(name))];
            }
        };
        let mut replies = vec![ServerMessage::Subscribed {
            channel: name,
            position: live_from,
        }
        .to_message()];
        let mut delivered = live_from;
        if let Some(since) = since {
            // The client may already be past this instance (it was on a faster one): never
            // send it what it has.
            delivered = delivered.max(since);
            match replay::replay(&self.shared, self.user_id, channel, since, live_from).await {
                Replay::Events(events) => {
                    for event in &events {
                        replies.push(Message::Text(Utf8Bytes::from(event_frame(name, event))));
                    }
                    if let Some(last) = events.last() {
                        delivered = delivered.max(last.position);
                    }
                }
                Replay::Reset => replies.push(ServerMessage::Reset { channel: name }.to_message()),
            }
        }
        self.channels.insert(channel, ChannelState { delivered });
        if let Channel::Meeting(_) = channel {
            let users = self
                .shared
                .presence
                .join(channel, self.user_id, self.connection);
            replies.push(
                ServerMessage::Presence {
                    channel: name,
                    users,
                }
                .to_message(),
            );
        }
        replies
    }

    /// The channel, resume position and (for a meeting) admission of a subscription the
    /// user may make.
    async fn admit(
        &self,
        name: &str,
        since: Option<&str>,
    ) -> Result<(Channel, Option<Position>, Option<Admission>), Refusal> {
        let channel = Channel::parse(name, self.user_id).ok_or(Refusal::UnknownChannel)?;
        let since = since
            .map(str::parse::<Position>)
            .transpose()
            .map_err(|_| Refusal::BadSince)?;
        let admission = match channel {
            Channel::Meeting(meeting) => match self.shared.hub.admit(meeting, self.user_id).await {
                Ok(Some(admission)) => Some(admission),
                Ok(None) => return Err(Refusal::NotMember),
                Err(error) => {
                    tracing::warn!(%error, "membership check failed");
                    return Err(Refusal::Unavailable);
                }
            },
            Channel::User(_) => None,
        };
        Ok((channel, since, admission))
    }

    fn leave(&self, channel: Channel) {
        self.shared.hub.unsubscribe(channel, self.connection);
        self.shared
            .presence
            .leave(channel, self.user_id, self.connection);
    }

    /// Ends every subscription (the connection is closing).
    pub(super) fn leave_all(&mut self) {
        for (channel, _) in std::mem::take(&mut self.channels) {
            self.leave(channel);
        }
    }
}

/// The instant `claims` expire (`exp` is in whole seconds of the wall clock).
fn expiry(claims: &Claims) -> Instant {
    let left = claims
        .exp
        .saturating_mul(1000)
        .saturating_sub(chrono::Utc::now().timestamp_millis());
    Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0))
}
