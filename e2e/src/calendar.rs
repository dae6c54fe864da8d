//! Calendar helpers shared by the end-to-end tests: series set-up, and the agenda and an
//! iCalendar document reduced to the same comparable occurrences.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::Stack;

/// One occurrence as both the agenda and a parsed feed give it: (meeting id, start, end,
/// `CONFIRMED`/`CANCELLED`, the reader's `PARTSTAT`).
pub type Seen = (String, String, String, String, String);

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn items(agenda: &Value) -> &Vec<Value> {
    agenda["items"].as_array().expect("agenda items")
}

/// Schedules a weekly series (`first` is its first start, one hour long) organized by
/// `token`'s user with `attendee`; its id and the position of the schedule.
pub async fn weekly(
    stack: &Stack,
    token: &str,
    attendee: uuid::Uuid,
    zone: &str,
    first: &str,
    rule: &str,
) -> (String, String) {
    let start = utc(first);
    let (status, body) = stack
        .command(
            Method::POST,
            "/v1/meetings",
            token,
            json!({
                "title": "Weekly sync",
                "starts_at": start,
                "ends_at": start + chrono::Duration::hours(1),
                "time_zone": zone,
                "attendees": [{"user_id": attendee}],
                "recurrence": {"rrule": rule},
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["position"].as_str().unwrap().to_owned(),
    )
}

/// The occurrences an independent (Python) parser finds in `ics` inside `[from, to)`.
pub fn expand_elsewhere(ics: &str, from: &str, to: &str) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("meetings-ics-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("calendar.ics");
    std::fs::write(&file, ics).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ics/expand.py");
    let output = std::process::Command::new("python3")
        .args([script, file.to_str().unwrap(), from, to])
        .output()
        .expect("python3 runs (.ci/run installs icalendar and recurring-ical-events)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the Python parser refused the calendar (pip install icalendar==6.3.1 \
         recurring-ical-events==3.8.0): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The occurrences of `ics` inside `[from, to)` as the Python parser expands them, with the
/// answer of the attendee `email`.
pub fn feed_occurrences(ics: &str, from: &str, to: &str, email: &str) -> Vec<Seen> {
    expand_elsewhere(ics, from, to)
        .into_iter()
        .map(|o| {
            let partstat = o["partstat"][format!("mailto:{email}")]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (
                o["uid"]
                    .as_str()
                    .unwrap()
                    .split('@')
                    .next()
                    .unwrap()
                    .to_owned(),
                o["start"].as_str().unwrap().to_owned(),
                o["end"].as_str().unwrap().to_owned(),
                o["status"].as_str().unwrap().to_owned(),
                partstat,
            )
        })
        .collect()
}

/// The agenda's items in the same form.
pub fn agenda_occurrences(agenda: &Value) -> Vec<Seen> {
    items(agenda)
        .iter()
        .map(|i| {
            (
                i["meeting_id"].as_str().unwrap().to_owned(),
                i["starts_at"].as_str().unwrap().to_owned(),
                i["ends_at"].as_str().unwrap().to_owned(),
                if i["status"] == "cancelled" {
                    "CANCELLED"
                } else {
                    "CONFIRMED"
                }
                .to_owned(),
                i["my_response"]
                    .as_str()
                    .unwrap()
                    .to_uppercase()
                    .replace('_', "-"),
            )
        })
        .collect()
}

/// The feed of `token`'s user as a calendar app reads it (by its secret address, without
/// logging in), once the read models are at `position`.
pub async fn feed_text(stack: &Stack, token: &str, position: &str) -> String {
    let (status, feed) = stack.query("/v1/calendar/feed", token, position).await;
    assert_eq!(status, 200, "{feed}");
    stack
        .queries
        .client
        .get(feed["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Applies `PATCH /v1/meetings/{meeting}/occurrences/{occurrence}` with each body, as
/// `token`'s user; the position of the last one.
pub async fn change_occurrences(
    stack: &Stack,
    token: &str,
    meeting: &str,
    changes: &[(&str, Value)],
) -> String {
    let mut position = String::new();
    for (occurrence, body) in changes {
        let (status, answer) = stack
            .command(
                Method::PATCH,
                &format!("/v1/meetings/{meeting}/occurrences/{occurrence}"),
                token,
                body.clone(),
            )
            .await;
        assert_eq!(status, 200, "{occurrence}: {answer}");
        position = answer["position"].as_str().unwrap().to_owned();
    }
    position
}
