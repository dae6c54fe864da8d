//! Sessions over HTTP: login, refresh-token rotation with reuse detection, logout, password
//! change and deactivation ending sessions, login throttling per client address, and the
//! configurable access-token lifetime.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use command_service::AuthSettings;
use futures::future::join_all;
use serde_json::{json, Value};
use support::{
    answers_within, assert_problem, spawn_app, spawn_app_with, text, Backend, TestApp, TestUser,
};
use uuid::Uuid;

const WRONG_PASSWORD: &str = "definitely not it";

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is loopback on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn login_with(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Refreshes and returns the new tokens, asserting success.
async fn refreshed(app: &TestApp, refresh_token: &str) -> Value {
    let response = app.refresh(refresh_token).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Logs in again (a new session: a new refresh-token family) and returns the tokens.
async fn new_session(app: &TestApp, user: &TestUser) -> Value {
    let response = app.login(&user.email, &user.password).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds")
}

/// Fails `count` logins and asserts each answers `status`.
async fn fail_logins(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    count: usize,
    status: u16,
) {
    for attempt in 1..=count {
        let response = login_with(app, client, email, WRONG_PASSWORD).await;
        assert_eq!(
            response.status(),
            status,
            "failed login {attempt} of {count}: {}",
            response.text().await.unwrap()
        );
    }
}

/// Fails logins until one answers 429, which must be the fifth; returns its `Retry-After`.
async fn fail_until_throttled(app: &TestApp, client: &reqwest::Client, email: &str) -> u64 {
    fail_logins(app, client, email, 4, 401).await;
    let response = login_with(app, client, email, WRONG_PASSWORD).await;
    let seconds = retry_after(&response);
    assert!(seconds >= 1, "Retry-After {seconds}");
    assert_problem(response, 429).await;
    seconds
}

async fn login_returns_bearer_tokens_and_the_access_token_works_on_a_command(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;

    let response = app.login(&user.email.to_uppercase(), &user.password).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let mut keys: Vec<&str> = tokens
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "token_type",
            "user_id"
        ]
    );
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900, "15 minutes by default");
    assert_eq!(tokens["user_id"], user.id.to_string());
    assert_ne!(text(&tokens, "refresh_token"), user.refresh_token);

    let access_token = text(&tokens, "access_token");
    let claims = app.jwt.verify(&access_token).unwrap();
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.exp - claims.iat, 900);

    let response = app.rename(&access_token, "Alice Liddell").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(app.event_count().await, 2, "registered, then renamed");
}

async fn refresh_rotates_the_token_and_reusing_a_spent_one_revokes_its_whole_family(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let other_family = text(&new_session(&app, &user).await, "refresh_token");

    let first = user.refresh_token.clone();
    let rotated = refreshed(&app, &first).await;
    let second = text(&rotated, "refresh_token");
    assert_ne!(second, first, "refresh hands out a new refresh token");
    assert_eq!(rotated["token_type"], "Bearer");
    assert_eq!(rotated["user_id"], user.id.to_string());
    let response = app.rename(&text(&rotated, "access_token"), "Rotated").await;
    assert_eq!(response.status(), 200, "the new access token works");

    // The spent token again: someone replays a stolen copy.
    let response = app.refresh(&first).await;
    assert!(response.headers().contains_key("www-authenticate"));
    assert_problem(response, 401).await;

    // Its whole family is gone, including the token the rotation handed out...
    assert_problem(app.refresh(&second).await, 401).await;
    assert_problem(app.refresh(&first).await, 401).await;

    // ...but another login's family is untouched.
    let other = refreshed(&app, &other_family).await;
    assert_ne!(text(&other, "refresh_token"), other_family);
    refreshed(&app, &text(&other, "refresh_token")).await;
}

async fn a_refresh_token_that_was_never_issued_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.user("Alice").await;
    assert_problem(app.refresh("made-up-token").await, 401).await;
    assert_problem(app.refresh("").await, 401).await;
}

async fn concurrent_refreshes_of_one_token_let_exactly_one_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;

    let responses = join_all((0..8).map(|_| app.refresh(&user.refresh_token))).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401, 401, 401, 401, 401, 401, 401]);
}

async fn logout_ends_that_session_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let other_family = text(&new_session(&app, &user).await, "refresh_token");

    // Logging out needs the access token.
    let response = app.logout(None, &user.refresh_token).await;
    assert_problem(response, 401).await;

    let response = app.logout(Some(&user.token), &user.refresh_token).await;
    assert_eq!(response.status(), 204);
    assert_problem(app.refresh(&user.refresh_token).await, 401).await;

    // The session's access token went with it (once the revocation arrives, within ms).
    answers_within(&[204], 401, Duration::from_secs(1), || {
        app.logout(Some(&user.token), &user.refresh_token)
    })
    .await;

    refreshed(&app, &other_family).await;
}

async fn logging_out_with_someone_elses_refresh_token_does_not_end_their_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let mallory = app.user("Mallory").await;

    let response = app.logout(Some(&mallory.token), &alice.refresh_token).await;
    assert_eq!(response.status(), 204);
    refreshed(&app, &alice.refresh_token).await;
}

async fn changing_the_password_ends_every_session_and_only_the_new_password_logs_in(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let other_family = text(&new_session(&app, &user).await, "refresh_token");
    let new_password = "a brand new passphrase";

    let response = app
        .post(
            "/v1/users/me/password",
            Some(&user.token),
            json!({"current_password": WRONG_PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_problem(response, 403).await;
    assert_eq!(
        app.event_count().await,
        1,
        "a refused change appends nothing"
    );

    let response = app
        .post(
            "/v1/users/me/password",
            Some(&user.token),
            json!({"current_password": user.password, "new_password": new_password}),
        )
        .await;
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());

    assert_problem(app.refresh(&user.refresh_token).await, 401).await;
    assert_problem(app.refresh(&other_family).await, 401).await;
    assert_problem(app.login(&user.email, &user.password).await, 401).await;
    let response = app.login(&user.email, new_password).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    refreshed(&app, &text(&tokens, "refresh_token")).await;
}

async fn a_deactivated_user_can_neither_log_in_nor_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;

    let response = app
        .post(
            &format!("/v1/users/{}/deactivate", user.id),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    assert_problem(app.login(&user.email, &user.password).await, 403).await;
    assert_problem(app.refresh(&user.refresh_token).await, 401).await;
    // A wrong password still says only "wrong", not "deactivated".
    assert_problem(app.login(&user.email, WRONG_PASSWORD).await, 401).await;
}

async fn failed_logins_are_throttled_per_address_without_locking_out_the_real_user(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let attacker = client_from("127.0.0.1");

    let seconds = fail_until_throttled(&app, &attacker, &user.email).await;
    assert!(seconds <= 2, "the first block is short: {seconds} s");

    // While blocked, even the right password from the attacker's address is refused...
    let response = login_with(&app, &attacker, &user.email, &user.password).await;
    assert!(retry_after(&response) >= 1);
    assert_problem(response, 429).await;
    // ...and so is the same email spelt differently.
    let response = login_with(&app, &attacker, &user.email.to_uppercase(), WRONG_PASSWORD).await;
    assert_problem(response, 429).await;

    // The real user, elsewhere, logs in at once.
    let real_user = client_from("127.0.0.2");
    let response = login_with(&app, &real_user, &user.email, &user.password).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Once Retry-After has passed, the attacker's address may try again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds + 5);
    let status = loop {
        let response = login_with(&app, &attacker, &user.email, &user.password).await;
        let status = response.status().as_u16();
        if status != 429 || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "still throttled {seconds} s + 5 s later");
}

async fn an_unknown_email_is_throttled_exactly_like_a_registered_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let client = client_from("127.0.0.1");
    let unknown = format!("nobody-{}@example.com", Uuid::new_v4().simple());

    let known_body = assert_problem(
        login_with(&app, &client, &user.email, WRONG_PASSWORD).await,
        401,
    )
    .await;
    let unknown_body = assert_problem(
        login_with(&app, &client, &unknown, WRONG_PASSWORD).await,
        401,
    )
    .await;
    assert_eq!(known_body["detail"], unknown_body["detail"]);
    assert_eq!(known_body["type"], unknown_body["type"]);

    fail_logins(&app, &client, &unknown, 3, 401).await;
    let response = login_with(&app, &client, &unknown, WRONG_PASSWORD).await;
    assert!(retry_after(&response) >= 1);
    assert_problem(response, 429).await;
}

async fn a_successful_login_clears_the_failure_counter(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let client = client_from("127.0.0.1");

    fail_logins(&app, &client, &user.email, 4, 401).await;
    let response = login_with(&app, &client, &user.email, &user.password).await;
    assert_eq!(response.status(), 200);

    // Without the reset, the next failure would be the fifth and be throttled.
    fail_until_throttled(&app, &client, &user.email).await;
}

async fn the_access_token_lifetime_is_configurable(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AuthSettings {
            access_token_ttl: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let user = app.user("Alice").await;

    let tokens = new_session(&app, &user).await;
    assert_eq!(tokens["expires_in"], 1);
    let claims = app.jwt.verify(&text(&tokens, "access_token")).unwrap();
    assert_eq!(claims.exp - claims.iat, 1);
    assert_eq!(claims.sub, user.id);

    let rotated = refreshed(&app, &text(&tokens, "refresh_token")).await;
    assert_eq!(rotated["expires_in"], 1);
    let claims = app.jwt.verify(&text(&rotated, "access_token")).unwrap();
    assert_eq!(claims.exp - claims.iat, 1);
}

async fn a_burst_of_concurrent_guesses_gets_no_more_checks_than_guesses_made_one_by_one(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.user("Alice").await;
    let client = client_from("127.0.0.1");

    // One after another, the fifth failure blocks for a second and blocked attempts are
    // refused unchecked, so the block stays a second long. Sent all at once, the same guesses
    // must meet the same limit: four checked and refused, the rest throttled by that block.
    let responses =
        join_all((0..30).map(|_| login_with(&app, &client, &user.email, WRONG_PASSWORD))).await;
    let mut unauthorized = 0;
    let mut longest_block = 0;
    for response in responses {
        match response.status().as_u16() {
            401 => unauthorized += 1,
            429 => longest_block = longest_block.max(retry_after(&response)),
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(unauthorized, 4, "checked and refused without a block");
    assert!(
        longest_block <= 2,
        "Retry-After {longest_block} s: more guesses were checked than the limit allows"
    );
}

async fn a_refresh_token_expires_after_its_configured_lifetime(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AuthSettings {
            refresh_token_ttl: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let user = app.user("Alice").await;
    let started = tokio::time::Instant::now();

    // Rotating keeps working within the lifetime of each token...
    let mut token = user.refresh_token.clone();
    let mut last = app.refresh(&token).await;
    // ...until one is left unused for longer than a second.
    while last.status() == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a 1 s refresh token kept working"
        );
        token = text(&last.json::<Value>().await.unwrap(), "refresh_token");
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        last = app.refresh(&token).await;
    }
    assert_problem(last, 401).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
}

platform::on_each_backend!(
    login_returns_bearer_tokens_and_the_access_token_works_on_a_command,
    refresh_rotates_the_token_and_reusing_a_spent_one_revokes_its_whole_family,
    a_refresh_token_that_was_never_issued_is_refused,
    concurrent_refreshes_of_one_token_let_exactly_one_through,
    logout_ends_that_session_only,
    logging_out_with_someone_elses_refresh_token_does_not_end_their_session,
    changing_the_password_ends_every_session_and_only_the_new_password_logs_in,
    a_deactivated_user_can_neither_log_in_nor_refresh,
    failed_logins_are_throttled_per_address_without_locking_out_the_real_user,
    an_unknown_email_is_throttled_exactly_like_a_registered_one,
    a_successful_login_clears_the_failure_counter,
    the_access_token_lifetime_is_configurable,
    a_burst_of_concurrent_guesses_gets_no_more_checks_than_guesses_made_one_by_one,
    a_refresh_token_expires_after_its_configured_lifetime,
);
