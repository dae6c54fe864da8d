//! The in-process fan-out: one NATS consumer per instance feeds the hub, the hub routes each
//! event to the queues of the connections subscribed to its channels.
//!
//! Routing needs meeting membership (who is organizer or attendee: a `domain::Membership`).
//! The hub keeps it per meeting, loaded from the event store on first use (the store is always
//! at least as far as the stream) and advanced by the meeting's events as they pass, by
//! sequence, so a loaded state is never rolled back by an older event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use domain::{Meeting, MeetingEvent, Membership};
use platform::bus::EventEnvelope;
use platform::store::{decode_event, EventStore, Position};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::protocol::{event_frame, Channel};

/// A message for one connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An event frame on a channel, with its position for resume de-duplication. The frame is
    /// serialized once per event and shared (a reference count, not a copy) by every
    /// subscriber and the socket write.
    Event {
        channel: Channel,
        position: Position,
        frame: Utf8Bytes,
    },
    /// The caller lost access to the channel (removed from the meeting).
    Revoked { channel: Channel },
    /// A ready-made control frame (presence).
    Control(Utf8Bytes),
}

/// One connection's handle as the hub sees it.
#[derive(Clone)]
pub struct Subscriber {
    pub user_id: Uuid,
    pub queue: mpsc::Sender<Outbound>,
    /// Cancelled when the connection's queue overflowed: it is too slow and must go.
    pub too_slow: CancellationToken,
}

/// A meeting's membership as the hub knows it, with the sequence of the last event in it (so
/// an older event never rolls a newer state back).
#[derive(Debug, Clone, Default)]
struct KnownMembership {
    version: i64,
    membership: Membership,
}

#[derive(Default)]
struct State {
    subscriptions: HashMap<Channel, HashMap<u64, Subscriber>>,
    memberships: HashMap<Uuid, KnownMembership>,
    /// Position of the last event dispatched.
    position: Position,
}

pub struct Hub {
    state: Mutex<State>,
    store: Arc<dyn EventStore>,
    upcasters: Vec<Box<dyn cqrs_es::persist::EventUpcaster>>,
}

impl Hub {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            store,
            upcasters: domain::upcasters::upcasters(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("BUG: hub state poisoned")
    }

    /// The position of the last dispatched event.
    pub fn position(&self) -> Position {
        self.lock().position
    }

    /// Adds a subscription; returns the position from which it receives live events (every
    /// event after it).
    pub fn subscribe(&self, channel: Channel, connection: u64, subscriber: Subscriber) -> Position {
        let mut state = self.lock();
        state
            .subscriptions
            .entry(channel)
            .or_default()
            .insert(connection, subscriber);
        state.position
    }

    pub fn unsubscribe(&self, channel: Channel, connection: u64) {
        let mut state = self.lock();
        if let Some(subscribers) = state.subscriptions.get_mut(&channel) {
            subscribers.remove(&connection);
            if subscribers.is_empty() {
                state.subscriptions.remove(&channel);
            }
        }
    }

    /// Whether `user` is organizer or attendee of `meeting` (loading it if needed).
    pub async fn is_member(&self, meeting: Uuid, user: Uuid) -> anyhow::Result<bool> {
        if let Some(known) = self.lock().memberships.get(&meeting) {
            return Ok(known.membership.contains(user));
        }
        let membership = self.load_membership(meeting).await?;
        let member = membership
            .as_ref()
            .is_some_and(|known| known.membership.contains(user));
        if let Some(membership) = membership {
            self.remember(meeting, membership);
        }
        Ok(member)
    }

    async fn load_membership(&self, meeting: Uuid) -> anyhow::Result<Option<KnownMembership>> {
        // From the meeting's snapshot: bounded however much was said in its chat.
        let state = platform::store::load_aggregate::<Meeting>(
            &*self.store,
            &self.upcasters,
            meeting,
            None,
        )
        .await?;
        if !state.aggregate.exists() {
            return Ok(None);
        }
        Ok(Some(KnownMembership {
            version: state.version,
            membership: state.aggregate.membership().ids(),
        }))
    }

    /// Keeps the newer of the known and the given membership.
    fn remember(&self, meeting: Uuid, membership: KnownMembership) {
        let mut state = self.lock();
        let entry = state.memberships.entry(meeting).or_default();
        if membership.version > entry.version {
            *entry = membership;
        }
    }

    /// Routes one event (called in stream order by the consumer).
    pub async fn dispatch(&self, event: &EventEnvelope) {
        let mut user_targets: Vec<Uuid> = vec![];
        let mut revoked: Option<Uuid> = None;
        match event.aggregate_type.as_str() {
            "user" => user_targets.push(event.aggregate_id),
            "meeting" => {
                let decoded: Option<MeetingEvent> = decode_event(
                    &event.event_type,
                    &event.event_version,
                    event.data.clone(),
                    &self.upcasters,
                )
                .ok();
                let known = self.lock().memberships.contains_key(&event.aggregate_id);
                if !known && !matches!(decoded, Some(MeetingEvent::MeetingScheduled { .. })) {
                    match self.load_membership(event.aggregate_id).await {
                        Ok(Some(membership)) => self.remember(event.aggregate_id, membership),
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "cannot load meeting membership"),
                    }
                }
                let mut state = self.lock();
                let known = state.memberships.entry(event.aggregate_id).or_default();
                if event.sequence > known.version {
                    if let Some(decoded) = &decoded {
                        known.membership.apply(decoded);
                    }
                    known.version = event.sequence;
                }
                if let Some(MeetingEvent::AttendeeRemoved { user_id }) = &decoded {
                    revoked = Some(*user_id);
                    user_targets.push(*user_id);
                }
                user_targets.extend(known.membership.members());
            }
            _ => {}
        }

        user_targets.sort_unstable();
        user_targets.dedup();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.position = state.position.max(event.position);
        let user_frame: Option<Utf8Bytes> = user_targets
            .iter()
            .any(|user| state.subscriptions.contains_key(&Channel::User(*user)))
            .then(|| event_frame("user:me", event).into());
        let user_event = |channel: Channel, frame: &Utf8Bytes| Outbound::Event {
            channel,
            position: event.position,
            frame: frame.clone(),
        };
        let meeting_channel =
            (event.aggregate_type == "meeting").then_some(Channel::Meeting(event.aggregate_id));
        if let Some(channel) = meeting_channel {
            if let Some(subscribers) = state.subscriptions.get(&channel) {
                let frame: Utf8Bytes = event_frame(&channel.name(), event).into();
                for (connection, subscriber) in subscribers {
                    if revoked == Some(subscriber.user_id) {
                        continue;
                    }
                    offer(subscriber, user_event(channel, &frame));
                    // The same connection's `user:me` frame right behind it, so that the
                    // connection wakes once and writes both at once (a fan-out to N connections
                    // costs N wakeups and N writes, not 2 N). Per channel the order is the
                    // stream order either way.
                    let Some(user_frame) = &user_frame else {
                        continue;
                    };
                    if user_targets.binary_search(&subscriber.user_id).is_err() {
                        continue;
                    }
                    let user_channel = Channel::User(subscriber.user_id);
                    if let Some(own) = state
                        .subscriptions
                        .get(&user_channel)
                        .and_then(|subscribers| subscribers.get(connection))
                    {
                        offer(own, user_event(user_channel, user_frame));
                    }
                }
            }
            if let Some(user) = revoked {
                if let Some(subscribers) = state.subscriptions.get_mut(&channel) {
                    subscribers.retain(|_, subscriber| {
                        if subscriber.user_id == user {
                            offer(subscriber, Outbound::Revoked { channel });
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        }
        let Some(user_frame) = &user_frame else {
            return;
        };
        // Connections still subscribed to the meeting got their `user:me` frame above (the
        // revoked user's connections were just removed from it, so they get it here).
        let served = meeting_channel.and_then(|channel| state.subscriptions.get(&channel));
        for user in user_targets {
            let channel = Channel::User(user);
            if let Some(subscribers) = state.subscriptions.get(&channel) {
                for (connection, subscriber) in subscribers {
                    if served.is_some_and(|served| served.contains_key(connection)) {
                        continue;
                    }
                    offer(subscriber, user_event(channel, user_frame));
                }
            }
        }
    }

    /// Sends a control frame to every subscriber of `channel`.
    pub fn broadcast(&self, channel: Channel, frame: Utf8Bytes) {
        let state = self.lock();
        if let Some(subscribers) = state.subscriptions.get(&channel) {
            for subscriber in subscribers.values() {
                offer(subscriber, Outbound::Control(frame.clone()));
            }
        }
    }

    /// Number of live subscriptions (metrics, tests).
    pub fn subscriptions(&self) -> usize {
        self.lock().subscriptions.values().map(HashMap::len).sum()
    }
}

/// Never waits: a full queue means the client cannot keep up; it is cut off (4429) rather
/// than slowing everyone else down or growing memory without bound.
fn offer(subscriber: &Subscriber, message: Outbound) {
    if subscriber.queue.try_send(message).is_err() {
        subscriber.too_slow.cancel();
    }
}
