//! The hostile-input suite (issue 10): one row per attack on the running system — timestamps,
//! text, numbers, sizes, encodings, pagination, ranges, methods, headers and websocket frames.
//! Every HTTP row must get a 4xx problem+json (with the request id) and every websocket row an
//! error frame or a closed socket. Then the system must be unharmed: the projector healthy,
//! its read models equal to a rebuild from the event store, and an ordinary request served.
//!
//! The rows run against one stack, in order, so each one also proves that the ones before it
//! did not break anything; a failing row is reported with its name, all failures at once.

use std::time::Duration;

use base64::Engine;
use e2e::ws::{authed, Ws};
use e2e::{Backend, Stack};
use futures::{SinkExt, StreamExt};
use platform::testing::meeting_body;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Which service a row talks to.
#[derive(Clone, Copy)]
enum To {
    Commands,
    Queries,
}

struct Context {
    stack: Stack,
    token: String,
    meeting: String,
    user_id: String,
}

type Build = Box<dyn Fn(&Context) -> RequestBuilder>;

struct Row {
    name: &'static str,
    build: Build,
    /// The statuses that count as a correct refusal.
    expected: &'static [u16],
}

fn row(
    name: &'static str,
    expected: &'static [u16],
    build: impl Fn(&Context) -> RequestBuilder + 'static,
) -> Row {
    Row {
        name,
        build: Box::new(build),
        expected,
    }
}

fn request(ctx: &Context, to: To, method: Method, path: &str) -> RequestBuilder {
    let client = match to {
        To::Commands => &ctx.stack.commands,
        To::Queries => &ctx.stack.queries,
    };
    client.request(method, path, Some(&ctx.token))
}

fn post(ctx: &Context, to: To, path: &str, body: Value) -> RequestBuilder {
    request(ctx, to, Method::POST, path).json(&body)
}

fn patch_meeting(ctx: &Context, body: Value) -> RequestBuilder {
    request(
        ctx,
        To::Commands,
        Method::PATCH,
        &format!("/v1/meetings/{}", ctx.meeting),
    )
    .json(&body)
}

fn get(ctx: &Context, path: &str) -> RequestBuilder {
    request(ctx, To::Queries, Method::GET, path)
}

fn schedule_with(field: &'static str, value: Value) -> impl Fn(&Context) -> RequestBuilder {
    move |ctx| {
        let mut body = meeting_body("Hostile", &[]);
        body[field] = value.clone();
        post(ctx, To::Commands, "/v1/meetings", body)
    }
}

fn agenda(from: &str, to: &str) -> String {
    format!("/v1/me/agenda?from={from}&to={to}")
}

fn forged_cursor(starts_at: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!([starts_at, uuid::Uuid::nil()]).to_string())
}

const BAD: &[u16] = &[400, 422];
const INVALID: &[u16] = &[422];

fn http_rows() -> Vec<Row> {
    vec![
        // ----------------------------------------------------------------- timestamps
        row(
            "schedule in year -5000",
            INVALID,
            schedule_with("starts_at", json!("-5000-01-01T00:00:00Z")),
        ),
        row(
            "schedule in 1899",
            INVALID,
            schedule_with("starts_at", json!("1899-12-31T23:00:00Z")),
        ),
        row(
            "schedule ending in year 10000",
            BAD,
            schedule_with("ends_at", json!("+10000-01-01T00:00:00Z")),
        ),
        row(
            "schedule at a time that is not one",
            BAD,
            schedule_with("starts_at", json!("yesterday")),
        ),
        row(
            "schedule at a number",
            BAD,
            schedule_with("starts_at", json!(1_700_000_000)),
        ),
        row("reschedule to year 1", INVALID, |ctx| {
            patch_meeting(
                ctx,
                json!({"starts_at": "0001-01-01T10:00:00Z", "ends_at": "0001-01-01T11:00:00Z"}),
            )
        }),
        row("agenda from year -5000", INVALID, |ctx| {
            get(
                ctx,
                &agenda("-5000-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            )
        }),
        row("agenda to year 99999", INVALID, |ctx| {
            get(
                ctx,
                &agenda("2027-01-01T00:00:00Z", "99999-01-01T00:00:00Z"),
            )
        }),
        row("meeting list from 1800", INVALID, |ctx| {
            get(ctx, "/v1/meetings?from=1800-01-01T00:00:00Z")
        }),
        row("free/busy in year 0", BAD, |ctx| {
            post(
                ctx,
                To::Queries,
                "/v1/freebusy",
                json!({"user_ids": [ctx.user_id], "from": "0000-01-01T00:00:00Z", "to": "0000-01-02T00:00:00Z"}),
            )
        }),
        row("find-times across the end of 9999", BAD, |ctx| {
            post(
                ctx,
                To::Queries,
                "/v1/find-times",
                json!({"user_ids": [ctx.user_id], "duration_minutes": 30, "from": "9999-12-31T00:00:00Z", "to": "+10000-01-02T00:00:00Z"}),
            )
        }),
        // ----------------------------------------------------------------------- text
        row(
            "title with NUL",
            INVALID,
            schedule_with("title", json!("a\u{0}b")),
        ),
        row(
            "title with a newline",
            INVALID,
            schedule_with("title", json!("two\nlines")),
        ),
        row(
            "description with NUL",
            INVALID,
            schedule_with("description", json!("x\u{0}")),
        ),
        row(
            "description with an ANSI escape",
            INVALID,
            schedule_with("description", json!("\u{1b}[31mred")),
        ),
        row(
            "location with a right-to-left override",
            INVALID,
            schedule_with("location", json!("Room \u{202E}1 moor")),
        ),
        row("chat message with NUL", INVALID, |ctx| {
            post(
                ctx,
                To::Commands,
                &format!("/v1/meetings/{}/messages", ctx.meeting),
                json!({"text": "hi\u{0}"}),
            )
        }),
        row("chat message with a bidi isolate", INVALID, |ctx| {
            post(
                ctx,
                To::Commands,
                &format!("/v1/meetings/{}/messages", ctx.meeting),
                json!({"text": "\u{2067}evil\u{2069}"}),
            )
        }),
        row("cancel reason with a C1 control", INVALID, |ctx| {
            post(
                ctx,
                To::Commands,
                &format!("/v1/meetings/{}/cancel", ctx.meeting),
                json!({"reason": "x\u{85}y"}),
            )
        }),
        row("display name with NUL", INVALID, |ctx| {
            request(ctx, To::Commands, Method::PATCH, "/v1/users/me")
                .json(&json!({"display_name": "Eve\u{0}"}))
        }),
        row("display name with a bidi override", INVALID, |ctx| {
            request(ctx, To::Commands, Method::PATCH, "/v1/users/me")
                .json(&json!({"display_name": "\u{202D}Admin"}))
        }),
        row("registration email with NUL", INVALID, |ctx| {
            ctx.stack.commands.request(Method::POST, "/v1/auth/register", None)
                .json(&json!({"email": "eve\u{0}@example.org", "password": "correct horse battery", "display_name": "Eve"}))
        }),
        row("registration with a common password", INVALID, |ctx| {
            ctx.stack.commands.request(Method::POST, "/v1/auth/register", None)
                .json(&json!({"email": "eve@example.org", "password": "Password1", "display_name": "Eve"}))
        }),
        row("login email of 300 characters", INVALID, |ctx| {
            ctx.stack.commands.request(Method::POST, "/v1/auth/login", None)
                .json(&json!({"email": format!("{}@example.org", "a".repeat(300)), "password": "whatever1"}))
        }),
        row("directory search with NUL", INVALID, |ctx| {
            get(ctx, "/v1/users?q=a%00b")
        }),
        row("meeting search of 201 characters", INVALID, |ctx| {
            get(ctx, &format!("/v1/meetings?q={}", "a".repeat(201)))
        }),
        // -------------------------------------------------------------------- numbers
        row("find-times of -1 minutes", INVALID, |ctx| {
            post(
                ctx,
                To::Queries,
                "/v1/find-times",
                json!({"user_ids": [ctx.user_id], "duration_minutes": -1, "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"}),
            )
        }),
        row("find-times of 1e20 minutes", BAD, |ctx| {
            post(
                ctx,
                To::Queries,
                "/v1/find-times",
                json!({"user_ids": [ctx.user_id], "duration_minutes": 1e20, "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"}),
            )
        }),
        row("limit 0", INVALID, |ctx| get(ctx, "/v1/meetings?limit=0")),
        row("limit 10^30", INVALID, |ctx| {
            get(ctx, "/v1/meetings?limit=1000000000000000000000000000000")
        }),
        row("limit -1", INVALID, |ctx| get(ctx, "/v1/changes?limit=-1")),
        // ---------------------------------------------------------------------- sizes
        row("body of 70 KiB", &[413], |ctx| {
            post(
                ctx,
                To::Commands,
                "/v1/meetings",
                json!({"title": "x".repeat(70 * 1024)}),
            )
        }),
        row("501 attendees", INVALID, |ctx| {
            let attendees: Vec<Value> = (0..501)
                .map(|_| json!({"user_id": uuid::Uuid::now_v7()}))
                .collect();
            let mut body = meeting_body("Crowd", &[]);
            body["attendees"] = json!(attendees);
            post(ctx, To::Commands, "/v1/meetings", body)
        }),
        row("free/busy of 101 users", INVALID, |ctx| {
            let users: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
            post(
                ctx,
                To::Queries,
                "/v1/freebusy",
                json!({"user_ids": users, "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"}),
            )
        }),
        row(
            "title of 201 characters",
            INVALID,
            schedule_with("title", json!("t".repeat(201))),
        ),
        // ------------------------------------------------------------------ encodings
        row("body that is not UTF-8", &[400], |ctx| {
            request(ctx, To::Commands, Method::POST, "/v1/meetings")
                .header("content-type", "application/json")
                .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])
        }),
        row("a lone surrogate escape", BAD, |ctx| {
            request(ctx, To::Commands, Method::POST, "/v1/meetings")
                .header("content-type", "application/json")
                .body(r#"{"title": "\ud800", "starts_at": "2027-01-01T10:00:00Z"}"#)
        }),
        row("JSON nested 10,000 deep", BAD, |ctx| {
            request(ctx, To::Commands, Method::POST, "/v1/meetings")
                .header("content-type", "application/json")
                .body(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)))
        }),
        row("a body sent as text/plain", &[415], |ctx| {
            request(ctx, To::Commands, Method::POST, "/v1/meetings")
                .header("content-type", "text/plain")
                .body(meeting_body("Plain", &[]).to_string())
        }),
        row(
            "an unknown field",
            BAD,
            schedule_with("is_admin", json!(true)),
        ),
        // ----------------------------------------------------------------- pagination
        row("a cursor that is not one", INVALID, |ctx| {
            get(ctx, "/v1/meetings?cursor=%%%")
        }),
        row("a forged cursor in year -5000", INVALID, |ctx| {
            get(
                ctx,
                &format!(
                    "/v1/meetings?cursor={}",
                    forged_cursor("-5000-01-01T00:00:00Z")
                ),
            )
        }),
        row("changes after a position that is not one", INVALID, |ctx| {
            get(ctx, "/v1/changes?after=xyz")
        }),
        // --------------------------------------------------------------------- ranges
        row("agenda ending before it starts", INVALID, |ctx| {
            get(ctx, &agenda("2027-02-01T00:00:00Z", "2027-01-01T00:00:00Z"))
        }),
        row("agenda over 400 days", INVALID, |ctx| {
            get(ctx, &agenda("2027-01-01T00:00:00Z", "2028-02-05T00:00:00Z"))
        }),
        row("free/busy over 91 days", INVALID, |ctx| {
            post(
                ctx,
                To::Queries,
                "/v1/freebusy",
                json!({"user_ids": [ctx.user_id], "from": "2027-01-01T00:00:00Z", "to": "2027-04-02T00:00:00Z"}),
            )
        }),
        // -------------------------------------------------------------------- methods
        row("DELETE on the meeting collection", &[405], |ctx| {
            request(ctx, To::Commands, Method::DELETE, "/v1/meetings")
        }),
        row("an invented method", &[400, 405], |ctx| {
            request(
                ctx,
                To::Commands,
                Method::from_bytes(b"XYZZY").unwrap(),
                "/v1/meetings",
            )
        }),
        row("TRACE on a query", &[405], |ctx| {
            request(ctx, To::Queries, Method::TRACE, "/v1/meetings")
        }),
        // -------------------------------------------------------------------- headers
        row("X-Min-Position past the newest event", INVALID, |ctx| {
            get(ctx, "/v1/users/me").header("x-min-position", "7fffffffffffffff0000000000000001")
        }),
        row("X-Min-Position that is not a position", &[400], |ctx| {
            get(ctx, "/v1/users/me").header("x-min-position", "soon")
        }),
        row("If-Match that is not a version", &[400, 412], |ctx| {
            patch_meeting(ctx, json!({"title": "Renamed"})).header("if-match", "\"banana\"")
        }),
        row("an Idempotency-Key of 1,000 characters", BAD, |ctx| {
            patch_meeting(ctx, json!({"title": "Renamed"}))
                .header("idempotency-key", "k".repeat(1_000))
        }),
        row("a bearer token that is not one", &[401], |ctx| {
            ctx.stack
                .queries
                .request(Method::GET, "/v1/users/me", Some("not.a.token"))
        }),
        row("a JSON body declared as form data", &[415], |ctx| {
            request(ctx, To::Commands, Method::POST, "/v1/meetings")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("title=x")
        }),
    ]
}

/// What the gateway answered to a hostile frame: an error frame, or a closed socket.
async fn refused(ws: &mut Ws) -> Result<String, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if frame["type"] == "error" {
                    return Ok(format!("error {}", frame["code"]));
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => return Ok(format!("closed {frame:?}")),
            Ok(None) | Ok(Some(Err(_))) => return Ok("closed".into()),
            Ok(Some(Ok(_))) => {}
            Err(_) => return Err("no answer within 10 s".into()),
        }
    }
}

fn websocket_rows(meeting: &str) -> Vec<(&'static str, Message)> {
    let text = |value: Value| Message::Text(value.to_string().into());
    vec![
        ("a binary frame", Message::Binary(vec![0, 1, 2].into())),
        ("text that is not JSON", Message::Text("{nope".into())),
        ("an unknown message type", text(json!({"type": "dance"}))),
        (
            "a channel that names no meeting",
            text(json!({"type": "subscribe", "channel": "meeting:not-a-uuid"})),
        ),
        (
            "a since that is not a position",
            text(
                json!({"type": "subscribe", "channel": format!("meeting:{meeting}"), "since": "zzz"}),
            ),
        ),
        (
            "a frame of 1 MiB",
            Message::Text("x".repeat(1 << 20).into()),
        ),
        (
            "a NUL inside a channel name",
            text(json!({"type": "subscribe", "channel": "user:\u{0}me"})),
        ),
    ]
}

async fn every_hostile_request_is_refused_and_the_system_is_unharmed(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (user_id, token, _) = stack.user("Mallory").await;
    let (status, body) = stack
        .command(
            Method::POST,
            "/v1/meetings",
            &token,
            meeting_body("Target", &[]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let meeting = body["id"].as_str().unwrap().to_owned();
    let ctx = Context {
        stack,
        token,
        meeting,
        user_id: user_id.to_string(),
    };

    let rows = http_rows();
    let mut failures = Vec::new();
    for row in &rows {
        let response = match (row.build)(&ctx).send().await {
            Ok(response) => response,
            Err(error) => {
                failures.push(format!("{}: no response ({error})", row.name));
                continue;
            }
        };
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !row.expected.contains(&status) {
            failures.push(format!(
                "{}: {status}, expected {:?}: {body}",
                row.name, row.expected
            ));
        } else if content_type.as_deref() != Some("application/problem+json")
            || body["request_id"].as_str() != request_id.as_deref()
            || body["status"] != status
        {
            failures.push(format!(
                "{}: not problem+json with the request id: {body}",
                row.name
            ));
        }
    }

    let (url, _gateway) = ctx.stack.start_realtime().await;
    let ws_rows = websocket_rows(&ctx.meeting);
    for (name, frame) in ws_rows.iter().cloned() {
        let mut ws = authed(&url, &ctx.token).await;
        if ws.send(frame).await.is_err() {
            continue; // refused while sending: the socket is closed
        }
        if let Err(why) = refused(&mut ws).await {
            failures.push(format!("websocket, {name}: {why}"));
        }
    }
    assert!(
        rows.len() + ws_rows.len() >= 40,
        "the suite has {} rows",
        rows.len() + ws_rows.len()
    );
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Unharmed: an ordinary request is served, the projector is healthy and caught up, and
    // its read models equal a rebuild from the event store.
    let (status, body) = ctx
        .stack
        .command(
            Method::POST,
            "/v1/meetings",
            &ctx.token,
            meeting_body("After", &[]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let head = ctx.stack.store_head().await;
    ctx.stack
        .wait_projected(head, Duration::from_secs(30))
        .await;
    let ready = ctx.stack.projector_health().get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let (live, rebuilt) = ctx.stack.read_models_and_a_rebuild().await;
    assert_eq!(live, rebuilt);
}

platform::on_each_backend!(every_hostile_request_is_refused_and_the_system_is_unharmed,);
