//! The write side end to end over HTTP: a user journey, then the event store read back.

mod support;

use std::collections::HashSet;

use serde_json::{json, Value};
use support::{assert_problem, spawn_app, Backend};

async fn a_meeting_journey_appends_exactly_the_expected_events_with_complete_metadata(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let bob = app.user("Bob").await;

    let meeting = app.schedule(&alice, &[]).await;
    let response = app
        .post(
            &format!("/v1/meetings/{meeting}/attendees"),
            Some(&alice.token),
            json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");

    let response = app
        .post(
            &format!("/v1/meetings/{meeting}/response"),
            Some(&bob.token),
            json!({"response": "accepted", "comment": "see you"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["version"], 3);

    // Reschedule with a stale version: 412, nothing appended.
    let start = chrono::Utc::now().date_naive().succ_opt().unwrap();
    let reschedule = json!({
        "starts_at": format!("{start}T14:00:00Z"),
        "ends_at": format!("{start}T15:30:00Z"),
    });
    let stale = app
        .client
        .patch(app.url(&format!("/v1/meetings/{meeting}")))
        .bearer_auth(&alice.token)
        .header("If-Match", "\"2\"")
        .json(&reschedule)
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412).await;

    let fresh = app
        .client
        .patch(app.url(&format!("/v1/meetings/{meeting}")))
        .bearer_auth(&alice.token)
        .header("If-Match", "\"3\"")
        .header("X-Request-Id", "journey-reschedule-1")
        .json(&reschedule)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.headers()["etag"], "\"4\"");
    assert_eq!(fresh.headers()["x-request-id"], "journey-reschedule-1");
    let fresh: Value = fresh.json().await.unwrap();
    let reschedule_position = fresh["position"].as_str().unwrap().to_string();

    let response = app
        .post(
            &format!("/v1/meetings/{meeting}/cancel"),
            Some(&alice.token),
            json!({"reason": "moved to next week"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let cancel: Value = response.json().await.unwrap();
    assert_eq!(cancel["version"], 5);
    assert!(cancel["position"].as_str().unwrap() > reschedule_position.as_str());

    // The store: two registrations, then exactly the meeting's five events.
    let events = app.all_events().await;
    let summary: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| (e.aggregate_type.clone(), e.event_type.clone(), e.sequence))
        .collect();
    let expected: Vec<(String, String, i64)> = [
        ("user", "UserRegistered", 1),
        ("user", "UserRegistered", 1),
        ("meeting", "MeetingScheduled", 1),
        ("meeting", "AttendeeInvited", 2),
        ("meeting", "AttendeeResponded", 3),
        ("meeting", "MeetingRescheduled", 4),
        ("meeting", "MeetingCancelled", 5),
    ]
    .iter()
    .map(|(a, t, s)| (a.to_string(), t.to_string(), *s))
    .collect();
    assert_eq!(summary, expected);

    let meeting_events: Vec<_> = events
        .iter()
        .filter(|e| e.aggregate_id == meeting)
        .collect();
    let sequences: Vec<i64> = meeting_events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3, 4, 5], "contiguous sequences");

    let mut event_ids = HashSet::new();
    let mut previous_position = None;
    for event in &events {
        let m = &event.metadata;
        assert_eq!(m.event_id.get_version_num(), 7, "event ids are UUIDv7");
        assert!(event_ids.insert(m.event_id), "event ids are unique");
        assert!(!m.request_id.is_empty());
        assert!(!m.correlation_id.is_empty());
        assert!(!m.causation_id.is_empty());
        assert!(event.recorded_at <= chrono::Utc::now());
        assert!(previous_position < Some(event.position), "global order");
        previous_position = Some(event.position);
        if event.aggregate_type == "meeting" {
            let actor = if event.event_type == "AttendeeResponded" {
                bob.id
            } else {
                alice.id
            };
            assert_eq!(m.actor_id, Some(actor), "{}", event.event_type);
        } else {
            assert_eq!(m.actor_id, None, "registration is anonymous");
        }
    }
    let rescheduled = meeting_events[3];
    assert_eq!(rescheduled.metadata.request_id, "journey-reschedule-1");
    assert_eq!(rescheduled.position.to_string(), reschedule_position);
    assert_eq!(
        rescheduled.payload["starts_at"],
        format!("{start}T14:00:00Z")
    );

    // The hash chain links each event to its predecessor in the aggregate.
    for pair in meeting_events.windows(2) {
        assert_eq!(pair[1].prev_hash.as_deref(), Some(pair[0].hash.as_slice()));
    }
    assert_eq!(meeting_events[0].prev_hash, None);

    // A cancelled meeting refuses further changes.
    let response = app
        .post(
            &format!("/v1/meetings/{meeting}/start"),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_problem(response, 409).await;
    assert_eq!(app.event_count().await, 7);
}

async fn the_openapi_document_lists_every_command_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let document = app.get_json("/v1/openapi.json", None).await;
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/users/me",
        "/v1/users/me/password",
        "/v1/users/{id}/role",
        "/v1/users/{id}/deactivate",
        "/v1/meetings",
        "/v1/meetings/{id}",
        "/v1/meetings/{id}/attendees",
        "/v1/meetings/{id}/attendees/{user_id}",
        "/v1/meetings/{id}/response",
        "/v1/meetings/{id}/cancel",
        "/v1/meetings/{id}/start",
        "/v1/meetings/{id}/end",
        "/v1/meetings/{id}/messages",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let metrics = app.get_text("/metrics", None).await;
    assert!(
        metrics.contains("meetings_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/readyz\""), "{metrics}");
}

async fn commands_appends_and_the_pool_are_in_the_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    app.user("Ada").await;
    let metrics = app.get_text("/metrics", None).await;
    for expected in [
        "meetings_commands_total{aggregate=\"user\",command=\"/v1/auth/register\",outcome=\"committed\"} 1",
        "meetings_event_store_append_seconds_count 1",
        "# TYPE meetings_db_pool_connections gauge",
        "# TYPE meetings_db_pool_idle_connections gauge",
        "meetings_db_pool_max_connections 20",
    ] {
        assert!(metrics.contains(expected), "no `{expected}` in\n{metrics}");
    }
}

platform::on_each_backend!(
    a_meeting_journey_appends_exactly_the_expected_events_with_complete_metadata,
    the_openapi_document_lists_every_command_endpoint,
    health_readiness_and_metrics_answer,
    commands_appends_and_the_pool_are_in_the_metrics,
);
