//! `meetings events replay` while the system runs: commands keep arriving, queries keep
//! reading, the projector keeps projecting. Readers never see a half-built read model, and
//! the result equals a fresh rebuild. In embedded mode (one process), with serve stopped.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::meetings;

use e2e::{read_model_snapshot, sqlite_read_model_snapshot, Stack};
use platform::db::sqlite::SqliteFile;
use platform::store::PgEventStore;
use platform::testing::{meeting_body, nats_url, TestDatabase};
use projector::replay::Limits;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_under_load_swaps_in_complete_read_models_and_loses_nothing() {
    let stack = Arc::new(Stack::start(nats_url(), true).await);
    let (_, token, _) = stack.user("Ada").await;
    let mut known = Vec::new();
    for n in 0..30 {
        let (status, body) = stack
            .command(
                Method::POST,
                "/v1/meetings",
                &token,
                meeting_body(&format!("Known {n}"), &[]),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let (status, _) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{id}/messages"),
                &token,
                json!({"text": "hello"}),
            )
            .await;
        assert_eq!(status, 201);
        known.push((id, format!("Known {n}")));
    }
    stack
        .wait_projected(stack.store_head().await, Duration::from_secs(30))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    // Commands all the time.
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (stack, stop, written, token) =
            (stack.clone(), stop.clone(), written.clone(), token.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = stack
                    .command(
                        Method::POST,
                        "/v1/meetings",
                        &token,
                        meeting_body(&format!("Load {n}"), &[]),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
                let id = body["id"].as_str().unwrap();
                let (status, _) = stack
                    .command(
                        Method::POST,
                        &format!("/v1/meetings/{id}/messages"),
                        &token,
                        json!({"text": format!("load {n}")}),
                    )
                    .await;
                assert_eq!(status, 201);
                written.fetch_add(2, Ordering::Relaxed);
                n += 1;
            }
        }
    });
    // Queries all the time: every known meeting is there with its chat, and the agenda
    // never shrinks. A half-built table would miss some of them.
    let reads = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (stack, stop, reads, token, known) = (
            stack.clone(),
            stop.clone(),
            reads.clone(),
            token.clone(),
            known.clone(),
        );
        async move {
            let tomorrow = chrono::Utc::now().date_naive().succ_opt().unwrap();
            let agenda = format!(
                "/v1/me/agenda?from={tomorrow}T00:00:00Z&to={tomorrow}T23:59:59Z&limit=500"
            );
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                for (id, title) in &known {
                    let meeting = stack
                        .queries
                        .get_json(&format!("/v1/meetings/{id}"), Some(&token))
                        .await;
                    assert_eq!(meeting["title"], title.as_str());
                    let chat = stack
                        .queries
                        .get_json(&format!("/v1/meetings/{id}/messages"), Some(&token))
                        .await;
                    assert_eq!(chat["items"].as_array().unwrap().len(), 1, "{chat}");
                }
                let items = stack.queries.get_json(&agenda, Some(&token)).await["items"]
                    .as_array()
                    .unwrap()
                    .len();
                assert!(
                    items >= known.len() && items >= seen,
                    "{items} after {seen}"
                );
                seen = items;
                reads.fetch_add(known.len() as u64 * 2 + 1, Ordering::Relaxed);
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = stack.db().url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || meetings(&url, &["events", "replay", "--all"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("read models rebuilt from"), "{out}");
    let during = written.load(Ordering::Relaxed);
    // The projector continues after the swap: later commands are projected too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    reader.await.unwrap();
    assert!(during > 0, "commands arrived during the replay");
    assert!(written.load(Ordering::Relaxed) > during, "and after it");
    assert!(reads.load(Ordering::Relaxed) > 0);

    stack
        .wait_projected(stack.store_head().await, Duration::from_secs(30))
        .await;
    let rebuilt = TestDatabase::new().await;
    projector::rebuild(stack.store.as_ref(), &rebuilt.pool)
        .await
        .unwrap();
    let live = read_model_snapshot(&stack.db().pool).await;
    let fresh = read_model_snapshot(&rebuilt.pool).await;
    assert_eq!(live.len(), fresh.len());
    for (a, b) in live.iter().zip(&fresh) {
        assert_eq!(a, b);
    }
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('meetings_replay', 'meetings_retired')",
    )
    .fetch_one(&stack.db().pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0);
    // The swapped-in tables kept their index names (migrations refer to them).
    let index: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('rm_changes_audience')::text")
            .fetch_one(&stack.db().pool)
            .await
            .unwrap();
    assert_eq!(index.as_deref(), Some("rm_changes_audience"));
}

/// The bulk build holds users and meetings in memory and writes each once. With limits this
/// small nearly everything is written, met again, loaded back and overwritten — renames after
/// the renamed users' meetings were written included — and the rows still equal a rebuild by
/// the batch path, documents byte for byte.
#[tokio::test]
async fn a_bulk_build_that_writes_and_reloads_all_the_time_equals_the_batch_rebuild() {
    let db = TestDatabase::new().await;
    audit::generate::generate(&db.pool, 3_000, &|_| {})
        .await
        .unwrap();
    let store = std::sync::Arc::new(PgEventStore::new(db.pool.clone()));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let limits = Limits {
        keep_for: 40,
        most_held: 25,
    };
    let outcome = projector::replay::replay_with(&db.pool, store.clone(), &|_, _| {}, limits)
        .await
        .unwrap();
    assert_eq!(outcome.events, events as u64);
    assert!(
        outcome.reloaded > 100,
        "the limits made the build load rows back: {outcome:?}"
    );

    let rebuilt = TestDatabase::new().await;
    projector::rebuild(store.as_ref(), &rebuilt.pool)
        .await
        .unwrap();
    let bulk = read_model_snapshot(&db.pool).await;
    let batch = read_model_snapshot(&rebuilt.pool).await;
    assert_eq!(bulk.len(), batch.len());
    for (a, b) in bulk.iter().zip(&batch) {
        assert_eq!(a, b);
    }
}

/// Embedded mode is one process: a replay waits until `meetings serve` stopped (its lock),
/// then rebuilds every read model in one transaction — damage to them included — to what
/// the live projection had built.
#[tokio::test]
async fn an_embedded_replay_needs_serve_stopped_and_rebuilds_what_the_projection_built() {
    let stack = Stack::embedded().await;
    let (_, token, _) = stack.user("Ada").await;
    let (guest, guest_token, _) = stack.user("Grace").await;
    for n in 0..5 {
        let id = stack
            .commands
            .schedule(&token, &meeting_body(&format!("Known {n}"), &[guest]))
            .await
            .unwrap();
        let (status, _) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{id}/response"),
                &guest_token,
                json!({"response": "accepted"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    stack
        .wait_projected(stack.store_head().await, Duration::from_secs(30))
        .await;
    let url = stack.database_url();
    let (code, _, err) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || meetings(&url, &["events", "replay", "--all"]))
            .await
            .unwrap()
    };
    assert_eq!(code, 2, "refused while serve runs: {err}");
    assert!(err.contains("stop `meetings serve`"), "{err}");

    let directory = stack.stop_embedded().await;
    let read_models = SqliteFile::open_read_models(&directory.file("meetings-read-models.db"))
        .await
        .unwrap();
    let projected = sqlite_read_model_snapshot(&read_models).await;
    // A projection bug's damage: rows lost, a row wrong.
    sqlx::query("DELETE FROM rm_meeting_attendees")
        .execute(&read_models.writer)
        .await
        .unwrap();
    sqlx::query("UPDATE rm_meetings SET title = 'wrong'")
        .execute(&read_models.writer)
        .await
        .unwrap();
    assert_ne!(sqlite_read_model_snapshot(&read_models).await, projected);

    let (code, out, err) =
        tokio::task::spawn_blocking(move || meetings(&url, &["events", "replay", "--all"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("read models rebuilt from"), "{out}");
    assert_eq!(sqlite_read_model_snapshot(&read_models).await, projected);
    drop(directory);
}
