//! A generated event history for tests of the read side: envelopes as the stream delivers
//! them (contiguous sequences per aggregate, increasing positions), with every event type,
//! interleaved across aggregates at random but valid for each meeting's state at the time.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{AttendeeSpec, MeetingEvent, Recurrence, ResponseStatus, Role, UserEvent};
use uuid::Uuid;

use crate::bus::EventEnvelope;
use crate::store::{encode_event, EventMetadata, Position};

#[derive(Default)]
pub struct History {
    pub events: Vec<EventEnvelope>,
    pub sequences: std::collections::HashMap<Uuid, i64>,
}

impl History {
    /// Appends `event` to the stream of `aggregate_type`/`id`, at its next sequence.
    pub fn push<E: cqrs_es::DomainEvent>(&mut self, aggregate_type: &str, id: Uuid, event: E) {
        let sequence = self.sequences.entry(id).or_insert(0);
        *sequence += 1;
        let n = self.events.len() as i64 + 1;
        let event_id = Uuid::from_u128(0xE000_0000 + n as u128);
        let (event_type, event_version, data) = encode_event(&event).unwrap();
        self.events.push(EventEnvelope {
            event_id,
            position: Position {
                transaction_id: 100 + n as u64 / 3,
                id: n,
            },
            event_type,
            event_version,
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: id,
            sequence: *sequence,
            // Microseconds too: rows travel through JSON when loaded and must come back exact.
            recorded_at: start() + Duration::microseconds(n * 1_000_123),
            data,
            metadata: EventMetadata {
                event_id,
                actor_id: None,
                request_id: format!("req-{n}"),
                correlation_id: format!("req-{n}"),
                causation_id: format!("req-{n}"),
                traceparent: None,
            },
        });
    }
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
}

/// A small deterministic generator (xorshift), so a failure reproduces.
pub struct Random(pub u64);

impl Random {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Users, then meetings whose events (of every type) interleave at random, each valid for
/// the meeting's state at the time.
pub fn history(seed: u64) -> Vec<EventEnvelope> {
    let mut random = Random(seed);
    let mut history = History::default();
    let users: Vec<Uuid> = (1..=8).map(Uuid::from_u128).collect();
    for (n, &user_id) in users.iter().enumerate() {
        history.push(
            "user",
            user_id,
            UserEvent::UserRegistered {
                user_id,
                email: format!("User{n}@Example.org"),
                display_name: format!("User {n}"),
                time_zone: "Europe/Berlin".to_owned(),
                role: Role::Member,
            },
        );
    }
    // Meeting id -> (organizer, attendees, ended or cancelled).
    let mut meetings: Vec<(Uuid, Uuid, Vec<Uuid>, bool)> = Vec::new();
    let mut chat = 0u128;
    for step in 0..400 {
        let roll = random.below(100);
        if meetings.is_empty() || roll < 8 {
            let id = Uuid::from_u128(0x1_0000 + step as u128);
            let organizer = users[random.below(users.len())];
            let attendees: Vec<Uuid> = users
                .iter()
                .copied()
                .filter(|&u| u != organizer && random.below(2) == 0)
                .collect();
            history.push(
                "meeting",
                id,
                MeetingEvent::MeetingScheduled {
                    meeting_id: id,
                    organizer_id: organizer,
                    title: format!("Meeting {step}"),
                    description: (step % 2 == 0).then(|| "agenda".to_owned()),
                    starts_at: start() + Duration::hours(step),
                    ends_at: start() + Duration::hours(step + 1),
                    time_zone: "Europe/Berlin".to_owned(),
                    location: None,
                    attendees: attendees
                        .iter()
                        .map(|&user_id| AttendeeSpec {
                            user_id,
                            optional: user_id.as_u128() % 3 == 0,
                        })
                        .collect(),
                    // Series too: their rule is JSON in the rows and in the document.
                    recurrence: (step % 5 == 0).then(|| Recurrence {
                        rrule: "FREQ=WEEKLY;BYDAY=MO".to_owned(),
                        exdates: vec![start() + Duration::days(7)],
                    }),
                },
            );
            meetings.push((id, organizer, attendees, false));
            continue;
        }
        if roll < 13 {
            let user = users[random.below(users.len())];
            let event = match random.below(4) {
                0 | 1 => UserEvent::ProfileChanged {
                    display_name: format!("Renamed {step}"),
                    time_zone: "America/New_York".to_owned(),
                    working_hours: None,
                },
                2 => UserEvent::PasswordChanged {},
                _ => UserEvent::RoleChanged {
                    role: [Role::Admin, Role::Member][random.below(2)],
                },
            };
            history.push("user", user, event);
            continue;
        }
        let index = random.below(meetings.len());
        let (id, organizer, attendees, closed) = &mut meetings[index];
        let id = *id;
        let event = match roll {
            13..=29 => {
                let candidates: Vec<Uuid> = users
                    .iter()
                    .copied()
                    .filter(|u| u != organizer && !attendees.contains(u))
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let user_id = candidates[random.below(candidates.len())];
                attendees.push(user_id);
                MeetingEvent::AttendeeInvited {
                    user_id,
                    optional: random.below(2) == 0,
                }
            }
            30..=41 => {
                if attendees.is_empty() {
                    continue;
                }
                let user_id = attendees.remove(random.below(attendees.len()));
                MeetingEvent::AttendeeRemoved { user_id }
            }
            42..=64 => {
                if attendees.is_empty() {
                    continue;
                }
                MeetingEvent::AttendeeResponded {
                    user_id: attendees[random.below(attendees.len())],
                    response: [
                        ResponseStatus::Accepted,
                        ResponseStatus::Declined,
                        ResponseStatus::Tentative,
                    ][random.below(3)],
                    comment: (random.below(2) == 0).then(|| format!("comment {step}")),
                    occurrence: None,
                }
            }
            65..=72 => MeetingEvent::MeetingDetailsUpdated {
                title: format!("Retitled {step}"),
                description: None,
                location: Some("Room 1".to_owned()),
                time_zone: "Europe/Paris".to_owned(),
            },
            73..=79 => MeetingEvent::MeetingRescheduled {
                starts_at: start() + Duration::hours(step + 5),
                ends_at: start() + Duration::hours(step + 6),
                previous_starts_at: start(),
                previous_ends_at: start(),
            },
            80..=93 => {
                chat += 1;
                MeetingEvent::ChatMessagePosted {
                    message_id: Uuid::from_u128(0xC_0000 + chat),
                    author_id: *organizer,
                    text: format!("message {chat}"),
                    at: start() + Duration::seconds(step),
                }
            }
            _ => {
                if *closed {
                    continue;
                }
                *closed = true;
                match random.below(3) {
                    0 => MeetingEvent::MeetingCancelled {
                        reason: Some("no".to_owned()),
                    },
                    1 => MeetingEvent::MeetingStarted { at: start() },
                    _ => MeetingEvent::MeetingEnded { at: start() },
                }
            }
        };
        history.push("meeting", id, event);
    }
    // Last, everyone is renamed once more: no later meeting event re-renders a document, so
    // each one must follow its organizer's and attendees' names by itself.
    for (n, &user) in users.iter().enumerate() {
        history.push(
            "user",
            user,
            UserEvent::ProfileChanged {
                display_name: format!("Finally {n}"),
                time_zone: "Europe/Berlin".to_owned(),
                working_hours: None,
            },
        );
    }
    history.push(
        "user",
        users[0],
        UserEvent::UserDeactivated { by: users[1] },
    );
    history.events
}
