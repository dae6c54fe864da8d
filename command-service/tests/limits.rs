//! Limits per caller over the real service (ADR 0008): each refusal is 429 problem+json with
//! `Retry-After`, only the caller (or meeting, or address) over its limit is refused, and
//! what the service keeps about callers is purged.

mod support;

use std::num::NonZeroU32;

use command_service::sessions::{PgSessionStore, SessionStore};
use command_service::LimitSettings;
use platform::testing::{meeting_body, PASSWORD};
use reqwest::Method;
use serde_json::json;
use support::{assert_problem, spawn_app_limited, Backend};

fn n(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap()
}

/// Generous everywhere, so that a test only meets the limit it is about.
fn roomy() -> LimitSettings {
    LimitSettings {
        command_rate: n(1_000),
        command_burst: n(1_000),
        meetings_per_day: n(1_000),
        chat_per_minute: n(1_000),
        registrations_per_hour: n(1_000),
        trusted_proxies: Vec::new(),
    }
}

async fn assert_throttled(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After is at least a second");
    assert_problem(response, 429).await;
    retry_after
}

async fn a_user_over_their_command_rate_is_429_and_others_are_served(backend: Backend) {
    let app = spawn_app_limited(
        backend,
        LimitSettings {
            command_rate: n(1),
            command_burst: n(3),
            ..roomy()
        },
    )
    .await;
    let ann = app.user("Ann").await;
    let ben = app.user("Ben").await;
    let profile = |name: &str| json!({"display_name": name});
    for i in 0..3 {
        let response = app
            .patch(
                "/v1/users/me",
                Some(&ann.token),
                profile(&format!("Ann {i}")),
            )
            .await;
        assert_eq!(response.status(), 200, "within the burst");
    }
    let refused = app
        .patch("/v1/users/me", Some(&ann.token), profile("Ann 4"))
        .await;
    assert_eq!(assert_throttled(refused).await, 1);
    let other = app
        .patch("/v1/users/me", Some(&ben.token), profile("Ben 1"))
        .await;
    assert_eq!(
        other.status(),
        200,
        "another user has a bucket of their own"
    );
    // After the announced wait, Ann is served again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again = app
        .patch("/v1/users/me", Some(&ann.token), profile("Ann 5"))
        .await;
    assert_eq!(again.status(), 200);
}

async fn an_organizer_over_the_daily_meeting_quota_is_429(backend: Backend) {
    let app = spawn_app_limited(
        backend,
        LimitSettings {
            meetings_per_day: n(2),
            ..roomy()
        },
    )
    .await;
    let ann = app.user("Ann").await;
    for _ in 0..2 {
        app.schedule(&ann, &[]).await;
    }
    let refused = app
        .post("/v1/meetings", Some(&ann.token), meeting_body("Third", &[]))
        .await;
    // Two a day: the next one in about half a day.
    assert!(assert_throttled(refused).await > 40_000);
    let ben = app.user("Ben").await;
    app.schedule(&ben, &[]).await;
}

async fn a_meeting_over_its_chat_quota_is_429_and_strangers_cannot_use_it_up(backend: Backend) {
    let app = spawn_app_limited(
        backend,
        LimitSettings {
            chat_per_minute: n(2),
            ..roomy()
        },
    )
    .await;
    let ann = app.user("Ann").await;
    let ben = app.user("Ben").await;
    let stranger = app.user("Eve").await;
    let meeting = app.schedule(&ann, &[ben.id]).await;
    let other = app.schedule(&ann, &[]).await;
    let path = format!("/v1/meetings/{meeting}/messages");
    for _ in 0..5 {
        let response = app
            .post(&path, Some(&stranger.token), json!({"text": "spam"}))
            .await;
        assert_problem(response, 404).await;
    }
    for (who, text) in [(&ann, "hello"), (&ben, "hi")] {
        let response = app
            .post(&path, Some(&who.token), json!({"text": text}))
            .await;
        assert_eq!(response.status(), 201, "the members' quota is untouched");
    }
    let refused = app
        .post(&path, Some(&ben.token), json!({"text": "third"}))
        .await;
    assert!(assert_throttled(refused).await <= 30);
    let elsewhere = app
        .post(
            &format!("/v1/meetings/{other}/messages"),
            Some(&ann.token),
            json!({"text": "another meeting"}),
        )
        .await;
    assert_eq!(elsewhere.status(), 201);
}

async fn registrations_are_limited_per_address_and_invalid_ones_cost_nothing(backend: Backend) {
    let app = spawn_app_limited(
        backend,
        LimitSettings {
            registrations_per_hour: n(2),
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..roomy()
        },
    )
    .await;
    let register = |email: String, forwarded_for: &'static str| {
        app.request(Method::POST, "/v1/auth/register", None)
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "X"}))
            .send()
    };
    let email = |i: u32| format!("user{i}-{}@example.org", uuid::Uuid::new_v4());
    // Invalid requests are refused before they are counted (or hashed).
    for _ in 0..3 {
        let bad = app
            .request(Method::POST, "/v1/auth/register", None)
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"email": "not-an-address", "password": "password", "display_name": ""}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(bad, 422).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["email", "password", "display_name"], "{problem}");
    }
    for i in 0..2 {
        let response = register(email(i), "198.51.100.7").await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let refused = register(email(3), "198.51.100.7").await.unwrap();
    assert!(assert_throttled(refused).await > 1_000);
    // Behind the trusted proxy, another client address has its own budget; what a client
    // writes on the left of the header does not choose its address.
    let response = register(email(4), "6.6.6.6, 203.0.113.5").await.unwrap();
    assert_eq!(response.status(), 201);
    let refused = register(email(5), "203.0.113.5, 198.51.100.7")
        .await
        .unwrap();
    assert_throttled(refused).await;
}

async fn a_forwarded_for_header_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let app = spawn_app_limited(
        backend,
        LimitSettings {
            registrations_per_hour: n(1),
            ..roomy()
        },
    )
    .await;
    for (i, forwarded_for) in ["198.51.100.1", "198.51.100.2"].into_iter().enumerate() {
        let response = app
            .request(Method::POST, "/v1/auth/register", None)
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({
                "email": format!("u{i}-{}@example.org", uuid::Uuid::new_v4()),
                "password": PASSWORD,
                "display_name": "X",
            }))
            .send()
            .await
            .unwrap();
        if i == 0 {
            assert_eq!(response.status(), 201);
        } else {
            assert_throttled(response).await;
        }
    }
}

async fn guesses_at_one_account_from_many_addresses_are_throttled_together(backend: Backend) {
    let app = spawn_app_limited(
        backend,
        LimitSettings {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..roomy()
        },
    )
    .await;
    let ann = app.user("Ann").await;
    let guess = |i: u32| {
        app.request(Method::POST, "/v1/auth/login", None)
            .header("x-forwarded-for", format!("198.51.100.{}", i % 250 + 1))
            .json(&json!({"email": ann.email, "password": format!("guess number {i}")}))
            .send()
    };
    // Each address fails once only, far below its own throttle; the account's own (20 free
    // failures) still stops the guesser.
    let mut statuses = Vec::new();
    for i in 0..22 {
        statuses.push(guess(i).await.unwrap().status().as_u16());
    }
    assert!(statuses[..20].iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(statuses[21], 429, "{statuses:?}");
    // A malformed address is refused before it becomes a throttle row.
    let long = format!("{}@example.org", "a".repeat(70_000));
    let response = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": long, "password": "whatever1"}),
        )
        .await;
    assert!(matches!(response.status().as_u16(), 413 | 422));
    let rows: i64 = app
        .count("SELECT count(*) FROM login_throttle WHERE length(email_key) > 254")
        .await;
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn housekeeping_purges_forgotten_throttles_and_expired_refresh_tokens() {
    let app = spawn_app_limited(Backend::Postgres, roomy()).await;
    let ann = app.user("Ann").await;
    let pool = &app.db().pool;
    sqlx::query(
        "INSERT INTO login_throttle (email_key, source, failures, last_failure_at, blocked_until)
         VALUES ('old@example.org', '192.0.2.1', 3, now() - interval '2 days', now() - interval '2 days'),
                ('blocked@example.org', '192.0.2.1', 9, now() - interval '2 days', now() + interval '1 hour'),
                ('recent@example.org', '192.0.2.1', 1, now(), now())",
    )
    .execute(pool)
    .await
    .unwrap();
    // Expired tokens go once the revocation window has passed too: until then a revoked
    // family's row is what services reload its revocation from.
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, family_expires_at)
         VALUES ('\\x01', gen_random_uuid(), $1, now() - interval '2 hours', now()),
                ('\\x02', gen_random_uuid(), $1, now() - interval '1 second', now())",
    )
    .bind(ann.id)
    .execute(pool)
    .await
    .unwrap();
    let sessions = PgSessionStore::new(pool.clone());
    let purged = sessions
        .purge(std::time::Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(purged, 2, "the forgotten throttle and the expired token");
    let left: Vec<String> = sqlx::query_scalar("SELECT email_key FROM login_throttle ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(left, ["blocked@example.org", "recent@example.org"]);
    // Ann's own (unexpired) refresh token is kept, and so is the one that expired just now.
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(tokens, 2);
}

platform::on_each_backend!(
    a_user_over_their_command_rate_is_429_and_others_are_served,
    an_organizer_over_the_daily_meeting_quota_is_429,
    a_meeting_over_its_chat_quota_is_429_and_strangers_cannot_use_it_up,
    registrations_are_limited_per_address_and_invalid_ones_cost_nothing,
    a_forwarded_for_header_from_an_untrusted_peer_is_ignored,
    guesses_at_one_account_from_many_addresses_are_throttled_together,
);
