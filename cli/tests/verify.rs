//! `meetings events verify` against an attacker with database rights: triggers switched off,
//! then one kind of tampering per test. Each must exit 1 naming the exact position; the
//! intact log exits 0.

mod support;

use support::problems;

use platform::store::{PgEventStore, Position};
use platform::testing::TestDatabase;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// `meetings <args>`: its exit code, its standard output as JSON (`null` when it is not),
/// and its standard error.
fn meetings_json(database_url: &str, args: &[&str]) -> (i32, Value, String) {
    let (code, stdout, stderr) = support::meetings(database_url, args);
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

fn verify(db: &TestDatabase, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["events", "verify", "--json"];
    args.extend_from_slice(extra);
    let (code, report, stderr) = meetings_json(&db.url, &args);
    assert_ne!(report, Value::Null, "no report; stderr: {stderr}");
    (code, report)
}

/// A log of about 3,000 events generated through the domain, anchored to its end.
async fn anchored_log() -> TestDatabase {
    let db = TestDatabase::new().await;
    audit::generate::generate(&db.pool, 3000, &|_| {})
        .await
        .unwrap();
    anchor(&db).await;
    db
}

/// Anchors the whole log. The anchor task reads only below the oldest transaction running
/// anywhere on the server (tests in parallel hold some), so it may take a few rounds.
async fn anchor(db: &TestDatabase) -> Position {
    let store = PgEventStore::new(db.pool.clone());
    let last = log(&db.pool).await.last().expect("a log").0;
    for _ in 0..600 {
        // `None`: nothing readable to anchor yet (a transaction elsewhere still runs).
        let anchored = audit::anchor::catch_up(&db.pool, &store, None)
            .await
            .unwrap()
            .map(|anchor| anchor.position);
        if anchored == Some(last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the log was not anchored to its end within 30 s");
}

/// The attacker: owner rights, triggers off.
async fn tamper(pool: &PgPool, statements: &[String]) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// (position, aggregate id, sequence, event type) of every event, in global order.
async fn log(pool: &PgPool) -> Vec<(Position, Uuid, i64, String)> {
    let rows: Vec<(String, i64, Uuid, i64, String)> = sqlx::query_as(
        "SELECT transaction_id::text, id, aggregate_id, sequence, event_type FROM events \
         ORDER BY transaction_id, id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(tx, id, aggregate, sequence, event_type)| {
            let position = Position {
                transaction_id: tx.parse().unwrap(),
                id,
            };
            (position, aggregate, sequence, event_type)
        })
        .collect()
}

fn where_event(position: Position) -> String {
    format!(
        "transaction_id = '{}'::xid8 AND id = {}",
        position.transaction_id, position.id
    )
}

/// Positions anchors were taken at.
async fn anchored(pool: &PgPool) -> Vec<Position> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT position FROM event_anchors")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter().map(|p| p.parse().unwrap()).collect()
}

/// The first anchor at or after `position`.
async fn anchor_at_or_after(pool: &PgPool, position: Position) -> String {
    sqlx::query_scalar(
        "SELECT position FROM event_anchors WHERE position >= $1 ORDER BY position LIMIT 1",
    )
    .bind(position.to_string())
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_intact_log_verifies_and_names_its_newest_anchor() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["events"], events.len() as u64);
    assert_eq!(report["problem_count"], 0);
    assert!(report["anchors"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(
        report["verified_anchor"],
        events.last().unwrap().0.to_string()
    );
}

#[tokio::test]
async fn an_altered_payload_is_found_at_its_position() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    let (position, ..) = events
        .iter()
        .filter(|e| e.3 == "ChatMessagePosted")
        .nth(40)
        .unwrap()
        .clone();
    tamper(
        &db.pool,
        &[format!(
            "UPDATE events SET payload = jsonb_set(payload, '{{text}}', '\"forged\"') WHERE {}",
            where_event(position)
        )],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        problems(&report),
        [("hash_mismatch".to_string(), position.to_string())]
    );
}

#[tokio::test]
async fn altered_metadata_is_found_at_its_position() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    let position = events[1234].0;
    tamper(
        &db.pool,
        &[format!(
            "UPDATE events SET metadata = jsonb_set(metadata, '{{actor_id}}', '\"{}\"') WHERE {}",
            Uuid::nil(),
            where_event(position)
        )],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        problems(&report),
        [("hash_mismatch".to_string(), position.to_string())]
    );
}

#[tokio::test]
async fn a_deleted_event_breaks_its_aggregate_at_the_next_event_and_the_next_anchor() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    // The fifth event of some meeting (not one an anchor was taken at); its sixth follows
    // later in the log.
    let anchors = anchored(&db.pool).await;
    let (deleted, meeting, ..) = events
        .iter()
        .find(|e| e.3 == "MeetingDetailsUpdated" && !anchors.contains(&e.0))
        .unwrap()
        .clone();
    let next = events
        .iter()
        .find(|e| e.1 == meeting && e.0 > deleted)
        .unwrap()
        .0;
    tamper(
        &db.pool,
        &[format!("DELETE FROM events WHERE {}", where_event(deleted))],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found[0], ("sequence_gap".to_string(), next.to_string()));
    assert!(
        found.contains(&(
            "anchor_mismatch".to_string(),
            anchor_at_or_after(&db.pool, deleted).await
        )),
        "{found:?}"
    );
}

#[tokio::test]
async fn two_swapped_events_of_one_aggregate_are_both_found() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    let meeting = events[2000].1;
    let mine: Vec<_> = events.iter().filter(|e| e.1 == meeting).collect();
    let (a, b) = (mine[7], mine[8]);
    // The attacker gives each event the other's place in the aggregate's history.
    tamper(
        &db.pool,
        &[
            format!(
                "UPDATE events SET sequence = 999999 WHERE {}",
                where_event(a.0)
            ),
            format!(
                "UPDATE events SET sequence = {} WHERE {}",
                a.2,
                where_event(b.0)
            ),
            format!(
                "UPDATE events SET sequence = {} WHERE {}",
                b.2,
                where_event(a.0)
            ),
        ],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert!(
        found.contains(&("hash_mismatch".to_string(), a.0.to_string())),
        "{found:?}"
    );
    assert!(
        found.contains(&("hash_mismatch".to_string(), b.0.to_string())),
        "{found:?}"
    );
}

#[tokio::test]
async fn two_events_swapped_in_the_global_order_are_found_at_the_next_anchor() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    // Neighbours of different aggregates: every aggregate's own chain stays intact.
    let i = (1500..events.len() - 1)
        .find(|&i| events[i].1 != events[i + 1].1)
        .unwrap();
    let (a, b) = (events[i].0, events[i + 1].0);
    assert_eq!(
        a.transaction_id, b.transaction_id,
        "one generated statement"
    );
    tamper(
        &db.pool,
        &[
            format!("UPDATE events SET id = -1 WHERE {}", where_event(a)),
            format!("UPDATE events SET id = {} WHERE {}", a.id, where_event(b)),
            format!(
                "UPDATE events SET id = {} WHERE transaction_id = '{}'::xid8 AND id = -1",
                b.id, a.transaction_id
            ),
        ],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        problems(&report),
        [(
            "anchor_mismatch".to_string(),
            anchor_at_or_after(&db.pool, b).await
        )]
    );
}

#[tokio::test]
async fn a_deleted_aggregate_is_found_at_the_first_anchor_after_it() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    // A meeting none of whose events an anchor was taken at.
    let anchors = anchored(&db.pool).await;
    let meeting = events[1800..]
        .iter()
        .map(|e| e.1)
        .find(|m| !events.iter().any(|e| e.1 == *m && anchors.contains(&e.0)))
        .unwrap();
    let first = events.iter().find(|e| e.1 == meeting).unwrap().0;
    tamper(
        &db.pool,
        &[format!(
            "DELETE FROM events WHERE aggregate_id = '{meeting}'"
        )],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(
        found[0],
        (
            "anchor_mismatch".to_string(),
            anchor_at_or_after(&db.pool, first).await
        ),
        "{report:#}"
    );
    assert!(report["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("deleted"));
}

#[tokio::test]
async fn a_truncated_tail_is_found_at_the_newest_anchored_position() {
    let db = anchored_log().await;
    let events = log(&db.pool).await;
    let last = events.last().unwrap().0;
    let cut = events[events.len() - 5].0;
    tamper(
        &db.pool,
        &[format!(
            "DELETE FROM events WHERE (transaction_id, id) >= ('{}'::xid8, {})",
            cut.transaction_id, cut.id
        )],
    )
    .await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        problems(&report),
        [("truncated".to_string(), last.to_string())]
    );
}

#[tokio::test]
async fn verify_resumes_from_a_verified_anchor_and_still_finds_what_follows() {
    let db = anchored_log().await;
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 0);
    let checkpoint = report["verified_anchor"].as_str().unwrap().to_string();
    let before = log(&db.pool).await.len();

    audit::generate::generate(&db.pool, 500, &|_| {})
        .await
        .unwrap();
    anchor(&db).await;
    let added = log(&db.pool).await.len() - before;
    let (code, report) = verify(&db, &["--from", &checkpoint]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["events"], added as u64);

    let events = log(&db.pool).await;
    let target = events[before + 10].0;
    tamper(
        &db.pool,
        &[format!(
            "UPDATE events SET payload = '{{}}' WHERE {}",
            where_event(target)
        )],
    )
    .await;
    let (code, report) = verify(&db, &["--from", &checkpoint]);
    assert_eq!(code, 1);
    assert_eq!(
        problems(&report),
        [("hash_mismatch".to_string(), target.to_string())]
    );
}

#[tokio::test]
async fn usage_and_connection_errors_exit_2() {
    let db = TestDatabase::new().await;
    let (code, _, stderr) = meetings_json(
        &db.url,
        &[
            "events",
            "verify",
            "--from",
            "00000000000000000000000000000001",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no anchor"), "{stderr}");
    let (code, _, _) = meetings_json(&db.url, &["events", "verify", "--from", "yesterday"]);
    assert_eq!(code, 2);
    let (code, _, stderr) = meetings_json(
        "postgres://postgres@127.0.0.1:1/nothing",
        &["events", "verify"],
    );
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = support::meetings(
        &db.url,
        &["events", "history", "meeting", &Uuid::nil().to_string()],
    );
    assert_eq!(
        code, 1,
        "an unknown aggregate is a finding, not a usage error"
    );
}

#[tokio::test]
async fn signed_anchors_show_a_rewrite_that_recomputes_every_hash() {
    use platform::store::{event_hash, EventStore, HashInput};

    let db = TestDatabase::new().await;
    audit::generate::generate(&db.pool, 1500, &|_| {})
        .await
        .unwrap();
    let key = platform::auth::keys::generate_ed25519_pem();
    let signer = audit::anchor::AnchorSigner::from_pem(&key).unwrap();
    let store = PgEventStore::new(db.pool.clone());
    let last = log(&db.pool).await.last().unwrap().0;
    let mut reached = None;
    for _ in 0..600 {
        reached = audit::anchor::catch_up(&db.pool, &store, Some(&signer))
            .await
            .unwrap()
            .map(|a| a.position);
        if reached == Some(last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(reached, Some(last));
    let public = std::env::temp_dir().join(format!("anchor-{}.pub.pem", Uuid::new_v4()));
    std::fs::write(&public, platform::auth::keys::public_pem(&key).unwrap()).unwrap();
    let with_key = ["--public-key", public.to_str().unwrap()];
    let (code, report) = verify(&db, &with_key);
    assert_eq!(code, 0, "{report:#}");

    // An attacker with the database but not the key rewrites a chat message and recomputes
    // its aggregate's hash chain and every anchor, signing them with a key of their own.
    let events = store.read_all(None, 1_000_000).await.unwrap();
    let target = events
        .iter()
        .filter(|e| e.event_type == "ChatMessagePosted")
        .nth(20)
        .unwrap()
        .clone();
    let mut statements = vec![];
    let mut rewritten = std::collections::HashMap::new();
    let mut prev: Option<Vec<u8>> = None;
    for event in events
        .iter()
        .filter(|e| e.aggregate_id == target.aggregate_id)
    {
        if event.sequence < target.sequence {
            prev = Some(event.hash.clone());
            continue;
        }
        let mut payload = event.payload.clone();
        if event.sequence == target.sequence {
            payload["text"] = "forged".into();
        }
        let metadata = serde_json::to_value(&event.metadata).unwrap();
        let hash = event_hash(&HashInput {
            prev_hash: prev.as_deref(),
            aggregate_type: &event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &payload,
            metadata: &metadata,
            recorded_at: event.recorded_at,
        });
        statements.push(format!(
            "UPDATE events SET payload = '{}'::jsonb, prev_hash = '\\x{}', hash = '\\x{}' WHERE {}",
            payload.to_string().replace('\'', "''"),
            hex(prev.as_deref().unwrap()),
            hex(&hash),
            where_event(event.position)
        ));
        rewritten.insert(event.position, hash.clone());
        prev = Some(hash);
    }
    let forger =
        audit::anchor::AnchorSigner::from_pem(&platform::auth::keys::generate_ed25519_pem())
            .unwrap();
    let positions = anchored(&db.pool).await;
    let mut running = audit::anchor::Anchor::start();
    statements.push("ALTER TABLE event_anchors DISABLE TRIGGER USER".into());
    statements.push("DELETE FROM event_anchors".into());
    for event in &events {
        let hash = rewritten.get(&event.position).unwrap_or(&event.hash);
        running.extend(event.position, hash);
        if positions.contains(&event.position) {
            let (key_id, signature) = forger.sign(&running);
            statements.push(format!(
                "INSERT INTO event_anchors (position, events, chain, key_id, signature) \
                 VALUES ('{}', {}, '\\x{}', '{key_id}', '\\x{}')",
                event.position,
                running.events,
                hex(&running.chain),
                hex(&signature)
            ));
        }
    }
    statements.push("ALTER TABLE event_anchors ENABLE TRIGGER USER".into());
    tamper(&db.pool, &statements).await;

    // Without the key, the rewrite is consistent: this is what anchors alone cannot show.
    let (code, report) = verify(&db, &[]);
    assert_eq!(code, 0, "{report:#}");
    // With it, every rewritten anchor is named.
    let (code, report) = verify(&db, &with_key);
    assert_eq!(code, 1);
    let found = problems(&report);
    assert_eq!(found.len(), positions.len(), "{report:#}");
    assert!(found.iter().all(|(kind, _)| kind == "anchor_signature"));
    assert_eq!(report["verified_anchor"], Value::Null);
    std::fs::remove_file(&public).ok();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
