//! Property tests (issue 10): whatever a client sends — command bodies, query parameters,
//! websocket frames, generated from arbitrary JSON, arbitrary Unicode (controls, surrogates'
//! neighbours, bidi marks) and arbitrary instants — the system never answers 5xx, never drops
//! the connection without an answer, and a websocket is never closed as an internal error.
//!
//! One running stack for all properties (a proptest body is synchronous, so requests are
//! driven on a runtime of our own); failures shrink to a minimal request and are reported
//! with it.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Backend, Stack};
use futures::{SinkExt, StreamExt};
use platform::testing::meeting_body;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

const CASES: u32 = 200;

/// Any text, biased towards what breaks parsers and databases: controls, NUL, bidi marks,
/// non-BMP characters, very long runs.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}a ]{0,20}",
        "\\PC{0,300}",
        Just("x".repeat(5_000)),
    ]
}

/// Strings shaped like RFC 3339 instants with any year, month, day and offset.
fn instant() -> impl Strategy<Value = String> {
    (
        -200_000i64..200_000,
        0u32..15,
        0u32..35,
        0u32..30,
        prop_oneof![Just("Z".to_owned()), "[+-][0-9]{2}:[0-9]{2}"],
    )
        .prop_map(|(year, month, day, hour, offset)| {
            let year = if (0..10_000).contains(&year) {
                format!("{year:04}")
            } else {
                format!("{year:+}")
            };
            format!("{year}-{month:02}-{day:02}T{hour:02}:00:00{offset}")
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
        instant().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid schedule request with some fields replaced by anything (so validation deep in
/// the domain is reached, not only the JSON parser).
fn schedule_body() -> impl Strategy<Value = Value> {
    let fields = prop::sample::select(vec![
        "title",
        "description",
        "starts_at",
        "ends_at",
        "time_zone",
        "location",
        "attendees",
        "recurrence",
    ]);
    prop::collection::btree_map(fields, json_value(), 1..4).prop_map(|changes| {
        let mut body = meeting_body("Property", &[]);
        for (field, value) in changes {
            body[field] = value;
        }
        body
    })
}

fn query_params() -> impl Strategy<Value = BTreeMap<&'static str, String>> {
    let names = prop::sample::select(vec![
        "from", "to", "limit", "cursor", "q", "after", "status",
    ]);
    let value = prop_oneof![text(), instant(), any::<i64>().prop_map(|n| n.to_string())];
    prop::collection::btree_map(names, value, 0..5)
}

/// A request's outcome as a property sees it: answered below 500, or the reason why not.
async fn answered(request: reqwest::RequestBuilder) -> Result<u16, TestCaseError> {
    let response = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status >= 500 {
        return Err(TestCaseError::fail(format!("{status}: {body}")));
    }
    Ok(status)
}

fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{name}: {error}");
    }
}

fn arbitrary_requests_and_frames_never_get_a_5xx_or_an_internal_error(backend: Backend) {
    let runtime = Runtime::new().unwrap();
    // Drops of the services' handles happen on this runtime too.
    let _context = runtime.enter();
    let stack = runtime.block_on(Stack::on(backend));
    let (user_id, token, _) = runtime.block_on(stack.user("Prop"));
    let (status, body) = runtime.block_on(stack.command(
        Method::POST,
        "/v1/meetings",
        &token,
        meeting_body("Target", &[]),
    ));
    assert_eq!(status, 201, "{body}");
    let meeting = body["id"].as_str().unwrap().to_owned();

    run("schedule bodies", schedule_body(), |body| {
        runtime.block_on(answered(
            stack
                .commands
                .request(Method::POST, "/v1/meetings", Some(&token))
                .json(&body),
        ))?;
        Ok(())
    });

    let commands = prop::sample::select(vec![
        (Method::PATCH, ""),
        (Method::POST, "/attendees"),
        (Method::POST, "/response"),
        (Method::POST, "/messages"),
        (Method::POST, "/cancel"),
    ]);
    run(
        "meeting command bodies",
        (
            commands,
            prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..4),
        ),
        |((method, suffix), fields)| {
            let body = Value::Object(fields.into_iter().collect());
            runtime.block_on(answered(
                stack
                    .commands
                    .request(
                        method,
                        &format!("/v1/meetings/{meeting}{suffix}"),
                        Some(&token),
                    )
                    .json(&body),
            ))?;
            Ok(())
        },
    );

    let paths = prop::sample::select(vec![
        "/v1/meetings",
        "/v1/me/agenda",
        "/v1/users",
        "/v1/changes",
    ]);
    run(
        "query parameters",
        (paths, query_params()),
        |(path, params)| {
            let params: Vec<(&str, String)> = params.into_iter().collect();
            runtime.block_on(answered(
                stack
                    .queries
                    .request(Method::GET, path, Some(&token))
                    .query(&params),
            ))?;
            Ok(())
        },
    );

    run(
        "free/busy and find-times bodies",
        (
            prop::bool::ANY,
            instant(),
            instant(),
            any::<i64>(),
            json_value(),
        ),
        |(find, from, to, minutes, extra)| {
            let mut body = json!({"user_ids": [user_id], "from": from, "to": to});
            let path = if find {
                body["duration_minutes"] = json!(minutes);
                "/v1/find-times"
            } else {
                "/v1/freebusy"
            };
            if extra.is_object() {
                body["user_ids"] = extra;
            }
            runtime.block_on(answered(
                stack
                    .queries
                    .request(Method::POST, path, Some(&token))
                    .json(&body),
            ))?;
            Ok(())
        },
    );

    let (url, _gateway) = runtime.block_on(stack.start_realtime());
    let frames = prop_oneof![
        text().prop_map(|t| Message::Text(t.into())),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Message::Binary(b.into())),
        (
            prop::sample::select(vec!["auth", "subscribe", "unsubscribe", "ping"]),
            prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..4),
        )
            .prop_map(|(kind, fields)| {
                let mut frame = Value::Object(fields.into_iter().collect());
                frame["type"] = json!(kind);
                Message::Text(frame.to_string().into())
            }),
    ];
    run("websocket frames", frames, |frame| {
        runtime.block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                .await
                .map_err(|e| TestCaseError::fail(format!("connect: {e}")))?;
            ws.send(Message::Text(
                json!({"type": "auth", "token": token}).to_string().into(),
            ))
            .await
            .map_err(|e| TestCaseError::fail(format!("auth: {e}")))?;
            if ws.send(frame).await.is_err() {
                return Ok(()); // refused while sending: closed by the server
            }
            // Then a ping: the socket answers it, or has been closed with a client-error code.
            ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
                .await
                .ok();
            loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Err(_) => return Err(TestCaseError::fail("no answer within 10 s")),
                    Ok(None) | Ok(Some(Err(_))) => return Ok(()),
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                        prop_assert!(code != 1011, "closed as an internal error");
                        return Ok(());
                    }
                    Ok(Some(Ok(Message::Text(text)))) => {
                        if text.contains("\"pong\"") {
                            return Ok(());
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                }
            }
        })
    });
    let ready = runtime.block_on(stack.projector_health().get("/readyz", None));
    assert_eq!(ready.status(), 200, "the projector is still healthy");
}

platform::on_each_backend!(sync: arbitrary_requests_and_frames_never_get_a_5xx_or_an_internal_error);
