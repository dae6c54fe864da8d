//! One audience rule (issue 11): for random histories of invitations, removals,
//! re-invitations, responses, chat, cancellations and profile changes, every user sees the
//! same events — same set, same order, same payloads — through `/v1/changes`, through a live
//! `user:me` socket opened before the history, and through a `user:me` socket resumed from
//! every position of their history; and a member resuming a meeting channel from the start
//! sees exactly the meeting's part of their changes.
//!
//! One stack for all cases; each case has its own users, so their change streams hold only
//! that case's events.

use std::time::Duration;

use e2e::ws::{authed, next, subscribe, until_pong, Ws};
use e2e::{Backend, Stack};
use platform::store::Position;
use platform::testing::{meeting_body, TestServer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use uuid::Uuid;

const CASES: u32 = 12;
/// Organizer (0) and attendees-to-be (1..).
const USERS: usize = 4;
const MEETINGS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Invite { meeting: usize, user: usize },
    Remove { meeting: usize, user: usize },
    Respond { meeting: usize, user: usize },
    Chat { meeting: usize, user: usize },
    Cancel { meeting: usize },
    Rename { user: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let meeting = 0..MEETINGS;
    let user = 1..USERS;
    let anyone = 0..USERS;
    prop_oneof![
        3 => (meeting.clone(), user.clone()).prop_map(|(meeting, user)| Op::Invite { meeting, user }),
        3 => (meeting.clone(), user.clone()).prop_map(|(meeting, user)| Op::Remove { meeting, user }),
        1 => (meeting.clone(), user).prop_map(|(meeting, user)| Op::Respond { meeting, user }),
        3 => (meeting.clone(), anyone.clone()).prop_map(|(meeting, user)| Op::Chat { meeting, user }),
        1 => meeting.prop_map(|meeting| Op::Cancel { meeting }),
        1 => anyone.prop_map(|user| Op::Rename { user }),
    ]
}

/// What every path must agree on, per event.
fn comparable(position: &Value, event: &Value) -> Value {
    json!({
        "position": position,
        "type": event["type"],
        "aggregate_type": event["aggregate_type"],
        "aggregate_id": event["aggregate_id"],
        "sequence": event["sequence"],
        "recorded_at": event["recorded_at"],
        "data": event["data"],
    })
}

fn from_frame(frame: &Value) -> Value {
    comparable(&frame["position"], &frame["event"])
}

/// Every event frame the server had queued before the answer to a ping.
async fn drain(ws: &mut Ws) -> Result<Vec<Value>, TestCaseError> {
    let mut events = vec![];
    for frame in until_pong(ws).await {
        match frame["type"].as_str() {
            Some("event") => events.push(from_frame(&frame)),
            Some("reset") => return Err(TestCaseError::fail(format!("reset: {frame}"))),
            _ => {}
        }
    }
    Ok(events)
}

struct Case<'a> {
    stack: &'a Stack,
    gateway: &'a str,
}

impl Case<'_> {
    async fn changes(&self, token: &str, head: &str) -> Vec<Value> {
        let mut events = vec![];
        let mut after = String::new();
        loop {
            let path = format!("/v1/changes?limit=500&after={after}");
            let (status, page) = self.stack.query(&path, token, head).await;
            assert_eq!(status, 200, "{page}");
            let batch = page["events"].as_array().unwrap();
            if batch.is_empty() {
                return events;
            }
            events.extend(batch.iter().map(|e| comparable(&e["position"], e)));
            after = page["next"].as_str().unwrap().to_string();
        }
    }

    /// The `channel` events a fresh socket resumed from `since` gets.
    async fn resumed(
        &self,
        token: &str,
        channel: &str,
        since: &str,
    ) -> Result<Vec<Value>, TestCaseError> {
        let mut ws = authed(self.gateway, token).await;
        let subscribed = subscribe(&mut ws, channel, Some(since)).await;
        prop_assert_eq!(&subscribed["type"], "subscribed", "{}", subscribed);
        drain(&mut ws).await
    }

    async fn run(&self, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut users = vec![];
        for i in 0..USERS {
            users.push(self.stack.user(&format!("U{i}")).await);
        }
        let ids: Vec<Uuid> = users.iter().map(|(id, _, _)| *id).collect();
        let token = |i: usize| users[i].1.as_str();
        // Live sockets first: they must see the whole history.
        let mut live = vec![];
        for i in 0..USERS {
            let mut ws = authed(self.gateway, token(i)).await;
            let subscribed = subscribe(&mut ws, "user:me", None).await;
            prop_assert_eq!(&subscribed["type"], "subscribed");
            // Live delivery covers what comes after this (the registration may or may not).
            let from = subscribed["position"].as_str().unwrap().to_string();
            live.push((ws, from));
        }
        let mut meetings = vec![];
        for m in 0..MEETINGS {
            let invited = &ids[1 + m..2 + m];
            let meeting = self
                .stack
                .commands
                .schedule(token(0), &meeting_body(&format!("M{m}"), invited))
                .await
                .unwrap();
            meetings.push(meeting);
        }
        let mut head = String::new();
        for (n, op) in ops.iter().enumerate() {
            let (method, path, by, body) = match *op {
                Op::Invite { meeting, user } => (
                    Method::POST,
                    format!("/v1/meetings/{}/attendees", meetings[meeting]),
                    0,
                    json!({"user_id": ids[user]}),
                ),
                Op::Remove { meeting, user } => (
                    Method::DELETE,
                    format!("/v1/meetings/{}/attendees/{}", meetings[meeting], ids[user]),
                    0,
                    json!(null),
                ),
                Op::Respond { meeting, user } => (
                    Method::POST,
                    format!("/v1/meetings/{}/response", meetings[meeting]),
                    user,
                    json!({"response": "accepted"}),
                ),
                Op::Chat { meeting, user } => (
                    Method::POST,
                    format!("/v1/meetings/{}/messages", meetings[meeting]),
                    user,
                    json!({"text": format!("message {n}")}),
                ),
                Op::Cancel { meeting } => (
                    Method::POST,
                    format!("/v1/meetings/{}/cancel", meetings[meeting]),
                    0,
                    json!({}),
                ),
                Op::Rename { user } => (
                    Method::PATCH,
                    "/v1/users/me".to_string(),
                    user,
                    json!({"display_name": format!("U{user} #{n}")}),
                ),
            };
            // Refusals (removing a non-member, chatting after a removal…) are part of the
            // history too: they must leave no trace anywhere.
            let (status, answer) = self.stack.command(method, &path, token(by), body).await;
            prop_assert!(status < 500, "{:?} answered {}: {}", op, status, answer);
            if let Some(position) = answer["position"].as_str() {
                head = head.max(position.to_string());
            }
        }
        if head.is_empty() {
            head = self.stack.store_head().await.to_string();
        }
        self.stack
            .wait_projected(head.parse().unwrap(), Duration::from_secs(20))
            .await;

        for (i, (ws, live_from)) in live.iter_mut().enumerate() {
            let changes = self.changes(token(i), &head).await;
            let live_part: Vec<Value> = changes
                .iter()
                .filter(|e| e["position"].as_str().unwrap() > live_from.as_str())
                .cloned()
                .collect();
            // Live delivery may trail the projector: read until the last change has come.
            let last = live_part.last().map(|e| e["position"].clone());
            let mut seen = vec![];
            while seen.last().map(|e: &Value| &e["position"]) != last.as_ref() {
                let frame = next(ws).await;
                if frame["type"] == "event" {
                    seen.push(from_frame(&frame));
                }
                prop_assert!(seen.len() <= live_part.len(), "live got more: {:?}", seen);
            }
            seen.extend(drain(ws).await?);
            prop_assert_eq!(
                &seen,
                &live_part,
                "live user:me of U{} differs from /v1/changes",
                i
            );

            let mut positions = vec![Position::START.to_string()];
            positions.extend(
                changes
                    .iter()
                    .map(|e| e["position"].as_str().unwrap().to_string()),
            );
            for since in &positions {
                let resumed = self.resumed(token(i), "user:me", since).await?;
                let expected: Vec<Value> = changes
                    .iter()
                    .filter(|e| e["position"].as_str().unwrap() > since.as_str())
                    .cloned()
                    .collect();
                prop_assert_eq!(&resumed, &expected, "U{} resumed from {}", i, since);
            }

            for meeting in &meetings {
                let channel = format!("meeting:{meeting}");
                let (status, details) = self
                    .stack
                    .query(&format!("/v1/meetings/{meeting}"), token(i), &head)
                    .await;
                if status != 200 {
                    continue; // not a member at the end: the channel is refused
                }
                prop_assert_eq!(&details["id"], &json!(meeting));
                let resumed = self
                    .resumed(token(i), &channel, &Position::START.to_string())
                    .await?;
                let expected: Vec<Value> = changes
                    .iter()
                    .filter(|e| e["aggregate_id"] == json!(meeting))
                    .cloned()
                    .collect();
                prop_assert_eq!(&resumed, &expected, "U{} resumed {}", i, channel);
            }
        }
        Ok(())
    }
}

fn every_door_shows_each_user_the_same_events(backend: Backend) {
    let runtime = Runtime::new().unwrap();
    let (stack, gateway, _server): (Stack, String, TestServer) = runtime.block_on(async {
        let stack = Stack::on(backend).await;
        let (gateway, server) = stack.start_realtime().await;
        (stack, gateway, server)
    });
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let case = Case {
        stack: &stack,
        gateway: &gateway,
    };
    runner
        .run(&proptest::collection::vec(op(), 10..40), |ops| {
            runtime.block_on(case.run(ops))
        })
        .unwrap();
    runtime.block_on(async move {
        drop(_server);
        drop(stack);
    });
}

platform::on_each_backend!(sync: every_door_shows_each_user_the_same_events);
