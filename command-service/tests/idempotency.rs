//! `Idempotency-Key`: a repeated request returns the first response and appends nothing.

mod support;

use futures::future::join_all;
use serde_json::{json, Value};
use support::{assert_problem, meeting_body, spawn_app, Backend};

async fn post_with_key(
    app: &support::TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn a_repeated_schedule_returns_the_first_response_and_appends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let body = meeting_body("Retrospective", &[]);

    let first = post_with_key(&app, "/v1/meetings", &alice.token, "key-1", &body).await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let etag = first.headers()["etag"].clone();
    let first_body: Value = first.json().await.unwrap();
    let events_after_first = app.event_count().await;

    for _ in 0..3 {
        let again = post_with_key(&app, "/v1/meetings", &alice.token, "key-1", &body).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["location"], location);
        assert_eq!(again.headers()["etag"], etag);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again_body: Value = again.json().await.unwrap();
        assert_eq!(again_body, first_body);
    }
    assert_eq!(app.event_count().await, events_after_first);

    // Without the key, the same body is a new meeting.
    let other = app
        .post("/v1/meetings", Some(&alice.token), body.clone())
        .await;
    assert_eq!(other.status(), 201);
    let other_body: Value = other.json().await.unwrap();
    assert_ne!(other_body["id"], first_body["id"]);
}

async fn concurrent_requests_with_one_key_append_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let body = meeting_body("Standup", &[]);
    let before = app.event_count().await;

    let responses = join_all(
        (0..10).map(|_| post_with_key(&app, "/v1/meetings", &alice.token, "same-key", &body)),
    )
    .await;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        ids.insert(response.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids.len(), 1, "every response names the same meeting");
    assert_eq!(app.event_count().await, before + 1);
}

async fn a_key_reused_for_a_different_request_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let first = post_with_key(
        &app,
        "/v1/meetings",
        &alice.token,
        "reused",
        &meeting_body("One", &[]),
    )
    .await;
    assert_eq!(first.status(), 201);
    let before = app.event_count().await;
    let second = post_with_key(
        &app,
        "/v1/meetings",
        &alice.token,
        "reused",
        &meeting_body("Two", &[]),
    )
    .await;
    let problem = assert_problem(second, 422).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(app.event_count().await, before);
}

async fn keys_belong_to_their_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let bob = app.user("Bob").await;
    let body = meeting_body("Sync", &[]);
    let a = post_with_key(&app, "/v1/meetings", &alice.token, "k", &body).await;
    let b = post_with_key(&app, "/v1/meetings", &bob.token, "k", &body).await;
    assert_eq!(a.status(), 201);
    assert_eq!(b.status(), 201);
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    assert_ne!(
        a["id"], b["id"],
        "the same key of another user is another request"
    );
}

async fn a_repeated_command_on_an_existing_meeting_is_replayed_not_reapplied(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let meeting = app.schedule(&alice, &[]).await;
    let path = format!("/v1/meetings/{meeting}/messages");
    let body = json!({"text": "hello"});

    let first = post_with_key(&app, &path, &alice.token, "chat-1", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post_with_key(&app, &path, &alice.token, "chat-1", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let chat: i64 = app
        .count("SELECT count(*) FROM events WHERE event_type = 'ChatMessagePosted'")
        .await;
    assert_eq!(chat, 1);

    // The same key on another meeting's route is a different request.
    let other = app.schedule(&alice, &[]).await;
    let refused = post_with_key(
        &app,
        &format!("/v1/meetings/{other}/messages"),
        &alice.token,
        "chat-1",
        &body,
    )
    .await;
    assert_problem(refused, 422).await;
}

async fn concurrent_repeats_of_a_command_on_one_meeting_append_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let meeting = app.schedule(&alice, &[]).await;
    let path = format!("/v1/meetings/{meeting}/messages");
    let body = json!({"text": "only once"});
    let responses =
        join_all((0..10).map(|_| post_with_key(&app, &path, &alice.token, "twin", &body))).await;
    let mut bodies = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        bodies.insert(response.json::<Value>().await.unwrap().to_string());
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let chat: i64 = app
        .count("SELECT count(*) FROM events WHERE event_type = 'ChatMessagePosted'")
        .await;
    assert_eq!(chat, 1);
}

async fn anonymous_registrations_with_the_same_key_but_different_emails_do_not_collide(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let register = |email: &'static str| {
        app.client
            .post(app.url("/v1/auth/register"))
            .header("Idempotency-Key", "1")
            .json(&json!({"email": email, "password": "correct horse", "display_name": "X"}))
            .send()
    };
    let a = register("a@example.com").await.unwrap();
    let b = register("b@example.com").await.unwrap();
    assert_eq!(a.status(), 201);
    assert_eq!(
        b.status(),
        201,
        "a stranger's key does not block this registration"
    );
    let again = register("a@example.com").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let users: i64 = app
        .count("SELECT count(*) FROM events WHERE event_type = 'UserRegistered'")
        .await;
    assert_eq!(users, 2);
}

platform::on_each_backend!(
    a_repeated_schedule_returns_the_first_response_and_appends_nothing,
    concurrent_requests_with_one_key_append_once,
    a_key_reused_for_a_different_request_is_refused,
    keys_belong_to_their_user,
    a_repeated_command_on_an_existing_meeting_is_replayed_not_reapplied,
    concurrent_repeats_of_a_command_on_one_meeting_append_once,
    anonymous_registrations_with_the_same_key_but_different_emails_do_not_collide,
);
