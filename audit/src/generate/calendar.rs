//! A calendar-heavy log for the calendar benchmarks, generated through the domain like
//! [`generate`](super::generate): one user ("the owner") with `series` recurring series and
//! `singles` single meetings over 2027, organized by them or by colleagues who invite them.
//! Series mix rules (weekly, fortnightly, daily with a count, monthly) and zones (Berlin, New
//! York, Sydney, Tokyo, UTC); each has its third occurrence moved and its fifth cancelled, and
//! the owner declines the seventh of those they attend.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use domain::{
    Actor, AttendeeSpec, Meeting, MeetingCommand, MeetingServices, Recurrence, ResponseStatus,
    Role, ScheduleMeeting, Series, User, UserCommand,
};
use sqlx::PgPool;
use uuid::Uuid;

use super::{write, Clock, EveryoneExists, Stream};

/// What was generated, and whose calendar it is.
#[derive(Clone, Debug)]
pub struct CalendarLog {
    pub owner: Uuid,
    pub owner_email: String,
    pub series: u64,
    pub singles: u64,
    pub events: u64,
}

const ZONES: [&str; 5] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Tokyo",
    "UTC",
];
const RULES: [&str; 5] = [
    "FREQ=WEEKLY",
    "FREQ=WEEKLY;INTERVAL=2",
    "FREQ=DAILY;COUNT=120",
    "FREQ=MONTHLY",
    "FREQ=WEEKLY;COUNT=30",
];
const COLLEAGUES: usize = 20;

pub async fn generate_calendar(
    pool: &PgPool,
    series: u64,
    singles: u64,
) -> anyhow::Result<CalendarLog> {
    let services = MeetingServices::new(Arc::new(EveryoneExists));
    let mut clock = Clock(
        Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0)
            .single()
            .expect("BUG: date"),
    );
    let mut events = 0;
    let mut people = Vec::new();
    let mut users = Vec::new();
    for n in 0..=COLLEAGUES {
        let id = Uuid::now_v7();
        let email = format!("calendar{n}-{id}@example.com");
        let mut user = Stream::<User>::new(id);
        user.run(
            UserCommand::Register {
                user_id: id,
                email: email.clone(),
                password: "correct horse battery staple".into(),
                display_name: format!("Colleague {n}"),
                time_zone: Some(ZONES[n % ZONES.len()].into()),
            },
            &(),
            None,
            &mut clock,
        )
        .await?;
        people.push((id, email));
        users.push(user.rows);
    }
    events += write(super::Log::Postgres(pool), users).await?;
    let (owner, owner_email) = people[0].clone();
    let actor = |id| Actor::new(id, Role::Member);

    let mut streams = Vec::new();
    for n in 0..(series + singles) as usize {
        let recurring = n < series as usize;
        let zone = ZONES[n % ZONES.len()];
        let tz: chrono_tz::Tz = zone.parse().expect("BUG: zone");
        // 09:00 to 16:00 local, on a day of January (series) or spread over the year (singles).
        let day = if recurring {
            4 + (n % 20) as i64
        } else {
            (n % 360) as i64
        };
        let local =
            chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("BUG: date") + Duration::days(day);
        let starts_at = tz
            .from_local_datetime(&local.and_hms_opt(9 + (n % 8) as u32, 0, 0).expect("BUG"))
            .earliest()
            .expect("BUG: 09:00-16:00 exists")
            .with_timezone(&Utc);
        let ends_at = starts_at + Duration::minutes(30 + 15 * (n % 3) as i64);
        let owner_organizes = n % 2 == 0;
        let organizer = if owner_organizes {
            owner
        } else {
            people[1 + n % COLLEAGUES].0
        };
        let attendees: Vec<AttendeeSpec> = (0..4)
            .map(|k| people[(n + 3 * k) % (COLLEAGUES + 1)].0)
            .chain((!owner_organizes).then_some(owner))
            .filter(|id| *id != organizer)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|user_id| AttendeeSpec {
                user_id,
                optional: false,
            })
            .collect();
        let recurrence = recurring.then(|| Recurrence {
            rrule: RULES[n % RULES.len()].into(),
            exdates: vec![],
        });
        let id = Uuid::now_v7();
        let mut meeting = Stream::<Meeting>::new(id);
        meeting
            .run(
                MeetingCommand::Schedule(ScheduleMeeting {
                    meeting_id: id,
                    actor: actor(organizer),
                    title: format!("Calendar meeting {n} — «planning»"),
                    description: Some("Agenda: status, risks; next steps".into()),
                    starts_at,
                    ends_at,
                    time_zone: zone.into(),
                    location: Some("Room Zoë".into()),
                    attendees,
                    recurrence: recurrence.clone(),
                }),
                &services,
                Some(organizer),
                &mut clock,
            )
            .await?;
        if let Some(recurrence) = recurrence {
            let rule = Series::new(starts_at, ends_at, zone, &recurrence)
                .map_err(|e| anyhow::anyhow!("generated rule refused: {}", e.message))?;
            let occurrences: Vec<_> = rule
                .between(starts_at, starts_at + Duration::days(400), &BTreeMap::new())
                .map_err(|_| anyhow::anyhow!("too many occurrences"))?;
            let nth = |k: usize| occurrences.get(k).map(|o| o.original_start);
            let mut commands = Vec::new();
            if let Some(third) = nth(2) {
                commands.push((
                    MeetingCommand::ChangeOccurrence {
                        actor: actor(organizer),
                        occurrence: third,
                        starts_at: Some(third + Duration::hours(2)),
                        ends_at: None,
                        cancelled: None,
                    },
                    organizer,
                ));
            }
            if let Some(fifth) = nth(4) {
                commands.push((
                    MeetingCommand::ChangeOccurrence {
                        actor: actor(organizer),
                        occurrence: fifth,
                        starts_at: None,
                        ends_at: None,
                        cancelled: Some(true),
                    },
                    organizer,
                ));
            }
            if let (Some(seventh), false) = (nth(6), owner_organizes) {
                commands.push((
                    MeetingCommand::Respond {
                        actor: actor(owner),
                        response: ResponseStatus::Declined,
                        comment: None,
                        occurrence: Some(seventh),
                    },
                    owner,
                ));
            }
            for (command, by) in commands {
                meeting
                    .run(command, &services, Some(by), &mut clock)
                    .await?;
            }
        }
        streams.push(meeting.rows);
    }
    events += write(super::Log::Postgres(pool), streams).await?;
    Ok(CalendarLog {
        owner,
        owner_email,
        series,
        singles,
        events,
    })
}
