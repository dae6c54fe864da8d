//! A realistic event log for benchmarks and tests, generated through the domain: every event
//! is what `User`/`Meeting` decided for a command (the same `handle` the command side runs),
//! serialized and hash-chained as the store does, and written in bulk (many aggregates per
//! statement, interleaved as concurrent users would interleave them).
//!
//! Per meeting: scheduled with three attendees, three answers, details changed, moved (the
//! answers reset), answered again once, started, twelve chat messages, ended: 21 events.
//! Users register and change their profile once.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use domain::{
    Actor, AttendeeSpec, Meeting, MeetingCommand, MeetingServices, ResponseStatus, Role,
    ScheduleMeeting, User, UserCommand, UserDirectory,
};
use platform::db::sqlite::SqliteFile;
use platform::store::{encode_event, event_hash, EventMetadata, HashInput};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

mod calendar;
pub use calendar::{generate_calendar, CalendarLog};

/// Events of one generated meeting.
pub const EVENTS_PER_MEETING: u64 = 21;

/// What was generated.
#[derive(Clone, Debug, Default)]
pub struct Generated {
    pub users: u64,
    pub meetings: u64,
    pub events: u64,
}

/// Everyone is a registered user: the generator invites only users it registered.
pub(crate) struct EveryoneExists;

#[async_trait::async_trait]
impl UserDirectory for EveryoneExists {
    async fn missing_users(&self, _: &[Uuid]) -> Result<Vec<Uuid>, String> {
        Ok(vec![])
    }
}

/// One event ready to insert.
pub(crate) struct Row {
    aggregate_type: &'static str,
    aggregate_id: Uuid,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    event_id: Uuid,
    recorded_at: DateTime<Utc>,
    prev_hash: Option<Vec<u8>>,
    hash: Vec<u8>,
}

/// An aggregate being generated: its state, version and last hash, and its new rows.
pub(crate) struct Stream<A: Aggregate> {
    id: Uuid,
    aggregate: A,
    version: i64,
    last_hash: Option<Vec<u8>>,
    pub(crate) rows: Vec<Row>,
}

impl<A: Aggregate> Stream<A> {
    pub(crate) fn new(id: Uuid) -> Self {
        Self {
            id,
            aggregate: A::default(),
            version: 0,
            last_hash: None,
            rows: Vec::new(),
        }
    }

    pub(crate) async fn run(
        &mut self,
        command: A::Command,
        services: &A::Services,
        actor: Option<Uuid>,
        clock: &mut Clock,
    ) -> anyhow::Result<()> {
        let sink = EventSink::<A>::default();
        self.aggregate
            .handle(command, services, &sink)
            .await
            .map_err(|e| anyhow::anyhow!("the domain refused a generated command: {e}"))?;
        for event in sink.collect().await {
            self.push(&event, actor, clock.tick())?;
        }
        Ok(())
    }

    fn push(
        &mut self,
        event: &A::Event,
        actor: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let (event_type, event_version, payload) = encode_event(event)?;
        let event_id = Uuid::now_v7();
        let request = format!("gen-{event_id}");
        let metadata = serde_json::to_value(EventMetadata {
            event_id,
            actor_id: actor,
            request_id: request.clone(),
            correlation_id: request.clone(),
            causation_id: request,
            traceparent: None,
        })?;
        self.version += 1;
        let hash = event_hash(&HashInput {
            prev_hash: self.last_hash.as_deref(),
            aggregate_type: A::TYPE,
            aggregate_id: self.id,
            sequence: self.version,
            event_type: &event.event_type(),
            event_version: &event.event_version(),
            payload: &payload,
            metadata: &metadata,
            recorded_at: at,
        });
        self.rows.push(Row {
            aggregate_type: A::TYPE,
            aggregate_id: self.id,
            sequence: self.version,
            event_type,
            event_version,
            payload,
            metadata,
            event_id,
            recorded_at: at,
            prev_hash: self.last_hash.replace(hash.clone()),
            hash,
        });
        Ok(())
    }
}

/// Synthetic time: one millisecond per event from a fixed start.
pub(crate) struct Clock(pub(crate) DateTime<Utc>);

impl Clock {
    pub(crate) fn tick(&mut self) -> DateTime<Utc> {
        self.0 += Duration::milliseconds(1);
        self.0
    }
}

/// Appends at least `events` events (whole meetings, plus the users') to the log of `pool`: users
/// first (one per five meetings, at least 10), then meetings in chunks of 500
/// meetings whose events are interleaved. `progress` hears the events written so far.
pub async fn generate(
    pool: &PgPool,
    events: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<Generated> {
    generate_into(Log::Postgres(pool), events, progress).await
}

/// Where generated events go: PostgreSQL's event log or embedded mode's SQLite file.
#[derive(Clone, Copy)]
pub enum Log<'a> {
    Postgres(&'a PgPool),
    Sqlite(&'a SqliteFile),
}

/// [`generate`] into either backend's log.
pub async fn generate_into(
    log: Log<'_>,
    events: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<Generated> {
    const CHUNK: usize = 500;
    let meetings = (events / EVENTS_PER_MEETING).max(1);
    let users = (meetings / 5).max(10);
    let services = MeetingServices::new(Arc::new(EveryoneExists));
    let mut clock = Clock(
        Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
            .single()
            .expect("BUG: date"),
    );
    let mut generated = Generated::default();

    let mut user_ids = Vec::with_capacity(users as usize);
    let mut batch: Vec<Stream<User>> = Vec::new();
    for n in 0..users {
        let id = Uuid::now_v7();
        user_ids.push(id);
        let mut user = Stream::<User>::new(id);
        user.run(
            UserCommand::Register {
                user_id: id,
                email: format!("user{n}@example.com"),
                password: "correct horse battery staple".into(),
                display_name: format!("User {n}"),
                time_zone: Some("Europe/Berlin".into()),
            },
            &(),
            None,
            &mut clock,
        )
        .await?;
        let actor = Actor::new(id, Role::Member);
        user.run(
            UserCommand::ChangeProfile {
                actor,
                display_name: Some(format!("User Number {n}")),
                time_zone: None,
                working_hours: None,
            },
            &(),
            Some(id),
            &mut clock,
        )
        .await?;
        batch.push(user);
        if batch.len() == CHUNK || n + 1 == users {
            generated.events += write(log, batch.drain(..).map(|s| s.rows).collect()).await?;
            progress(generated.events);
        }
    }
    generated.users = users;

    let start = Utc
        .with_ymd_and_hms(2027, 3, 1, 9, 0, 0)
        .single()
        .expect("BUG: date");
    let mut streams: Vec<Stream<Meeting>> = Vec::new();
    for n in 0..meetings {
        let pick = |k: u64| user_ids[((n * 7 + k * 13) % users) as usize];
        let organizer = Actor::new(pick(0), Role::Member);
        let attendees: Vec<Actor> = (1..=3).map(|k| Actor::new(pick(k), Role::Member)).collect();
        let id = Uuid::now_v7();
        let mut meeting = Stream::<Meeting>::new(id);
        let starts_at = start + Duration::minutes(30 * (n % 5000) as i64);
        let run = |command| (command, Some(organizer.user_id));
        let mut commands = vec![run(MeetingCommand::Schedule(ScheduleMeeting {
            meeting_id: id,
            actor: organizer,
            title: format!("Weekly sync {n}"),
            description: Some("Status, risks, next steps".into()),
            starts_at,
            ends_at: starts_at + Duration::minutes(30),
            time_zone: "Europe/Berlin".into(),
            location: Some("Room 4".into()),
            attendees: attendees
                .iter()
                .map(|a| AttendeeSpec {
                    user_id: a.user_id,
                    optional: false,
                })
                .collect(),
            recurrence: None,
        }))];
        let respond = |actor: Actor, response| {
            (
                MeetingCommand::Respond {
                    actor,
                    response,
                    comment: None,
                    occurrence: None,
                },
                Some(actor.user_id),
            )
        };
        for attendee in &attendees {
            commands.push(respond(*attendee, ResponseStatus::Accepted));
        }
        commands.push(run(MeetingCommand::UpdateDetails {
            actor: organizer,
            title: Some(format!("Weekly sync {n} (moved)")),
            description: None,
            location: None,
            time_zone: None,
        }));
        commands.push(run(MeetingCommand::Reschedule {
            actor: organizer,
            starts_at: Some(starts_at + Duration::hours(1)),
            ends_at: Some(starts_at + Duration::minutes(90)),
        }));
        commands.push(respond(attendees[0], ResponseStatus::Tentative));
        commands.push(run(MeetingCommand::Start {
            actor: organizer,
            at: starts_at + Duration::hours(1),
        }));
        for m in 0..12 {
            let author = if m % 2 == 0 {
                organizer
            } else {
                attendees[m % 3]
            };
            commands.push((
                MeetingCommand::PostMessage {
                    actor: author,
                    message_id: Uuid::now_v7(),
                    text: format!("message {m} about item {}", n % 17),
                    at: starts_at + Duration::minutes(61 + m as i64),
                },
                Some(author.user_id),
            ));
        }
        commands.push(run(MeetingCommand::End {
            actor: organizer,
            at: starts_at + Duration::minutes(90),
        }));
        for (command, actor) in commands {
            meeting.run(command, &services, actor, &mut clock).await?;
        }
        streams.push(meeting);
        if streams.len() == CHUNK || n + 1 == meetings {
            generated.events += write(log, streams.drain(..).map(|s| s.rows).collect()).await?;
            progress(generated.events);
        }
    }
    generated.meetings = meetings;
    Ok(generated)
}

/// Inserts the rows of several aggregates interleaved (the first event of each, then the
/// second of each, …), a few thousand per statement; answers how many.
pub(crate) async fn write(log: Log<'_>, streams: Vec<Vec<Row>>) -> anyhow::Result<u64> {
    let mut iterators: Vec<_> = streams.into_iter().map(Vec::into_iter).collect();
    let mut interleaved = Vec::new();
    loop {
        let before = interleaved.len();
        for rows in &mut iterators {
            if let Some(row) = rows.next() {
                interleaved.push(row);
            }
        }
        if interleaved.len() == before {
            break;
        }
    }
    let total = interleaved.len() as u64;
    let pool = match log {
        Log::Postgres(pool) => pool,
        Log::Sqlite(file) => {
            write_sqlite(file, &interleaved).await?;
            return Ok(total);
        }
    };
    for chunk in interleaved.chunks(4000) {
        let column = |f: &dyn Fn(&Row) -> Value| chunk.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata, event_id, recorded_at, \
                                 prev_hash, hash) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], \
                                  $6::jsonb[], $7::jsonb[], $8::uuid[], $9::timestamptz[], \
                                  $10::bytea[], $11::bytea[])",
        )
        .bind(chunk.iter().map(|r| r.aggregate_type).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.aggregate_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|r| r.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|r| r.event_version.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(column(&|r| r.payload.clone()))
        .bind(column(&|r| r.metadata.clone()))
        .bind(chunk.iter().map(|r| r.event_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|r| r.prev_hash.clone())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|r| r.hash.clone()).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(total)
}

/// [`write`] for SQLite: one transaction per chunk on the file's writer, columns encoded as
/// embedded mode's store encodes them.
async fn write_sqlite(file: &SqliteFile, rows: &[Row]) -> anyhow::Result<()> {
    for chunk in rows.chunks(4000) {
        let mut tx = file.writer.begin().await?;
        for r in chunk {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata, event_id, recorded_at, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.aggregate_type)
            .bind(r.aggregate_id)
            .bind(r.sequence)
            .bind(&r.event_type)
            .bind(&r.event_version)
            .bind(r.payload.to_string())
            .bind(r.metadata.to_string())
            .bind(r.event_id)
            .bind(platform::db::sqlite::micros(r.recorded_at))
            .bind(r.prev_hash.as_deref())
            .bind(&r.hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}
