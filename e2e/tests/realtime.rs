//! The websocket gateway with real websocket clients against real NATS and PostgreSQL.

use std::time::Duration;

use e2e::ws::{authed, close_code, connect, next, send, subscribe, Ws};
use e2e::{nats_url, Backend, Stack};
use futures::SinkExt;
use platform::store::{encode_event, Commit, EventMetadata, NewEvent, Position};
use platform::testing::meeting_body;
use realtime::connection::Limits;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// The next chat message on `channel` as (position, text), skipping other events.
async fn next_chat(ws: &mut Ws, channel: &str) -> (String, String) {
    loop {
        let event = next_event(ws, channel).await;
        if event["event"]["type"] == "ChatMessagePosted" {
            return (
                event["position"].as_str().unwrap().to_string(),
                event["event"]["data"]["text"].as_str().unwrap().to_string(),
            );
        }
    }
}

/// Waits for the next event frame on `channel` (skipping presence and others).
async fn next_event(ws: &mut Ws, channel: &str) -> Value {
    loop {
        let frame = next(ws).await;
        if frame["type"] == "event" && frame["channel"] == channel {
            return frame;
        }
    }
}

async fn schedule(stack: &Stack, token: &str, attendees: &[Uuid]) -> Uuid {
    stack
        .commands
        .schedule(token, &meeting_body("Standup", attendees))
        .await
        .expect("schedule")
}

/// Appends `count` chat messages straight to the store, in commits of 50 (fast bursts).
async fn burst(stack: &Stack, meeting: Uuid, author: Uuid, count: usize) {
    burst_padded(stack, meeting, author, count, 0).await;
}

/// Like [`burst`], each text padded by `padding` characters (to fill socket buffers).
async fn burst_padded(stack: &Stack, meeting: Uuid, author: Uuid, count: usize, padding: usize) {
    let upcasters = domain::upcasters::upcasters();
    let mut left = count;
    while left > 0 {
        let events = stack.store.load("meeting", meeting).await.unwrap();
        let state = platform::store::decode_events::<domain::Meeting>(events, &upcasters).unwrap();
        let n = left.min(50);
        let events = (0..n)
            .map(|i| {
                let (event_type, event_version, payload) =
                    encode_event(&domain::MeetingEvent::ChatMessagePosted {
                        message_id: Uuid::now_v7(),
                        author_id: author,
                        text: format!("message {}{}", count - left + i, "x".repeat(padding)),
                        at: chrono::Utc::now(),
                    })
                    .unwrap();
                NewEvent {
                    event_type,
                    event_version,
                    payload,
                    metadata: EventMetadata {
                        event_id: Uuid::now_v7(),
                        actor_id: Some(author),
                        request_id: "burst".into(),
                        correlation_id: "burst".into(),
                        causation_id: "burst".into(),
                        traceparent: None,
                    },
                    recorded_at: chrono::Utc::now(),
                }
            })
            .collect();
        stack
            .store
            .commit(Commit {
                aggregate_type: "meeting",
                aggregate_id: meeting,
                expected_sequence: state.version,
                prev_hash: state.last_hash,
                events,
                side_effects: vec![],
                idempotency: None,
            })
            .await
            .unwrap();
        left -= n;
    }
}

async fn authentication_is_required_first_and_in_time(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack
        .start_realtime_with(Limits {
            auth_timeout: Duration::from_millis(300),
            ..Limits::default()
        })
        .await;
    let mut silent = connect(&url).await;
    assert_eq!(close_code(&mut silent).await, 4408);

    let mut forged = connect(&url).await;
    send(&mut forged, json!({"type": "auth", "token": "not-a-token"})).await;
    assert_eq!(close_code(&mut forged).await, 4401);

    let mut wrong_first = connect(&url).await;
    send(
        &mut wrong_first,
        json!({"type": "subscribe", "channel": "user:me"}),
    )
    .await;
    assert_eq!(close_code(&mut wrong_first).await, 4401);

    let (user, token, _) = stack.user("Ann").await;
    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type": "auth", "token": token})).await;
    let ready = next(&mut ws).await;
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["user_id"], user.to_string());
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong");
}

async fn members_get_meeting_events_in_order_and_strangers_are_refused(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (_, ann_token, _) = stack.user("Ann").await;
    let (ben, ben_token, _) = stack.user("Ben").await;
    let (_, eve_token, _) = stack.user("Eve").await;

    let mut ben_ws = authed(&url, &ben_token).await;
    assert_eq!(
        subscribe(&mut ben_ws, "user:me", None).await["type"],
        "subscribed"
    );
    let meeting = schedule(&stack, &ann_token, &[ben]).await;
    // Ben's own registration may still be on its way; the invitation follows it.
    let mut invited = next_event(&mut ben_ws, "user:me").await;
    if invited["event"]["type"] == "UserRegistered" {
        invited = next_event(&mut ben_ws, "user:me").await;
    }
    assert_eq!(invited["event"]["type"], "MeetingScheduled");
    assert_eq!(invited["event"]["aggregate_id"], meeting.to_string());

    let channel = format!("meeting:{meeting}");
    let mut eve_ws = authed(&url, &eve_token).await;
    let refused = subscribe(&mut eve_ws, &channel, None).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden");

    assert_eq!(
        subscribe(&mut ben_ws, &channel, None).await["type"],
        "subscribed"
    );
    let mut ann_ws = authed(&url, &ann_token).await;
    assert_eq!(
        subscribe(&mut ann_ws, &channel, None).await["type"],
        "subscribed"
    );
    for i in 0..20 {
        let (status, _) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{meeting}/messages"),
                &ann_token,
                json!({"text": format!("chat {i}")}),
            )
            .await;
        assert_eq!(status, 201);
    }
    for ws in [&mut ben_ws, &mut ann_ws] {
        let mut previous = String::new();
        for i in 0..20 {
            let event = next_event(ws, &channel).await;
            assert_eq!(event["event"]["data"]["text"], format!("chat {i}"));
            let position = event["position"].as_str().unwrap().to_string();
            assert!(position > previous, "positions increase");
            previous = position;
        }
    }
}

async fn a_removed_attendee_is_cut_off_from_the_meeting_at_once(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (_, ann_token, _) = stack.user("Ann").await;
    let (ben, ben_token, _) = stack.user("Ben").await;
    let meeting = schedule(&stack, &ann_token, &[ben]).await;
    let channel = format!("meeting:{meeting}");
    let mut ben_ws = authed(&url, &ben_token).await;
    assert_eq!(
        subscribe(&mut ben_ws, &channel, None).await["type"],
        "subscribed"
    );
    let mut ann_ws = authed(&url, &ann_token).await;
    assert_eq!(
        subscribe(&mut ann_ws, &channel, None).await["type"],
        "subscribed"
    );

    let (status, _) = stack
        .command(
            Method::DELETE,
            &format!("/v1/meetings/{meeting}/attendees/{ben}"),
            &ann_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    // Ben sees his removal (its audience includes him, as in `/v1/changes`), then is told he
    // lost the channel…
    let mut removal_seen = false;
    let cut = loop {
        let frame = next(&mut ben_ws).await;
        if frame["type"] == "error" {
            break frame;
        }
        removal_seen |= frame["event"]["type"] == "AttendeeRemoved";
    };
    assert!(
        removal_seen,
        "the removal reaches the removed attendee first"
    );
    assert_eq!(cut["channel"], channel);
    assert_eq!(cut["code"], "forbidden");
    // …and receives nothing of what follows, while Ann does.
    stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/messages"),
            &ann_token,
            json!({"text": "after Ben left"}),
        )
        .await;
    assert_eq!(next_chat(&mut ann_ws, &channel).await.1, "after Ben left");
    send(&mut ben_ws, json!({"type": "ping"})).await;
    assert_eq!(
        next(&mut ben_ws).await["type"],
        "pong",
        "nothing was queued before the pong"
    );
    // Re-subscribing is refused now.
    assert_eq!(
        subscribe(&mut ben_ws, &channel, None).await["code"],
        "forbidden"
    );
}

async fn a_resume_in_the_middle_of_a_burst_gets_every_missed_event_exactly_once(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (ann, ann_token, _) = stack.user("Ann").await;
    let meeting = schedule(&stack, &ann_token, &[]).await;
    let channel = format!("meeting:{meeting}");

    let mut ws = authed(&url, &ann_token).await;
    assert_eq!(
        subscribe(&mut ws, &channel, None).await["type"],
        "subscribed"
    );
    // The first 300 events of the burst; read 100 of them, then drop the connection
    // and let 700 more happen while disconnected.
    burst(&stack, meeting, ann, 300).await;
    let mut received: Vec<(String, String)> = vec![];
    for _ in 0..100 {
        received.push(next_chat(&mut ws, &channel).await);
    }
    drop(ws);
    burst(&stack, meeting, ann, 700).await;

    let since = received.last().unwrap().0.clone();
    let mut ws = authed(&url, &ann_token).await;
    let subscribed = subscribe(&mut ws, &channel, Some(&since)).await;
    assert_eq!(subscribed["type"], "subscribed");
    while received.len() < 1000 {
        received.push(next_chat(&mut ws, &channel).await);
    }
    let texts: Vec<String> = received.iter().map(|(_, t)| t.clone()).collect();
    let expected: Vec<String> = (0..300)
        .map(|i| format!("message {i}"))
        .chain((0..700).map(|i| format!("message {i}")))
        .collect();
    assert_eq!(texts, expected, "every event once, in order");
    for pair in received.windows(2) {
        assert!(pair[0].0 < pair[1].0);
    }
    // Nothing more arrives (no duplicates after the switch to live).
    send(&mut ws, json!({"type": "ping"})).await;
    loop {
        let frame = next(&mut ws).await;
        assert_ne!(frame["type"], "event", "a duplicate: {frame}");
        if frame["type"] == "pong" {
            break;
        }
    }
    let _: Position = since.parse().expect("since is a position");
}

async fn a_slow_consumer_is_cut_off_while_a_fast_one_keeps_receiving(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack
        .start_realtime_with(Limits {
            queue: 1024,
            ..Limits::default()
        })
        .await;
    let (ann, ann_token, _) = stack.user("Ann").await;
    let meeting = schedule(&stack, &ann_token, &[]).await;
    let channel = format!("meeting:{meeting}");

    // The slow client has a tiny receive buffer and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = url.trim_start_matches("ws://").trim_end_matches("/v1/ws");
    let stream = socket.connect(address.parse().unwrap()).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(
        url.as_str(),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    send(&mut slow, json!({"type": "auth", "token": ann_token})).await;
    assert_eq!(next(&mut slow).await["type"], "ready");
    assert_eq!(
        subscribe(&mut slow, &channel, None).await["type"],
        "subscribed"
    );

    let mut fast = authed(&url, &ann_token).await;
    assert_eq!(
        subscribe(&mut fast, &channel, None).await["type"],
        "subscribed"
    );
    let reader = tokio::spawn(async move {
        let mut count = 0;
        while count < 6000 {
            let frame = next(&mut fast).await;
            if frame["event"]["type"] == "ChatMessagePosted" {
                count += 1;
            }
        }
        count
    });
    // 6,000 events of 2 KiB: far more than the slow client's socket buffers and queue hold.
    burst_padded(&stack, meeting, ann, 6000, 2048).await;
    assert_eq!(
        reader.await.unwrap(),
        6000,
        "the fast client got everything"
    );
    assert_eq!(close_code(&mut slow).await, 4429);
}

async fn bad_frames_get_errors_and_oversized_frames_close_the_connection(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (_, token, _) = stack.user("Ann").await;
    let mut ws = authed(&url, &token).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let error = next(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "bad_request");
    send(
        &mut ws,
        json!({"type": "subscribe", "channel": "meeting:nope"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "bad_request");
    send(
        &mut ws,
        json!({"type": "subscribe", "channel": "user:me", "since": "xyz"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "bad_request");
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await["code"], "bad_request");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong", "still usable");

    let huge = "x".repeat(70 * 1024);
    ws.send(Message::Text(huge.into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test]
async fn presence_spans_instances_and_a_killed_instance_leaves() {
    let stack = Stack::start(nats_url(), true).await;
    let limits = Limits {
        presence_heartbeat: Duration::from_millis(200),
        presence_expiry: Duration::from_millis(800),
        ..Limits::default()
    };
    let (first_url, first) = stack.start_realtime_with(limits.clone()).await;
    let (second_url, _second) = stack.start_realtime_with(limits).await;
    let (ann, ann_token, _) = stack.user("Ann").await;
    let (ben, ben_token, _) = stack.user("Ben").await;
    let meeting = schedule(&stack, &ann_token, &[ben]).await;
    let channel = format!("meeting:{meeting}");

    let mut ann_ws = authed(&first_url, &ann_token).await;
    assert_eq!(
        subscribe(&mut ann_ws, &channel, None).await["type"],
        "subscribed"
    );
    let presence = next(&mut ann_ws).await;
    assert_eq!(presence["type"], "presence");
    assert_eq!(presence["users"], json!([ann.to_string()]));

    let mut ben_ws = authed(&second_url, &ben_token).await;
    assert_eq!(
        subscribe(&mut ben_ws, &channel, None).await["type"],
        "subscribed"
    );
    // Ben sees Ann (from the other instance) in the list or as a join right after.
    let mut present: std::collections::HashSet<String> = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !present.contains(&ann.to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ann never appeared to Ben"
        );
        let frame = next(&mut ben_ws).await;
        match frame["type"].as_str().unwrap() {
            "presence" => {
                for user in frame["users"].as_array().unwrap() {
                    present.insert(user.as_str().unwrap().to_string());
                }
            }
            "join" => {
                present.insert(frame["user_id"].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }
    // Ann learns that Ben joined on the other instance.
    loop {
        let frame = next(&mut ann_ws).await;
        if frame["type"] == "join" && frame["user_id"] == ben.to_string() {
            break;
        }
    }

    // The first instance dies without a word; its presence expires on the second.
    first.kill();
    loop {
        let frame = next(&mut ben_ws).await;
        if frame["type"] == "leave" && frame["user_id"] == ann.to_string() {
            break;
        }
    }
}

async fn a_user_channel_resume_replays_the_agenda_changes_missed(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (_, ann_token, _) = stack.user("Ann").await;
    let (ben, ben_token, _) = stack.user("Ben").await;

    let mut ws = authed(&url, &ben_token).await;
    assert_eq!(
        subscribe(&mut ws, "user:me", None).await["type"],
        "subscribed"
    );
    let first = schedule(&stack, &ann_token, &[ben]).await;
    let seen = loop {
        let event = next_event(&mut ws, "user:me").await;
        if event["event"]["aggregate_id"] == first.to_string() {
            break event;
        }
    };
    let since = seen["position"].as_str().unwrap().to_string();
    drop(ws);

    // While Ben is away: a second invitation and a reschedule of the first meeting.
    let second = schedule(&stack, &ann_token, &[ben]).await;
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    let (status, _) = stack
        .command(
            Method::PATCH,
            &format!("/v1/meetings/{first}"),
            &ann_token,
            json!({"starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 200);

    let mut ws = authed(&url, &ben_token).await;
    assert_eq!(
        subscribe(&mut ws, "user:me", Some(&since)).await["type"],
        "subscribed"
    );
    let a = next_event(&mut ws, "user:me").await;
    let b = next_event(&mut ws, "user:me").await;
    assert_eq!(a["event"]["type"], "MeetingScheduled");
    assert_eq!(a["event"]["aggregate_id"], second.to_string());
    assert_eq!(b["event"]["type"], "MeetingRescheduled");
    assert_eq!(b["event"]["aggregate_id"], first.to_string());
    assert!(a["position"].as_str().unwrap() > since.as_str());
    send(&mut ws, json!({"type": "ping"})).await;
    loop {
        let frame = next(&mut ws).await;
        assert_ne!(frame["type"], "event", "a duplicate: {frame}");
        if frame["type"] == "pong" {
            break;
        }
    }
}

async fn silent_clients_are_closed_as_idle_and_flooding_clients_as_too_fast(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (url, _gateway) = stack
        .start_realtime_with(Limits {
            ping_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(400),
            ..Limits::default()
        })
        .await;
    let (_, token, _) = stack.user("Ann").await;

    // A client that stops reading never answers the server's pings.
    let mut quiet = authed(&url, &token).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(close_code(&mut quiet).await, 1001);

    let mut flood = authed(&url, &token).await;
    for _ in 0..300 {
        if flood
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut flood).await, 4429);
}

#[tokio::test]
async fn connected_clients_miss_nothing_across_a_nats_restart() {
    let mut nats = e2e::OwnNats::start().await;
    let stack = Stack::start(nats.url(), false).await;
    let (url, _gateway) = stack.start_realtime().await;
    let (ann, ann_token, _) = stack.user("Ann").await;
    let meeting = schedule(&stack, &ann_token, &[]).await;
    let channel = format!("meeting:{meeting}");
    let mut ws = authed(&url, &ann_token).await;
    assert_eq!(
        subscribe(&mut ws, &channel, None).await["type"],
        "subscribed"
    );

    burst(&stack, meeting, ann, 50).await;
    let mut received = vec![];
    while received.len() < 25 {
        received.push(next_chat(&mut ws, &channel).await);
    }
    nats.restart().await;
    burst(&stack, meeting, ann, 50).await;
    while received.len() < 100 {
        received.push(next_chat(&mut ws, &channel).await);
    }
    let texts: Vec<String> = received.iter().map(|(_, t)| t.clone()).collect();
    let expected: Vec<String> = (0..50)
        .chain(0..50)
        .map(|i| format!("message {i}"))
        .collect();
    assert_eq!(
        texts, expected,
        "every event once, in order, across the restart"
    );
}

platform::on_each_backend!(
    authentication_is_required_first_and_in_time,
    members_get_meeting_events_in_order_and_strangers_are_refused,
    a_removed_attendee_is_cut_off_from_the_meeting_at_once,
    a_resume_in_the_middle_of_a_burst_gets_every_missed_event_exactly_once,
    a_slow_consumer_is_cut_off_while_a_fast_one_keeps_receiving,
    bad_frames_get_errors_and_oversized_frames_close_the_connection,
    a_user_channel_resume_replays_the_agenda_changes_missed,
    silent_clients_are_closed_as_idle_and_flooding_clients_as_too_fast,
);
