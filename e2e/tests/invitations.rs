//! iTIP invitations (RFC 5546) through the whole system: what a mail notifier attaches for
//! each person, as the meeting goes on, loses an attendee and is cancelled.

use e2e::calendar::{expand_elsewhere, weekly};
use e2e::{Backend, Stack};
use reqwest::Method;
use serde_json::json;

/// The invitation of `user` to `meeting` as `token` reads it: status, `Content-Type` and the
/// unfolded body.
async fn invitation(
    stack: &Stack,
    meeting: &str,
    user: uuid::Uuid,
    token: &str,
    position: &str,
) -> (u16, String, String) {
    let response = stack
        .queries
        .get_at(
            &format!("/v1/meetings/{meeting}/invitations/{user}"),
            Some(token),
            position,
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    // Unfolded (RFC 5545 §3.1), so that a test can look for whole lines.
    let body = response.text().await.unwrap().replace("\r\n ", "");
    (status, content_type, body)
}

fn line<'a>(ics: &'a str, name: &str) -> Vec<&'a str> {
    ics.split("\r\n")
        .filter(|l| l.starts_with(&format!("{name}:")) || l.starts_with(&format!("{name};")))
        .collect()
}

async fn invitations_request_while_invited_and_cancel_when_removed_or_called_off(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (_, alice_token, _) = stack.user("Alice").await;
    let bob = stack.commands.sign_up("Bob").await.unwrap();
    let carol = stack.commands.sign_up("Carol").await.unwrap();
    let (_, stranger, _) = stack.user("Mallory").await;
    let (meeting, _) = weekly(
        &stack,
        &alice_token,
        bob.id,
        "America/New_York",
        "2027-03-01T14:00:00Z",
        "FREQ=WEEKLY;COUNT=4",
    )
    .await;
    let (status, answer) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/attendees"),
            &alice_token,
            json!({"user_id": carol.id}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // One occurrence moved (after New York's change to summer time on 2027-03-14).
    let (status, answer) = stack
        .command(
            Method::PATCH,
            &format!("/v1/meetings/{meeting}/occurrences/2027-03-15T13:00:00Z"),
            &alice_token,
            json!({"starts_at": "2027-03-16T13:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let position = answer["position"].as_str().unwrap().to_owned();

    // Bob's invitation, as the organizer's notifier and as Bob read it: a REQUEST with the
    // series and its moved occurrence, which the independent parser expands.
    for token in [&alice_token, &bob.token] {
        let (status, content_type, ics) =
            invitation(&stack, &meeting, bob.id, token, &position).await;
        assert_eq!(status, 200, "{ics}");
        assert_eq!(content_type, "text/calendar; charset=utf-8; method=REQUEST");
        assert_eq!(line(&ics, "METHOD"), ["METHOD:REQUEST"]);
        // The series' rule, beside the time zone's own yearly rules.
        assert!(
            line(&ics, "RRULE").contains(&"RRULE:FREQ=WEEKLY;COUNT=4"),
            "{ics}"
        );
        assert_eq!(line(&ics, "RECURRENCE-ID").len(), 1);
        assert!(ics.contains(&format!("mailto:{}", bob.email)), "{ics}");
        let starts: Vec<String> =
            expand_elsewhere(&ics, "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z")
                .iter()
                .map(|o| o["start"].as_str().unwrap().to_owned())
                .collect();
        assert_eq!(
            starts,
            [
                "2027-03-01T14:00:00Z",
                "2027-03-08T14:00:00Z",
                "2027-03-16T13:00:00Z",
                "2027-03-22T13:00:00Z"
            ]
        );
    }
    // Another attendee may not read Bob's; a stranger does not see the meeting.
    let (status, _, _) = invitation(&stack, &meeting, bob.id, &carol.token, &position).await;
    assert_eq!(status, 403);
    let (status, _, _) = invitation(&stack, &meeting, bob.id, &stranger, &position).await;
    assert_eq!(status, 404);
    let (_, _, request) = invitation(&stack, &meeting, bob.id, &alice_token, &position).await;
    let sequence = line(&request, "SEQUENCE")[0].to_owned();

    // Carol is taken off: her invitation becomes a CANCEL naming her alone, one sequence up.
    let (status, answer) = stack
        .command(
            Method::DELETE,
            &format!("/v1/meetings/{meeting}/attendees/{}", carol.id),
            &alice_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let position = answer["position"].as_str().unwrap().to_owned();
    let (status, content_type, ics) =
        invitation(&stack, &meeting, carol.id, &alice_token, &position).await;
    assert_eq!(status, 200, "{ics}");
    assert_eq!(content_type, "text/calendar; charset=utf-8; method=CANCEL");
    let attendees = line(&ics, "ATTENDEE");
    assert!(!attendees.is_empty());
    assert!(attendees.iter().all(|a| a.contains(&carol.email)), "{ics}");
    let previous: i64 = sequence["SEQUENCE:".len()..].parse().unwrap();
    assert!(line(&ics, "SEQUENCE")
        .iter()
        .all(|s| *s == format!("SEQUENCE:{}", previous + 1)));
    assert!(line(&ics, "STATUS")
        .iter()
        .all(|s| *s == "STATUS:CANCELLED"));

    // The meeting is called off: Bob's invitation is a CANCEL of the whole series, its
    // sequence raised by the cancellation.
    let (status, answer) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{meeting}/cancel"),
            &alice_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let position = answer["position"].as_str().unwrap().to_owned();
    let (status, content_type, ics) =
        invitation(&stack, &meeting, bob.id, &alice_token, &position).await;
    assert_eq!(status, 200, "{ics}");
    assert_eq!(content_type, "text/calendar; charset=utf-8; method=CANCEL");
    assert!(line(&ics, "STATUS")
        .iter()
        .all(|s| *s == "STATUS:CANCELLED"));
    let now: i64 = line(&ics, "SEQUENCE")[0]["SEQUENCE:".len()..]
        .parse()
        .unwrap();
    assert!(now > previous, "{now} after {previous}");
    assert!(ics.contains(&format!("mailto:{}", bob.email)));
}

platform::on_each_backend!(invitations_request_while_invited_and_cancel_when_removed_or_called_off,);
