//! Who is present in a meeting channel, across every realtime instance.
//!
//! Each instance knows its own connections exactly. It tells the others over NATS core
//! pub/sub (`<stream>-presence`): a message on every join and leave, and a heartbeat with its
//! full local state every `heartbeat`. Remote entries not refreshed for `expiry` are dropped,
//! so the presence of a crashed instance disappears on its own and its users are announced as
//! having left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hub::Hub;
use crate::protocol::{Channel, ServerMessage};

#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    instance: Uuid,
    /// meeting id → users present on the sending instance (complete for that meeting).
    meetings: HashMap<Uuid, Vec<Uuid>>,
    /// A heartbeat carries the instance's complete state: meetings it omits are empty.
    full: bool,
}

#[derive(Default)]
struct State {
    /// meeting → user → local connections.
    local: HashMap<Uuid, HashMap<Uuid, HashSet<u64>>>,
    /// meeting → instance → (users, last heard).
    remote: HashMap<Uuid, HashMap<Uuid, (HashSet<Uuid>, Instant)>>,
}

impl State {
    fn present(&self, meeting: Uuid) -> HashSet<Uuid> {
        let mut users: HashSet<Uuid> = self
            .local
            .get(&meeting)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        if let Some(instances) = self.remote.get(&meeting) {
            for (remote_users, _) in instances.values() {
                users.extend(remote_users.iter().copied());
            }
        }
        users
    }

    fn local_snapshot(&self, meeting: Uuid) -> Vec<Uuid> {
        self.local
            .get(&meeting)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }
}

pub struct Presence {
    state: Mutex<State>,
    hub: Arc<Hub>,
    instance: Uuid,
    nats: Option<(async_nats::Client, String)>,
    pub heartbeat: Duration,
    pub expiry: Duration,
}

impl Presence {
    pub fn new(
        hub: Arc<Hub>,
        nats: Option<(async_nats::Client, String)>,
        heartbeat: Duration,
        expiry: Duration,
    ) -> Self {
        Self {
            state: Mutex::new(State::default()),
            hub,
            instance: Uuid::now_v7(),
            nats,
            heartbeat,
            expiry,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("BUG: presence state poisoned")
    }

    /// Registers a connection of `user` in the channel; returns who is present now.
    pub fn join(&self, channel: Channel, user: Uuid, connection: u64) -> Vec<Uuid> {
        let Channel::Meeting(meeting) = channel else {
            return vec![];
        };
        let (was_present, users, local) = {
            let mut state = self.lock();
            let was_present = state.present(meeting).contains(&user);
            state
                .local
                .entry(meeting)
                .or_default()
                .entry(user)
                .or_default()
                .insert(connection);
            (
                was_present,
                state.present(meeting),
                state.local_snapshot(meeting),
            )
        };
        if !was_present {
            self.announce_change(channel, user, true);
        }
        self.publish(meeting, local);
        let mut users: Vec<Uuid> = users.into_iter().collect();
        users.sort_unstable();
        users
    }

    /// Removes a connection; announces `leave` when it was the user's last one anywhere.
    pub fn leave(&self, channel: Channel, user: Uuid, connection: u64) {
        let Channel::Meeting(meeting) = channel else {
            return;
        };
        let (left, local) = {
            let mut state = self.lock();
            let Some(users) = state.local.get_mut(&meeting) else {
                return;
            };
            let Some(connections) = users.get_mut(&user) else {
                return;
            };
            connections.remove(&connection);
            if connections.is_empty() {
                users.remove(&user);
            }
            if users.is_empty() {
                state.local.remove(&meeting);
            }
            (
                !state.present(meeting).contains(&user),
                state.local_snapshot(meeting),
            )
        };
        if left {
            self.announce_change(channel, user, false);
        }
        self.publish(meeting, local);
    }

    fn announce_change(&self, channel: Channel, user: Uuid, joined: bool) {
        let name = channel.name();
        let frame = if joined {
            ServerMessage::Join {
                channel: &name,
                user_id: user,
            }
        } else {
            ServerMessage::Leave {
                channel: &name,
                user_id: user,
            }
        };
        self.hub.broadcast(channel, frame.to_text().into());
    }

    fn publish(&self, meeting: Uuid, users: Vec<Uuid>) {
        let Some((client, subject)) = &self.nats else {
            return;
        };
        let announcement = Announcement {
            instance: self.instance,
            meetings: HashMap::from([(meeting, users)]),
            full: false,
        };
        let payload = serde_json::to_vec(&announcement).expect("BUG: announcements serialize");
        let client = client.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            let _ = client.publish(subject, payload.into()).await;
        });
    }

    /// Applies another instance's announcement; announces joins and leaves it causes.
    fn apply(&self, announcement: Announcement) {
        if announcement.instance == self.instance {
            return;
        }
        let now = Instant::now();
        let mut changes = vec![];
        {
            let mut state = self.lock();
            let mut meetings: HashSet<Uuid> = announcement.meetings.keys().copied().collect();
            if announcement.full {
                // Meetings the instance no longer mentions are empty there.
                for (meeting, instances) in &state.remote {
                    if instances.contains_key(&announcement.instance) {
                        meetings.insert(*meeting);
                    }
                }
            }
            for meeting in meetings {
                let before = state.present(meeting);
                let users: HashSet<Uuid> = announcement
                    .meetings
                    .get(&meeting)
                    .map(|u| u.iter().copied().collect())
                    .unwrap_or_default();
                let instances = state.remote.entry(meeting).or_default();
                if users.is_empty() {
                    instances.remove(&announcement.instance);
                } else {
                    instances.insert(announcement.instance, (users, now));
                }
                if instances.is_empty() {
                    state.remote.remove(&meeting);
                }
                let after = state.present(meeting);
                changes.push((meeting, before, after));
            }
        }
        self.announce_differences(changes);
    }

    fn announce_differences(&self, changes: Vec<(Uuid, HashSet<Uuid>, HashSet<Uuid>)>) {
        for (meeting, before, after) in changes {
            let channel = Channel::Meeting(meeting);
            for user in after.difference(&before) {
                self.announce_change(channel, *user, true);
            }
            for user in before.difference(&after) {
                self.announce_change(channel, *user, false);
            }
        }
    }

    /// Drops remote entries not refreshed within `expiry` (crashed instances).
    fn expire(&self) {
        let now = Instant::now();
        let mut changes = vec![];
        {
            let mut state = self.lock();
            let meetings: Vec<Uuid> = state.remote.keys().copied().collect();
            for meeting in meetings {
                let before = state.present(meeting);
                if let Some(instances) = state.remote.get_mut(&meeting) {
                    instances.retain(|_, (_, heard)| now.duration_since(*heard) < self.expiry);
                    if instances.is_empty() {
                        state.remote.remove(&meeting);
                    }
                }
                let after = state.present(meeting);
                if before != after {
                    changes.push((meeting, before, after));
                }
            }
        }
        self.announce_differences(changes);
    }

    /// Tells the other instances that nobody is present here any more (a full announcement of
    /// nothing), and waits until NATS has it: sent when the instance stops, after its sockets
    /// closed, so that others show the leaves at once instead of after `expiry`.
    pub async fn depart(&self) {
        let Some((client, subject)) = &self.nats else {
            return;
        };
        let announcement = Announcement {
            instance: self.instance,
            meetings: HashMap::new(),
            full: true,
        };
        let payload = serde_json::to_vec(&announcement).expect("BUG: announcements serialize");
        let sent = async {
            client.publish(subject.clone(), payload.into()).await.ok();
            client.flush().await.ok();
        };
        if tokio::time::timeout(Duration::from_secs(2), sent)
            .await
            .is_err()
        {
            tracing::warn!("could not announce the departure; others will expire this instance");
        }
    }

    /// Listens to other instances and sends heartbeats until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let Some((client, subject)) = self.nats.clone() else {
            shutdown.await;
            return;
        };
        let mut messages = match client.subscribe(subject.clone()).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::error!(%error, "presence subscription failed; presence is local only");
                shutdown.await;
                return;
            }
        };
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                Some(message) = messages.next() => {
                    if let Ok(announcement) = serde_json::from_slice::<Announcement>(&message.payload) {
                        self.apply(announcement);
                    }
                }
                _ = heartbeat.tick() => {
                    self.expire();
                    let meetings = {
                        let state = self.lock();
                        state.local.keys().map(|m| (*m, state.local_snapshot(*m))).collect()
                    };
                    let announcement = Announcement { instance: self.instance, meetings, full: true };
                    let payload = serde_json::to_vec(&announcement).expect("BUG: announcements serialize");
                    let _ = client.publish(subject.clone(), payload.into()).await;
                }
            }
        }
    }
}
