//! A user journey through the command API, every result read back through the query API with
//! `X-Min-Position` — no sleeps, no polling in the test.

use e2e::{Backend, Stack};
use reqwest::Method;
use serde_json::json;

async fn every_command_is_visible_through_the_query_api_at_its_position(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (alice, alice_token, position) = stack.user("Alice").await;
    let (bob, bob_token, _) = stack.user("Bob").await;

    let (status, me) = stack.query("/v1/users/me", &alice_token, &position).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["display_name"], "Alice");

    let start = chrono::Utc::now().date_naive().succ_opt().unwrap();
    let (status, scheduled) = stack
        .command(
            Method::POST,
            "/v1/meetings",
            &alice_token,
            json!({
                "title": "Design review",
                "starts_at": format!("{start}T09:00:00Z"),
                "ends_at": format!("{start}T10:00:00Z"),
                "time_zone": "Europe/Berlin",
                "attendees": [{"user_id": bob}],
            }),
        )
        .await;
    assert_eq!(status, 201);
    let meeting = scheduled["id"].as_str().unwrap().to_string();
    let (status, view) = stack
        .query(
            &format!("/v1/meetings/{meeting}"),
            &bob_token,
            scheduled["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["title"], "Design review");
    assert_eq!(view["organizer"]["id"], alice.to_string());
    assert_eq!(view["attendees"][0]["user_id"], bob.to_string());
    assert_eq!(view["attendees"][0]["response"], "needs_action");

    let (status, responded) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/response"),
            &bob_token,
            json!({"response": "accepted"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, agenda) = stack
        .query(
            &format!("/v1/me/agenda?from={start}T00:00:00Z&to={start}T23:59:59Z"),
            &bob_token,
            responded["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(agenda["items"][0]["meeting_id"], meeting);
    assert_eq!(agenda["items"][0]["my_response"], "accepted");

    let (status, rescheduled) = stack
        .command(
            Method::PATCH,
            &format!("/v1/meetings/{meeting}"),
            &alice_token,
            json!({"starts_at": format!("{start}T13:00:00Z"), "ends_at": format!("{start}T14:00:00Z"), "title": "Design review (moved)"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, view) = stack
        .query(
            &format!("/v1/meetings/{meeting}"),
            &alice_token,
            rescheduled["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(view["title"], "Design review (moved)");
    assert_eq!(view["starts_at"], format!("{start}T13:00:00Z"));
    assert_eq!(
        view["attendees"][0]["response"], "needs_action",
        "rescheduling asks again"
    );
    assert_eq!(view["version"], rescheduled["version"]);

    let (status, posted) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/messages"),
            &bob_token,
            json!({"text": "Can we share slides first?"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, messages) = stack
        .query(
            &format!("/v1/meetings/{meeting}/messages"),
            &alice_token,
            posted["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(messages["items"][0]["text"], "Can we share slides first?");

    let (_, busy) = {
        let response = stack
            .queries
            .request(Method::POST, "/v1/freebusy", Some(&alice_token))
            .header("X-Min-Position", posted["position"].as_str().unwrap())
            .json(&json!({"user_ids": [bob], "from": format!("{start}T00:00:00Z"), "to": format!("{start}T23:59:59Z")}))
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(
        busy["users"][bob.to_string()][0]["starts_at"],
        format!("{start}T13:00:00Z")
    );

    let (status, removed) = stack
        .command(
            Method::DELETE,
            &format!("/v1/meetings/{meeting}/attendees/{bob}"),
            &alice_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let removed_at = removed["position"].as_str().unwrap();
    let (status, _) = stack
        .query(&format!("/v1/meetings/{meeting}"), &bob_token, removed_at)
        .await;
    assert_eq!(status, 404, "a removed attendee no longer sees the meeting");

    let (status, cancelled) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/cancel"),
            &alice_token,
            json!({"reason": "done async"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, view) = stack
        .query(
            &format!("/v1/meetings/{meeting}"),
            &alice_token,
            cancelled["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(view["status"], "cancelled");

    // The change feed shows Bob his part of the story, including his removal, and no more.
    let (_, changes) = stack
        .query(
            "/v1/changes",
            &bob_token,
            cancelled["position"].as_str().unwrap(),
        )
        .await;
    let types: Vec<&str> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "UserRegistered",
            "MeetingScheduled",
            "AttendeeResponded",
            "MeetingDetailsUpdated",
            "MeetingRescheduled",
            "ChatMessagePosted",
            "AttendeeRemoved"
        ]
    );
}

platform::on_each_backend!(every_command_is_visible_through_the_query_api_at_its_position,);
