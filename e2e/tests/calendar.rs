//! Recurring series through the whole system: commands → event store → NATS → projector →
//! query API and websocket. Daylight-saving changes in three zones, and series edits (one
//! occurrence moved, one cancelled, one answered) seen the same way by the agenda, free/busy,
//! the feed, `/v1/changes` and the websocket.

use std::collections::BTreeSet;

use chrono::{Duration, Timelike};
use e2e::calendar::{
    agenda_occurrences, change_occurrences, expand_elsewhere, feed_occurrences, feed_text, items,
    rich_calendar, utc, weekly, RICH_SPAN,
};
use e2e::ws::{authed, next, subscribe};
use e2e::{Backend, Stack};
use reqwest::Method;
use serde_json::{json, Value};

async fn weekly_series_keep_their_local_time_across_both_dst_changes_in_three_zones(
    backend: Backend,
) {
    let stack = Stack::on(backend).await;
    let (_, alice_token, _) = stack.user("Alice").await;
    // zone, first Monday 09:00 local (in UTC), the UTC hours 09:00 local takes over the year,
    // the days its clocks change in 2027
    for (zone, first, hours, changes) in [
        (
            "Europe/Berlin",
            "2027-01-04T08:00:00Z",
            [7, 8],
            ["2027-03-28", "2027-10-31"],
        ),
        (
            "America/New_York",
            "2027-01-04T14:00:00Z",
            [13, 14],
            ["2027-03-14", "2027-11-07"],
        ),
        (
            "Australia/Sydney",
            "2027-01-03T22:00:00Z",
            [22, 23],
            ["2027-04-04", "2027-10-03"],
        ),
    ] {
        // An attendee of this series alone, so free/busy shows only it.
        let (bob, bob_token, _) = stack.user("Bob").await;
        let (meeting, position) =
            weekly(&stack, &alice_token, bob, zone, first, "FREQ=WEEKLY").await;
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let (status, agenda) = stack
            .query(
                "/v1/me/agenda?from=2027-01-01T00:00:00Z&to=2028-01-01T00:00:00Z",
                &bob_token,
                &position,
            )
            .await;
        assert_eq!(status, 200, "{agenda}");
        let occurrences: Vec<&Value> = items(&agenda)
            .iter()
            .filter(|i| i["meeting_id"] == meeting.as_str())
            .collect();
        assert_eq!(occurrences.len(), 52, "{zone}");
        let mut utc_hours = BTreeSet::new();
        for item in &occurrences {
            let start = utc(item["starts_at"].as_str().unwrap());
            let local = start.with_timezone(&tz);
            assert_eq!((local.hour(), local.minute()), (9, 0), "{zone}: {item}");
            assert_eq!(item["occurrence"], item["starts_at"], "{zone}: not moved");
            utc_hours.insert(start.hour());
        }
        assert_eq!(
            utc_hours.into_iter().collect::<Vec<_>>(),
            hours,
            "{zone}: both offsets of the year are crossed"
        );

        // Free/busy says the same for the three weeks either side of each change: the
        // agenda's occurrences there, each 09:00–10:00 local, on both sides of the change.
        for change in changes {
            let day: chrono::NaiveDate = change.parse().unwrap();
            let from = day.and_time(chrono::NaiveTime::MIN).and_utc() - Duration::days(21);
            let to = from + Duration::days(42);
            let (status, busy) = stack
                .query_post(
                    "/v1/freebusy",
                    &alice_token,
                    &position,
                    json!({"user_ids": [bob], "from": from, "to": to}),
                )
                .await;
            assert_eq!(status, 200, "{busy}");
            let intervals = busy["users"][bob.to_string()].as_array().unwrap();
            let mut window_hours = BTreeSet::new();
            let mut starts = Vec::new();
            for interval in intervals {
                let start = utc(interval["starts_at"].as_str().unwrap());
                let end = utc(interval["ends_at"].as_str().unwrap());
                let local = start.with_timezone(&tz);
                assert_eq!((local.hour(), local.minute()), (9, 0), "{zone}: {interval}");
                assert_eq!(end - start, Duration::hours(1), "{zone}: {interval}");
                window_hours.insert(start.hour());
                starts.push(start);
            }
            let listed: Vec<_> = occurrences
                .iter()
                .map(|i| utc(i["starts_at"].as_str().unwrap()))
                .filter(|start| (from..to).contains(start))
                .collect();
            assert_eq!(starts.len(), 6, "{zone} around {change}: {busy}");
            assert_eq!(starts, listed, "{zone} around {change}");
            assert_eq!(
                window_hours.into_iter().collect::<Vec<_>>(),
                hours,
                "{zone} around {change}: both offsets"
            );
        }

        // The .ics, expanded by the independent parser, has the agenda's 52 starts.
        let ics = stack
            .queries
            .get_at(
                &format!("/v1/meetings/{meeting}.ics"),
                Some(&bob_token),
                &position,
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let parsed: Vec<String> =
            expand_elsewhere(&ics, "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z")
                .iter()
                .map(|o| o["start"].as_str().unwrap().to_owned())
                .collect();
        let listed: Vec<String> = occurrences
            .iter()
            .map(|i| i["starts_at"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(parsed, listed, "{zone}");
    }
}

async fn series_edits_agree_in_agenda_freebusy_feed_changes_and_websocket(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (realtime, _gateway) = stack.start_realtime().await;
    let (_, alice_token, _) = stack.user("Alice").await;
    let bob_user = stack.commands.sign_up("Bob").await.unwrap();
    let (bob, bob_token) = (bob_user.id, bob_user.token.clone());
    // Mondays 09:00 Berlin from 2027-03-15; Berlin moves to summer time on 2027-03-28.
    let (meeting, _) = weekly(
        &stack,
        &alice_token,
        bob,
        "Europe/Berlin",
        "2027-03-15T08:00:00Z",
        "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
    )
    .await;
    let mut ws = authed(&realtime, &bob_token).await;
    assert_eq!(
        subscribe(&mut ws, &format!("meeting:{meeting}"), None).await["type"],
        "subscribed"
    );

    let moved = "2027-03-29T07:00:00Z"; // summer time already: 09:00 is 07:00 UTC
    let cancelled = "2027-04-05T07:00:00Z";
    let declined = "2027-04-12T07:00:00Z";
    change_occurrences(
        &stack,
        &alice_token,
        &meeting,
        &[
            (moved, json!({"starts_at": "2027-03-30T12:00:00Z"})),
            (cancelled, json!({"cancelled": true})),
        ],
    )
    .await;
    let (status, body) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/response"),
            &bob_token,
            json!({"response": "declined", "occurrence": declined}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let last = body["position"].as_str().unwrap().to_owned();
    // Not an occurrence: 404; the attendee cannot move one: 403.
    let (status, _) = stack
        .command(
            Method::PATCH,
            &format!("/v1/meetings/{meeting}/occurrences/2027-03-30T07:00:00Z"),
            &alice_token,
            json!({"cancelled": true}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = stack
        .command(
            Method::PATCH,
            &format!("/v1/meetings/{meeting}/occurrences/{moved}"),
            &bob_token,
            json!({"cancelled": true}),
        )
        .await;
    assert_eq!(status, 403);

    // Agenda: ten occurrences, the moved one where it is now (named by its original start).
    let (status, agenda) = stack
        .query(
            "/v1/me/agenda?from=2027-03-01T00:00:00Z&to=2027-06-01T00:00:00Z",
            &bob_token,
            &last,
        )
        .await;
    assert_eq!(status, 200, "{agenda}");
    let items = items(&agenda);
    assert_eq!(items.len(), 10, "{agenda}");
    let by_occurrence = |occurrence: &str| {
        items
            .iter()
            .find(|i| i["occurrence"] == occurrence)
            .unwrap_or_else(|| panic!("{occurrence} in {agenda}"))
    };
    assert_eq!(by_occurrence(moved)["starts_at"], "2027-03-30T12:00:00Z");
    assert_eq!(by_occurrence(moved)["ends_at"], "2027-03-30T13:00:00Z");
    assert_eq!(by_occurrence(cancelled)["status"], "cancelled");
    assert_eq!(by_occurrence(declined)["my_response"], "declined");
    assert_eq!(
        by_occurrence("2027-04-19T07:00:00Z")["my_response"],
        "needs_action"
    );
    assert!(items.iter().all(|i| i["starts_at"] != moved));

    // Bob's feed, expanded by the independent parser, says what the agenda says.
    let ics = feed_text(&stack, &bob_token, &last).await;
    let mut parsed = feed_occurrences(
        &ics,
        "2027-03-01T00:00:00Z",
        "2027-06-01T00:00:00Z",
        &bob_user.email,
    );
    let mut listed = agenda_occurrences(&agenda);
    parsed.sort();
    listed.sort();
    assert_eq!(parsed, listed);

    // Free/busy: the moved one at its new time, neither the cancelled nor the declined one.
    let (status, busy) = stack
        .query_post(
            "/v1/freebusy",
            &alice_token,
            &last,
            json!({"user_ids": [bob], "from": "2027-03-01T00:00:00Z", "to": "2027-05-30T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{busy}");
    let starts: Vec<&str> = busy["users"][bob.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["starts_at"].as_str().unwrap())
        .collect();
    assert_eq!(starts.len(), 8, "{busy}");
    assert!(starts.contains(&"2027-03-30T12:00:00Z"));
    for gone in [moved, cancelled, declined] {
        assert!(!starts.contains(&gone), "{gone} in {busy}");
    }

    // The meeting document lists the changed occurrences and Bob's answer to one.
    let (_, document) = stack
        .query(&format!("/v1/meetings/{meeting}"), &bob_token, &last)
        .await;
    assert_eq!(
        document["recurrence"]["rrule"],
        "FREQ=WEEKLY;BYDAY=MO;COUNT=10"
    );
    assert_eq!(document["occurrences"].as_array().unwrap().len(), 2);
    assert_eq!(
        document["attendees"][0]["occurrence_responses"][declined],
        "declined"
    );

    // /v1/changes and the websocket carry the same three facts, in the same order.
    let (_, changes) = stack.query("/v1/changes", &bob_token, &last).await;
    let changed: Vec<(String, Value)> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["aggregate_id"] == meeting.as_str())
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["data"].clone()))
        .skip(1)
        .collect();
    let mut live = Vec::new();
    while live.len() < 3 {
        let frame = next(&mut ws).await;
        // The scheduling itself may arrive live too, when the gateway saw it after the
        // subscription: only what followed it is compared.
        if frame["type"] == "event" && frame["event"]["sequence"] != 1 {
            live.push((
                frame["event"]["type"].as_str().unwrap().to_owned(),
                frame["event"]["data"].clone(),
            ));
        }
    }
    assert_eq!(changed, live);
    let kinds: Vec<&str> = live.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "OccurrenceRescheduled",
            "OccurrenceCancelled",
            "AttendeeResponded"
        ]
    );
}

async fn the_feed_expands_in_an_independent_parser_to_the_agenda_and_its_address_can_be_revoked(
    backend: Backend,
) {
    let stack = Stack::on(backend).await;
    // Seven attendees of a Berlin series across the spring change (one occurrence moved, one
    // cancelled, one excluded, one declined by Bob), a New York series with an excluded date
    // and a single meeting, with long non-ASCII text that must be folded.
    let rich = rich_calendar(&stack).await;
    let (alice, bob) = (&rich.organizer, &rich.attendees[0]);
    let berlin = &rich.meetings[0];
    let last = rich.position.clone();

    let (from, to) = RICH_SPAN;
    let (_, agenda) = stack
        .query(
            &format!("/v1/me/agenda?from={from}&to={to}"),
            &bob.token,
            &last,
        )
        .await;
    let (status, feed) = stack.query("/v1/calendar/feed", &bob.token, &last).await;
    assert_eq!(status, 200, "{feed}");
    let url = feed["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&stack.queries.base), "{url}");
    let response = stack.queries.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let etag = response.headers()["etag"].clone();
    let ics = response.text().await.unwrap();

    // RFC 5545 framing: CRLF only, at most 75 octets a line.
    assert!(!ics.replace("\r\n", "").contains('\n'), "bare LF");
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line}", line.len());
    }
    assert!(ics.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin"));
    assert!(ics.contains("TZID:America/New_York") && ics.contains("TZID:Australia/Sydney"));

    // The independent parser finds what the agenda lists: same meetings, times, status,
    // and Bob's answer to each occurrence.
    let mut parsed = feed_occurrences(&ics, from, to, &bob.email);
    let mut listed = agenda_occurrences(&agenda);
    parsed.sort();
    listed.sort();
    // Nine Berlin Mondays (ten, one excluded), eleven New York Wednesdays (twelve, one
    // excluded), one single meeting.
    assert_eq!(listed.len(), 9 + 11 + 1, "{agenda}");
    assert_eq!(parsed, listed);

    // Unchanged: 304. One meeting alone: its organizer reads it, a stranger does not.
    let again = stack
        .queries
        .client
        .get(&url)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let (_, stranger, _) = stack.user("Mallory").await;
    for (token, expected) in [(&alice.token, 200), (&stranger, 404)] {
        let response = stack
            .queries
            .get_at(&format!("/v1/meetings/{berlin}.ics"), Some(token), &last)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }

    // Rotation: the old address is gone at once, the new one works, without logging in.
    let rotated = stack
        .queries
        .post_json("/v1/calendar/feed/rotate", Some(&bob.token), json!({}))
        .await;
    let new_url = rotated["url"].as_str().unwrap();
    assert_ne!(new_url, url);
    let old = stack.queries.client.get(&url).send().await.unwrap();
    assert_eq!(old.status(), 404);
    let new = stack.queries.client.get(new_url).send().await.unwrap();
    assert_eq!(new.status(), 200);
    let unknown = stack
        .queries
        .client
        .get(format!(
            "{}/v1/calendar/feeds/not-a-token.ics",
            stack.queries.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

platform::on_each_backend!(
    weekly_series_keep_their_local_time_across_both_dst_changes_in_three_zones,
    series_edits_agree_in_agenda_freebusy_feed_changes_and_websocket,
    the_feed_expands_in_an_independent_parser_to_the_agenda_and_its_address_can_be_revoked,
);
