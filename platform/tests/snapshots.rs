//! Loading an aggregate from its snapshot plus the events after it (ADR 0008), against a real
//! database: the result equals a rebuild from every event; a load that applied many events
//! leaves a snapshot; a snapshot that no longer decodes is ignored and replaced; pages and
//! resumes read only what they are asked for.

use chrono::Utc;
use domain::{Role, User, UserEvent};
use platform::store::{
    decode_events, encode_event, load_aggregate, snapshot::SNAPSHOT_EVERY, Commit, EventMetadata,
    EventStore, NewEvent, PgEventStore, Position, Snapshot,
};
use platform::testing::TestDatabase;
use uuid::Uuid;

fn new_event(event: &UserEvent) -> NewEvent {
    let (event_type, event_version, payload) = encode_event(event).unwrap();
    NewEvent {
        event_type,
        event_version,
        payload,
        metadata: EventMetadata {
            event_id: Uuid::now_v7(),
            actor_id: None,
            request_id: "req".into(),
            correlation_id: "req".into(),
            causation_id: "req".into(),
            traceparent: None,
        },
        recorded_at: Utc::now(),
    }
}

/// A user registered and then renamed `renames` times, committed in chunks of 50 events.
async fn user_with_renames(store: &PgEventStore, renames: usize) -> Uuid {
    let id = Uuid::now_v7();
    let mut events = vec![UserEvent::UserRegistered {
        user_id: id,
        email: "ann@example.org".into(),
        display_name: "Ann".into(),
        time_zone: "UTC".into(),
        role: Role::Member,
    }];
    events.extend((1..=renames).map(|n| UserEvent::ProfileChanged {
        display_name: format!("Ann {n}"),
        time_zone: "UTC".into(),
        working_hours: None,
    }));
    let (mut version, mut hash) = (0, None);
    for chunk in events.chunks(50) {
        let outcome = store
            .commit(Commit {
                aggregate_type: "user",
                aggregate_id: id,
                expected_sequence: version,
                prev_hash: hash,
                events: chunk.iter().map(new_event).collect(),
                side_effects: vec![],
                idempotency: None,
            })
            .await
            .unwrap();
        version = outcome.version;
        hash = Some(outcome.last_hash);
    }
    id
}

#[tokio::test]
async fn a_load_equals_a_rebuild_and_leaves_a_snapshot_the_next_load_starts_from() {
    let db = TestDatabase::new().await;
    let store = PgEventStore::new(db.pool.clone());
    let upcasters = domain::upcasters::upcasters();
    let id = user_with_renames(&store, 1_234).await;
    let rebuilt = decode_events::<User>(store.load("user", id).await.unwrap(), &upcasters).unwrap();

    assert!(store.snapshot("user", id).await.unwrap().is_none());
    let loaded = load_aggregate::<User>(&store, &upcasters, id, None)
        .await
        .unwrap();
    assert_eq!(loaded.aggregate, rebuilt.aggregate);
    assert_eq!(
        (loaded.version, &loaded.last_hash),
        (1_235, &rebuilt.last_hash)
    );
    assert_eq!(loaded.aggregate.display_name(), "Ann 1234");

    let snapshot = store
        .snapshot("user", id)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.sequence, 1_235);
    assert_eq!(Some(snapshot.last_hash.clone()), rebuilt.last_hash);

    // An older snapshot never replaces a newer one.
    store
        .save_snapshot(Snapshot {
            sequence: 7,
            ..snapshot.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.snapshot("user", id).await.unwrap().unwrap().sequence,
        1_235
    );

    // Loaded again: from the snapshot, equal to the rebuild.
    let again = load_aggregate::<User>(&store, &upcasters, id, None)
        .await
        .unwrap();
    assert_eq!(again.aggregate, rebuilt.aggregate);
    assert_eq!(again.version, 1_235);
}

#[tokio::test]
async fn a_snapshot_that_no_longer_decodes_is_ignored_and_replaced() {
    let db = TestDatabase::new().await;
    let store = PgEventStore::new(db.pool.clone());
    let upcasters = domain::upcasters::upcasters();
    let id = user_with_renames(&store, 2 * SNAPSHOT_EVERY as usize).await;
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, state, last_hash)
         VALUES ('user', $1, 150, '{\"shape\": \"of an older release\"}', '\\x00')",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
    let loaded = load_aggregate::<User>(&store, &upcasters, id, None)
        .await
        .unwrap();
    assert_eq!(loaded.version, 2 * SNAPSHOT_EVERY + 1);
    assert_eq!(loaded.aggregate.display_name(), "Ann 200");
    let replaced = store.snapshot("user", id).await.unwrap().unwrap();
    assert_eq!(replaced.sequence, 2 * SNAPSHOT_EVERY + 1);
}

#[tokio::test]
async fn pages_and_resumes_read_only_what_they_ask_for() {
    let db = TestDatabase::new().await;
    let store = PgEventStore::new(db.pool.clone());
    let id = user_with_renames(&store, 99).await;
    let page = store.load_page("user", id, 10, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    let all = store.load("user", id).await.unwrap();
    let since = all[49].position;
    let resumed = store.load_since("user", id, since, 20).await.unwrap();
    assert_eq!(resumed.len(), 20);
    assert_eq!(resumed[0].sequence, 51);
    assert!(resumed.iter().all(|e| e.position > since));
    let tail = store
        .load_since("user", id, all[97].position, 20)
        .await
        .unwrap();
    assert_eq!(tail.len(), 2);
    let none = store
        .load_since("user", id, all[99].position, 20)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        store
            .load_since("user", id, Position::START, 1_000)
            .await
            .unwrap()
            .len(),
        100
    );
}
