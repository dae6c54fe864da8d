//! The in-process fan-out: one NATS consumer per instance feeds the hub, the hub routes each
//! event to the queues of the connections subscribed to its channels.
//!
//! Every event goes to its **audience**: `domain::Membership::audience`, the members of the
//! meeting right after the event (and a removed attendee), the same rule the projector writes
//! into `rm_changes` for `/v1/changes` and resumes. For that the hub keeps each meeting's
//! membership exactly at the point of the stream it has dispatched: loaded from the store up
//! to the event before the first one it sees of the meeting, then advanced by each event. The
//! store may be ahead of the stream; a membership loaded at the store's head would give an
//! older event a later audience.
//!
//! Frames carry the payload as the current code encodes it (upcast), like `/v1/changes`.
//!
//! The hub has no position until its source tells it where live delivery starts
//! ([`Hub::start_at`]): a subscription must know from where to replay what it missed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use domain::{Meeting, MeetingEvent, Membership};
use platform::bus::{Decoded, EventEnvelope};
use platform::store::{EventStore, Position};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::protocol::{event_frame, Channel, Refusal};

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

/// A meeting's membership right after its event `version`.
#[derive(Debug, Clone, Default)]
struct KnownMembership {
    version: i64,
    membership: Membership,
}

/// Why a user was admitted to a meeting channel: the store showed them a member at
/// `version`.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub meeting: Uuid,
    pub version: i64,
}

#[derive(Default)]
struct State {
    subscriptions: HashMap<Channel, HashMap<u64, Subscriber>>,
    /// Memberships as of the dispatched part of the stream.
    memberships: HashMap<Uuid, KnownMembership>,
    /// Position of the last event dispatched, or where live delivery started; `None` until
    /// the source said where that is.
    position: Option<Position>,
}

pub struct Hub {
    state: Mutex<State>,
    store: Arc<dyn EventStore>,
    upcasters: Vec<Box<dyn cqrs_es::persist::EventUpcaster>>,
    started: watch::Sender<bool>,
}

impl Hub {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            store,
            upcasters: domain::upcasters::upcasters(),
            started: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("BUG: hub state poisoned")
    }

    /// Live delivery starts right after `position` (the last event the source had before
    /// it). Called by the source before its first event; later calls only move forward.
    pub fn start_at(&self, position: Position) {
        let mut state = self.lock();
        state.position = Some(state.position.map_or(position, |p| p.max(position)));
        self.started.send_replace(true);
    }

    /// The position of the last dispatched event (or the start), once known.
    pub fn position(&self) -> Option<Position> {
        self.lock().position
    }

    /// Waits up to `wait` for the source to start.
    pub async fn started(&self, wait: Duration) -> bool {
        let mut started = self.started.subscribe();
        tokio::time::timeout(wait, started.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Adds a subscription; returns the position from which it receives live events (every
    /// event after it). A meeting subscription is refused when a removal of the user that
    /// the admission did not see has been dispatched meanwhile; one the hub has not yet
    /// dispatched will reach the subscription (and end it).
    pub fn subscribe(
        &self,
        channel: Channel,
        connection: u64,
        subscriber: Subscriber,
        admission: Option<Admission>,
    ) -> Result<Position, Refusal> {
        let mut state = self.lock();
        let position = state.position.ok_or(Refusal::Unavailable)?;
        if let Some(admission) = admission {
            if let Some(known) = state.memberships.get(&admission.meeting) {
                if known.version >= admission.version
                    && !known.membership.contains(subscriber.user_id)
                {
                    return Err(Refusal::NotMember);
                }
            }
        }
        state
            .subscriptions
            .entry(channel)
            .or_default()
            .insert(connection, subscriber);
        Ok(position)
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

    /// Whether `user` is organizer or attendee of `meeting`: the admission to subscribe
    /// (checked again by [`Hub::subscribe`]). A member at the dispatched point of the stream is
    /// admitted without a read (a removal not yet dispatched will reach the subscription and
    /// end it); otherwise the store, which may be ahead (a fresh invitation), decides.
    pub async fn admit(&self, meeting: Uuid, user: Uuid) -> anyhow::Result<Option<Admission>> {
        if let Some(known) = self.lock().memberships.get(&meeting) {
            if known.membership.contains(user) {
                return Ok(Some(Admission {
                    meeting,
                    version: known.version,
                }));
            }
        }
        // From the meeting's snapshot: bounded however much was said in its chat.
        let state = platform::store::load_aggregate::<Meeting>(
            &*self.store,
            &self.upcasters,
            meeting,
            None,
        )
        .await?;
        let member = state.aggregate.exists() && state.aggregate.membership().contains(user);
        Ok(member.then_some(Admission {
            meeting,
            version: state.version,
        }))
    }

    /// The meeting's membership right after its event `until`.
    async fn load_membership(&self, meeting: Uuid, until: i64) -> anyhow::Result<KnownMembership> {
        let state = platform::store::load_aggregate_until::<Meeting>(
            &*self.store,
            &self.upcasters,
            meeting,
            until,
        )
        .await?;
        Ok(KnownMembership {
            version: state.version,
            membership: state.aggregate.membership().ids(),
        })
    }

    /// The event's payload as the current code encodes it (what `/v1/changes` shows), and
    /// the meeting event it is, if it is one.
    fn upcast(&self, event: &EventEnvelope) -> (serde_json::Value, Option<MeetingEvent>) {
        let decoded = event
            .decode(&self.upcasters)
            .and_then(|decoded| Ok((decoded.data()?, decoded)));
        match decoded {
            Ok((data, Decoded::Meeting(meeting))) => (data, Some(meeting)),
            Ok((data, Decoded::User(_))) => (data, None),
            Err(error) => {
                // The projector refuses such an event too (and stops): nobody sees it there.
                tracing::error!(%error, position = %event.position, "undecodable event");
                (event.data.clone(), None)
            }
        }
    }

    /// Who may see `event`, advancing the meeting's membership by it.
    async fn audience(&self, event: &EventEnvelope, decoded: Option<&MeetingEvent>) -> Vec<Uuid> {
        match event.aggregate_type.as_str() {
            "user" => vec![event.aggregate_id],
            "meeting" => {
                let meeting = event.aggregate_id;
                let known = self.lock().memberships.contains_key(&meeting);
                if !known && event.sequence > 1 {
                    match self.load_membership(meeting, event.sequence - 1).await {
                        Ok(membership) => {
                            self.lock().memberships.insert(meeting, membership);
                        }
                        Err(error) => tracing::warn!(%error, "cannot load meeting membership"),
                    }
                }
                let mut state = self.lock();
                let known = state.memberships.entry(meeting).or_default();
                if event.sequence > known.version {
                    if let Some(decoded) = decoded {
                        known.membership.apply(decoded);
                    }
                    known.version = event.sequence;
                }
                match decoded {
                    Some(decoded) => known.membership.audience(decoded),
                    None => known.membership.sorted_members(),
                }
            }
            _ => vec![],
        }
    }

    /// Routes one event (called in stream order by the source).
    pub async fn dispatch(&self, event: &EventEnvelope) {
        let (data, decoded) = self.upcast(event);
        let audience = self.audience(event, decoded.as_ref()).await;
        event
            .metadata
            .log_stage("dispatched", &event.event_type, event.position);
        let event = EventEnvelope {
            data,
            ..event.clone()
        };
        let removed = match &decoded {
            Some(MeetingEvent::AttendeeRemoved { user_id }) => Some(*user_id),
            _ => None,
        };

        let mut guard = self.lock();
        let state = &mut *guard;
        state.position = Some(state.position.unwrap_or_default().max(event.position));
        let user_frame: Option<Utf8Bytes> = audience
            .iter()
            .any(|user| state.subscriptions.contains_key(&Channel::User(*user)))
            .then(|| event_frame("user:me", &event).into());
        let user_event = |channel: Channel, frame: &Utf8Bytes| Outbound::Event {
            channel,
            position: event.position,
            frame: frame.clone(),
        };
        let meeting_channel =
            (event.aggregate_type == "meeting").then_some(Channel::Meeting(event.aggregate_id));
        // Connections that got their `user:me` frame with the meeting frame.
        let mut served: HashSet<u64> = HashSet::new();
        if let Some(channel) = meeting_channel {
            if let Some(subscribers) = state.subscriptions.get(&channel) {
                let frame: Utf8Bytes = event_frame(&channel.name(), &event).into();
                for (connection, subscriber) in subscribers {
                    if audience.binary_search(&subscriber.user_id).is_err() {
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
                    let user_channel = Channel::User(subscriber.user_id);
                    if let Some(own) = state
                        .subscriptions
                        .get(&user_channel)
                        .and_then(|subscribers| subscribers.get(connection))
                    {
                        offer(own, user_event(user_channel, user_frame));
                        served.insert(*connection);
                    }
                }
            }
            if let Some(user) = removed {
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
        for user in audience {
            let channel = Channel::User(user);
            if let Some(subscribers) = state.subscriptions.get(&channel) {
                for (connection, subscriber) in subscribers {
                    if served.contains(connection) {
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
