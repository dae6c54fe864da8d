//! "This and following" through the whole system: a series split at one occurrence into two
//! series, one transaction. The agenda, the independent parser's reading of the feed,
//! `/v1/changes` and the websocket all see the same two series afterwards (the same events,
//! payloads included), with the later occurrences' own times and cancellations, the answers
//! to the series and the answers to single later occurrences carried over.

use e2e::calendar::{
    agenda_occurrences, change_occurrences, feed_occurrences, feed_text, items, weekly,
};
use e2e::ws::{authed, next, subscribe};
use e2e::{Backend, Stack};
use reqwest::Method;
use serde_json::{json, Value};

async fn splitting_a_series_agrees_in_agenda_feed_changes_and_websocket(backend: Backend) {
    let stack = Stack::on(backend).await;
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
    // Bob accepts the series, and answers one occurrence on either side of the split alone.
    let mut before_split = String::new();
    for answer in [
        json!({"response": "accepted"}),
        json!({"response": "tentative", "occurrence": "2027-03-29T07:00:00Z"}),
        json!({"response": "declined", "occurrence": "2027-05-03T07:00:00Z"}),
    ] {
        let (status, answer) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{series}/response"),
                &bob.token,
                answer,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        before_split = answer["position"].as_str().unwrap().to_owned();
    }

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
    let old: Vec<(&str, &str, &str)> = of(&series).into_iter().map(answered).collect();
    let expected_old = [
        ("2027-03-15T08:00:00Z", "scheduled", "accepted"),
        ("2027-03-22T08:00:00Z", "cancelled", "accepted"),
        ("2027-03-29T07:00:00Z", "scheduled", "tentative"),
        ("2027-04-05T07:00:00Z", "scheduled", "accepted"),
    ];
    assert_eq!(old, expected_old, "{agenda}");
    assert!(of(&series).iter().all(|i| i["title"] == "Weekly sync"));
    // Bob's answer to the series carries over, and so does his decline of 2027-05-03 alone.
    let new: Vec<(&str, &str, &str)> = of(&continued).into_iter().map(answered).collect();
    let expected_new = [
        ("2027-04-12T07:00:00Z", "scheduled", "accepted"),
        ("2027-04-20T10:00:00Z", "scheduled", "accepted"),
        ("2027-04-26T07:00:00Z", "cancelled", "accepted"),
        ("2027-05-03T07:00:00Z", "scheduled", "declined"),
        ("2027-05-10T07:00:00Z", "scheduled", "accepted"),
        ("2027-05-17T07:00:00Z", "scheduled", "accepted"),
    ];
    assert_eq!(new, expected_new, "{agenda}");
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
    // The old series keeps the answer to its own occurrence; the later one left with the split.
    assert_eq!(
        document["attendees"][0]["occurrence_responses"],
        json!({"2027-03-29T07:00:00Z": "tentative"}),
        "{document}"
    );
    let (_, document) = stack
        .query(&format!("/v1/meetings/{continued}"), &bob.token, &last)
        .await;
    assert_eq!(
        document["recurrence"]["rrule"],
        "FREQ=WEEKLY;BYDAY=MO;COUNT=6"
    );
    assert_eq!(document["location"], "Room 2");
    assert_eq!(document["organizer"]["display_name"], "Alice");
    assert_eq!(
        document["attendees"][0]["response"], "accepted",
        "{document}"
    );
    assert_eq!(
        document["attendees"][0]["occurrence_responses"],
        json!({"2027-05-03T07:00:00Z": "declined"}),
        "{document}"
    );

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
    let changed: Vec<Value> = changes["events"].as_array().unwrap().clone();
    let mut live: Vec<Value> = Vec::new();
    while live.len() < changed.len() {
        let frame = next(&mut ws).await;
        if frame["type"] == "event" {
            // The websocket names the position beside the event, /v1/changes inside it.
            let mut event = frame["event"].clone();
            event["position"] = frame["position"].clone();
            live.push(event);
        }
    }
    assert_eq!(changed, live);
    let kinds: Vec<(&str, &str)> = changed
        .iter()
        .map(|e| {
            (
                e["aggregate_id"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (series.as_str(), "SeriesSplit"),
            (continued.as_str(), "MeetingScheduled"),
            (continued.as_str(), "OccurrenceRescheduled"),
            (continued.as_str(), "OccurrenceCancelled"),
            (continued.as_str(), "AttendeeResponded"),
            (continued.as_str(), "AttendeeResponded"),
        ]
    );
    // What they carry: the split's point, successor and shortened rule; the new series as
    // the body asked, from the split on, with the same attendee; the later occurrences'
    // changes; Bob's answer to the series (no occurrence), then to the one occurrence.
    let data: Vec<&Value> = changed.iter().map(|e| &e["data"]).collect();
    assert_eq!(
        *data[0],
        json!({
            "occurrence": "2027-04-12T07:00:00Z",
            "continued_as": continued,
            "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=MO;UNTIL=20270412T065959Z", "exdates": []},
        })
    );
    assert_eq!(data[1]["meeting_id"], continued.as_str());
    assert_eq!(data[1]["title"], "Weekly sync, new room");
    assert_eq!(data[1]["location"], "Room 2");
    assert_eq!(data[1]["starts_at"], "2027-04-12T07:00:00Z");
    assert_eq!(data[1]["ends_at"], "2027-04-12T08:00:00Z");
    assert_eq!(data[1]["time_zone"], "Europe/Berlin");
    assert_eq!(
        data[1]["recurrence"]["rrule"],
        "FREQ=WEEKLY;BYDAY=MO;COUNT=6"
    );
    assert_eq!(
        data[1]["attendees"],
        json!([{"user_id": bob.id, "optional": false}])
    );
    assert_eq!(
        *data[2],
        json!({
            "occurrence": "2027-04-19T07:00:00Z",
            "starts_at": "2027-04-20T10:00:00Z",
            "ends_at": "2027-04-20T11:00:00Z",
        })
    );
    assert_eq!(*data[3], json!({"occurrence": "2027-04-26T07:00:00Z"}));
    assert_eq!(
        *data[4],
        json!({"user_id": bob.id, "response": "accepted", "comment": null, "occurrence": null})
    );
    assert_eq!(
        *data[5],
        json!({"user_id": bob.id, "response": "declined", "comment": null, "occurrence": "2027-05-03T07:00:00Z"})
    );
}

/// An agenda item's start, status and the reader's answer.
fn answered(item: &Value) -> (&str, &str, &str) {
    (
        item["starts_at"].as_str().unwrap(),
        item["status"].as_str().unwrap(),
        item["my_response"].as_str().unwrap(),
    )
}

platform::on_each_backend!(splitting_a_series_agrees_in_agenda_feed_changes_and_websocket,);
