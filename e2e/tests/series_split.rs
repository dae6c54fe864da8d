//! "This and following" through the whole system: a series split at one occurrence into two
//! series, one transaction. The agenda, the independent parser's reading of the feed,
//! `/v1/changes` and the websocket all see the same two series afterwards, with the later
//! occurrences' own times, cancellations and answers carried over.

use e2e::calendar::{
    agenda_occurrences, change_occurrences, feed_occurrences, feed_text, items, weekly,
};
use e2e::ws::{authed, next, subscribe};
use e2e::{nats_url, Stack};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn splitting_a_series_agrees_in_agenda_feed_changes_and_websocket() {
    let stack = Stack::start(nats_url(), true).await;
    let (realtime, _gateway) = stack.start_realtime().await;
    let (_, alice_token, _) = stack.user("Alice").await;
    let bob = stack.commands.sign_up("Bob").await.unwrap();
    // Ten Mondays 09:00 Berlin from 2027-03-15 (summer time from 2027-03-28).
    let (series, _) = weekly(
        &stack,
        &alice_token,
        bob.id,
        "Europe/Berlin",
        "2027-03-15T08:00:00Z",
        "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
    )
    .await;
    change_occurrences(
        &stack,
        &alice_token,
        &series,
        &[
            // Before the split point: stays with the old series.
            ("2027-03-22T08:00:00Z", json!({"cancelled": true})),
            // After it: go with the new series.
            (
                "2027-04-19T07:00:00Z",
                json!({"starts_at": "2027-04-20T10:00:00Z"}),
            ),
            ("2027-04-26T07:00:00Z", json!({"cancelled": true})),
        ],
    )
    .await;
    let (status, answer) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{series}/response"),
            &bob.token,
            json!({"response": "accepted"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let before_split = answer["position"].as_str().unwrap().to_owned();

    let mut ws = authed(&realtime, &bob.token).await;
    assert_eq!(
        subscribe(&mut ws, "user:me", Some(&before_split)).await["type"],
        "subscribed"
    );

    // The first occurrence is the whole series; the attendee may not split; 404 for a time
    // the rule does not produce.
    for (occurrence, token, expected) in [
        ("2027-03-15T08:00:00Z", &alice_token, 422),
        ("2027-04-12T07:00:00Z", &bob.token, 403),
        ("2027-04-12T08:00:00Z", &alice_token, 404),
    ] {
        let (status, answer) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{series}/occurrences/{occurrence}/split"),
                token,
                json!({}),
            )
            .await;
        assert_eq!(status, expected, "{occurrence}: {answer}");
    }

    // From 2027-04-12 on: a new title and room.
    let (status, split) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{series}/occurrences/2027-04-12T07:00:00Z/split"),
            &alice_token,
            json!({"title": "Weekly sync, new room", "location": "Room 2"}),
        )
        .await;
    assert_eq!(status, 201, "{split}");
    let continued = split["id"].as_str().unwrap().to_owned();
    assert_ne!(continued, series);
    let last = split["position"].as_str().unwrap().to_owned();

    // Agenda: four occurrences of the old series (one cancelled), six of the new one with
    // the moved and the cancelled occurrence and Bob's answer carried over.
    let (from, to) = ("2027-03-01T00:00:00Z", "2027-06-01T00:00:00Z");
    let (status, agenda) = stack
        .query(
            &format!("/v1/me/agenda?from={from}&to={to}"),
            &bob.token,
            &last,
        )
        .await;
    assert_eq!(status, 200, "{agenda}");
    let of = |id: &str| -> Vec<&Value> {
        items(&agenda)
            .iter()
            .filter(|i| i["meeting_id"] == id)
            .collect()
    };
    let old: Vec<&str> = of(&series)
        .iter()
        .map(|i| i["starts_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        old,
        [
            "2027-03-15T08:00:00Z",
            "2027-03-22T08:00:00Z",
            "2027-03-29T07:00:00Z",
            "2027-04-05T07:00:00Z"
        ],
        "{agenda}"
    );
    assert!(of(&series).iter().all(|i| i["title"] == "Weekly sync"));
    let new: Vec<(&str, &str, &str)> = of(&continued)
        .iter()
        .map(|i| {
            (
                i["starts_at"].as_str().unwrap(),
                i["status"].as_str().unwrap(),
                i["my_response"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        new,
        [
            ("2027-04-12T07:00:00Z", "scheduled", "accepted"),
            ("2027-04-20T10:00:00Z", "scheduled", "accepted"),
            ("2027-04-26T07:00:00Z", "cancelled", "accepted"),
            ("2027-05-03T07:00:00Z", "scheduled", "accepted"),
            ("2027-05-10T07:00:00Z", "scheduled", "accepted"),
            ("2027-05-17T07:00:00Z", "scheduled", "accepted"),
        ],
        "{agenda}"
    );
    assert!(of(&continued)
        .iter()
        .all(|i| i["title"] == "Weekly sync, new room"));

    // The documents: the old series ends before the split, the new one counts what is left.
    let (_, document) = stack
        .query(&format!("/v1/meetings/{series}"), &bob.token, &last)
        .await;
    assert_eq!(
        document["recurrence"]["rrule"],
        "FREQ=WEEKLY;BYDAY=MO;UNTIL=20270412T065959Z"
    );
    assert_eq!(document["occurrences"].as_array().unwrap().len(), 1);
    let (_, document) = stack
        .query(&format!("/v1/meetings/{continued}"), &bob.token, &last)
        .await;
    assert_eq!(
        document["recurrence"]["rrule"],
        "FREQ=WEEKLY;BYDAY=MO;COUNT=6"
    );
    assert_eq!(document["location"], "Room 2");
    assert_eq!(document["organizer"]["display_name"], "Alice");

    // Bob's feed, read by the independent parser, lists exactly the agenda's occurrences.
    let ics = feed_text(&stack, &bob.token, &last).await;
    let mut parsed = feed_occurrences(&ics, from, to, &bob.email);
    let mut listed = agenda_occurrences(&agenda);
    parsed.sort();
    listed.sort();
    assert_eq!(listed.len(), 10, "{agenda}");
    assert_eq!(parsed, listed);

    // /v1/changes and the websocket carry the same facts of the split, in the same order.
    let (_, changes) = stack
        .query(
            &format!("/v1/changes?after={before_split}"),
            &bob.token,
            &last,
        )
        .await;
    let changed: Vec<(String, String)> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["aggregate_id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut live = Vec::new();
    while live.len() < changed.len() {
        let frame = next(&mut ws).await;
        if frame["type"] == "event" {
            live.push((
                frame["event"]["aggregate_id"].as_str().unwrap().to_owned(),
                frame["event"]["type"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(changed, live);
    let expected: Vec<(String, String)> = [
        (&series, "SeriesSplit"),
        (&continued, "MeetingScheduled"),
        (&continued, "OccurrenceRescheduled"),
        (&continued, "OccurrenceCancelled"),
        (&continued, "AttendeeResponded"),
    ]
    .into_iter()
    .map(|(id, kind)| (id.clone(), kind.to_owned()))
    .collect();
    assert_eq!(changed, expected);
}
