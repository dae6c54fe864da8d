//! Given/when/then tests of the `Meeting` aggregate rules.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::*;
use crate::common::{Actor, DomainError, FieldError, Role};

// ------------------------------------------------------------- test doubles

/// In-memory user directory: only the listed users exist.
struct KnownUsers(HashSet<Uuid>);

#[async_trait::async_trait]
impl UserDirectory for KnownUsers {
    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, String> {
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !self.0.contains(id))
            .collect())
    }
}

/// A directory that is down.
struct DownDirectory;

#[async_trait::async_trait]
impl UserDirectory for DownDirectory {
    async fn missing_users(&self, _ids: &[Uuid]) -> Result<Vec<Uuid>, String> {
        Err("directory down".into())
    }
}

/// A directory that must not be asked.
struct UnreachableDirectory;

#[async_trait::async_trait]
impl UserDirectory for UnreachableDirectory {
    async fn missing_users(&self, _ids: &[Uuid]) -> Result<Vec<Uuid>, String> {
        panic!("the directory must not be asked here")
    }
}

// ----------------------------------------------------------------- fixtures

const ORG: Uuid = Uuid::from_u128(10);
const ATT: Uuid = Uuid::from_u128(11);
const OPT: Uuid = Uuid::from_u128(12);
const STRANGER: Uuid = Uuid::from_u128(13);
const ADMIN: Uuid = Uuid::from_u128(14);
const NEWBIE: Uuid = Uuid::from_u128(15);
const GHOST: Uuid = Uuid::from_u128(99);
const MEETING: Uuid = Uuid::from_u128(1000);

fn crowd(n: usize) -> Vec<Uuid> {
    (0..n).map(|i| Uuid::from_u128(5000 + i as u128)).collect()
}

fn services() -> MeetingServices {
    let mut known: HashSet<Uuid> = [ORG, ATT, OPT, STRANGER, ADMIN, NEWBIE].into();
    known.extend(crowd(501));
    MeetingServices::new(Arc::new(KnownUsers(known)))
}

fn member(id: Uuid) -> Actor {
    Actor::new(id, Role::Member)
}

fn organizer() -> Actor {
    member(ORG)
}

fn attendee() -> Actor {
    member(ATT)
}

fn stranger() -> Actor {
    member(STRANGER)
}

fn admin() -> Actor {
    Actor::new(ADMIN, Role::Admin)
}

fn t(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 7, hour, minute, 0)
        .single()
        .expect("valid test time")
}

fn spec(user_id: Uuid, optional: bool) -> AttendeeSpec {
    AttendeeSpec { user_id, optional }
}

fn scheduled() -> MeetingEvent {
    MeetingEvent::MeetingScheduled {
        meeting_id: MEETING,
        organizer_id: ORG,
        title: "Planning".into(),
        description: Some("Agenda".into()),
        starts_at: t(10, 0),
        ends_at: t(11, 0),
        time_zone: "Europe/Berlin".into(),
        location: Some("Room 1".into()),
        attendees: vec![spec(ATT, false), spec(OPT, true)],
        recurrence: None,
    }
}

fn started() -> MeetingEvent {
    MeetingEvent::MeetingStarted { at: t(10, 1) }
}

fn ended() -> MeetingEvent {
    MeetingEvent::MeetingEnded { at: t(10, 59) }
}

fn cancelled() -> MeetingEvent {
    MeetingEvent::MeetingCancelled { reason: None }
}

/// Histories after which the meeting is closed, with the expected conflict.
fn closed_histories() -> Vec<(Vec<MeetingEvent>, DomainError)> {
    vec![
        (
            vec![scheduled(), cancelled()],
            DomainError::conflict("meeting is cancelled"),
        ),
        (
            vec![scheduled(), started(), ended()],
            DomainError::conflict("meeting has ended"),
        ),
    ]
}

/// A valid `Schedule` command (matching [`scheduled`]) after `edit`.
fn schedule(edit: impl FnOnce(&mut ScheduleMeeting)) -> MeetingCommand {
    let mut command = ScheduleMeeting {
        meeting_id: MEETING,
        actor: organizer(),
        title: "Planning".into(),
        description: Some("Agenda".into()),
        starts_at: t(10, 0),
        ends_at: t(11, 0),
        time_zone: "Europe/Berlin".into(),
        location: Some("Room 1".into()),
        attendees: vec![spec(ATT, false), spec(OPT, true)],
        recurrence: None,
    };
    edit(&mut command);
    MeetingCommand::Schedule(command)
}

fn run_with(
    services: MeetingServices,
    given: Vec<MeetingEvent>,
    command: MeetingCommand,
) -> Result<Vec<MeetingEvent>, DomainError> {
    TestFramework::<Meeting>::with(services)
        .given(given)
        .when(command)
        .inspect_result()
}

fn run(
    given: Vec<MeetingEvent>,
    command: MeetingCommand,
) -> Result<Vec<MeetingEvent>, DomainError> {
    run_with(services(), given, command)
}

fn expect_events(given: Vec<MeetingEvent>, command: MeetingCommand, expected: Vec<MeetingEvent>) {
    TestFramework::<Meeting>::with(services())
        .given(given)
        .when(command)
        .then_expect_events(expected);
}

fn expect_error(given: Vec<MeetingEvent>, command: MeetingCommand, expected: DomainError) {
    TestFramework::<Meeting>::with(services())
        .given(given)
        .when(command)
        .then_expect_error(expected);
}

fn not_found() -> DomainError {
    DomainError::not_found("meeting not found")
}

fn organizer_only() -> DomainError {
    DomainError::forbidden("only the organizer can change this meeting")
}

fn invalid(pairs: &[(&str, &str)]) -> DomainError {
    DomainError::Validation(pairs.iter().map(|(f, m)| FieldError::new(*f, *m)).collect())
}

fn rejected_fields(given: Vec<MeetingEvent>, command: MeetingCommand) -> Vec<String> {
    match run(given, command) {
        Err(DomainError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// Checks the access rules of an organizer-only command: missing meeting,
/// attendee (forbidden) and stranger (hidden), each on an otherwise valid command.
fn assert_organizer_only(command: impl Fn(Actor) -> MeetingCommand) {
    expect_error(vec![], command(organizer()), not_found());
    expect_error(vec![scheduled()], command(attendee()), organizer_only());
    expect_error(vec![scheduled()], command(member(OPT)), organizer_only());
    expect_error(vec![scheduled()], command(stranger()), not_found());
}

/// Checks that a command is refused on a cancelled and on an ended meeting.
fn assert_rejected_when_closed(command: MeetingCommand) {
    for (given, error) in closed_histories() {
        expect_error(given, command.clone(), error);
    }
}

// ----------------------------------------------------------------- Schedule

#[test]
fn schedule_records_trimmed_details_and_attendees() {
    expect_events(
        vec![],
        schedule(|s| {
            s.title = "  Planning ".into();
            s.description = Some(" Agenda\n".into());
            s.location = Some(" Room 1 ".into());
        }),
        vec![scheduled()],
    );
}

#[test]
fn schedule_turns_blank_description_and_location_into_none() {
    let events = run(
        vec![],
        schedule(|s| {
            s.description = Some("   ".into());
            s.location = Some("".into());
            s.attendees.clear();
        }),
    )
    .unwrap();
    match &events[..] {
        [MeetingEvent::MeetingScheduled {
            description,
            location,
            ..
        }] => {
            assert_eq!(description, &None);
            assert_eq!(location, &None);
        }
        other => panic!("unexpected events {other:?}"),
    }
}

#[test]
fn schedule_without_attendees_does_not_ask_the_directory() {
    let result = run_with(
        MeetingServices::new(Arc::new(UnreachableDirectory)),
        vec![],
        schedule(|s| s.attendees.clear()),
    );
    assert!(result.is_ok());
}

#[test]
fn schedule_rejects_an_existing_meeting() {
    expect_error(
        vec![scheduled()],
        schedule(|_| {}),
        DomainError::conflict("meeting already exists"),
    );
}

#[test]
fn schedule_rejects_blank_title() {
    expect_error(
        vec![],
        schedule(|s| s.title = "   ".into()),
        invalid(&[("title", "must not be empty")]),
    );
}

#[test]
fn schedule_accepts_200_char_title_and_rejects_201() {
    assert!(run(vec![], schedule(|s| s.title = "t".repeat(200))).is_ok());
    assert_eq!(
        rejected_fields(vec![], schedule(|s| s.title = "t".repeat(201))),
        vec!["title"]
    );
}

#[test]
fn schedule_accepts_10000_char_description_and_rejects_10001() {
    assert!(run(
        vec![],
        schedule(|s| s.description = Some("d".repeat(10_000)))
    )
    .is_ok());
    assert_eq!(
        rejected_fields(
            vec![],
            schedule(|s| s.description = Some("d".repeat(10_001)))
        ),
        vec!["description"]
    );
}

#[test]
fn schedule_accepts_500_char_location_and_rejects_501() {
    assert!(run(vec![], schedule(|s| s.location = Some("l".repeat(500)))).is_ok());
    assert_eq!(
        rejected_fields(vec![], schedule(|s| s.location = Some("l".repeat(501)))),
        vec!["location"]
    );
}

#[test]
fn schedule_rejects_end_before_start() {
    expect_error(
        vec![],
        schedule(|s| s.ends_at = t(9, 0)),
        invalid(&[("ends_at", "must be after starts_at")]),
    );
}

#[test]
fn schedule_rejects_end_equal_to_start() {
    expect_error(
        vec![],
        schedule(|s| s.ends_at = s.starts_at),
        invalid(&[("ends_at", "must be after starts_at")]),
    );
}

#[test]
fn schedule_accepts_exactly_24_hours_and_rejects_24_hours_and_a_minute() {
    assert!(run(
        vec![],
        schedule(|s| s.ends_at = s.starts_at + Duration::hours(24))
    )
    .is_ok());
    expect_error(
        vec![],
        schedule(|s| s.ends_at = s.starts_at + Duration::hours(24) + Duration::minutes(1)),
        invalid(&[("ends_at", "a meeting lasts at most 24 hours")]),
    );
}

#[test]
fn schedule_rejects_unknown_time_zone() {
    assert_eq!(
        rejected_fields(vec![], schedule(|s| s.time_zone = "Europe/Atlantis".into())),
        vec!["time_zone"]
    );
}

#[test]
fn schedule_accepts_500_attendees_and_rejects_501() {
    let events = run(
        vec![],
        schedule(|s| s.attendees = crowd(500).into_iter().map(|id| spec(id, false)).collect()),
    )
    .unwrap();
    assert_eq!(events.len(), 1);
    expect_error(
        vec![],
        schedule(|s| s.attendees = crowd(501).into_iter().map(|id| spec(id, false)).collect()),
        invalid(&[("attendees", "a meeting has at most 500 attendees")]),
    );
}

#[test]
fn schedule_rejects_duplicate_attendee() {
    expect_error(
        vec![],
        schedule(|s| s.attendees = vec![spec(ATT, false), spec(OPT, true), spec(ATT, true)]),
        invalid(&[("attendees[2].user_id", "duplicate attendee")]),
    );
}

#[test]
fn schedule_rejects_organizer_as_attendee() {
    expect_error(
        vec![],
        schedule(|s| s.attendees = vec![spec(ATT, false), spec(ORG, false)]),
        invalid(&[("attendees[1].user_id", "the organizer is not an attendee")]),
    );
}

#[test]
fn schedule_rejects_unknown_attendees_by_position() {
    expect_error(
        vec![],
        schedule(|s| {
            s.attendees = vec![
                spec(GHOST, false),
                spec(ATT, false),
                spec(Uuid::from_u128(98), true),
            ]
        }),
        invalid(&[
            ("attendees[0].user_id", "unknown user"),
            ("attendees[2].user_id", "unknown user"),
        ]),
    );
}

#[test]
fn schedule_does_not_ask_the_directory_when_other_fields_are_invalid() {
    let result = run_with(
        MeetingServices::new(Arc::new(UnreachableDirectory)),
        vec![],
        schedule(|s| s.title = String::new()),
    );
    assert!(matches!(result, Err(DomainError::Validation(_))));
}

#[test]
fn schedule_reports_directory_outage_as_unavailable() {
    TestFramework::<Meeting>::with(MeetingServices::new(Arc::new(DownDirectory)))
        .given_no_previous_events()
        .when(schedule(|_| {}))
        .then_expect_error(DomainError::Unavailable("directory down".into()));
}

/// A weekly series: Mondays 10:00 UTC (11:00 in Berlin), the first on 2030-01-07.
fn weekly() -> Recurrence {
    Recurrence {
        rrule: "FREQ=WEEKLY;BYDAY=MO".into(),
        exdates: vec![],
    }
}

fn scheduled_series() -> MeetingEvent {
    match scheduled() {
        MeetingEvent::MeetingScheduled {
            meeting_id,
            organizer_id,
            title,
            description,
            starts_at,
            ends_at,
            time_zone,
            location,
            attendees,
            ..
        } => MeetingEvent::MeetingScheduled {
            meeting_id,
            organizer_id,
            title,
            description,
            starts_at,
            ends_at,
            time_zone,
            location,
            attendees,
            recurrence: Some(weekly()),
        },
        _ => unreachable!(),
    }
}

/// The n-th Monday occurrence (0 = the first) at 10:00 UTC.
fn week(n: i64) -> DateTime<Utc> {
    t(10, 0) + Duration::weeks(n)
}

fn change_occurrence(
    occurrence: DateTime<Utc>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    cancelled: Option<bool>,
) -> MeetingCommand {
    MeetingCommand::ChangeOccurrence {
        actor: organizer(),
        occurrence,
        starts_at,
        ends_at,
        cancelled,
    }
}

#[test]
fn schedule_records_a_series_whose_rule_starts_at_its_start() {
    expect_events(
        vec![],
        schedule(|s| s.recurrence = Some(weekly())),
        vec![scheduled_series()],
    );
}

#[test]
fn schedule_refuses_a_rule_its_start_is_no_occurrence_of() {
    expect_error(
        vec![],
        schedule(|s| {
            s.recurrence = Some(Recurrence {
                rrule: "FREQ=WEEKLY;BYDAY=TU".into(),
                exdates: vec![],
            })
        }),
        invalid(&[(
            "recurrence.rrule",
            "starts_at must be an occurrence of the rule (its first one), in the meeting's time zone",
        )]),
    );
    assert_eq!(
        rejected_fields(
            vec![],
            schedule(|s| {
                s.recurrence = Some(Recurrence {
                    rrule: "FREQ=MINUTELY".into(),
                    exdates: vec![],
                })
            })
        ),
        vec!["recurrence.rrule"]
    );
}

#[test]
fn one_occurrence_moves_and_the_series_keeps_its_time() {
    expect_events(
        vec![scheduled_series()],
        change_occurrence(week(2), Some(week(2) + Duration::hours(3)), None, None),
        vec![MeetingEvent::OccurrenceRescheduled {
            occurrence: week(2),
            starts_at: week(2) + Duration::hours(3),
            ends_at: week(2) + Duration::hours(4),
        }],
    );
}

#[test]
fn one_occurrence_is_cancelled_once_and_can_be_put_back_on() {
    let cancelled_one = MeetingEvent::OccurrenceCancelled {
        occurrence: week(1),
    };
    expect_events(
        vec![scheduled_series()],
        change_occurrence(week(1), None, None, Some(true)),
        vec![cancelled_one.clone()],
    );
    // Again: nothing new.
    expect_events(
        vec![scheduled_series(), cancelled_one.clone()],
        change_occurrence(week(1), None, None, Some(true)),
        vec![],
    );
    // Moving a cancelled one needs it put back on explicitly.
    expect_error(
        vec![scheduled_series(), cancelled_one.clone()],
        change_occurrence(week(1), Some(week(1) + Duration::hours(1)), None, None),
        DomainError::conflict(
            "the occurrence is cancelled; send \"cancelled\": false to put it back on",
        ),
    );
    expect_events(
        vec![scheduled_series(), cancelled_one],
        change_occurrence(week(1), None, None, Some(false)),
        vec![MeetingEvent::OccurrenceRescheduled {
            occurrence: week(1),
            starts_at: week(1),
            ends_at: week(1) + Duration::hours(1),
        }],
    );
}

#[test]
fn only_real_occurrences_of_a_series_can_change() {
    // Not on the rule (a Tuesday), before the first, and a single meeting.
    for occurrence in [week(1) + Duration::days(1), week(-1)] {
        expect_error(
            vec![scheduled_series()],
            change_occurrence(occurrence, None, None, Some(true)),
            DomainError::not_found("no such occurrence"),
        );
    }
    expect_error(
        vec![scheduled()],
        change_occurrence(week(0), None, None, Some(true)),
        DomainError::not_found("the meeting is not recurring"),
    );
    expect_error(
        vec![scheduled_series()],
        change_occurrence(week(1), Some(week(1)), Some(week(1)), None),
        invalid(&[("ends_at", "must be after starts_at")]),
    );
    expect_error(
        vec![scheduled_series()],
        change_occurrence(week(1), Some(week(1)), None, Some(true)),
        invalid(&[("cancelled", "cancel an occurrence or move it, not both")]),
    );
    assert_organizer_only(|actor| MeetingCommand::ChangeOccurrence {
        actor,
        occurrence: week(1),
        starts_at: None,
        ends_at: None,
        cancelled: Some(true),
    });
}

#[test]
fn an_attendee_answers_one_occurrence_but_not_a_cancelled_or_unknown_one() {
    expect_events(
        vec![scheduled_series()],
        respond(attendee(), ResponseStatus::Declined, None, Some(week(3))),
        vec![MeetingEvent::AttendeeResponded {
            user_id: ATT,
            response: ResponseStatus::Declined,
            comment: None,
            occurrence: Some(week(3)),
        }],
    );
    expect_error(
        vec![scheduled_series()],
        respond(attendee(), ResponseStatus::Declined, None, Some(t(10, 30))),
        invalid(&[("occurrence", "not an occurrence of the series")]),
    );
    expect_error(
        vec![
            scheduled_series(),
            MeetingEvent::OccurrenceCancelled {
                occurrence: week(3),
            },
        ],
        respond(attendee(), ResponseStatus::Accepted, None, Some(week(3))),
        DomainError::conflict("the occurrence is cancelled"),
    );
}

#[test]
fn the_rule_changes_and_the_occurrence_changes_go() {
    let daily = Recurrence {
        rrule: "FREQ=DAILY;COUNT=5".into(),
        exdates: vec![],
    };
    expect_events(
        vec![scheduled()],
        MeetingCommand::ChangeRecurrence {
            actor: organizer(),
            recurrence: Some(daily.clone()),
        },
        vec![MeetingEvent::RecurrenceChanged {
            recurrence: Some(daily.clone()),
        }],
    );
    expect_events(
        vec![scheduled_series()],
        MeetingCommand::ChangeRecurrence {
            actor: organizer(),
            recurrence: Some(weekly()),
        },
        vec![],
    );
    let mut meeting = Meeting::default();
    meeting.apply(scheduled_series());
    meeting.apply(MeetingEvent::OccurrenceCancelled {
        occurrence: week(1),
    });
    meeting.apply(MeetingEvent::RecurrenceChanged {
        recurrence: Some(daily),
    });
    assert!(meeting.occurrence_changes().is_empty());
    assert_rejected_when_closed(MeetingCommand::ChangeRecurrence {
        actor: organizer(),
        recurrence: None,
    });
}

#[test]
fn moving_the_whole_series_forgets_the_changes_of_its_old_occurrences() {
    let mut meeting = Meeting::default();
    meeting.apply(scheduled_series());
    meeting.apply(MeetingEvent::OccurrenceCancelled {
        occurrence: week(1),
    });
    assert_eq!(meeting.occurrence_changes().len(), 1);
    meeting.apply(MeetingEvent::MeetingRescheduled {
        starts_at: week(0) + Duration::hours(1),
        ends_at: week(0) + Duration::hours(2),
        previous_starts_at: week(0),
        previous_ends_at: week(0) + Duration::hours(1),
    });
    assert!(meeting.occurrence_changes().is_empty());
    // Moving the series to a day its rule does not produce is refused.
    expect_error(
        vec![scheduled_series()],
        reschedule(organizer(), Some(week(0) + Duration::days(1)), Some(week(0) + Duration::days(1) + Duration::hours(1))),
        invalid(&[(
            "recurrence.rrule",
            "starts_at must be an occurrence of the rule (its first one), in the meeting's time zone",
        )]),
    );
}

#[test]
fn schedule_reports_every_bad_field_at_once() {
    assert_eq!(
        rejected_fields(
            vec![],
            schedule(|s| {
                s.title = " ".into();
                s.description = Some("d".repeat(10_001));
                s.location = Some("l".repeat(501));
                s.ends_at = s.starts_at;
                s.time_zone = "Nowhere".into();
                s.attendees = vec![spec(ORG, false), spec(ATT, false), spec(ATT, false)];
                s.recurrence = Some(Recurrence {
                    rrule: "FREQ=DAILY".into(),
                    exdates: vec![],
                });
            })
        ),
        vec![
            "title",
            "description",
            "location",
            "ends_at",
            "time_zone",
            "attendees[0].user_id",
            "attendees[2].user_id",
        ]
    );
}

// ------------------------------------------------------------ UpdateDetails

fn update(
    actor: Actor,
    title: Option<&str>,
    description: Option<Option<&str>>,
    location: Option<Option<&str>>,
    time_zone: Option<&str>,
) -> MeetingCommand {
    MeetingCommand::UpdateDetails {
        actor,
        title: title.map(Into::into),
        description: description.map(|d| d.map(Into::into)),
        location: location.map(|l| l.map(Into::into)),
        time_zone: time_zone.map(Into::into),
    }
}

#[test]
fn update_details_records_the_full_new_details() {
    expect_events(
        vec![scheduled()],
        update(
            organizer(),
            Some(" Retro "),
            None,
            Some(Some(" Room 2 ")),
            None,
        ),
        vec![MeetingEvent::MeetingDetailsUpdated {
            title: "Retro".into(),
            description: Some("Agenda".into()),
            location: Some("Room 2".into()),
            time_zone: "Europe/Berlin".into(),
        }],
    );
}

#[test]
fn update_details_by_an_admin_is_allowed() {
    expect_events(
        vec![scheduled()],
        update(admin(), None, None, None, Some("Asia/Tokyo")),
        vec![MeetingEvent::MeetingDetailsUpdated {
            title: "Planning".into(),
            description: Some("Agenda".into()),
            location: Some("Room 1".into()),
            time_zone: "Asia/Tokyo".into(),
        }],
    );
}

#[test]
fn update_details_clears_description_and_location_with_some_none() {
    expect_events(
        vec![scheduled()],
        update(organizer(), None, Some(None), Some(Some("  ")), None),
        vec![MeetingEvent::MeetingDetailsUpdated {
            title: "Planning".into(),
            description: None,
            location: None,
            time_zone: "Europe/Berlin".into(),
        }],
    );
}

#[test]
fn update_details_without_changes_emits_nothing() {
    expect_events(
        vec![scheduled()],
        update(
            organizer(),
            Some("Planning "),
            Some(Some("Agenda")),
            None,
            Some("Europe/Berlin"),
        ),
        vec![],
    );
    expect_events(
        vec![scheduled()],
        update(organizer(), None, None, None, None),
        vec![],
    );
}

#[test]
fn update_details_is_allowed_while_in_progress() {
    assert_eq!(
        run(
            vec![scheduled(), started()],
            update(organizer(), Some("Live"), None, None, None)
        )
        .unwrap()
        .len(),
        1
    );
}

#[test]
fn update_details_is_only_for_the_organizer_and_hidden_from_strangers() {
    assert_organizer_only(|actor| update(actor, Some("X"), None, None, None));
}

#[test]
fn update_details_rejects_a_closed_meeting() {
    assert_rejected_when_closed(update(organizer(), Some("X"), None, None, None));
}

#[test]
fn update_details_rejects_blank_title() {
    expect_error(
        vec![scheduled()],
        update(organizer(), Some(" "), None, None, None),
        invalid(&[("title", "must not be empty")]),
    );
}

#[test]
fn update_details_accepts_200_char_title_and_rejects_201() {
    assert!(run(
        vec![scheduled()],
        update(organizer(), Some(&"t".repeat(200)), None, None, None)
    )
    .is_ok());
    assert_eq!(
        rejected_fields(
            vec![scheduled()],
            update(organizer(), Some(&"t".repeat(201)), None, None, None)
        ),
        vec!["title"]
    );
}

#[test]
fn update_details_reports_every_bad_field_at_once() {
    let description = "d".repeat(10_001);
    let location = "l".repeat(501);
    assert_eq!(
        rejected_fields(
            vec![scheduled()],
            update(
                organizer(),
                Some(""),
                Some(Some(&description)),
                Some(Some(&location)),
                Some("Nowhere/City"),
            )
        ),
        vec!["title", "description", "location", "time_zone"]
    );
}

// --------------------------------------------------------------- Reschedule

fn reschedule(
    actor: Actor,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
) -> MeetingCommand {
    MeetingCommand::Reschedule {
        actor,
        starts_at,
        ends_at,
    }
}

#[test]
fn reschedule_records_old_and_new_times() {
    expect_events(
        vec![scheduled()],
        reschedule(organizer(), Some(t(14, 0)), Some(t(15, 30))),
        vec![MeetingEvent::MeetingRescheduled {
            starts_at: t(14, 0),
            ends_at: t(15, 30),
            previous_starts_at: t(10, 0),
            previous_ends_at: t(11, 0),
        }],
    );
}

#[test]
fn reschedule_keeps_the_side_that_is_not_given() {
    expect_events(
        vec![scheduled()],
        reschedule(admin(), Some(t(9, 0)), None),
        vec![MeetingEvent::MeetingRescheduled {
            starts_at: t(9, 0),
            ends_at: t(11, 0),
            previous_starts_at: t(10, 0),
            previous_ends_at: t(11, 0),
        }],
    );
}

#[test]
fn reschedule_to_the_same_times_emits_nothing() {
    expect_events(
        vec![scheduled()],
        reschedule(organizer(), Some(t(10, 0)), Some(t(11, 0))),
        vec![],
    );
    expect_events(
        vec![scheduled()],
        reschedule(organizer(), None, None),
        vec![],
    );
}

#[test]
fn reschedule_is_only_for_the_organizer_and_hidden_from_strangers() {
    assert_organizer_only(|actor| reschedule(actor, Some(t(9, 0)), None));
}

#[test]
fn reschedule_rejects_a_closed_meeting() {
    assert_rejected_when_closed(reschedule(organizer(), Some(t(9, 0)), None));
}

#[test]
fn reschedule_rejects_a_meeting_in_progress() {
    expect_error(
        vec![scheduled(), started()],
        reschedule(organizer(), Some(t(9, 0)), None),
        DomainError::conflict("meeting is in progress"),
    );
}

#[test]
fn reschedule_rejects_a_start_after_the_kept_end() {
    expect_error(
        vec![scheduled()],
        reschedule(organizer(), Some(t(12, 0)), None),
        invalid(&[("ends_at", "must be after starts_at")]),
    );
}

#[test]
fn reschedule_accepts_exactly_24_hours_and_rejects_24_hours_and_a_minute() {
    assert!(run(
        vec![scheduled()],
        reschedule(organizer(), None, Some(t(10, 0) + Duration::hours(24)))
    )
    .is_ok());
    expect_error(
        vec![scheduled()],
        reschedule(organizer(), None, Some(t(10, 1) + Duration::hours(24))),
        invalid(&[("ends_at", "a meeting lasts at most 24 hours")]),
    );
}

// ------------------------------------------------------------------- Invite

fn invite(actor: Actor, user_id: Uuid, optional: bool) -> MeetingCommand {
    MeetingCommand::Invite {
        actor,
        attendee: spec(user_id, optional),
    }
}

#[tokio::test]
async fn invite_records_the_new_attendee() {
    TestFramework::<Meeting>::with(services())
        .given(vec![scheduled()])
        .when_async(invite(organizer(), NEWBIE, true))
        .await
        .then_expect_events(vec![MeetingEvent::AttendeeInvited {
            user_id: NEWBIE,
            optional: true,
        }]);
}

#[test]
fn invite_by_an_admin_is_allowed_even_while_in_progress() {
    expect_events(
        vec![scheduled(), started()],
        invite(admin(), NEWBIE, false),
        vec![MeetingEvent::AttendeeInvited {
            user_id: NEWBIE,
            optional: false,
        }],
    );
}

#[test]
fn invite_is_only_for_the_organizer_and_hidden_from_strangers() {
    assert_organizer_only(|actor| invite(actor, NEWBIE, false));
}

#[test]
fn invite_rejects_a_closed_meeting() {
    assert_rejected_when_closed(invite(organizer(), NEWBIE, false));
}

#[test]
fn invite_rejects_the_organizer() {
    expect_error(
        vec![scheduled()],
        invite(organizer(), ORG, false),
        invalid(&[("user_id", "the organizer is not an attendee")]),
    );
}

#[test]
fn invite_rejects_an_existing_attendee() {
    expect_error(
        vec![scheduled()],
        invite(organizer(), OPT, false),
        DomainError::conflict("user is already an attendee"),
    );
}

#[test]
fn invite_accepts_the_500th_attendee_and_rejects_the_501st() {
    let mut ids = crowd(501);
    let last = ids.pop().expect("501 ids");
    let fifth_hundred = ids.pop().expect("500 ids");
    let given = vec![MeetingEvent::MeetingScheduled {
        meeting_id: MEETING,
        organizer_id: ORG,
        title: "All hands".into(),
        description: None,
        starts_at: t(10, 0),
        ends_at: t(11, 0),
        time_zone: "UTC".into(),
        location: None,
        attendees: ids.into_iter().map(|id| spec(id, false)).collect(),
        recurrence: None,
    }];
    let full = vec![
        given[0].clone(),
        MeetingEvent::AttendeeInvited {
            user_id: fifth_hundred,
            optional: false,
        },
    ];
    expect_events(
        given,
        invite(organizer(), fifth_hundred, false),
        vec![full[1].clone()],
    );
    expect_error(
        full,
        invite(organizer(), last, false),
        invalid(&[("attendees", "a meeting has at most 500 attendees")]),
    );
}

#[test]
fn invite_rejects_an_unknown_user() {
    expect_error(
        vec![scheduled()],
        invite(organizer(), GHOST, false),
        invalid(&[("user_id", "unknown user")]),
    );
}

#[test]
fn invite_reports_directory_outage_as_unavailable() {
    TestFramework::<Meeting>::with(MeetingServices::new(Arc::new(DownDirectory)))
        .given(vec![scheduled()])
        .when(invite(organizer(), NEWBIE, false))
        .then_expect_error(DomainError::Unavailable("directory down".into()));
}

// ----------------------------------------------------------- RemoveAttendee

fn remove(actor: Actor, user_id: Uuid) -> MeetingCommand {
    MeetingCommand::RemoveAttendee { actor, user_id }
}

#[test]
fn remove_attendee_records_the_removal() {
    expect_events(
        vec![scheduled()],
        remove(organizer(), OPT),
        vec![MeetingEvent::AttendeeRemoved { user_id: OPT }],
    );
    expect_events(
        vec![scheduled(), started()],
        remove(admin(), ATT),
        vec![MeetingEvent::AttendeeRemoved { user_id: ATT }],
    );
}

#[test]
fn remove_attendee_is_only_for_the_organizer_and_hidden_from_strangers() {
    assert_organizer_only(|actor| remove(actor, OPT));
}

#[test]
fn remove_attendee_rejects_a_closed_meeting() {
    assert_rejected_when_closed(remove(organizer(), OPT));
}

#[test]
fn remove_attendee_rejects_someone_who_is_not_an_attendee() {
    expect_error(
        vec![scheduled()],
        remove(organizer(), NEWBIE),
        DomainError::not_found("attendee not found"),
    );
    expect_error(
        vec![scheduled(), MeetingEvent::AttendeeRemoved { user_id: OPT }],
        remove(organizer(), OPT),
        DomainError::not_found("attendee not found"),
    );
}

// ------------------------------------------------------------------ Respond

fn respond(
    actor: Actor,
    response: ResponseStatus,
    comment: Option<&str>,
    occurrence: Option<DateTime<Utc>>,
) -> MeetingCommand {
    MeetingCommand::Respond {
        actor,
        response,
        comment: comment.map(Into::into),
        occurrence,
    }
}

#[test]
fn respond_records_the_answer_with_a_trimmed_comment() {
    expect_events(
        vec![scheduled()],
        respond(
            attendee(),
            ResponseStatus::Accepted,
            Some(" see you "),
            None,
        ),
        vec![MeetingEvent::AttendeeResponded {
            user_id: ATT,
            response: ResponseStatus::Accepted,
            comment: Some("see you".into()),
            occurrence: None,
        }],
    );
}

#[test]
fn respond_turns_a_blank_comment_into_none_and_works_while_in_progress() {
    expect_events(
        vec![scheduled(), started()],
        respond(member(OPT), ResponseStatus::Declined, Some("  "), None),
        vec![MeetingEvent::AttendeeResponded {
            user_id: OPT,
            response: ResponseStatus::Declined,
            comment: None,
            occurrence: None,
        }],
    );
}

#[test]
fn respond_rejects_a_missing_meeting() {
    expect_error(
        vec![],
        respond(attendee(), ResponseStatus::Accepted, None, None),
        not_found(),
    );
}

#[test]
fn respond_rejects_the_organizer() {
    expect_error(
        vec![scheduled()],
        respond(organizer(), ResponseStatus::Accepted, None, None),
        DomainError::forbidden("the organizer does not respond"),
    );
}

#[test]
fn respond_hides_the_meeting_from_strangers_including_admins() {
    for actor in [stranger(), admin()] {
        expect_error(
            vec![scheduled()],
            respond(actor, ResponseStatus::Accepted, None, None),
            not_found(),
        );
    }
}

#[test]
fn respond_rejects_a_closed_meeting() {
    assert_rejected_when_closed(respond(attendee(), ResponseStatus::Tentative, None, None));
}

#[test]
fn respond_accepts_a_1000_char_comment_and_rejects_1001() {
    assert!(run(
        vec![scheduled()],
        respond(
            attendee(),
            ResponseStatus::Tentative,
            Some(&"c".repeat(1000)),
            None
        )
    )
    .is_ok());
    assert_eq!(
        rejected_fields(
            vec![scheduled()],
            respond(
                attendee(),
                ResponseStatus::Tentative,
                Some(&"c".repeat(1001)),
                None
            )
        ),
        vec!["comment"]
    );
}

#[test]
fn respond_rejects_an_occurrence_of_a_non_recurring_meeting() {
    expect_error(
        vec![scheduled()],
        respond(attendee(), ResponseStatus::Accepted, None, Some(t(10, 0))),
        invalid(&[("occurrence", "the meeting is not recurring")]),
    );
}

// ------------------------------------------------------------------- Cancel

fn cancel(actor: Actor, reason: Option<&str>) -> MeetingCommand {
    MeetingCommand::Cancel {
        actor,
        reason: reason.map(Into::into),
    }
}

#[test]
fn cancel_records_the_trimmed_reason() {
    expect_events(
        vec![scheduled()],
        cancel(organizer(), Some(" sick ")),
        vec![MeetingEvent::MeetingCancelled {
            reason: Some("sick".into()),
        }],
    );
    expect_events(
        vec![scheduled()],
        cancel(admin(), None),
        vec![MeetingEvent::MeetingCancelled { reason: None }],
    );
}

#[test]
fn cancel_is_only_for_the_organizer_and_hidden_from_strangers() {
    assert_organizer_only(|actor| cancel(actor, None));
}

#[test]
fn cancel_rejects_a_closed_meeting() {
    assert_rejected_when_closed(cancel(organizer(), None));
}

#[test]
fn cancel_rejects_a_meeting_in_progress() {
    expect_error(
        vec![scheduled(), started()],
        cancel(organizer(), None),
        DomainError::conflict("meeting is in progress"),
    );
}

#[test]
fn cancel_accepts_a_1000_char_reason_and_rejects_1001() {
    assert!(run(
        vec![scheduled()],
        cancel(organizer(), Some(&"r".repeat(1000)))
    )
    .is_ok());
    assert_eq!(
        rejected_fields(
            vec![scheduled()],
            cancel(organizer(), Some(&"r".repeat(1001)))
        ),
        vec!["reason"]
    );
}

// -------------------------------------------------------------- Start / End

fn start(actor: Actor) -> MeetingCommand {
    MeetingCommand::Start {
        actor,
        at: t(10, 1),
    }
}

fn end(actor: Actor) -> MeetingCommand {
    MeetingCommand::End {
        actor,
        at: t(10, 59),
    }
}

#[test]
fn start_records_when_the_meeting_started() {
    expect_events(vec![scheduled()], start(organizer()), vec![started()]);
    expect_events(vec![scheduled()], start(admin()), vec![started()]);
}

#[test]
fn start_is_only_for_the_organizer_and_hidden_from_strangers() {
    assert_organizer_only(start);
}

#[test]
fn start_rejects_a_closed_meeting() {
    assert_rejected_when_closed(start(organizer()));
}

#[test]
fn start_rejects_a_meeting_already_in_progress() {
    expect_error(
        vec![scheduled(), started()],
        start(organizer()),
        DomainError::conflict("meeting is in progress"),
    );
}

#[test]
fn end_records_when_the_meeting_ended() {
    expect_events(
        vec![scheduled(), started()],
        end(organizer()),
        vec![ended()],
    );
    expect_events(vec![scheduled(), started()], end(admin()), vec![ended()]);
}

#[test]
fn end_is_only_for_the_organizer_and_hidden_from_strangers() {
    expect_error(vec![], end(organizer()), not_found());
    expect_error(
        vec![scheduled(), started()],
        end(attendee()),
        organizer_only(),
    );
    expect_error(vec![scheduled(), started()], end(stranger()), not_found());
}

#[test]
fn end_rejects_a_closed_meeting() {
    assert_rejected_when_closed(end(organizer()));
}

#[test]
fn end_rejects_a_meeting_that_has_not_started() {
    expect_error(
        vec![scheduled()],
        end(organizer()),
        DomainError::conflict("meeting has not started"),
    );
}

// -------------------------------------------------------------- PostMessage

fn post(actor: Actor, text: &str) -> MeetingCommand {
    MeetingCommand::PostMessage {
        actor,
        message_id: Uuid::from_u128(77),
        text: text.into(),
        at: t(10, 30),
    }
}

fn posted(author_id: Uuid, text: &str) -> MeetingEvent {
    MeetingEvent::ChatMessagePosted {
        message_id: Uuid::from_u128(77),
        author_id,
        text: text.into(),
        at: t(10, 30),
    }
}

#[test]
fn post_message_by_an_attendee_records_the_trimmed_text() {
    expect_events(
        vec![scheduled(), started()],
        post(attendee(), "  hello  "),
        vec![posted(ATT, "hello")],
    );
}

#[test]
fn post_message_by_the_organizer_before_the_start_is_allowed() {
    expect_events(
        vec![scheduled()],
        post(organizer(), "agenda attached"),
        vec![posted(ORG, "agenda attached")],
    );
}

#[test]
fn post_message_rejects_a_missing_meeting() {
    expect_error(vec![], post(attendee(), "hi"), not_found());
}

#[test]
fn post_message_hides_the_meeting_from_strangers_including_admins() {
    for actor in [stranger(), admin()] {
        expect_error(vec![scheduled()], post(actor, "hi"), not_found());
    }
}

#[test]
fn post_message_rejects_a_closed_meeting() {
    assert_rejected_when_closed(post(attendee(), "hi"));
}

#[test]
fn post_message_rejects_blank_text() {
    expect_error(
        vec![scheduled()],
        post(attendee(), " \n "),
        invalid(&[("text", "must not be empty")]),
    );
}

#[test]
fn post_message_accepts_4000_chars_and_rejects_4001() {
    assert!(run(vec![scheduled()], post(attendee(), &"m".repeat(4000))).is_ok());
    assert_eq!(
        rejected_fields(vec![scheduled()], post(attendee(), &"m".repeat(4001))),
        vec!["text"]
    );
}

// ------------------------------------------------------- state and events

fn replay(events: Vec<MeetingEvent>) -> Meeting {
    let mut meeting = Meeting::default();
    for event in events {
        meeting.apply(event);
    }
    meeting
}

#[test]
fn apply_rebuilds_the_meeting_state() {
    let meeting = replay(vec![
        scheduled(),
        MeetingEvent::AttendeeInvited {
            user_id: NEWBIE,
            optional: true,
        },
        MeetingEvent::AttendeeRemoved { user_id: OPT },
        MeetingEvent::AttendeeResponded {
            user_id: ATT,
            response: ResponseStatus::Accepted,
            comment: Some("ok".into()),
            occurrence: None,
        },
        MeetingEvent::MeetingDetailsUpdated {
            title: "Retro".into(),
            description: None,
            location: Some("Room 9".into()),
            time_zone: "UTC".into(),
        },
        posted(ATT, "hi"),
    ]);
    assert!(meeting.exists());
    assert_eq!(meeting.id(), Some(MEETING));
    assert_eq!(meeting.organizer_id(), ORG);
    assert_eq!(meeting.title(), "Retro");
    assert_eq!(meeting.description(), None);
    assert_eq!(meeting.location(), Some("Room 9"));
    assert_eq!(meeting.time_zone(), "UTC");
    assert_eq!(meeting.starts_at(), t(10, 0));
    assert_eq!(meeting.ends_at(), t(11, 0));
    assert_eq!(meeting.status(), MeetingStatus::Scheduled);
    assert_eq!(meeting.recurrence(), None);
    assert_eq!(
        meeting.attendees(),
        &[
            Attendee {
                user_id: ATT,
                optional: false,
                response: ResponseStatus::Accepted,
                comment: Some("ok".into()),
            },
            Attendee {
                user_id: NEWBIE,
                optional: true,
                response: ResponseStatus::NeedsAction,
                comment: None,
            },
        ]
    );
    assert!(meeting.is_member(ORG));
    assert!(meeting.is_member(ATT));
    assert!(!meeting.is_member(OPT));
    assert!(!meeting.is_member(STRANGER));
    assert!(!Meeting::default().exists());
    assert!(!Meeting::default().is_member(Uuid::nil()));
}

#[test]
fn rescheduling_resets_every_response_to_needs_action() {
    let meeting = replay(vec![
        scheduled(),
        MeetingEvent::AttendeeResponded {
            user_id: ATT,
            response: ResponseStatus::Accepted,
            comment: None,
            occurrence: None,
        },
        MeetingEvent::AttendeeResponded {
            user_id: OPT,
            response: ResponseStatus::Declined,
            comment: None,
            occurrence: None,
        },
        MeetingEvent::MeetingRescheduled {
            starts_at: t(12, 0),
            ends_at: t(13, 0),
            previous_starts_at: t(10, 0),
            previous_ends_at: t(11, 0),
        },
    ]);
    assert_eq!(meeting.starts_at(), t(12, 0));
    assert_eq!(meeting.ends_at(), t(13, 0));
    assert!(meeting
        .attendees()
        .iter()
        .all(|a| a.response == ResponseStatus::NeedsAction));
}

#[test]
fn lifecycle_events_move_the_status() {
    assert_eq!(
        replay(vec![scheduled(), started()]).status(),
        MeetingStatus::InProgress
    );
    assert_eq!(
        replay(vec![scheduled(), started(), ended()]).status(),
        MeetingStatus::Ended
    );
    assert_eq!(
        replay(vec![scheduled(), cancelled()]).status(),
        MeetingStatus::Cancelled
    );
}

#[test]
fn event_types_are_variant_names_at_version_1() {
    let events = vec![
        (scheduled(), "MeetingScheduled"),
        (
            MeetingEvent::MeetingDetailsUpdated {
                title: "T".into(),
                description: None,
                location: None,
                time_zone: "UTC".into(),
            },
            "MeetingDetailsUpdated",
        ),
        (
            MeetingEvent::MeetingRescheduled {
                starts_at: t(1, 0),
                ends_at: t(2, 0),
                previous_starts_at: t(3, 0),
                previous_ends_at: t(4, 0),
            },
            "MeetingRescheduled",
        ),
        (
            MeetingEvent::AttendeeInvited {
                user_id: ATT,
                optional: false,
            },
            "AttendeeInvited",
        ),
        (
            MeetingEvent::AttendeeRemoved { user_id: ATT },
            "AttendeeRemoved",
        ),
        (
            MeetingEvent::AttendeeResponded {
                user_id: ATT,
                response: ResponseStatus::Tentative,
                comment: None,
                occurrence: None,
            },
            "AttendeeResponded",
        ),
        (cancelled(), "MeetingCancelled"),
        (started(), "MeetingStarted"),
        (ended(), "MeetingEnded"),
        (posted(ATT, "x"), "ChatMessagePosted"),
    ];
    for (event, name) in events {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1.0");
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get(name).is_some(), "externally tagged: {json}");
        assert_eq!(serde_json::from_value::<MeetingEvent>(json).unwrap(), event);
    }
}

#[test]
fn wire_names_are_snake_case_and_optional_defaults_to_false() {
    assert_eq!(
        serde_json::to_value(MeetingStatus::InProgress).unwrap(),
        "in_progress"
    );
    assert_eq!(
        serde_json::to_value(ResponseStatus::NeedsAction).unwrap(),
        "needs_action"
    );
    assert_eq!(MeetingStatus::InProgress.as_str(), "in_progress");
    assert_eq!(ResponseStatus::NeedsAction.as_str(), "needs_action");
    let spec: AttendeeSpec = serde_json::from_value(serde_json::json!({ "user_id": ATT })).unwrap();
    assert!(!spec.optional);
    let recurrence: Recurrence =
        serde_json::from_value(serde_json::json!({ "rrule": "FREQ=DAILY" })).unwrap();
    assert!(recurrence.exdates.is_empty());
}

/// Stored events are read back years later: their JSON must stay byte for byte the same.
#[test]
fn stored_event_json_is_pinned() {
    let events = vec![
        (
            scheduled(),
            r#"{"MeetingScheduled":{"meeting_id":"00000000-0000-0000-0000-0000000003e8","organizer_id":"00000000-0000-0000-0000-00000000000a","title":"Planning","description":"Agenda","starts_at":"2030-01-07T10:00:00Z","ends_at":"2030-01-07T11:00:00Z","time_zone":"Europe/Berlin","location":"Room 1","attendees":[{"user_id":"00000000-0000-0000-0000-00000000000b","optional":false},{"user_id":"00000000-0000-0000-0000-00000000000c","optional":true}],"recurrence":null}}"#,
        ),
        (
            MeetingEvent::MeetingScheduled {
                meeting_id: MEETING,
                organizer_id: ORG,
                title: "T".into(),
                description: None,
                starts_at: t(10, 0),
                ends_at: t(11, 0),
                time_zone: "UTC".into(),
                location: None,
                attendees: vec![],
                recurrence: Some(Recurrence {
                    rrule: "FREQ=DAILY".into(),
                    exdates: vec![t(12, 0)],
                }),
            },
            r#"{"MeetingScheduled":{"meeting_id":"00000000-0000-0000-0000-0000000003e8","organizer_id":"00000000-0000-0000-0000-00000000000a","title":"T","description":null,"starts_at":"2030-01-07T10:00:00Z","ends_at":"2030-01-07T11:00:00Z","time_zone":"UTC","location":null,"attendees":[],"recurrence":{"rrule":"FREQ=DAILY","exdates":["2030-01-07T12:00:00Z"]}}}"#,
        ),
        (
            MeetingEvent::MeetingDetailsUpdated {
                title: "T".into(),
                description: Some("D".into()),
                location: None,
                time_zone: "UTC".into(),
            },
            r#"{"MeetingDetailsUpdated":{"title":"T","description":"D","location":null,"time_zone":"UTC"}}"#,
        ),
        (
            MeetingEvent::MeetingRescheduled {
                starts_at: t(1, 0),
                ends_at: t(2, 0),
                previous_starts_at: t(3, 0),
                previous_ends_at: t(4, 0),
            },
            r#"{"MeetingRescheduled":{"starts_at":"2030-01-07T01:00:00Z","ends_at":"2030-01-07T02:00:00Z","previous_starts_at":"2030-01-07T03:00:00Z","previous_ends_at":"2030-01-07T04:00:00Z"}}"#,
        ),
        (
            MeetingEvent::AttendeeInvited {
                user_id: ATT,
                optional: true,
            },
            r#"{"AttendeeInvited":{"user_id":"00000000-0000-0000-0000-00000000000b","optional":true}}"#,
        ),
        (
            MeetingEvent::AttendeeRemoved { user_id: ATT },
            r#"{"AttendeeRemoved":{"user_id":"00000000-0000-0000-0000-00000000000b"}}"#,
        ),
        (
            MeetingEvent::AttendeeResponded {
                user_id: ATT,
                response: ResponseStatus::NeedsAction,
                comment: Some("c".into()),
                occurrence: Some(t(5, 0)),
            },
            r#"{"AttendeeResponded":{"user_id":"00000000-0000-0000-0000-00000000000b","response":"needs_action","comment":"c","occurrence":"2030-01-07T05:00:00Z"}}"#,
        ),
        (
            MeetingEvent::MeetingCancelled {
                reason: Some("r".into()),
            },
            r#"{"MeetingCancelled":{"reason":"r"}}"#,
        ),
        (
            started(),
            r#"{"MeetingStarted":{"at":"2030-01-07T10:01:00Z"}}"#,
        ),
        (ended(), r#"{"MeetingEnded":{"at":"2030-01-07T10:59:00Z"}}"#),
        (
            posted(ATT, "hi"),
            r#"{"ChatMessagePosted":{"message_id":"00000000-0000-0000-0000-00000000004d","author_id":"00000000-0000-0000-0000-00000000000b","text":"hi","at":"2030-01-07T10:30:00Z"}}"#,
        ),
    ];
    for (event, json) in events {
        assert_eq!(serde_json::to_string(&event).unwrap(), json);
        assert_eq!(serde_json::from_str::<MeetingEvent>(json).unwrap(), event);
    }
}

const CONTINUED: Uuid = Uuid::from_u128(2000);

fn split_at(actor: Actor, occurrence: DateTime<Utc>) -> MeetingCommand {
    MeetingCommand::SplitSeries {
        actor,
        occurrence,
        continued_as: CONTINUED,
    }
}

#[test]
fn splitting_a_series_ends_it_before_the_occurrence_and_drops_later_changes() {
    let moved_before = MeetingEvent::OccurrenceRescheduled {
        occurrence: week(1),
        starts_at: week(1) + Duration::hours(2),
        ends_at: week(1) + Duration::hours(3),
    };
    let cancelled_after = MeetingEvent::OccurrenceCancelled {
        occurrence: week(3),
    };
    let history = vec![scheduled_series(), moved_before, cancelled_after];
    let split = MeetingEvent::SeriesSplit {
        occurrence: week(2),
        continued_as: CONTINUED,
        recurrence: Recurrence {
            rrule: "FREQ=WEEKLY;BYDAY=MO;UNTIL=20300121T095959Z".into(),
            exdates: vec![],
        },
    };
    expect_events(
        history.clone(),
        split_at(organizer(), week(2)),
        vec![split.clone()],
    );
    let mut meeting = Meeting::default();
    for event in history.into_iter().chain([split]) {
        meeting.apply(event);
    }
    assert_eq!(
        meeting
            .occurrence_changes()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [week(1)]
    );
    // An admin may split too.
    assert!(run(vec![scheduled_series()], split_at(admin(), week(2))).is_ok());
}

#[test]
fn a_split_is_refused_at_the_first_occurrence_off_the_rule_and_to_others() {
    expect_error(
        vec![scheduled_series()],
        split_at(organizer(), week(0)),
        DomainError::invalid(
            "occurrence_start",
            "this is the series' first occurrence: change the whole series with \
             PATCH /v1/meetings/{id}",
        ),
    );
    expect_error(
        vec![scheduled_series()],
        split_at(organizer(), week(2) + Duration::hours(1)),
        DomainError::not_found("no such occurrence"),
    );
    expect_error(
        vec![scheduled()],
        split_at(organizer(), week(2)),
        DomainError::not_found("the meeting is not recurring"),
    );
    assert_organizer_only(|actor| split_at(actor, week(2)));
    assert_rejected_when_closed(split_at(organizer(), week(2)));
}

fn series_with_answers() -> Meeting {
    let mut meeting = Meeting::default();
    for event in [
        scheduled_series(),
        MeetingEvent::OccurrenceCancelled {
            occurrence: week(3),
        },
        MeetingEvent::OccurrenceRescheduled {
            occurrence: week(1),
            starts_at: week(1) + Duration::hours(1),
            ends_at: week(1) + Duration::hours(2),
        },
        MeetingEvent::AttendeeResponded {
            user_id: ATT,
            response: ResponseStatus::Accepted,
            comment: Some("see you".into()),
            occurrence: None,
        },
        // Answers to single occurrences: before the split (stays with the old series), to a
        // cancelled one (nothing to answer any more), and after it (carried over).
        answered_alone(week(1), ResponseStatus::Tentative),
        answered_alone(week(3), ResponseStatus::Declined),
        answered_alone(week(4), ResponseStatus::Declined),
        MeetingEvent::OccurrenceCancelled {
            occurrence: week(3),
        },
    ] {
        meeting.apply(event);
    }
    meeting
}

fn answered_alone(occurrence: DateTime<Utc>, response: ResponseStatus) -> MeetingEvent {
    MeetingEvent::AttendeeResponded {
        user_id: ATT,
        response,
        comment: None,
        occurrence: Some(occurrence),
    }
}

#[test]
fn the_continuation_carries_details_later_changes_and_answers_when_the_times_stay() {
    let commands = series_with_answers()
        .continuation(
            organizer(),
            week(2),
            CONTINUED,
            SeriesChanges {
                title: Some("Planning, new room".into()),
                ..Default::default()
            },
            &[OPT],
        )
        .unwrap();
    assert_eq!(
        commands,
        [
            MeetingCommand::Schedule(ScheduleMeeting {
                meeting_id: CONTINUED,
                actor: organizer(),
                title: "Planning, new room".into(),
                description: Some("Agenda".into()),
                starts_at: week(2),
                ends_at: week(2) + Duration::hours(1),
                time_zone: "Europe/Berlin".into(),
                location: Some("Room 1".into()),
                // The deactivated optional attendee is not invited again.
                attendees: vec![spec(ATT, false)],
                recurrence: Some(weekly()),
            }),
            MeetingCommand::ChangeOccurrence {
                actor: organizer(),
                occurrence: week(3),
                starts_at: None,
                ends_at: None,
                cancelled: Some(true),
            },
            MeetingCommand::Respond {
                actor: attendee(),
                response: ResponseStatus::Accepted,
                comment: Some("see you".into()),
                occurrence: None,
            },
            MeetingCommand::Respond {
                actor: attendee(),
                response: ResponseStatus::Declined,
                comment: None,
                occurrence: Some(week(4)),
            },
        ]
    );
    // The commands schedule a valid meeting.
    let mut created = Meeting::default();
    for command in commands {
        if let Some(event) = futures_block(created.decide(command, &services())).unwrap() {
            created.apply(event);
        }
    }
    assert_eq!(
        created.attendee(ATT).unwrap().response,
        ResponseStatus::Accepted
    );
    assert!(created.occurrence_changes()[&week(3)].cancelled);
    assert_eq!(
        created.occurrence_answers().keys().collect::<Vec<_>>(),
        [&(week(4), ATT)]
    );
}

#[test]
fn answers_to_single_occurrences_follow_the_series_and_its_attendees() {
    let mut meeting = series_with_answers();
    let answered = |m: &Meeting| {
        m.occurrence_answers()
            .keys()
            .map(|(at, _)| *at)
            .collect::<Vec<_>>()
    };
    assert_eq!(answered(&meeting), [week(1), week(3), week(4)]);
    // The split keeps those before the occurrence split at.
    meeting.apply(MeetingEvent::SeriesSplit {
        occurrence: week(4),
        recurrence: weekly(),
        continued_as: CONTINUED,
    });
    assert_eq!(answered(&meeting), [week(1), week(3)]);
    // A removed attendee's answers go with them.
    meeting.apply(MeetingEvent::AttendeeRemoved { user_id: ATT });
    assert!(meeting.occurrence_answers().is_empty());
}

#[test]
fn an_attendee_answers_at_most_so_many_occurrences_one_by_one() {
    let mut meeting = Meeting::default();
    meeting.apply(scheduled_series());
    let limit = crate::meeting::MAX_CHANGED_OCCURRENCES;
    for n in 0..limit {
        meeting.apply(answered_alone(week(n as i64), ResponseStatus::Declined));
    }
    let respond = |occurrence| MeetingCommand::Respond {
        actor: attendee(),
        response: ResponseStatus::Accepted,
        comment: None,
        occurrence: Some(occurrence),
    };
    // Changing an answer already given is fine; one more occurrence is refused.
    assert!(futures_block(meeting.decide(respond(week(0)), &services())).is_ok());
    assert_eq!(
        futures_block(meeting.decide(respond(week(limit as i64)), &services())).unwrap_err(),
        DomainError::conflict(
            "at most 1000 occurrences of a series are answered one by one; answer the series"
        )
    );
}

#[test]
fn the_continuation_starts_afresh_when_the_times_change() {
    let commands = series_with_answers()
        .continuation(
            admin(),
            week(2),
            CONTINUED,
            SeriesChanges {
                starts_at: Some(week(2) + Duration::hours(2)),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
    let [MeetingCommand::Schedule(schedule)] = commands.as_slice() else {
        panic!("only the schedule: {commands:?}");
    };
    // Organized by the organizer even when an admin splits; the length is kept.
    assert_eq!(schedule.actor, organizer());
    assert_eq!(schedule.starts_at, week(2) + Duration::hours(2));
    assert_eq!(schedule.ends_at, week(2) + Duration::hours(3));
}

/// Runs a future to completion on this thread (the directory of [`services`] answers at
/// once).
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn an_occurrence_moved_back_where_the_rule_has_it_is_no_longer_changed() {
    let mut meeting = Meeting::default();
    for event in [
        scheduled_series(),
        MeetingEvent::OccurrenceRescheduled {
            occurrence: week(1),
            starts_at: week(1) + Duration::hours(3),
            ends_at: week(1) + Duration::hours(4),
        },
        MeetingEvent::OccurrenceCancelled {
            occurrence: week(2),
        },
    ] {
        meeting.apply(event);
    }
    assert_eq!(meeting.occurrence_changes().len(), 2);
    for back in [week(1), week(2)] {
        meeting.apply(MeetingEvent::OccurrenceRescheduled {
            occurrence: back,
            starts_at: back,
            ends_at: back + Duration::hours(1),
        });
    }
    assert!(meeting.occurrence_changes().is_empty());
}
