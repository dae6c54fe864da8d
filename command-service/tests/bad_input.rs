//! Bad input over HTTP: every malformed, invalid, unauthenticated or forbidden request gets the
//! status API.md documents, an RFC 9457 body carrying the response's request id, and leaves the
//! event store (and the command-side tables beside it) exactly as it was.
//!
//! The main test is a table: add a [`Case`] to cover another kind of bad input.

mod support;

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use domain::Role;
use platform::auth::{Claims, JwtKeys};
use platform::config::Secret;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::RequestBuilder;
use serde_json::{json, Value};
use support::{assert_problem, meeting_body, spawn_app, Backend, TestApp, TestUser, JWT_SECRET};
use uuid::Uuid;

/// The world every case runs against.
struct World {
    app: TestApp,
    /// Organizer of `meeting` and `cancelled`.
    alice: TestUser,
    /// Invited to `meeting`.
    bob: TestUser,
    /// Knows nothing of either meeting.
    carol: TestUser,
    meeting: Uuid,
    cancelled: Uuid,
}

impl World {
    fn meeting_url(&self) -> String {
        self.app.url(&format!("/v1/meetings/{}", self.meeting))
    }

    /// A PATCH of Alice's meeting that would succeed with Alice's token: only the token varies.
    fn patch_meeting_with_token(&self, token: &str) -> RequestBuilder {
        self.app
            .client
            .patch(self.meeting_url())
            .bearer_auth(token)
            .json(&json!({"title": "Hijacked"}))
    }

    /// POST /v1/meetings as Alice with a raw body and an optional content type.
    fn schedule_raw(&self, content_type: Option<&str>, body: impl Into<String>) -> RequestBuilder {
        let mut request = self
            .app
            .client
            .post(self.app.url("/v1/meetings"))
            .bearer_auth(&self.alice.token)
            .body(body.into());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request
    }

    /// POST /v1/meetings as Alice with a valid body changed by `edit`.
    fn schedule_edited(&self, edit: impl FnOnce(&mut Value)) -> RequestBuilder {
        let mut body = meeting_body("Planning", &[]);
        edit(&mut body);
        self.app
            .client
            .post(self.app.url("/v1/meetings"))
            .bearer_auth(&self.alice.token)
            .json(&body)
    }
}

/// What the response's `X-Request-Id` must be, beyond matching the problem body.
enum RequestIdRule {
    /// Whatever the server chose.
    Any,
    /// The client's own id, echoed.
    Echoed(&'static str),
    /// The client's id was refused: a generated UUID replaces it.
    Generated,
}

/// One kind of bad input and the answer it must get.
struct Case {
    name: &'static str,
    request: Box<dyn Fn(&World) -> RequestBuilder>,
    status: u16,
    /// For 422: the `errors[0].field` expected.
    field: Option<&'static str>,
    request_id: RequestIdRule,
}

fn case(
    name: &'static str,
    status: u16,
    field: Option<&'static str>,
    request: impl Fn(&World) -> RequestBuilder + 'static,
) -> Case {
    Case {
        name,
        request: Box::new(request),
        status,
        field,
        request_id: RequestIdRule::Any,
    }
}

/// Row counts of every table a command could write.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    events: i64,
    accounts: i64,
    idempotency_keys: i64,
    refresh_tokens: i64,
}

async fn counts(app: &TestApp) -> Counts {
    let count = |table: &'static str| async move {
        app.count(&format!("SELECT count(*) FROM {table}")).await
    };
    Counts {
        events: app.event_count().await,
        accounts: count("accounts").await,
        idempotency_keys: count("idempotency_keys").await,
        refresh_tokens: count("refresh_tokens").await,
    }
}

fn claims_for(user: Uuid, exp_offset: i64, nbf_offset: i64) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        iss: "meetings".into(),
        aud: "meetings".into(),
        sub: user,
        exp: now + exp_offset,
        nbf: now + nbf_offset,
        iat: now + nbf_offset,
        jti: Uuid::now_v7(),
        role: Role::Admin,
        ver: 0,
        sid: None,
    }
}

/// `base64url(header).base64url(payload).` — an unsigned token.
fn alg_none_token(claims: &Claims) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(serde_json::to_vec(claims).unwrap());
    format!("{header}.{payload}.")
}

fn token_of_keys(secret: &str, issuer: &str, audience: &str, user: Uuid) -> String {
    JwtKeys::new(&Secret::new(secret), issuer, audience).issue(
        user,
        Role::Admin,
        Duration::from_secs(600),
    )
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        // Body syntax and shape.
        case("malformed JSON", 400, None, |w| {
            w.schedule_raw(Some("application/json"), r#"{"title": "Planning","#)
        }),
        case("trailing garbage after the JSON", 400, None, |w| {
            w.schedule_raw(
                Some("application/json"),
                format!("{} trailing", meeting_body("Planning", &[])),
            )
        }),
        case(
            "a number where the title string goes",
            422,
            Some("title"),
            |w| w.schedule_edited(|b| b["title"] = json!(5)),
        ),
        case(
            "a word where a timestamp goes",
            422,
            Some("starts_at"),
            |w| w.schedule_edited(|b| b["starts_at"] = json!("tomorrow morning")),
        ),
        case(
            "a bad UUID nested in the attendee list",
            422,
            Some("attendees[0].user_id"),
            |w| w.schedule_edited(|b| b["attendees"] = json!([{"user_id": "bob"}])),
        ),
        case("an unknown field", 422, Some("colour"), |w| {
            w.schedule_edited(|b| b["colour"] = json!("red"))
        }),
        case("a 70 KiB body", 413, None, |w| {
            w.schedule_edited(|b| b["description"] = json!("x".repeat(70 * 1024)))
        }),
        case("a 70 KiB body to an anonymous endpoint", 413, None, |w| {
            w.app
                .client
                .post(w.app.url("/v1/auth/register"))
                .json(&json!({
                    "email": "big@example.com",
                    "password": "correct horse battery",
                    "display_name": "y".repeat(70 * 1024),
                }))
        }),
        case("a text/plain body", 415, None, |w| {
            w.schedule_raw(
                Some("text/plain"),
                meeting_body("Planning", &[]).to_string(),
            )
        }),
        case("a form-encoded body", 415, None, |w| {
            w.schedule_raw(
                Some("application/x-www-form-urlencoded"),
                "title=Planning&time_zone=UTC",
            )
        }),
        case("a body without a content type", 415, None, |w| {
            w.schedule_raw(None, meeting_body("Planning", &[]).to_string())
        }),
        // Values the domain refuses.
        case("an empty title", 422, Some("title"), |w| {
            w.schedule_edited(|b| b["title"] = json!(""))
        }),
        case("a 201-character title", 422, Some("title"), |w| {
            w.schedule_edited(|b| b["title"] = json!("t".repeat(201)))
        }),
        case("an end before the start", 422, Some("ends_at"), |w| {
            w.schedule_edited(|b| {
                let start = b["starts_at"].clone();
                b["starts_at"] = b["ends_at"].clone();
                b["ends_at"] = start;
            })
        }),
        case("an unknown time zone", 422, Some("time_zone"), |w| {
            w.schedule_edited(|b| b["time_zone"] = json!("Mars/Olympus_Mons"))
        }),
        case(
            "an unknown time zone in a change",
            422,
            Some("time_zone"),
            |w| {
                w.app
                    .client
                    .patch(w.meeting_url())
                    .bearer_auth(&w.alice.token)
                    .json(&json!({"time_zone": "Europe/Atlantis"}))
            },
        ),
        case("a change that changes nothing", 422, None, |w| {
            w.app
                .client
                .patch(w.meeting_url())
                .bearer_auth(&w.alice.token)
                .json(&json!({}))
        }),
        // Paths, routes, methods, headers.
        case("a malformed UUID in the path", 400, None, |w| {
            w.app
                .client
                .patch(w.app.url("/v1/meetings/not-a-uuid"))
                .bearer_auth(&w.alice.token)
                .json(&json!({"title": "Renamed"}))
        }),
        case("an unknown route", 404, None, |w| {
            w.app
                .client
                .post(w.app.url("/v1/no-such-thing"))
                .bearer_auth(&w.alice.token)
                .json(&json!({}))
        }),
        case("a wrong method on a known route", 405, None, |w| {
            w.app
                .client
                .get(w.app.url("/v1/auth/login"))
                .bearer_auth(&w.alice.token)
        }),
        case("DELETE on a meeting", 405, None, |w| {
            w.app
                .client
                .delete(w.meeting_url())
                .bearer_auth(&w.alice.token)
        }),
        case("an unquoted If-Match", 400, None, |w| {
            w.patch_meeting_with_token(&w.alice.token)
                .header("If-Match", "1")
        }),
        case("a weak If-Match", 400, None, |w| {
            w.patch_meeting_with_token(&w.alice.token)
                .header("If-Match", "W/\"1\"")
        }),
        case("a stale If-Match", 412, None, |w| {
            w.patch_meeting_with_token(&w.alice.token)
                .header("If-Match", "\"7\"")
        }),
        case("an Idempotency-Key with spaces", 400, None, |w| {
            w.patch_meeting_with_token(&w.alice.token)
                .header("Idempotency-Key", "not a sane key")
        }),
        // Authentication.
        case("no bearer token", 401, None, |w| {
            w.app
                .client
                .patch(w.meeting_url())
                .json(&json!({"title": "Hijacked"}))
        }),
        case("a Basic authorization header", 401, None, |w| {
            w.app
                .client
                .patch(w.meeting_url())
                .basic_auth("alice", Some("password"))
                .json(&json!({"title": "Hijacked"}))
        }),
        case("an expired token", 401, None, |w| {
            let token = w.app.jwt.sign(&claims_for(w.alice.id, -3600, -7200));
            w.patch_meeting_with_token(&token)
        }),
        case("a token that is not valid yet", 401, None, |w| {
            let token = w.app.jwt.sign(&claims_for(w.alice.id, 7200, 3600));
            w.patch_meeting_with_token(&token)
        }),
        case("a token signed with another key", 401, None, |w| {
            let token = token_of_keys(
                "a-forged-secret-that-is-also-32-bytes-long",
                "meetings",
                "meetings",
                w.alice.id,
            );
            w.patch_meeting_with_token(&token)
        }),
        case("an alg none token", 401, None, |w| {
            w.patch_meeting_with_token(&alg_none_token(&claims_for(w.alice.id, 600, -1)))
        }),
        case("a token for another audience", 401, None, |w| {
            let token = token_of_keys(JWT_SECRET, "meetings", "billing", w.alice.id);
            w.patch_meeting_with_token(&token)
        }),
        case("a token of another issuer", 401, None, |w| {
            let token = token_of_keys(JWT_SECRET, "evil-corp", "meetings", w.alice.id);
            w.patch_meeting_with_token(&token)
        }),
        case("a garbage token", 401, None, |w| {
            w.patch_meeting_with_token("not.a.jwt")
        }),
        // Authorization and state.
        case("a stranger changing the meeting", 404, None, |w| {
            w.patch_meeting_with_token(&w.carol.token)
        }),
        case("an attendee changing the meeting", 403, None, |w| {
            w.patch_meeting_with_token(&w.bob.token)
        }),
        case("an attendee cancelling the meeting", 403, None, |w| {
            w.app
                .client
                .post(w.app.url(&format!("/v1/meetings/{}/cancel", w.meeting)))
                .bearer_auth(&w.bob.token)
                .json(&json!({}))
        }),
        case("a change of a cancelled meeting", 409, None, |w| {
            w.app
                .client
                .patch(w.app.url(&format!("/v1/meetings/{}", w.cancelled)))
                .bearer_auth(&w.alice.token)
                .json(&json!({"title": "Back from the dead"}))
        }),
        case("a meeting that does not exist", 404, None, |w| {
            w.app
                .client
                .patch(w.app.url(&format!("/v1/meetings/{}", Uuid::now_v7())))
                .bearer_auth(&w.alice.token)
                .json(&json!({"title": "Ghost"}))
        }),
        // Registration.
        case("a password that is too short", 422, Some("password"), |w| {
            w.app
                .client
                .post(w.app.url("/v1/auth/register"))
                .json(&json!({
                    "email": "dave@example.com",
                    "password": "short",
                    "display_name": "Dave",
                }))
        }),
        case("an email registered in another case", 409, None, |w| {
            w.app
                .client
                .post(w.app.url("/v1/auth/register"))
                .json(&json!({
                    "email": format!("  {}  ", w.alice.email.to_uppercase()),
                    "password": "another good password",
                    "display_name": "Alice again",
                }))
        }),
        case("an email that is not one", 422, Some("email"), |w| {
            w.app
                .client
                .post(w.app.url("/v1/auth/register"))
                .json(&json!({
                    "email": "not-an-email",
                    "password": "correct horse battery",
                    "display_name": "Eve",
                }))
        }),
    ];

    // Request ids: a sane client id is echoed, an insane one replaced by a generated one.
    let mut echoed = case("a sane client request id", 400, None, |w| {
        w.schedule_raw(Some("application/json"), "{")
            .header("X-Request-Id", "client-req.42_abc")
    });
    echoed.request_id = RequestIdRule::Echoed("client-req.42_abc");
    cases.push(echoed);
    let mut too_long = case("a 200-character client request id", 400, None, |w| {
        w.schedule_raw(Some("application/json"), "{")
            .header("X-Request-Id", "r".repeat(200))
    });
    too_long.request_id = RequestIdRule::Generated;
    cases.push(too_long);
    let mut spaced = case("a client request id with spaces", 400, None, |w| {
        w.schedule_raw(Some("application/json"), "{")
            .header("X-Request-Id", "id with spaces")
    });
    spaced.request_id = RequestIdRule::Generated;
    cases.push(spaced);
    cases
}

async fn world(backend: Backend) -> World {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let bob = app.user("Bob").await;
    let carol = app.user("Carol").await;
    let meeting = app.schedule(&alice, &[bob.id]).await;
    let cancelled = app.schedule(&alice, &[]).await;
    let response = app
        .post(
            &format!("/v1/meetings/{cancelled}/cancel"),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    World {
        app,
        alice,
        bob,
        carol,
        meeting,
        cancelled,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

async fn every_kind_of_bad_input_gets_its_documented_problem_and_changes_nothing(backend: Backend) {
    let world = world(backend).await;
    let initial = counts(&world.app).await;
    assert_eq!(initial.events, 6, "3 registrations, 2 schedules, 1 cancel");

    for (index, case) in cases().iter().enumerate() {
        // Shown with the failure: which case broke.
        eprintln!("case {index}: {}", case.name);
        let before = counts(&world.app).await;
        let mut request = (case.request)(&world).build().expect("a buildable request");
        // A failed command must not leave an idempotency record either.
        if !request.headers().contains_key("idempotency-key") {
            request.headers_mut().insert(
                "idempotency-key",
                format!("bad-input-{index}").parse().unwrap(),
            );
        }
        let response = world
            .app
            .client
            .execute(request)
            .await
            .expect("request failed");
        let headers = response.headers().clone();
        let body = assert_problem(response, case.status).await;

        if let Some(field) = case.field {
            assert_eq!(body["errors"][0]["field"], field, "{}: {body}", case.name);
            assert!(
                !body["errors"][0]["message"].as_str().unwrap().is_empty(),
                "{}: {body}",
                case.name
            );
        } else if case.status != 422 {
            assert!(body.get("errors").is_none(), "{}: {body}", case.name);
        }
        if case.status == 401 {
            let challenge = header(&headers, "www-authenticate")
                .unwrap_or_else(|| panic!("{}: 401 without WWW-Authenticate", case.name));
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        let request_id = header(&headers, "x-request-id").unwrap();
        match case.request_id {
            RequestIdRule::Any => {}
            RequestIdRule::Echoed(sent) => assert_eq!(request_id, sent, "{}", case.name),
            RequestIdRule::Generated => {
                let generated: Uuid = request_id
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: `{request_id}` is not generated", case.name));
                assert_eq!(generated.get_version_num(), 7);
            }
        }

        let after = counts(&world.app).await;
        assert_eq!(after, before, "{} changed the store", case.name);
    }
    assert_eq!(counts(&world.app).await, initial);
}

async fn the_requests_the_bad_cases_distort_succeed_when_made_properly(backend: Backend) {
    // Guards the table: its failures must come from the distortion, not from a broken base.
    let world = world(backend).await;
    let before = counts(&world.app).await;

    let response = world
        .schedule_edited(|_| {})
        .header("Idempotency-Key", "good-schedule")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());

    let response = world
        .patch_meeting_with_token(&world.alice.token)
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["etag"], "\"2\"");

    let response = world
        .schedule_raw(
            Some("application/json; charset=utf-8"),
            meeting_body("Planning", &[]).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let after = counts(&world.app).await;
    assert_eq!(after.events, before.events + 3);
    assert_eq!(after.idempotency_keys, before.idempotency_keys + 1);
}

async fn a_body_just_under_the_limit_is_read_and_judged_on_its_values(backend: Backend) {
    let world = world(backend).await;
    let before = counts(&world.app).await;
    // 63 KiB fits the 64 KiB limit, so the domain's length rule (not the limit) refuses it.
    let response = world
        .schedule_edited(|b| b["description"] = json!("x".repeat(63 * 1024)))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "description", "{body}");
    assert_eq!(counts(&world.app).await, before);
}

async fn a_wrong_method_names_the_allowed_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .put(app.url("/v1/auth/login"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let allow = header(response.headers(), "allow").expect("405 carries Allow");
    assert_eq!(allow, "POST");
    let body = assert_problem(response, 405).await;
    assert_eq!(body["type"], "/problems/method-not-allowed");
}

platform::on_each_backend!(
    every_kind_of_bad_input_gets_its_documented_problem_and_changes_nothing,
    the_requests_the_bad_cases_distort_succeed_when_made_properly,
    a_body_just_under_the_limit_is_read_and_judged_on_its_values,
    a_wrong_method_names_the_allowed_ones,
);
