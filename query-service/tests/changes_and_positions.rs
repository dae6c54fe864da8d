//! The change feed, `X-Min-Position` waits and readiness on each backend (a real PostgreSQL, and
//! the SQLite files of embedded mode).

mod support;

use std::time::Duration;

use domain::Role;
use serde_json::Value;
use support::{spawn_app, spawn_app_with_wait, Backend};

fn positions(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_str().unwrap().to_string())
        .collect()
}

async fn a_user_sees_only_changes_addressed_to_them_and_an_admin_sees_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let bob = app.user("Bob").await;
    let admin = app.user_with("Root", Role::Admin, "UTC", None).await;
    let meeting = uuid::Uuid::now_v7();
    app.change(1, "MeetingScheduled", meeting, &[alice.id, bob.id])
        .await;
    app.change(2, "MessagePosted", meeting, &[alice.id]).await;
    app.change(3, "UserRegistered", bob.id, &[bob.id]).await;
    app.change(4, "MeetingCancelled", meeting, &[alice.id, bob.id])
        .await;

    let body = app.get_json("/v1/changes", Some(&alice.token)).await;
    assert_eq!(
        positions(&body),
        vec![app.position(1), app.position(2), app.position(4)]
    );
    let event = &body["events"][0];
    assert_eq!(event["type"], "MeetingScheduled");
    assert_eq!(event["aggregate_type"], "meeting");
    assert_eq!(event["aggregate_id"], meeting.to_string());
    assert_eq!(event["sequence"], 1);
    assert_eq!(event["data"], serde_json::json!({"n": 1}));
    assert!(event["recorded_at"].is_string());

    let body = app.get_json("/v1/changes", Some(&bob.token)).await;
    assert_eq!(
        positions(&body),
        vec![app.position(1), app.position(3), app.position(4)]
    );
    let body = app.get_json("/v1/changes", Some(&admin.token)).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 4);
}

async fn next_is_the_last_position_returned_or_the_given_after_when_nothing_is_new(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let body = app.get_json("/v1/changes", Some(&alice.token)).await;
    assert_eq!(body["events"], serde_json::json!([]));
    assert!(body["next"].is_null(), "nothing at all and no after");

    let meeting = uuid::Uuid::now_v7();
    for n in 1..=5 {
        app.change(n, "MessagePosted", meeting, &[alice.id]).await;
    }
    let body = app
        .get_json("/v1/changes?limit=2", Some(&alice.token))
        .await;
    assert_eq!(positions(&body), vec![app.position(1), app.position(2)]);
    assert_eq!(body["next"], app.position(2));
    let body = app
        .get_json(
            &format!("/v1/changes?limit=2&after={}", app.position(2)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(positions(&body), vec![app.position(3), app.position(4)]);
    let body = app
        .get_json(
            &format!("/v1/changes?after={}", app.position(5)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(body["events"], serde_json::json!([]));
    assert_eq!(
        body["next"],
        app.position(5),
        "the given after when nothing new"
    );
}

async fn a_query_with_a_future_position_waits_until_the_projector_notifies(backend: Backend) {
    let app = spawn_app_with_wait(backend, Duration::from_secs(20)).await;
    let alice = app.user("Alice").await;
    app.stored_up_to(7).await;
    app.project_up_to(&app.position(1)).await;
    let request = app
        .get_at("/v1/users/me", Some(&alice.token), &app.position(7))
        .send();
    let mut request = Box::pin(request);
    // Still waiting while the read models stand at position 1.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut request).await;
    assert!(early.is_err(), "answered before the position was projected");
    app.project_up_to(&app.position(7)).await;
    let response = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the notification should release the waiting request promptly")
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn a_position_already_projected_answers_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    app.stored_up_to(9).await;
    app.project_up_to(&app.position(9)).await;
    // The checkpoint is read when the listener (re)connects, and the NOTIFY is seen too; either
    // way the position counts as reached.
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        app.get_at("/v1/users/me", Some(&alice.token), &app.position(3))
            .send(),
    )
    .await
    .expect("no wait for a projected position")
    .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_new_watch_reads_the_checkpoint_even_without_a_notification() {
    // PostgreSQL's LISTEN/NOTIFY machinery; embedded mode's watch is fed in-process.
    let app = spawn_app(Backend::Postgres).await;
    app.stored_up_to(4).await;
    // Written without a NOTIFY, as if committed while no listener was connected.
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ('read_models', $1)",
    )
    .bind(app.position(4))
    .execute(&app.db().pool)
    .await
    .unwrap();
    let watch = query_service::watch::ProjectionWatch::start(app.db().pool.clone());
    let reached = watch
        .wait_for(app.position(4).parse().unwrap(), Duration::from_secs(5))
        .await;
    assert_eq!(reached, Ok(()));
}

/// Terminates the service's LISTEN connection for projection progress once it exists (not
/// the one for session revocations); returns how many were ended.
async fn kill_listener(app: &support::TestApp) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%meetings_projected%'",
        )
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
        if killed > 0 || tokio::time::Instant::now() > deadline {
            return killed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_checkpoint_moved_while_the_listener_was_disconnected_is_seen_after_it_reconnects() {
    let app = spawn_app_with_wait(Backend::Postgres, Duration::from_secs(20)).await;
    let alice = app.user("Alice").await;
    app.stored_up_to(6).await;
    assert_eq!(
        kill_listener(&app).await,
        1,
        "the service listens on one connection"
    );
    // Moved without a NOTIFY: only the checkpoint read after reconnecting can reveal it.
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ('read_models', $1)",
    )
    .bind(app.position(6))
    .execute(&app.db().pool)
    .await
    .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        app.get_at("/v1/users/me", Some(&alice.token), &app.position(6))
            .send(),
    )
    .await
    .expect("the reconnect re-reads the checkpoint")
    .unwrap();
    assert_eq!(response.status(), 200);
}

async fn a_wait_that_runs_out_is_503_with_retry_after(backend: Backend) {
    let app = spawn_app_with_wait(backend, Duration::from_millis(200)).await;
    let alice = app.user("Alice").await;
    app.stored_up_to(99).await;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        app.get_at(
            "/v1/me/agenda?from=2027-03-01T00:00:00Z&to=2027-03-02T00:00:00Z",
            Some(&alice.token),
            &app.position(99),
        )
        .send(),
    )
    .await
    .expect("the wait is bounded")
    .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    support::assert_problem(response, 503).await;
}

async fn a_position_past_the_newest_stored_event_is_422_without_waiting(backend: Backend) {
    let app = spawn_app_with_wait(backend, Duration::from_secs(20)).await;
    let alice = app.user("Alice").await;
    app.stored_up_to(5).await;
    for bogus in [
        app.position(6),
        "ffffffffffffffff7fffffffffffffff".to_string(),
    ] {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            app.get_at("/v1/users/me", Some(&alice.token), &bogus)
                .send(),
        )
        .await
        .expect("refused at once, not after the 20 s wait")
        .unwrap();
        let problem = support::assert_problem(response, 422).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("X-Min-Position"),
            "{problem}"
        );
    }
    // Up to the newest event it waits as before (here: already projected, so at once).
    app.project_up_to(&app.position(5)).await;
    let response = app
        .get_at("/v1/users/me", Some(&alice.token), &app.position(5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn a_malformed_min_position_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let response = app
        .get_at("/v1/users/me", Some(&alice.token), "not-a-position")
        .send()
        .await
        .unwrap();
    support::assert_problem(response, 400).await;
}

async fn a_malformed_min_position_without_a_token_is_401(backend: Backend) {
    // No token is 401 before anything else is looked at, as on requests without the header
    // (docs/api.md "Common"); schemathesis found the 400 this used to be.
    let app = spawn_app(backend).await;
    for token in [None, Some("not-a-token")] {
        let response = app
            .get_at("/v1/users/me", token, "not-a-position")
            .send()
            .await
            .unwrap();
        support::assert_problem(response, 401).await;
    }
}

async fn readiness_fails_while_a_projection_is_stopped(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), 200);
    app.fail_projection(&app.position(1), "cannot apply MeetingScheduled")
        .await;
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["checks"]["projections"], "failing",
        "the reason stays in the logs: {body}"
    );
    assert!(!body.to_string().contains("MeetingScheduled"), "{body}");
}

async fn the_openapi_document_lists_every_query_and_the_min_position_header(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = app.get_json("/v1/openapi.json", None).await;
    for path in [
        "/v1/users/me",
        "/v1/users",
        "/v1/meetings",
        "/v1/meetings/{id}",
        "/v1/meetings/{id}/messages",
        "/v1/me/agenda",
        "/v1/freebusy",
        "/v1/find-times",
        "/v1/changes",
    ] {
        let operations = body["paths"][path].as_object().unwrap_or_else(|| {
            panic!("{path} missing from the OpenAPI document");
        });
        for operation in operations.values() {
            assert!(
                operation["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "X-Min-Position"),
                "{path}"
            );
        }
    }
}

async fn an_anonymous_request_with_a_future_position_is_401_without_waiting(backend: Backend) {
    let app = spawn_app_with_wait(backend, Duration::from_secs(20)).await;
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        app.get_at("/v1/users/me", None, &app.position(99)).send(),
    )
    .await
    .expect("no wait before authentication")
    .unwrap();
    support::assert_problem(response, 401).await;
}

async fn waits_are_counted_by_outcome_in_the_metrics(backend: Backend) {
    let app = spawn_app_with_wait(backend, Duration::from_millis(100)).await;
    let alice = app.user("Alice").await;
    app.stored_up_to(99).await;
    let response = app
        .get_at("/v1/users/me", Some(&alice.token), &app.position(99))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let metrics = app.get_text("/metrics", None).await;
    assert!(
        metrics.contains("meetings_min_position_waits_total{outcome=\"timed_out\"} 1"),
        "{metrics}"
    );
}

platform::on_each_backend!(
    a_user_sees_only_changes_addressed_to_them_and_an_admin_sees_all,
    next_is_the_last_position_returned_or_the_given_after_when_nothing_is_new,
    a_query_with_a_future_position_waits_until_the_projector_notifies,
    a_position_already_projected_answers_at_once,
    a_wait_that_runs_out_is_503_with_retry_after,
    a_position_past_the_newest_stored_event_is_422_without_waiting,
    a_malformed_min_position_is_400,
    a_malformed_min_position_without_a_token_is_401,
    readiness_fails_while_a_projection_is_stopped,
    the_openapi_document_lists_every_query_and_the_min_position_header,
    an_anonymous_request_with_a_future_position_is_401_without_waiting,
    waits_are_counted_by_outcome_in_the_metrics,
);
