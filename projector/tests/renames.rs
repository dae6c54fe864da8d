//! A rename re-renders the documents of every meeting of the renamed user, however many, in
//! chunks of `RENDER_CHUNK` inside the batch's transaction (issue 10): after it every document
//! carries the new name and equals a document rendered afresh from the rows.

mod support;

use chrono::{Duration, TimeZone, Utc};
use domain::{AttendeeSpec, MeetingEvent, Role, UserEvent};
use platform::testing::history::History;
use platform::testing::TestDatabase;
use projector::apply::RENDER_CHUNK;
use projector::apply_batch;
use projector::projection::lead;
use uuid::Uuid;

fn registered(id: Uuid, name: &str) -> UserEvent {
    UserEvent::UserRegistered {
        user_id: id,
        email: format!("{name}@example.org"),
        display_name: name.to_owned(),
        time_zone: "UTC".to_owned(),
        role: Role::Member,
    }
}

#[tokio::test]
async fn renaming_a_user_of_more_meetings_than_a_chunk_rerenders_every_document() {
    let database = TestDatabase::new().await;
    let upcasters = domain::upcasters::upcasters();
    let mut leader = lead(&database.pool).await.unwrap().unwrap();
    let (organizer, guest) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut history = History::default();
    history.push("user", organizer, registered(organizer, "Olga"));
    history.push("user", guest, registered(guest, "Gustav"));
    let meetings = 2 * RENDER_CHUNK as usize + 37;
    let start = Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0).unwrap();
    for i in 0..meetings {
        let id = Uuid::from_u128(0x1_0000 + i as u128);
        history.push(
            "meeting",
            id,
            MeetingEvent::MeetingScheduled {
                meeting_id: id,
                organizer_id: organizer,
                title: format!("Meeting {i}"),
                description: None,
                starts_at: start + Duration::hours(i as i64),
                ends_at: start + Duration::hours(i as i64) + Duration::minutes(30),
                time_zone: "UTC".to_owned(),
                location: None,
                attendees: vec![AttendeeSpec {
                    user_id: guest,
                    optional: false,
                }],
                recurrence: None,
            },
        );
    }
    for batch in history.events.chunks(200) {
        apply_batch(&mut leader, batch, None, &upcasters)
            .await
            .unwrap();
    }
    let before = history.events.len();
    history.push(
        "user",
        guest,
        UserEvent::ProfileChanged {
            display_name: "Gustav Renamed".to_owned(),
            time_zone: "UTC".to_owned(),
            working_hours: None,
        },
    );
    apply_batch(&mut leader, &history.events[before..], None, &upcasters)
        .await
        .unwrap();

    let renamed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm_meeting_documents WHERE body::text LIKE '%Gustav Renamed%'",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!(
        renamed as usize, meetings,
        "every document carries the new name"
    );

    // And each equals the document rendered afresh from the rows.
    let documents = "SELECT meeting_id::text, members::text, version, body::text \
                     FROM rm_meeting_documents ORDER BY meeting_id";
    let kept: Vec<(String, String, i64, String)> = sqlx::query_as(documents)
        .fetch_all(&database.pool)
        .await
        .unwrap();
    sqlx::query("TRUNCATE rm_meeting_documents")
        .execute(&mut leader)
        .await
        .unwrap();
    projector::sql::documents::backfill(&mut leader)
        .await
        .unwrap();
    let fresh: Vec<(String, String, i64, String)> = sqlx::query_as(documents)
        .fetch_all(&database.pool)
        .await
        .unwrap();
    assert_eq!(kept, fresh);
}
