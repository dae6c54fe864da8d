//! A meeting whose stream is very long (100,000 chat messages of a kilobyte) costs what a short
//! one costs: a websocket subscribe with `since` = zero, a command that changes nothing and a
//! command on a cold cache each grow the process's peak resident memory by less than 50 MiB
//! and answer as usual (ADR 0008: snapshots, pages, resumes in SQL).
//!
//! One test in its own binary, so that no other test's memory lands in the measurement. The
//! messages are written straight into the store by one SQL statement (as 100,000 commands
//! would write them, without the wait); no relay runs, so nothing else reads them.

use std::time::Duration;

use e2e::{nats_url, services, ws};
use platform::testing::{self, meeting_body, ScratchStream, TestDatabase};
use serde_json::{json, Value};

const MESSAGES: i64 = 100_000;
const LIMIT_MIB: u64 = 50;

/// The process's peak resident set so far (`VmHWM`), in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Runs `step` and asserts the peak resident set grew by less than [`LIMIT_MIB`].
async fn within_memory<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    let before = peak_kib();
    let started = std::time::Instant::now();
    let outcome = step.await;
    let grown_mib = peak_kib().saturating_sub(before) / 1024;
    eprintln!(
        "{what}: peak RSS +{grown_mib} MiB in {:?}",
        started.elapsed()
    );
    assert!(
        grown_mib < LIMIT_MIB,
        "{what} grew the peak resident set by {grown_mib} MiB"
    );
    outcome
}

#[tokio::test]
async fn a_meeting_with_100000_chat_messages_costs_no_more_memory_than_a_short_one() {
    testing::init_tracing();
    let db = TestDatabase::new().await;
    let stream = ScratchStream::create(&nats_url(), "LONG").await.unwrap();
    let commands = services::serve_commands(&services::command_settings(&db.url, 8))
        .await
        .unwrap();
    let ann = commands.sign_up("Ann").await.unwrap();
    let ben = commands.sign_up("Ben").await.unwrap();
    let meeting = commands
        .schedule(&ann.token, &meeting_body("Long chat", &[ben.id]))
        .await
        .unwrap();
    sqlx::query(
        "WITH g AS (SELECT s, gen_random_uuid() AS e FROM generate_series(2, $3::bigint + 1) s)
         INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id, recorded_at, hash)
         SELECT 'meeting', $1, s, 'ChatMessagePosted', '1.0',
                jsonb_build_object('message_id', gen_random_uuid(), 'author_id', $2::uuid,
                                   'text', repeat('x', 1000), 'at', '2026-12-01T10:00:00Z'),
                jsonb_build_object('event_id', e, 'actor_id', $2::uuid, 'request_id', 'bulk',
                                   'correlation_id', 'bulk', 'causation_id', 'bulk'),
                e, now(), '\\x00'
         FROM g",
    )
    .bind(meeting)
    .bind(ben.id)
    .bind(MESSAGES)
    .execute(&db.pool)
    .await
    .unwrap();
    // The change read model as the projector would have written it (none runs here): what a
    // resume reads.
    sqlx::query(
        "INSERT INTO rm_changes (position, event_id, event_type, aggregate_type, aggregate_id,
                                 sequence, recorded_at, data, audience)
         SELECT lpad(to_hex(transaction_id::text::bigint), 16, '0') || lpad(to_hex(id), 16, '0'),
                event_id, event_type, aggregate_type, aggregate_id, sequence, recorded_at,
                payload, ARRAY[$2, $3]::uuid[]
         FROM events WHERE aggregate_id = $1 AND sequence > 1",
    )
    .bind(meeting)
    .bind(ann.id)
    .bind(ben.id)
    .execute(&db.pool)
    .await
    .unwrap();
    let head = MESSAGES + 1;
    // Each step below starts without a snapshot: the worst case, a stream never loaded yet.
    let forget_snapshots = || async {
        sqlx::query("DELETE FROM snapshots")
            .execute(&db.pool)
            .await
            .unwrap();
    };

    // The stream holds the meeting's last event, as the relay would have published it: the
    // gateway starts live delivery after it, so a resume covers the whole chat.
    let store = platform::store::PgEventStore::new(db.pool.clone());
    let last = platform::store::EventStore::load_page(&store, "meeting", meeting, head - 1, 1)
        .await
        .unwrap();
    let envelope = platform::bus::EventEnvelope::from(&last[0]);
    // …and the read models are that far: what bounds the resume is its size alone.
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ('read_models', $1)",
    )
    .bind(envelope.position.to_string())
    .execute(&db.pool)
    .await
    .unwrap();
    stream
        .js
        .publish(
            stream.name.subject("meeting", meeting),
            serde_json::to_vec(&envelope).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // A websocket resume from the very start: more than a replay may hold, so `reset`.
    let gateway = realtime::build(&services::realtime_settings(
        &db.url,
        &nats_url(),
        &stream.name,
    ))
    .await
    .unwrap();
    let url = format!("ws://{}/v1/ws", gateway.local_addr());
    let _gateway = testing::TestServer::start(gateway);
    let mut ws = ws::authed(&url, &ben.token).await;
    forget_snapshots().await;
    let subscribed = within_memory("subscribe since 0", async {
        ws::send(
            &mut ws,
            json!({
                "type": "subscribe",
                "channel": format!("meeting:{meeting}"),
                "since": "00000000000000000000000000000000",
            }),
        )
        .await;
        let mut frames = Vec::new();
        loop {
            let frame = ws::next_within(&mut ws, Duration::from_secs(60)).await;
            let kind = frame["type"].as_str().unwrap_or_default().to_owned();
            frames.push(frame);
            if kind == "reset" || frames.len() > 3 {
                break frames;
            }
        }
    })
    .await;
    assert!(
        subscribed.iter().any(|f| f["type"] == "subscribed"),
        "{subscribed:?}"
    );
    assert_eq!(
        subscribed.last().unwrap()["type"],
        "reset",
        "{subscribed:?}"
    );

    // A command on a cold cache: a second command-service, as after a restart.
    let cold = services::serve_commands(&services::command_settings(&db.url, 8))
        .await
        .unwrap();
    forget_snapshots().await;
    let posted = within_memory("a cold command", async {
        cold.post(
            &format!("/v1/meetings/{meeting}/messages"),
            Some(&ann.token),
            json!({"text": "still here?"}),
        )
        .await
    })
    .await;
    assert_eq!(posted.status(), 201);
    let body: Value = posted.json().await.unwrap();
    assert_eq!(body["version"], head + 1);

    // A command that changes nothing answers with the current version, reading one event.
    forget_snapshots().await;
    let unchanged = within_memory("a no-op command", async {
        commands
            .patch(
                &format!("/v1/meetings/{meeting}"),
                Some(&ann.token),
                json!({"title": "Long chat"}),
            )
            .await
    })
    .await;
    assert_eq!(unchanged.status(), 200);
    let body: Value = unchanged.json().await.unwrap();
    assert_eq!(body["version"], head + 1);

    // The load left a snapshot, so the next cold load reads a handful of events.
    let snapshot: i64 = sqlx::query_scalar(
        "SELECT sequence FROM snapshots WHERE aggregate_type = 'meeting' AND aggregate_id = $1",
    )
    .bind(meeting)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(snapshot >= head, "snapshot at {snapshot}");
    stream.delete().await.unwrap();
}
