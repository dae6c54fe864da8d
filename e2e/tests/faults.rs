//! Fault injection across store → relay → JetStream → projector: late commits, concurrent
//! relays, crashes of relay and projector at random points, and a NATS restart.

use std::collections::HashSet;
use std::time::Duration;

use e2e::{nats_client, nats_url, read_model_snapshot, OwnNats, Stack};
use platform::bus::EventEnvelope;
use platform::store::{Commit, EventMetadata, NewEvent, Position};
use platform::testing::{meeting_body, TestDatabase};
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// Every message of the stream, in stream order.
async fn stream_contents(stack: &Stack) -> Vec<EventEnvelope> {
    let js = async_nats::jetstream::new(nats_client(stack.nats_url()).await);
    let mut stream = js.get_stream(stack.stream().as_str()).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut envelopes = vec![];
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        envelopes.push(serde_json::from_slice(&message.payload).unwrap());
    }
    envelopes
}

async fn wait_relayed(stack: &Stack, head: Position, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let relayed: Option<String> =
            sqlx::query_scalar("SELECT position FROM relay_checkpoints WHERE stream = $1")
                .bind(stack.stream().as_str())
                .fetch_optional(&stack.db().pool)
                .await
                .unwrap();
        if relayed
            .as_deref()
            .is_some_and(|p| p.parse::<Position>().unwrap() >= head)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay stuck at {relayed:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn assert_exactly_once_in_order(published: &[EventEnvelope], stored: &HashSet<Uuid>) {
    let ids: Vec<Uuid> = published.iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was published twice");
    let missing: Vec<_> = stored.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(stored).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "published {} of {} stored; missing {missing:?}, unknown {extra:?}",
        unique.len(),
        stored.len()
    );
    for pair in published.windows(2) {
        assert!(pair[0].position < pair[1].position, "out of global order");
    }
}

fn metadata() -> EventMetadata {
    EventMetadata {
        event_id: Uuid::now_v7(),
        actor_id: None,
        request_id: "fault-test".into(),
        correlation_id: "fault-test".into(),
        causation_id: "fault-test".into(),
        traceparent: None,
    }
}

#[tokio::test]
async fn late_committing_transactions_are_relayed_exactly_once_and_in_order() {
    let mut stack = Stack::start(nats_url(), true).await;
    stack.kill_projector(); // this test is about the relay; its events are synthetic
    let mut writers = vec![];
    for writer in 0..6 {
        let store = stack.store.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..40 {
                store
                    .commit(Commit {
                        aggregate_type: "meeting",
                        aggregate_id: Uuid::now_v7(),
                        expected_sequence: 0,
                        prev_hash: None,
                        events: vec![NewEvent {
                            event_type: format!("Fast{writer}"),
                            event_version: "1.0".into(),
                            payload: json!({}),
                            metadata: metadata(),
                            recorded_at: chrono::Utc::now(),
                        }],
                        side_effects: vec![],
                        idempotency: None,
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    // Slow writers take their xid first, then hold the transaction open while fast ones commit.
    for _ in 0..4 {
        let pool = stack.db().pool.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..5 {
                let hold = rand::thread_rng().gen_range(20..250);
                let metadata = metadata();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                     event_version, payload, metadata, event_id, recorded_at, hash) \
                     VALUES ('meeting', $1, 1, 'Slow', '1.0', '{}', $2, $3, now(), '\\x00')",
                )
                .bind(Uuid::now_v7())
                .bind(serde_json::to_value(&metadata).unwrap())
                .bind(metadata.event_id)
                .execute(&mut *tx)
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(hold)).await;
                tx.commit().await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let head = stack.store_head().await;
    wait_relayed(&stack, head, Duration::from_secs(30)).await;

    let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&stack.db().pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored.len(), 6 * 40 + 4 * 5);
    assert_exactly_once_in_order(&stream_contents(&stack).await, &stored);
}

#[tokio::test]
async fn of_two_relays_one_publishes_and_the_other_takes_over_when_it_dies() {
    let mut stack = Stack::start(nats_url(), true).await;
    // The stack's relay takes the lock first (on a loaded machine its first term may need
    // a retry, so wait for it before the second relay exists); the second stands by.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.relay_state() != Some(command_service::relay::RelayState::Active) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first relay never became active"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = stack.new_relay().await;
    let mut second_state = second.state();
    let second_task = tokio::spawn(second.run(std::future::pending()));
    let (_, token, _) = stack.user("Ann").await;
    for _ in 0..20 {
        stack
            .command(
                Method::POST,
                "/v1/meetings",
                &token,
                meeting_body("Sync", &[]),
            )
            .await;
        assert_eq!(
            *second_state.borrow(),
            command_service::relay::RelayState::Standby
        );
        assert_eq!(
            stack.relay_state(),
            Some(command_service::relay::RelayState::Active)
        );
    }

    stack.kill_relay();
    let killed_at = tokio::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        second_state.wait_for(|s| *s == command_service::relay::RelayState::Active),
    )
    .await
    .expect("the standby took over within 5 s")
    .unwrap();
    let takeover = killed_at.elapsed();

    for _ in 0..20 {
        stack
            .command(
                Method::POST,
                "/v1/meetings",
                &token,
                meeting_body("Sync", &[]),
            )
            .await;
    }
    let head = stack.store_head().await;
    wait_relayed(&stack, head, Duration::from_secs(30)).await;
    let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&stack.db().pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_exactly_once_in_order(&stream_contents(&stack).await, &stored);
    eprintln!("standby took over after {takeover:?}");
    second_task.abort();
}

#[tokio::test]
async fn read_models_equal_a_rebuild_after_relay_projector_and_nats_crashes() {
    let mut nats = OwnNats::start().await;
    let mut stack = Stack::start(nats.url(), false).await;
    let mut people = vec![];
    for name in ["Ann", "Ben", "Cid", "Dee"] {
        people.push(stack.user(name).await);
    }

    // Three drivers issue a mixed stream of commands while the test breaks things.
    let mut drivers = vec![];
    for driver in 0..3 {
        let commands = stack.commands.api.clone();
        let people = people.clone();
        drivers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            let mut accepted = 0;
            for round in 0..40 {
                let (organizer, token, _) = &people[(driver + round) % people.len()];
                let attendees: Vec<_> = people
                    .iter()
                    .filter(|(id, _, _)| id != organizer)
                    .take(2)
                    .map(|(id, _, _)| json!({"user_id": id}))
                    .collect();
                let start = chrono::Utc::now() + chrono::Duration::days(1 + round as i64);
                let body = json!({
                    "title": format!("Driver {driver} round {round}"),
                    "starts_at": start.to_rfc3339(),
                    "ends_at": (start + chrono::Duration::hours(1)).to_rfc3339(),
                    "time_zone": "Europe/Paris",
                    "attendees": attendees,
                });
                let response = commands.post("/v1/meetings", Some(token), &body).await;
                assert_eq!(response.status(), 201);
                accepted += 1;
                let id = response.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let follow_ups: Vec<(&str, serde_json::Value)> = vec![
                    ("messages", json!({"text": "agenda?"})),
                    ("messages", json!({"text": "see doc"})),
                    (
                        if rng.gen_bool(0.3) { "cancel" } else { "start" },
                        json!({}),
                    ),
                ];
                for (action, body) in follow_ups {
                    let response = commands
                        .post(&format!("/v1/meetings/{id}/{action}"), Some(token), &body)
                        .await;
                    assert!(
                        response.status().is_success(),
                        "{action}: {}",
                        response.status()
                    );
                    accepted += 1;
                }
            }
            accepted
        }));
    }

    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut nats_restarted = false;
    let mut kills = (0, 0);
    while drivers.iter().any(|d| !d.is_finished()) || kills.0 < 3 || kills.1 < 3 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..150))).await;
        match rng.gen_range(0..10) {
            0..=3 => {
                stack.kill_relay();
                kills.0 += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..100))).await;
                stack.start_relay().await;
            }
            4..=7 => {
                stack.kill_projector();
                kills.1 += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..100))).await;
                stack.start_projector().await;
            }
            _ if !nats_restarted => {
                nats.restart().await;
                nats_restarted = true;
            }
            _ => {}
        }
    }
    if !nats_restarted {
        nats.restart().await;
    }
    let mut accepted = 0;
    for driver in drivers {
        accepted += driver.await.unwrap();
    }
    assert_eq!(accepted, 3 * 40 * 4);

    let head = stack.store_head().await;
    stack.wait_projected(head, Duration::from_secs(90)).await;

    // None missing, none applied twice: one change row per stored event, and the live read
    // models equal a rebuild from the event store.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&stack.db().pool)
        .await
        .unwrap();
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_changes")
        .fetch_one(&stack.db().pool)
        .await
        .unwrap();
    assert_eq!(changes, events);
    let rebuilt = TestDatabase::new().await;
    let applied = projector::rebuild(stack.store.as_ref(), &rebuilt.pool)
        .await
        .unwrap();
    assert_eq!(applied as i64, events);
    let live = read_model_snapshot(&stack.db().pool).await;
    let fresh = read_model_snapshot(&rebuilt.pool).await;
    assert_eq!(live.len(), fresh.len());
    for (a, b) in live.iter().zip(&fresh) {
        assert_eq!(a, b);
    }
    eprintln!(
        "{events} events; relay killed {} times, projector {} times, NATS restarted once",
        kills.0, kills.1
    );
}
