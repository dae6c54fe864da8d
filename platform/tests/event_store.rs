//! The event store against a real database: each test on PostgreSQL and on SQLite (embedded
//! mode), except the ones about PostgreSQL's own transaction ids.

use chrono::Utc;
use platform::store::{
    canonical_json, event_hash, Commit, EventMetadata, EventStore, HashInput, NewEvent,
    PgEventStore, Position, SideEffect, StoreError,
};
use platform::testing::{Backend, TestDatabase, TestStore};
use serde_json::json;
use uuid::Uuid;

fn event(kind: &str) -> NewEvent {
    NewEvent {
        event_type: kind.to_string(),
        event_version: "1.0".into(),
        payload: json!({"kind": kind, "nested": {"b": 1, "a": [1, 2]}}),
        metadata: EventMetadata {
            event_id: Uuid::now_v7(),
            actor_id: Some(Uuid::now_v7()),
            request_id: "req".into(),
            correlation_id: "corr".into(),
            causation_id: "cause".into(),
            traceparent: None,
        },
        recorded_at: Utc::now(),
    }
}

fn commit(id: Uuid, expected: i64, prev_hash: Option<Vec<u8>>, kinds: &[&str]) -> Commit {
    Commit {
        aggregate_type: "meeting",
        aggregate_id: id,
        expected_sequence: expected,
        prev_hash,
        events: kinds.iter().map(|k| event(k)).collect(),
        side_effects: vec![],
        idempotency: None,
    }
}

async fn appends_get_contiguous_sequences_and_increasing_positions(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = &test.store;
    let id = Uuid::now_v7();
    let first = store
        .commit(commit(id, 0, None, &["A", "B"]))
        .await
        .unwrap();
    assert_eq!(first.version, 2);
    let loaded = store.load("meeting", id).await.unwrap();
    let second = store
        .commit(commit(id, 2, Some(loaded[1].hash.clone()), &["C"]))
        .await
        .unwrap();
    assert_eq!(second.version, 3);
    assert!(second.position > first.position);
    let loaded = store.load("meeting", id).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(loaded[2].position, second.position);
}

async fn a_second_append_at_the_same_sequence_is_a_concurrency_error(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = &test.store;
    let id = Uuid::now_v7();
    store.commit(commit(id, 0, None, &["A"])).await.unwrap();
    let error = store.commit(commit(id, 0, None, &["B"])).await.unwrap_err();
    assert!(matches!(error, StoreError::Concurrency), "{error:?}");
    assert_eq!(store.load("meeting", id).await.unwrap().len(), 1);
}

async fn commits_together_land_all_or_none(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = &test.store;
    let (old, new, taken) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first = store.commit(commit(old, 0, None, &["A"])).await.unwrap();
    store.commit(commit(taken, 0, None, &["X"])).await.unwrap();

    // The second commit conflicts: the first one's event is not kept either.
    let error = store
        .commit_together(vec![
            commit(old, 1, Some(first.last_hash.clone()), &["B"]),
            commit(taken, 0, None, &["Y"]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Concurrency), "{error:?}");
    assert_eq!(store.load("meeting", old).await.unwrap().len(), 1);
    assert_eq!(store.load("meeting", taken).await.unwrap().len(), 1);

    // Without a conflict both land, in order, in one transaction.
    let outcomes = store
        .commit_together(vec![
            commit(old, 1, Some(first.last_hash), &["B"]),
            commit(new, 0, None, &["C", "D"]),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes.iter().map(|o| o.version).collect::<Vec<_>>(),
        [2, 2]
    );
    assert!(outcomes[1].position > outcomes[0].position);
    assert_eq!(
        outcomes[0].position.transaction_id,
        outcomes[1].position.transaction_id
    );
    assert_eq!(store.load("meeting", new).await.unwrap().len(), 2);
}

async fn the_hash_chain_recomputes_from_what_was_read_back(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = &test.store;
    let id = Uuid::now_v7();
    store
        .commit(commit(id, 0, None, &["A", "B"]))
        .await
        .unwrap();
    let loaded = store.load("meeting", id).await.unwrap();
    store
        .commit(commit(id, 2, Some(loaded[1].hash.clone()), &["C"]))
        .await
        .unwrap();
    let mut previous: Option<Vec<u8>> = None;
    for stored in store.load("meeting", id).await.unwrap() {
        assert_eq!(stored.prev_hash, previous);
        let metadata = serde_json::to_value(&stored.metadata).unwrap();
        let recomputed = event_hash(&HashInput {
            prev_hash: previous.as_deref(),
            aggregate_type: &stored.aggregate_type,
            aggregate_id: stored.aggregate_id,
            sequence: stored.sequence,
            event_type: &stored.event_type,
            event_version: &stored.event_version,
            payload: &stored.payload,
            metadata: &metadata,
            recorded_at: stored.recorded_at,
        });
        assert_eq!(recomputed, stored.hash, "sequence {}", stored.sequence);
        previous = Some(stored.hash);
    }
    // jsonb reorders keys; the canonical form does not depend on it.
    assert_eq!(
        canonical_json(&json!({"b": 1, "a": 2})),
        canonical_json(&json!({"a": 2, "b": 1}))
    );
}

async fn events_cannot_be_updated_or_deleted(backend: Backend) {
    let test = TestStore::new(backend).await;
    let id = Uuid::now_v7();
    test.store
        .commit(commit(id, 0, None, &["A"]))
        .await
        .unwrap();
    let mut statements = vec!["UPDATE events SET payload = '{}'", "DELETE FROM events"];
    if backend == Backend::Postgres {
        statements.push("TRUNCATE events");
    }
    for statement in statements {
        let error = test.execute(statement).await.unwrap_err();
        assert!(
            error.to_string().contains("immutable"),
            "{statement}: {error}"
        );
    }
    assert_eq!(test.store.load("meeting", id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn global_order_compares_transaction_ids_as_numbers_not_text() {
    // xid 9 sorts after xid 10 as text; positions must follow the numbers.
    let db = TestDatabase::new().await;
    for (xid, id) in [(10_i64, 1_i64), (9, 2)] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata, event_id, recorded_at, hash, transaction_id, id) \
             VALUES ('meeting', $1, 1, 'A', '1.0', '{}', $2, $3, now(), '\\x00', $4::text::xid8, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(serde_json::to_value(event("A").metadata).unwrap())
        .bind(Uuid::now_v7())
        .bind(xid.to_string())
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let store = PgEventStore::new(db.pool.clone());
    let events = store.read_all(None, 10).await.unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position.transaction_id).collect();
    assert_eq!(positions, vec![9, 10]);
    let after_nine = store.read_all(Some(events[0].position), 10).await.unwrap();
    assert_eq!(after_nine.len(), 1);
    assert_eq!(after_nine[0].position.transaction_id, 10);
}

#[tokio::test]
async fn a_reader_never_passes_a_transaction_that_is_still_open() {
    let db = TestDatabase::new().await;
    let store = PgEventStore::new(db.pool.clone());
    let before = store.read_all(None, 100).await.unwrap();
    assert!(before.is_empty());

    // Transaction A takes its xid first and stays open…
    let mut slow = db.pool.begin().await.unwrap();
    let slow_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, event_id, recorded_at, hash) \
         VALUES ('meeting', $1, 1, 'Slow', '1.0', '{}', $2, $3, now(), '\\x00')",
    )
    .bind(slow_id)
    .bind(serde_json::to_value(event("Slow").metadata).unwrap())
    .bind(Uuid::now_v7())
    .execute(&mut *slow)
    .await
    .unwrap();

    // …while B commits after it.
    let fast_id = Uuid::now_v7();
    store
        .commit(commit(fast_id, 0, None, &["Fast"]))
        .await
        .unwrap();

    // B is committed but lies beyond A's xid: a reader must not pass it yet, or it would
    // skip A forever once A commits.
    let during = store.read_all(None, 100).await.unwrap();
    assert!(
        during.iter().all(|e| e.aggregate_id != fast_id),
        "the reader went past an open transaction"
    );

    slow.commit().await.unwrap();
    // Transactions of other tests on the same cluster may hold the horizon a moment longer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let after = loop {
        let after = store.read_all(None, 100).await.unwrap();
        if after.len() >= 2 || tokio::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let ids: Vec<Uuid> = after.iter().map(|e| e.aggregate_id).collect();
    assert_eq!(ids, vec![slow_id, fast_id], "A then B, in xid order");
    let resumed = store.read_all(Some(after[0].position), 100).await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert!(Position::START < after[0].position);
}

async fn a_taken_email_fails_the_whole_commit(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = &test.store;
    let account = |user_id: Uuid| SideEffect::CreateAccount {
        user_id,
        email_key: "same@example.com".into(),
        password_hash: "$argon2id$placeholder".into(),
    };
    let first = Uuid::now_v7();
    let mut c = commit(first, 0, None, &["UserRegistered"]);
    c.aggregate_type = "user";
    c.side_effects = vec![account(first)];
    store.commit(c).await.unwrap();

    let second = Uuid::now_v7();
    let mut c = commit(second, 0, None, &["UserRegistered"]);
    c.aggregate_type = "user";
    c.side_effects = vec![account(second)];
    let error = store.commit(c).await.unwrap_err();
    assert!(matches!(error, StoreError::Duplicate("email")), "{error:?}");
    assert!(
        store.load("user", second).await.unwrap().is_empty(),
        "no event without the claim"
    );
}

async fn idempotency_keys_older_than_the_retention_are_purged_and_newer_ones_kept(
    backend: Backend,
) {
    let test = TestStore::new(backend).await;
    let store = &test.store;
    for (key, age_hours) in [("old", 49), ("recent", 23)] {
        let statement = match backend {
            Backend::Postgres => format!(
                "INSERT INTO idempotency_keys (principal, key, request_hash, status, response, \
                 created_at) VALUES ('u', '{key}', '\\x00', 201, '{{}}', \
                 now() - make_interval(hours => {age_hours}))"
            ),
            Backend::Sqlite => format!(
                "INSERT INTO idempotency_keys (principal, key, request_hash, status, response, \
                 created_at) VALUES ('u', '{key}', x'00', 201, '{{}}', {})",
                (Utc::now() - chrono::Duration::hours(age_hours)).timestamp_micros()
            ),
        };
        test.execute(&statement).await.unwrap();
    }
    let deleted = store
        .purge_idempotency_keys(std::time::Duration::from_secs(48 * 3600))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(store
        .idempotent_response("u", "recent")
        .await
        .unwrap()
        .is_some());
    assert!(store
        .idempotent_response("u", "old")
        .await
        .unwrap()
        .is_none());
}

/// SQLite's answer to the open-transaction rule above: another writer of the file (the audit
/// CLI, say) holds the write lock with an event not yet committed; the store's commit waits
/// for it instead of landing first, so a reader sees the two in id order, never the later
/// one alone.
#[tokio::test]
async fn on_sqlite_a_commit_waits_for_another_writer_of_the_file_and_lands_after_it() {
    use sqlx::Connection;
    let test = TestStore::new(Backend::Sqlite).await;
    let (_, directory) = test.sqlite.as_ref().unwrap();
    let path = directory.file("events.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let slow_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, event_id, recorded_at, hash) \
         VALUES ('meeting', ?, 1, 'Slow', '1.0', '{}', ?, ?, 0, x'00')",
    )
    .bind(slow_id)
    .bind(serde_json::to_string(&event("Slow").metadata).unwrap())
    .bind(Uuid::now_v7())
    .execute(&mut other)
    .await
    .unwrap();

    let fast_id = Uuid::now_v7();
    let store = test.store.clone();
    let fast = tokio::spawn(async move { store.commit(commit(fast_id, 0, None, &["Fast"])).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !fast.is_finished(),
        "the commit waits for the file's write lock"
    );
    assert!(test.store.read_all(None, 100).await.unwrap().is_empty());

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    fast.await.unwrap().unwrap();
    let after = test.store.read_all(None, 100).await.unwrap();
    let ids: Vec<Uuid> = after.iter().map(|e| e.aggregate_id).collect();
    assert_eq!(ids, vec![slow_id, fast_id]);
    assert!(after[0].position < after[1].position);
    let resumed = test
        .store
        .read_all(Some(after[0].position), 100)
        .await
        .unwrap();
    assert_eq!(resumed.len(), 1);
}

/// Many commits at once (on SQLite they are written in batches, one transaction each, with
/// a savepoint per request): per aggregate exactly one of the rivals for a sequence lands,
/// the losers get a concurrency error and leave nothing behind, a multi-commit request stays
/// all or nothing, and every answered commit is in the log in the order of its position.
async fn concurrent_commits_each_land_or_fail_alone(backend: Backend) {
    let test = TestStore::new(backend).await;
    let store = test.store.clone();
    let contested: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let taken = Uuid::now_v7();
    let first = store.commit(commit(taken, 0, None, &["T"])).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..6 {
        for &id in &contested {
            let store = store.clone();
            tasks.spawn(async move {
                let kind = format!("R{round}");
                (id, store.commit(commit(id, 0, None, &[&kind])).await)
            });
        }
        let (free_store, free) = (store.clone(), Uuid::now_v7());
        tasks.spawn(async move { (free, free_store.commit(commit(free, 0, None, &["F"])).await) });
        // A pair whose second half always conflicts: neither half may land.
        let pair_store = store.clone();
        tasks.spawn(async move {
            let result = pair_store
                .commit_together(vec![
                    commit(Uuid::now_v7(), 0, None, &["P"]),
                    commit(taken, 0, None, &["Q"]),
                ])
                .await
                .map(|mut outcomes| outcomes.pop().unwrap());
            (Uuid::nil(), result)
        });
    }
    let mut winners = std::collections::HashMap::new();
    let mut landed = vec![];
    while let Some(joined) = tasks.join_next().await {
        let (id, result) = joined.unwrap();
        match result {
            Ok(outcome) => {
                assert!(!id.is_nil(), "a conflicting pair landed");
                assert!(
                    winners.insert(id, outcome.position).is_none(),
                    "{id} won twice"
                );
                landed.push(outcome.position);
            }
            Err(StoreError::Concurrency) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    for id in &contested {
        assert_eq!(store.load("meeting", *id).await.unwrap().len(), 1, "{id}");
        assert!(winners.contains_key(id), "nobody won {id}");
    }
    assert_eq!(winners.len(), contested.len() + 6);
    assert_eq!(store.load("meeting", taken).await.unwrap().len(), 1);
    // On PostgreSQL the global-order reader stops below transactions still open anywhere in
    // the cluster (other tests'): read once it has caught up with every commit.
    let log = match &test.postgres {
        Some(db) => platform::testing::committed_events(store.as_ref(), &db.pool).await,
        None => store.read_all(None, 10_000).await.unwrap(),
    };
    assert_eq!(
        log.len(),
        winners.len() + 1,
        "only the answered commits are in the log"
    );
    landed.push(first.position);
    landed.sort();
    let positions: Vec<Position> = log.iter().map(|e| e.position).collect();
    assert_eq!(positions, landed);
}

platform::on_each_backend!(
    concurrent_commits_each_land_or_fail_alone,
    appends_get_contiguous_sequences_and_increasing_positions,
    a_second_append_at_the_same_sequence_is_a_concurrency_error,
    commits_together_land_all_or_none,
    the_hash_chain_recomputes_from_what_was_read_back,
    events_cannot_be_updated_or_deleted,
    a_taken_email_fails_the_whole_commit,
    idempotency_keys_older_than_the_retention_are_purged_and_newer_ones_kept,
);
