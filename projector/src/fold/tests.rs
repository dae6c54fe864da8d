//! The fold's unit tests: events folded over empty and stored rows, no database.

use chrono::{DateTime, TimeZone, Utc};
use domain::{AttendeeSpec, ResponseStatus};
use platform::store::{encode_event, EventMetadata, Position};

use super::*;

const MEETING: Uuid = Uuid::from_u128(0x100);
const ORGANIZER: Uuid = Uuid::from_u128(1);
const ANN: Uuid = Uuid::from_u128(2);
const BOB: Uuid = Uuid::from_u128(3);

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, hour, 0, 0).unwrap()
}

/// The `sequence`-th event of the meeting, at global position `sequence`.
fn meeting_event(sequence: i64, event: MeetingEvent) -> (EventEnvelope, Decoded) {
    let (event_type, event_version, data) = encode_event(&event).unwrap();
    let envelope = EventEnvelope {
        event_id: Uuid::from_u128(0x1000 + sequence as u128),
        position: Position {
            transaction_id: 1,
            id: sequence,
        },
        event_type,
        event_version,
        aggregate_type: "meeting".to_owned(),
        aggregate_id: MEETING,
        sequence,
        recorded_at: at(1) + chrono::Duration::seconds(sequence),
        data,
        metadata: EventMetadata {
            event_id: Uuid::from_u128(0x1000 + sequence as u128),
            actor_id: Some(ORGANIZER),
            request_id: "r".to_owned(),
            correlation_id: "c".to_owned(),
            causation_id: "c".to_owned(),
            traceparent: None,
        },
    };
    (envelope, Decoded::Meeting(event))
}

fn scheduled(attendees: &[Uuid]) -> MeetingEvent {
    MeetingEvent::MeetingScheduled {
        meeting_id: MEETING,
        organizer_id: ORGANIZER,
        title: "Planning".to_owned(),
        description: None,
        starts_at: at(9),
        ends_at: at(10),
        time_zone: "Europe/Berlin".to_owned(),
        location: None,
        attendees: attendees
            .iter()
            .map(|&user_id| AttendeeSpec {
                user_id,
                optional: false,
            })
            .collect(),
        recurrence: None,
    }
}

fn responded(user_id: Uuid, response: ResponseStatus) -> MeetingEvent {
    MeetingEvent::AttendeeResponded {
        user_id,
        response,
        comment: Some("ok".to_owned()),
        occurrence: None,
    }
}

/// Folds `events` over an empty database.
fn fold(events: Vec<MeetingEvent>) -> Result<Writes, ProjectionError> {
    fold_over(Fold::default(), events, 1)
}

fn fold_over(
    mut fold: Fold,
    events: Vec<MeetingEvent>,
    first_sequence: i64,
) -> Result<Writes, ProjectionError> {
    for (i, event) in events.into_iter().enumerate() {
        let (envelope, decoded) = meeting_event(first_sequence + i as i64, event);
        fold.apply(&envelope, &decoded)?;
    }
    Ok(fold.into_writes())
}

fn agenda_of(writes: &Writes, user: Uuid) -> Option<&AgendaRow> {
    writes.agenda.iter().find(|a| a.user_id == user)
}

#[test]
fn a_new_meeting_writes_its_row_attendees_and_everyones_agenda() {
    let writes = fold(vec![scheduled(&[ANN, BOB])]).unwrap();
    assert_eq!(writes.meetings.len(), 1);
    assert_eq!(writes.meetings[0].status, "scheduled");
    assert_eq!(writes.meetings[0].version, 1);
    assert_eq!(writes.attendees.len(), 2);
    assert_eq!(writes.agenda.len(), 3);
    let organizer = agenda_of(&writes, ORGANIZER).unwrap();
    assert!(organizer.is_organizer);
    assert_eq!(organizer.my_response, None);
    assert_eq!(
        agenda_of(&writes, ANN).unwrap().my_response.as_deref(),
        Some("needs_action")
    );
    assert_eq!(writes.changes[0].audience, vec![ORGANIZER, ANN, BOB]);
}

#[test]
fn events_of_one_batch_fold_in_order_into_the_last_state() {
    let writes = fold(vec![
        scheduled(&[ANN]),
        MeetingEvent::AttendeeInvited {
            user_id: BOB,
            optional: true,
        },
        responded(ANN, ResponseStatus::Accepted),
        MeetingEvent::AttendeeRemoved { user_id: BOB },
        MeetingEvent::ChatMessagePosted {
            message_id: Uuid::from_u128(9),
            author_id: ANN,
            text: "hi".to_owned(),
            at: at(2),
        },
    ])
    .unwrap();
    assert_eq!(writes.meetings[0].version, 5);
    assert_eq!(
        writes.meetings[0].position,
        Position {
            transaction_id: 1,
            id: 5
        }
        .to_string()
    );
    assert_eq!(writes.attendees.len(), 1, "{:?}", writes.attendees);
    assert_eq!(writes.attendees[0].response, "accepted");
    assert_eq!(writes.removed, vec![(MEETING, BOB)]);
    assert!(agenda_of(&writes, BOB).is_none());
    assert_eq!(
        agenda_of(&writes, ANN).unwrap().my_response.as_deref(),
        Some("accepted")
    );
    assert_eq!(writes.chat.len(), 1);
    // Who saw what: Bob saw his invitation and his removal, not what came after.
    let audiences: Vec<&[Uuid]> = writes
        .changes
        .iter()
        .map(|c| c.audience.as_slice())
        .collect();
    assert_eq!(
        audiences,
        vec![
            &[ORGANIZER, ANN][..],
            &[ORGANIZER, ANN, BOB][..],
            &[ORGANIZER, ANN, BOB][..],
            &[ORGANIZER, ANN, BOB][..],
            &[ORGANIZER, ANN][..],
        ]
    );
}

#[test]
fn a_removed_and_reinvited_attendee_is_written_not_deleted() {
    let writes = fold(vec![
        scheduled(&[ANN]),
        MeetingEvent::AttendeeRemoved { user_id: ANN },
        MeetingEvent::AttendeeInvited {
            user_id: ANN,
            optional: true,
        },
    ])
    .unwrap();
    assert!(writes.removed.is_empty());
    assert_eq!(writes.attendees.len(), 1);
    assert!(writes.attendees[0].optional);
    assert!(agenda_of(&writes, ANN).is_some());
}

/// The state of a meeting stored by an earlier batch: Ann accepted.
fn stored() -> Fold {
    let mut writes = fold(vec![
        scheduled(&[ANN, BOB]),
        responded(ANN, ResponseStatus::Accepted),
    ])
    .unwrap();
    Fold::new(
        Vec::new(),
        std::mem::take(&mut writes.meetings),
        std::mem::take(&mut writes.attendees),
    )
}

#[test]
fn a_reschedule_asks_everyone_again_and_rewrites_every_agenda_row() {
    let writes = fold_over(
        stored(),
        vec![MeetingEvent::MeetingRescheduled {
            starts_at: at(11),
            ends_at: at(12),
            previous_starts_at: at(9),
            previous_ends_at: at(10),
        }],
        3,
    )
    .unwrap();
    assert_eq!(writes.attendees.len(), 2);
    assert!(writes
        .attendees
        .iter()
        .all(|a| a.response == "needs_action"));
    assert_eq!(
        writes
            .attendees
            .iter()
            .find(|a| a.user_id == ANN)
            .unwrap()
            .comment
            .as_deref(),
        Some("ok")
    );
    assert_eq!(writes.agenda.len(), 3);
    assert!(writes.agenda.iter().all(|a| a.starts_at == at(11)));
}

#[test]
fn a_chat_message_rewrites_no_agenda_or_attendee_row() {
    let writes = fold_over(
        stored(),
        vec![MeetingEvent::ChatMessagePosted {
            message_id: Uuid::from_u128(9),
            author_id: ANN,
            text: "hi".to_owned(),
            at: at(2),
        }],
        3,
    )
    .unwrap();
    assert!(writes.agenda.is_empty());
    assert!(writes.attendees.is_empty());
    assert_eq!(writes.meetings[0].version, 3);
    assert_eq!(writes.changes[0].audience, vec![ORGANIZER, ANN, BOB]);
}

#[test]
fn a_status_change_rewrites_every_agenda_row() {
    let writes = fold_over(
        stored(),
        vec![MeetingEvent::MeetingCancelled {
            reason: Some("ill".to_owned()),
        }],
        3,
    )
    .unwrap();
    assert_eq!(writes.meetings[0].cancel_reason.as_deref(), Some("ill"));
    assert_eq!(writes.agenda.len(), 3);
    assert!(writes.agenda.iter().all(|a| a.status == "cancelled"));
    assert_eq!(
        agenda_of(&writes, ANN).unwrap().my_response.as_deref(),
        Some("accepted")
    );
}

#[test]
fn events_that_do_not_fit_the_stored_rows_are_unapplicable_and_say_why() {
    let invited = |user_id| MeetingEvent::AttendeeInvited {
        user_id,
        optional: false,
    };
    let stranger = Uuid::from_u128(77);
    let cases: Vec<(Fold, MeetingEvent, String)> = vec![
        (
            Fold::default(),
            responded(ANN, ResponseStatus::Accepted),
            "no rm_meetings row".to_owned(),
        ),
        (
            stored(),
            scheduled(&[]),
            "the meeting already exists".to_owned(),
        ),
        (
            Fold::default(),
            scheduled(&[ANN, BOB, ANN]),
            format!("{ANN} is listed twice"),
        ),
        (
            Fold::default(),
            scheduled(&[ORGANIZER]),
            format!("{ORGANIZER} is listed twice"),
        ),
        (stored(), invited(ANN), format!("{ANN} already attends")),
        (
            stored(),
            invited(ORGANIZER),
            format!("{ORGANIZER} already attends"),
        ),
        (
            stored(),
            MeetingEvent::AttendeeRemoved { user_id: ORGANIZER },
            format!("{ORGANIZER} does not attend"),
        ),
        (
            stored(),
            responded(stranger, ResponseStatus::Declined),
            format!("{stranger} does not attend"),
        ),
    ];
    for (fold, event, expected) in cases {
        let name = format!("{event:?}");
        match fold_over(fold, vec![event], 3) {
            Err(ProjectionError::Unapplicable { reason, .. }) => {
                assert_eq!(reason, expected, "{name}")
            }
            other => panic!("{name}: expected unapplicable, got {other:?}"),
        }
    }
}
