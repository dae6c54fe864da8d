//! An event the projection cannot apply stops it loudly — error, metric, readiness — and
//! nothing after it is applied: the projection never skips.

use std::time::Duration;

use e2e::{Backend, Stack};
use platform::store::{Commit, EventMetadata, NewEvent};
use serde_json::json;
use uuid::Uuid;

async fn an_unapplicable_event_stops_the_projection_and_fails_readiness(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (_, token, registered) = stack.user("Ann").await;
    let (status, _) = stack.query("/v1/users/me", &token, &registered).await;
    assert_eq!(status, 200);

    // A meeting event for a meeting that was never scheduled cannot be applied.
    let bogus = stack
        .store
        .commit(Commit {
            aggregate_type: "meeting",
            aggregate_id: Uuid::now_v7(),
            expected_sequence: 0,
            prev_hash: None,
            events: vec![NewEvent {
                event_type: "MeetingStarted".into(),
                event_version: "1.0".into(),
                payload: json!({"at": "2027-01-01T10:00:00Z"}),
                metadata: EventMetadata {
                    event_id: Uuid::now_v7(),
                    actor_id: None,
                    request_id: "bad".into(),
                    correlation_id: "bad".into(),
                    causation_id: "bad".into(),
                    traceparent: None,
                },
                recorded_at: chrono::Utc::now(),
            }],
            side_effects: vec![],
            idempotency: None,
        })
        .await
        .unwrap();
    // A valid command after it.
    let (_, _, later) = stack.user("Ben").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failure = loop {
        let (_, failure) = stack.projection_status().await;
        if let Some(failure) = failure {
            break failure;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection did not stop"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(failure.contains("MeetingStarted"), "{failure}");
    assert!(
        failure.contains(&bogus.aggregate_id.to_string()),
        "{failure}"
    );

    // Nothing after the bad event was applied: Ben is not in the read models.
    let (checkpoint, _) = stack.projection_status().await;
    assert!(checkpoint.unwrap() < bogus.position);
    let later: platform::store::Position = later.parse().unwrap();
    assert!(later > bogus.position);
    assert_eq!(
        stack.read_model_rows("rm_users").await,
        1,
        "only Ann, registered before the bad event"
    );

    // Readiness says so, on the query side and the projector's own health endpoint (in
    // embedded mode both are the one process's, whose check is the query side's).
    let ready = stack.queries.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let ready = stack.projector_health().get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    let checks: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The projector process's own check; the one process of embedded mode has the query
    // side's, over every projection.
    let check = match backend {
        Backend::Postgres => "projection",
        Backend::Sqlite => "projections",
    };
    assert_eq!(checks["checks"][check], "failing", "{body}");
    assert!(
        !body.contains(&bogus.aggregate_id.to_string()),
        "which event stopped it is for operators (logs, checkpoint row), not the public: {body}"
    );
}

platform::on_each_backend!(an_unapplicable_event_stops_the_projection_and_fails_readiness);
