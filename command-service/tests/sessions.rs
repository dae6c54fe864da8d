//! A revoked right is gone at once: demotion, deactivation, logout and password change void
//! the access tokens issued before them (not only the refresh tokens), sessions end at an
//! absolute time however often they are refreshed, and the small leaks around users and chat
//! stay closed.

mod support;

use std::time::Duration;

use command_service::AuthSettings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{
    answers_within, assert_problem, spawn_app, spawn_app_with, text, Backend, TestApp, TestUser,
};
use uuid::Uuid;

async fn set_role(app: &TestApp, token: &str, user: Uuid, role: &str) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v1/users/{user}/role"), Some(token))
        .json(&json!({"role": role}))
        .send()
        .await
        .unwrap()
}

async fn a_demoted_admin_is_refused_their_next_admin_command_within_a_second(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.promote(&app.user("Ada").await).await;
    let root = app.promote(&app.user("Root").await).await;
    let member = app.user("Bob").await;
    let response = set_role(&app, &admin.token, member.id, "admin").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let response = set_role(&app, &root.token, admin.id, "member").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let took = answers_within(&[200], 401, Duration::from_secs(1), || {
        set_role(&app, &admin.token, member.id, "member")
    })
    .await;
    tracing::info!(?took, "demotion reached the command side");

    // A refresh gives a token with the new role: an ordinary member now.
    let tokens: Value = app
        .refresh(&admin.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    let member_token = text(&tokens, "access_token");
    assert_problem(
        set_role(&app, &member_token, member.id, "member").await,
        403,
    )
    .await;
    assert_eq!(app.rename(&member_token, "Ada L.").await.status(), 200);
}

async fn a_deactivated_users_access_token_is_refused_within_a_second(backend: Backend) {
    let app = spawn_app(backend).await;
    let root = app.promote(&app.user("Root").await).await;
    let user = app.user("Alice").await;
    assert_eq!(app.rename(&user.token, "Alice A.").await.status(), 200);

    let response = app
        .post(
            &format!("/v1/users/{}/deactivate", user.id),
            Some(&root.token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // Until the revocation arrives, the user aggregate itself refuses the deactivated actor.
    answers_within(&[200, 409], 401, Duration::from_secs(1), || {
        app.rename(&user.token, "Alice B.")
    })
    .await;
    let problem = assert_problem(app.rename(&user.token, "Alice C.").await, 401).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
    // The admin who did it is not affected.
    assert_eq!(app.rename(&root.token, "Root R.").await.status(), 200);
}

async fn logging_out_voids_that_sessions_access_token_and_no_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let other = app.log_in(user.clone()).await.unwrap();

    let response = app.logout(Some(&user.token), &user.refresh_token).await;
    assert_eq!(response.status(), 204);
    answers_within(&[200], 401, Duration::from_secs(1), || {
        app.rename(&user.token, "Alice A.")
    })
    .await;
    assert_eq!(app.rename(&other.token, "Alice B.").await.status(), 200);
}

async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed(backend: Backend) {
    let lifetime = Duration::from_secs(6);
    let app = spawn_app_with(
        backend,
        AuthSettings {
            session_lifetime: lifetime,
            ..AuthSettings::default()
        },
    )
    .await;
    let user = app.user("Alice").await;
    // The session began during that login, so no later than now. (Timed from here, not from
    // fixed sleeps: on a loaded machine the login alone can take seconds.)
    let logged_in = std::time::Instant::now();

    let mut refresh_token = user.refresh_token.clone();
    for _ in 0..3 {
        let response = app.refresh(&refresh_token).await;
        assert_eq!(response.status(), 200);
        refresh_token = text(&response.json().await.unwrap(), "refresh_token");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        logged_in.elapsed() < lifetime,
        "the refreshes above ran within the lifetime"
    );
    let past_lifetime = (lifetime + Duration::from_millis(500)).saturating_sub(logged_in.elapsed());
    tokio::time::sleep(past_lifetime).await;
    let problem = assert_problem(app.refresh(&refresh_token).await, 401).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("expired"),
        "{problem}"
    );
    // A new login starts a new session.
    let again = app.log_in(user).await.unwrap();
    assert_eq!(app.refresh(&again.refresh_token).await.status(), 200);
}

async fn a_member_gets_403_for_role_changes_whether_or_not_the_user_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    let member = app.user("Bob").await;
    let other = app.user("Carol").await;
    let root = app.promote(&app.user("Root").await).await;

    let existing =
        assert_problem(set_role(&app, &member.token, other.id, "admin").await, 403).await;
    let unknown = assert_problem(
        set_role(&app, &member.token, Uuid::now_v7(), "admin").await,
        403,
    )
    .await;
    assert_eq!(existing["detail"], unknown["detail"]);
    // Admins may learn it.
    assert_problem(
        set_role(&app, &root.token, Uuid::now_v7(), "admin").await,
        404,
    )
    .await;
}

async fn change_password(
    app: &TestApp,
    user: &TestUser,
    key: &str,
    new: &str,
) -> reqwest::Response {
    app.request(Method::POST, "/v1/users/me/password", Some(&user.token))
        .header("Idempotency-Key", key)
        .json(&json!({"current_password": user.password, "new_password": new}))
        .send()
        .await
        .unwrap()
}

async fn a_retried_password_change_answers_what_the_first_did_and_is_no_failed_attempt(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let new_password = "a brand new passphrase";

    let first = change_password(&app, &user, "pw-1", new_password).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    for _ in 0..6 {
        // More retries than free failures: none may count as one.
        let retry = change_password(&app, &user, "pw-1", new_password).await;
        assert_eq!(retry.status(), StatusCode::NO_CONTENT);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
    }
    let throttled: i64 = app
        .count("SELECT count(*) FROM login_throttle WHERE email_key LIKE 'password-change:%'")
        .await;
    assert_eq!(throttled, 0, "no failure was counted");
    // Without the key, the revoked token is refused before anything is checked.
    let response = change_password(&app, &user, "pw-2", "yet another passphrase").await;
    assert_problem(response, 401).await;
    assert_eq!(app.login(&user.email, new_password).await.status(), 200);
}

async fn posting_a_chat_message_answers_its_id_also_on_a_replay(backend: Backend) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Olga").await;
    let meeting = app.schedule(&organizer, &[]).await;
    let post = || async {
        app.request(
            Method::POST,
            &format!("/v1/meetings/{meeting}/messages"),
            Some(&organizer.token),
        )
        .header("Idempotency-Key", "chat-1")
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap()
    };
    let first = post().await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let message_id: Uuid = text(&first, "message_id").parse().unwrap();
    let events = app.all_events().await;
    let posted = events.last().unwrap();
    assert_eq!(posted.event_type, "ChatMessagePosted");
    assert_eq!(posted.payload["message_id"], json!(message_id));

    let replayed: Value = post().await.json().await.unwrap();
    assert_eq!(replayed, first);
}

platform::on_each_backend!(
    a_demoted_admin_is_refused_their_next_admin_command_within_a_second,
    a_deactivated_users_access_token_is_refused_within_a_second,
    logging_out_voids_that_sessions_access_token_and_no_other,
    a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed,
    a_member_gets_403_for_role_changes_whether_or_not_the_user_exists,
    a_retried_password_change_answers_what_the_first_did_and_is_no_failed_attempt,
    posting_a_chat_message_answers_its_id_also_on_a_replay,
);
