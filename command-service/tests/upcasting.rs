//! Events stored by an older version of the code still load: the executor upcasts them.

mod support;

use serde_json::json;
use support::{spawn_app, Backend};
use uuid::Uuid;

#[tokio::test]
async fn a_user_registered_with_a_version_1_event_logs_in_and_changes_profile() {
    let app = spawn_app(Backend::Postgres).await;
    // Register normally to get a valid argon2 hash, then write a second user whose
    // registration event has the v1.0 shape (`name`, no time zone, no role).
    let template = app.user("Template").await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM accounts WHERE user_id = $1")
        .bind(template.id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    let old_id = Uuid::now_v7();
    let email = format!("old-{}@example.com", old_id.simple());
    sqlx::query("INSERT INTO accounts (user_id, email_key, password_hash) VALUES ($1, $2, $3)")
        .bind(old_id)
        .bind(&email)
        .bind(&hash)
        .execute(&app.db().pool)
        .await
        .unwrap();
    use platform::store::{Commit, EventMetadata, NewEvent};
    app.store
        .commit(Commit {
            aggregate_type: "user",
            aggregate_id: old_id,
            expected_sequence: 0,
            prev_hash: None,
            events: vec![NewEvent {
                event_type: "UserRegistered".into(),
                event_version: "1.0".into(),
                payload: json!({"user_id": old_id, "email": email, "name": "Old Timer"}),
                metadata: EventMetadata {
                    event_id: Uuid::now_v7(),
                    actor_id: None,
                    request_id: "legacy".into(),
                    correlation_id: "legacy".into(),
                    causation_id: "legacy".into(),
                    traceparent: None,
                },
                recorded_at: chrono::Utc::now(),
            }],
            side_effects: vec![],
            idempotency: None,
        })
        .await
        .unwrap();

    let response = app.login(&email, &template.password).await;
    assert_eq!(response.status(), 200, "login loads the upcast user");
    let token = response.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // The profile change is decided against the upcast state: `display_name` came from
    // `name`, and the default time zone UTC was filled in.
    let response = app
        .patch(
            "/v1/users/me",
            Some(&token),
            json!({"time_zone": "Asia/Tokyo"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = app.store.load("user", old_id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].event_version, "1.0",
        "stored events are never rewritten"
    );
    assert_eq!(events[1].event_type, "ProfileChanged");
    assert_eq!(events[1].payload["display_name"], "Old Timer");
    assert_eq!(events[1].payload["time_zone"], "Asia/Tokyo");
}
