//! The projector applies batches set-wise (load, fold in memory, write back). These tests
//! prove that how the stream is cut into batches never changes the read models: a generated
//! history with every event type, interleaved across aggregates, is applied whole, event by
//! event, and in random cuts, each into its own database; every read-model table must come
//! out identical. Redelivering the history afterwards must change nothing.

mod support;

use chrono::{Duration, TimeZone, Utc};
use domain::{MeetingEvent, ResponseStatus};
use platform::bus::EventEnvelope;
use platform::store::Position;
use platform::testing::history::{history, Random};
use platform::testing::TestDatabase;
use projector::projection::{lead, mark_failed, status};
use projector::{apply_batch, apply_isolating};
use sqlx::PgPool;
use support::carrying;
use uuid::Uuid;

/// Every read-model table, row by row in key order, as JSON text.
async fn dump(pool: &PgPool) -> Vec<(String, Vec<String>)> {
    let tables = [
        ("rm_users", "id"),
        ("rm_meetings", "id"),
        ("rm_meeting_attendees", "meeting_id, user_id"),
        ("rm_meeting_documents", "meeting_id"),
        ("rm_agenda", "user_id, meeting_id"),
        ("rm_chat_messages", "meeting_id, message_id"),
        ("rm_changes", "position"),
        (
            "projection_sequences",
            "projection, aggregate_type, aggregate_id",
        ),
    ];
    let mut dump = Vec::new();
    for (table, key) in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::text FROM {table} t ORDER BY {key}"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        dump.push((table.to_owned(), rows));
    }
    dump
}

/// The documents the batches kept up to date (through renames, invitations, removals) equal
/// documents rendered afresh from the rows they are derived from.
async fn documents_match_their_rows(pool: &PgPool) {
    let documents = "SELECT meeting_id::text, members::text, version, body::text \
                     FROM rm_meeting_documents ORDER BY meeting_id";
    let kept: Vec<(String, String, i64, String)> =
        sqlx::query_as(documents).fetch_all(pool).await.unwrap();
    let meetings: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM rm_meetings ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(kept.len(), meetings.len(), "one document per meeting");
    let renamed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm_meeting_documents WHERE body::text LIKE '%Finally %'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(renamed > 0, "the history renames people of meetings");
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("TRUNCATE rm_meeting_documents")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        projector::sql::documents::backfill(&mut conn)
            .await
            .unwrap(),
        meetings.len()
    );
    let fresh: Vec<(String, String, i64, String)> =
        sqlx::query_as(documents).fetch_all(pool).await.unwrap();
    for (kept, fresh) in kept.iter().zip(&fresh) {
        assert_eq!(kept, fresh, "document of meeting {}", kept.0);
    }
}

/// Applies `events` cut into consecutive batches of the given sizes (the last size repeats).
async fn project(pool: &PgPool, events: &[EventEnvelope], mut cut: impl FnMut() -> usize) {
    let upcasters = domain::upcasters::upcasters();
    let mut leader = lead(pool).await.unwrap().expect("no other projector");
    let mut rest = events;
    while !rest.is_empty() {
        let size = cut().clamp(1, rest.len());
        let (batch, tail) = rest.split_at(size);
        let outcome = apply_batch(&mut leader, batch, None, &upcasters)
            .await
            .unwrap();
        assert_eq!(outcome.applied, batch.len());
        assert_eq!(outcome.duplicates, 0);
        rest = tail;
    }
}

#[tokio::test]
async fn how_the_stream_is_cut_into_batches_never_changes_the_read_models() {
    let events = history(0x5EED);
    let kinds: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds.len(),
        15,
        "the history covers every event type: {kinds:?}"
    );

    let whole = TestDatabase::new().await;
    project(&whole.pool, &events, || usize::MAX).await;
    let expected = dump(&whole.pool).await;
    let changes = &expected.iter().find(|(t, _)| t == "rm_changes").unwrap().1;
    assert_eq!(changes.len(), events.len());
    documents_match_their_rows(&whole.pool).await;

    let one_by_one = TestDatabase::new().await;
    project(&one_by_one.pool, &events, || 1).await;
    assert_eq!(
        dump(&one_by_one.pool).await,
        expected,
        "one event per batch"
    );
    documents_match_their_rows(&one_by_one.pool).await;

    let mut random = Random(42);
    let random_cuts = TestDatabase::new().await;
    project(&random_cuts.pool, &events, || 1 + random.below(17)).await;
    assert_eq!(dump(&random_cuts.pool).await, expected, "random batches");

    // Redelivery, in batches that straddle what was applied: nothing changes.
    let upcasters = domain::upcasters::upcasters();
    let mut leader = lead(&random_cuts.pool).await.unwrap().unwrap();
    for batch in events.chunks(7) {
        let outcome = apply_batch(&mut leader, batch, None, &upcasters)
            .await
            .unwrap();
        assert_eq!(outcome.applied, 0);
        assert_eq!(outcome.duplicates, batch.len());
    }
    assert_eq!(dump(&random_cuts.pool).await, expected, "after redelivery");
}

#[tokio::test]
async fn an_unapplicable_event_rolls_back_its_whole_batch() {
    let events = history(7);
    let database = TestDatabase::new().await;
    let upcasters = domain::upcasters::upcasters();
    let mut leader = lead(&database.pool).await.unwrap().unwrap();
    apply_batch(&mut leader, &events[..20], None, &upcasters)
        .await
        .unwrap();
    let before = dump(&database.pool).await;

    // The rest of the history, ending with a response from someone who does not attend.
    let meeting = events
        .iter()
        .find(|e| e.event_type == "MeetingScheduled")
        .unwrap();
    let mut bad = carrying(
        meeting,
        Uuid::from_u128(0xBAD),
        &MeetingEvent::AttendeeResponded {
            user_id: Uuid::from_u128(999),
            response: ResponseStatus::Accepted,
            comment: None,
            occurrence: None,
        },
    );
    bad.sequence = 1 + events
        .iter()
        .filter(|e| e.aggregate_id == meeting.aggregate_id)
        .count() as i64;
    bad.position = Position {
        transaction_id: u64::MAX >> 2,
        id: 1,
    };
    let mut batch = events[20..].to_vec();
    batch.push(bad);
    let error = apply_batch(&mut leader, &batch, None, &upcasters)
        .await
        .unwrap_err();
    assert!(
        matches!(error, projector::ProjectionError::Unapplicable { .. }),
        "{error}"
    );
    assert_eq!(
        dump(&database.pool).await,
        before,
        "nothing of the batch stays"
    );
}

/// A meeting an older release let through: year -5000, which PostgreSQL cannot store.
fn poison_after(template: &EventEnvelope) -> EventEnvelope {
    let meeting_id = Uuid::from_u128(0xBAD0);
    let starts_at = Utc.with_ymd_and_hms(-5000, 1, 1, 9, 0, 0).unwrap();
    let mut poison = carrying(
        template,
        Uuid::from_u128(0xBAD1),
        &MeetingEvent::MeetingScheduled {
            meeting_id,
            organizer_id: Uuid::from_u128(1),
            title: "From before validation".to_owned(),
            description: None,
            starts_at,
            ends_at: starts_at + Duration::hours(1),
            time_zone: "UTC".to_owned(),
            location: None,
            attendees: Vec::new(),
            recurrence: None,
        },
    );
    poison.aggregate_type = "meeting".to_owned();
    poison.aggregate_id = meeting_id;
    poison.sequence = 1;
    poison.position = Position {
        transaction_id: template.position.transaction_id + 1,
        id: template.position.id + 1,
    };
    poison
}

#[tokio::test]
async fn a_refused_batch_stops_on_the_named_event_after_applying_the_ones_before_it() {
    let events = history(11);
    let upcasters = domain::upcasters::upcasters();
    let expected = TestDatabase::new().await;
    project(&expected.pool, &events[..30], || 30).await;

    let database = TestDatabase::new().await;
    let mut leader = lead(&database.pool).await.unwrap().unwrap();
    let mut batch = events[..30].to_vec();
    batch.push(poison_after(&events[29]));
    let error = apply_isolating(&mut leader, &batch, None, &upcasters)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("MeetingScheduled meeting/00000000-0000-0000-0000-00000000bad0#1")
            && text.contains("out of range"),
        "the failure names the event and the reason: {text}"
    );
    assert_eq!(dump(&database.pool).await, dump(&expected.pool).await);
    assert_eq!(
        status(&database.pool).await.unwrap().0,
        Some(events[29].position)
    );

    // The stop is recorded (readiness fails) until the projection applies again, as it does
    // once a release that can apply the event resumes it: then readiness recovers by itself.
    mark_failed(&database.pool, &text).await.unwrap();
    assert_eq!(status(&database.pool).await.unwrap().1, Some(text));
    apply_isolating(&mut leader, &events[30..], None, &upcasters)
        .await
        .unwrap();
    assert_eq!(
        status(&database.pool).await.unwrap(),
        (Some(events.last().unwrap().position), None)
    );
}

#[tokio::test]
async fn one_projector_leads_at_a_time_and_its_lock_dies_with_its_connection() {
    let database = TestDatabase::new().await;
    let first = lead(&database.pool)
        .await
        .unwrap()
        .expect("the first one leads");
    assert!(
        lead(&database.pool).await.unwrap().is_none(),
        "a second one stands by"
    );

    // A rebuild cannot reset the read models under a running projector.
    let store = platform::store::PgEventStore::new(database.pool.clone());
    let refused = projector::rebuild(&store, &database.pool)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("stop it"), "{refused}");

    // A crashed projector: its connection is dropped without a goodbye.
    drop(first);
    let mut second = None;
    for _ in 0..100 {
        second = lead(&database.pool).await.unwrap();
        if second.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        second.is_some(),
        "the lock is free once the connection is gone"
    );
}
