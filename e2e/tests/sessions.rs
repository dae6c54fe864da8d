//! Revocation reaches every door (issue 11): the query side and the websocket gateway refuse
//! a deactivated, demoted or logged-out session within a second, sockets must renew their
//! token before it expires, a fresh gateway resumes without a gap, and a subscription that
//! races a removal cannot outlive it.

use std::time::Duration;

use domain::Role;
use e2e::ws::{authed, closed_within, next, send, subscribe, until_pong};
use e2e::{Backend, Stack};
use platform::bus::EventEnvelope;
use platform::store::Position;
use platform::testing::{meeting_body, TestUser};
use realtime::hub::{Hub, Outbound, Subscriber};
use realtime::protocol::{Channel, Refusal};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn admin(stack: &Stack, name: &str) -> TestUser {
    let user = stack.commands.sign_up(name).await.unwrap();
    command_service::admin::promote(stack.store.clone(), &user.email)
        .await
        .unwrap();
    stack.commands.log_in(user).await.unwrap()
}

async fn revoking_a_session_closes_its_sockets_and_query_access_within_a_second(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let root = admin(&stack, "Root").await;

    // Each way of revoking, on a user of its own.
    for action in ["deactivate", "demote", "password", "logout"] {
        let user = stack.commands.sign_up(action).await.unwrap();
        let user = if action == "demote" {
            admin(&stack, action).await
        } else {
            user
        };
        let other_session = stack.commands.log_in(user.clone()).await.unwrap();
        let mut ws = authed(&url, &user.token).await;
        assert_eq!(
            subscribe(&mut ws, "user:me", None).await["type"],
            "subscribed"
        );
        let mut other_ws = authed(&url, &other_session.token).await;

        let response = match action {
            "deactivate" => {
                stack
                    .commands
                    .post(&format!("/v1/users/{}/deactivate", user.id), Some(&root.token), json!({}))
                    .await
            }
            "demote" => stack
                .commands
                .request(Method::PUT, &format!("/v1/users/{}/role", user.id), Some(&root.token))
                .json(&json!({"role": "member"}))
                .send()
                .await
                .unwrap(),
            "password" => {
                stack
                    .commands
                    .post(
                        "/v1/users/me/password",
                        Some(&user.token),
                        json!({"current_password": user.password, "new_password": "another fine passphrase"}),
                    )
                    .await
            }
            _ => {
                stack
                    .commands
                    .post("/v1/auth/logout", Some(&user.token), json!({"refresh_token": user.refresh_token}))
                    .await
            }
        };
        assert!(
            response.status().is_success(),
            "{action}: {}",
            response.status()
        );

        let answered = std::time::Instant::now();
        let (code, took) = closed_within(&mut ws, Duration::from_secs(1)).await;
        assert_eq!(code, 4401, "{action}");
        assert!(took < Duration::from_secs(1), "{action}: {took:?}");
        // The query side hears of the revocation on its own connection, maybe a little after
        // the gateway did: within the same second.
        loop {
            let query = stack.queries.get("/v1/users/me", Some(&user.token)).await;
            if query.status() == 401 {
                break;
            }
            assert!(
                answered.elapsed() < Duration::from_secs(1),
                "{action}: the query side still answers {} after a second",
                query.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if action == "logout" {
            // Only that session ended.
            let frames = until_pong(&mut other_ws).await;
            assert!(frames.is_empty(), "{frames:?}");
            // At the registration's position: the profile may not be projected yet otherwise.
            let query = stack
                .queries
                .get_at(
                    "/v1/users/me",
                    Some(&other_session.token),
                    &other_session.position,
                )
                .send()
                .await
                .unwrap();
            assert_eq!(query.status(), 200);
        } else {
            let (code, _) = closed_within(&mut other_ws, Duration::from_secs(1)).await;
            assert_eq!(code, 4401, "{action}: every session of the user");
        }
    }
}

async fn a_socket_must_renew_its_token_before_it_expires(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (alice, _, _) = stack.user("Alice").await;
    let (_, bob_token, _) = stack.user("Bob").await;
    let short = stack.jwt.issue(alice, Role::Member, Duration::from_secs(2));

    let mut lapsing = authed(&url, &short).await;
    let mut renewing = authed(&url, &short).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Someone else's token is refused, and the socket keeps its own.
    send(&mut renewing, json!({"type": "auth", "token": bob_token})).await;
    let refused = next(&mut renewing).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "unauthorized");
    let fresh = stack
        .jwt
        .issue(alice, Role::Member, Duration::from_secs(60));
    send(&mut renewing, json!({"type": "auth", "token": fresh})).await;
    assert_eq!(
        next(&mut renewing).await,
        json!({"type": "ready", "user_id": alice})
    );

    let expires_at = stack
        .jwt
        .verify(&short)
        .expect("the short token is valid")
        .exp;
    let (code, _) = closed_within(&mut lapsing, Duration::from_secs(5)).await;
    assert_eq!(code, 4401);
    // `exp` has whole seconds, so the token may live anywhere from 1 to 2 s: compare with the
    // claim itself, not with time elapsed in the test.
    let closed_at = chrono::Utc::now().timestamp();
    assert!(
        closed_at >= expires_at,
        "closed at expiry, not before: closed at {closed_at}, token expires at {expires_at}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        until_pong(&mut renewing).await.is_empty(),
        "the renewed socket is open"
    );
}

async fn a_resume_right_after_a_gateway_restart_misses_nothing(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (_, organizer_token, _) = stack.user("Olga").await;
    let (alice, alice_token, _) = stack.user("Alice").await;
    let meeting = stack
        .commands
        .schedule(&organizer_token, &meeting_body("Standup", &[alice]))
        .await
        .unwrap();

    let (url, gateway) = stack.start_realtime().await;
    let mut ws = authed(&url, &alice_token).await;
    let subscribed = subscribe(&mut ws, "user:me", Some(&Position::START.to_string())).await;
    assert_eq!(subscribed["type"], "subscribed");
    let replayed = until_pong(&mut ws).await;
    let seen = replayed.last().expect("the invitation")["position"]
        .as_str()
        .unwrap()
        .to_string();
    drop(ws);
    drop(gateway);

    let mut missed = vec![];
    for text in ["one", "two", "three"] {
        let (status, body) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{meeting}/messages"),
                &organizer_token,
                json!({"text": text}),
            )
            .await;
        assert_eq!(status, 201);
        missed.push(body["position"].as_str().unwrap().to_string());
    }
    // Published and projected before the new gateway starts: all of it lies before its start.
    stack
        .wait_projected(
            missed.last().unwrap().parse().unwrap(),
            Duration::from_secs(20),
        )
        .await;

    let (url, _gateway) = stack.start_realtime().await;
    let mut ws = authed(&url, &alice_token).await;
    let subscribed = subscribe(&mut ws, "user:me", Some(&seen)).await;
    assert_eq!(subscribed["type"], "subscribed");
    let frames = until_pong(&mut ws).await;
    let positions: Vec<&str> = frames
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "event", "{f}");
            f["position"].as_str().unwrap()
        })
        .collect();
    assert_eq!(positions, missed);
}

fn subscriber(user_id: Uuid) -> (Subscriber, tokio::sync::mpsc::Receiver<Outbound>) {
    let (queue, inbox) = tokio::sync::mpsc::channel(64);
    let subscriber = Subscriber {
        user_id,
        queue,
        too_slow: Default::default(),
    };
    (subscriber, inbox)
}

async fn a_subscription_admitted_before_a_removal_cannot_outlive_it(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (_, organizer_token, _) = stack.user("Olga").await;
    let (bob, _, _) = stack.user("Bob").await;
    let (carol, _, _) = stack.user("Carol").await;
    let meeting = stack
        .commands
        .schedule(&organizer_token, &meeting_body("Standup", &[bob, carol]))
        .await
        .unwrap();
    let hub = Hub::new(stack.store.clone());
    let channel = Channel::Meeting(meeting);
    let bob_admitted = hub
        .admit(meeting, bob)
        .await
        .unwrap()
        .expect("bob is a member");
    let carol_admitted = hub
        .admit(meeting, carol)
        .await
        .unwrap()
        .expect("carol is a member");
    // Carol's subscription lands before the removals are dispatched, Bob's after.
    let head = stack.store_head().await;
    hub.start_at(head);
    let (carol_subscriber, mut carol_inbox) = subscriber(carol);
    hub.subscribe(channel, 2, carol_subscriber, Some(carol_admitted))
        .unwrap();

    for user in [bob, carol] {
        let (status, _) = stack
            .command(
                Method::DELETE,
                &format!("/v1/meetings/{meeting}/attendees/{user}"),
                &organizer_token,
                json!(null),
            )
            .await;
        assert_eq!(status, 200);
    }
    let events = stack.store.read_all(Some(head), 10).await.unwrap();
    assert_eq!(events.len(), 2);
    for event in &events {
        hub.dispatch(&EventEnvelope::from(event)).await;
    }

    let (bob_subscriber, _bob_inbox) = subscriber(bob);
    assert!(matches!(
        hub.subscribe(channel, 1, bob_subscriber, Some(bob_admitted)),
        Err(Refusal::NotMember)
    ));
    // Carol saw Bob's removal, then her own, then lost the channel.
    let mut seen = vec![];
    while let Ok(outbound) = carol_inbox.try_recv() {
        seen.push(match outbound {
            Outbound::Event { position, .. } => format!("event {position}"),
            Outbound::Revoked { .. } => "revoked".to_string(),
            Outbound::Control(_) => "control".to_string(),
        });
    }
    assert_eq!(
        seen,
        vec![
            format!("event {}", events[0].position),
            format!("event {}", events[1].position),
            "revoked".to_string()
        ]
    );
    assert_eq!(hub.subscriptions(), 0);
}

async fn registration_points_at_the_new_users_profile(backend: Backend) {
    let stack = Stack::on(backend).await;
    let response = stack
        .commands
        .register(
            "location@example.com",
            platform::testing::PASSWORD,
            "Lo Cation",
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let registered: Value = response.json().await.unwrap();
    let user = stack
        .commands
        .log_in(TestUser {
            id: registered["id"].as_str().unwrap().parse().unwrap(),
            email: "location@example.com".into(),
            password: platform::testing::PASSWORD.into(),
            token: String::new(),
            refresh_token: String::new(),
            position: registered["position"].as_str().unwrap().into(),
        })
        .await
        .unwrap();
    let (status, profile) = stack.query(&location, &user.token, &user.position).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["id"], registered["id"]);
    // Someone else's profile is not visible to a member: 404, as for an unknown id.
    let (_, other_token, _) = stack.user("Other").await;
    let (status, _) = stack.query(&location, &other_token, &user.position).await;
    assert_eq!(status, 404);
}

/// Writes `text` to a file of its own under the temporary directory.
fn key_file(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("meetings-key-{}.pem", Uuid::now_v7()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn rotating_the_signing_key_logs_nobody_out_and_verifiers_need_no_private_key() {
    use e2e::services::{command_settings, query_settings, serve_commands, serve_queries};
    let db = platform::testing::TestDatabase::new().await;
    let old_private = platform::auth::keys::generate_ed25519_pem();
    let new_private = platform::auth::keys::generate_ed25519_pem();
    let old_public = key_file(&platform::auth::keys::public_pem(&old_private).unwrap());
    let new_public = key_file(&platform::auth::keys::public_pem(&new_private).unwrap());
    let (old_private, new_private) = (key_file(&old_private), key_file(&new_private));
    let ed25519_only = |settings: &mut platform::config::JwtSettings| {
        settings.jwt_secret = None;
        settings.jwt_secret_file = None;
    };

    let mut before = command_settings(&db.url, 4);
    ed25519_only(&mut before.jwt);
    before.jwt.private_key_file = Some(old_private.clone());
    let commands = serve_commands(&before).await.unwrap();
    let alice = commands.sign_up("Alice").await.unwrap();
    drop(commands);

    // The command side after the rotation: the new key signs, the old one still verifies.
    let mut after = command_settings(&db.url, 4);
    ed25519_only(&mut after.jwt);
    after.jwt.private_key_file = Some(new_private);
    after.jwt.previous_key_file = Some(old_public.clone());
    let commands = serve_commands(&after).await.unwrap();
    let rename = |token: String| {
        let commands = &commands;
        async move {
            commands
                .patch(
                    "/v1/users/me",
                    Some(&token),
                    json!({"display_name": "Alice A."}),
                )
                .await
                .status()
        }
    };
    assert_eq!(
        rename(alice.token.clone()).await,
        200,
        "the old token still works"
    );
    let renewed = commands.log_in(alice.clone()).await.unwrap();
    assert_eq!(rename(renewed.token.clone()).await, 200);
    let jwks: Value = commands.get_json("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{jwks}");
    for token in [&alice.token, &renewed.token] {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        assert!(kids.contains(&kid.as_str()), "{kid} in {kids:?}");
    }

    // A query-service with both public keys accepts both; with the new one only, only it.
    for (files, old_accepted) in [
        (vec![new_public.clone(), old_public], 200),
        (vec![new_public], 401),
    ] {
        let mut settings = query_settings(&db.url, 4);
        ed25519_only(&mut settings.jwt);
        settings.jwt.public_key_files = files;
        let queries = serve_queries(&settings).await.unwrap();
        let status = |token: &str| {
            let queries = &queries;
            let token = token.to_string();
            async move {
                queries
                    .get("/v1/users", Some(&token))
                    .await
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(status(&alice.token).await, old_accepted);
        assert_eq!(status(&renewed.token).await, 200);
    }
    // A service holding no private key signs nothing: the query settings above had none.
}

platform::on_each_backend!(
    revoking_a_session_closes_its_sockets_and_query_access_within_a_second,
    a_socket_must_renew_its_token_before_it_expires,
    a_resume_right_after_a_gateway_restart_misses_nothing,
    a_subscription_admitted_before_a_removal_cannot_outlive_it,
    registration_points_at_the_new_users_profile,
);
