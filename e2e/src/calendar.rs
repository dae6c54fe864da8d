//! Calendar helpers shared by the end-to-end tests: series set-up (a rich calendar among
//! them), and the agenda and an iCalendar document reduced to the same comparable
//! occurrences.

use chrono::{DateTime, Utc};
use platform::testing::TestUser;
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

/// The span, `[from, to)`, of every occurrence of [`rich_calendar`] (the New York series goes
/// on: inside it, eleven of its Wednesdays).
pub const RICH_SPAN: (&str, &str) = ("2027-03-01T00:00:00Z", "2027-06-01T00:00:00Z");

/// What [`rich_calendar`] scheduled.
pub struct RichCalendar {
    /// Organizes every meeting.
    pub organizer: TestUser,
    /// Seven: "Zoë Ünal, «Bob»" first, then six guests (those of even number optional).
    pub attendees: Vec<TestUser>,
    /// The Berlin series, the New York series, the single Sydney meeting.
    pub meetings: Vec<String>,
    /// The position of the last change.
    pub position: String,
}

/// A calendar with all a feed has to carry, organized by Alice for seven attendees:
/// - a Berlin series, ten Mondays 09:00 from 2027-03-15 (across the spring change), one of them
///   excluded (2027-05-03), one moved (2027-03-29, to Tuesday 14:00 and 90 minutes), one
///   cancelled (2027-04-05) and one declined by Bob alone (2027-04-12);
/// - a New York series, Wednesdays 10:00 from 2027-03-10, with an excluded date;
/// - a single Sydney meeting for Bob;
///
/// with long non-ASCII titles, descriptions and locations (Greek, Japanese, «Zoë») that a
/// file must fold.
pub async fn rich_calendar(stack: &Stack) -> RichCalendar {
    let organizer = stack.commands.sign_up("Alice").await.unwrap();
    let mut attendees = vec![stack.commands.sign_up("Zoë Ünal, «Bob»").await.unwrap()];
    for i in 0..6 {
        let guest = format!("Guest {i}");
        attendees.push(stack.commands.sign_up(&guest).await.unwrap());
    }
    let crowd: Vec<Value> = attendees
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"user_id": a.id, "optional": i > 0 && i % 2 == 1}))
        .collect();
    let location = "Salle Zoë, 3ᵉ étage — 会議室「富士」, Ωμέγα-Gebäude, Straße der Einheit 12";
    let mut bodies: Vec<Value> = [
        (
            "Europe/Berlin",
            "2027-03-15T08:00:00Z",
            "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
            "2027-05-03T07:00:00Z",
        ),
        (
            "America/New_York",
            "2027-03-10T14:00:00Z",
            "FREQ=WEEKLY;BYDAY=WE",
            "2027-03-17T13:00:00Z",
        ),
    ]
    .into_iter()
    .map(|(zone, first, rule, exdate)| {
        let start = utc(first);
        json!({
            "title": format!("Série hebdomadaire — {zone} — Ωμέγα 日本語 «Zoë» Ünïcödé"),
            "description": "Ordre du jour: «revue», ✓ décisions; suivi, notes\nligne deux — \
                            Ωμέγα αβγ; 日本語の議題, «Zoë» \\ fin",
            "starts_at": start,
            "ends_at": start + chrono::Duration::minutes(45),
            "time_zone": zone,
            "location": location,
            "attendees": crowd,
            "recurrence": {"rrule": rule, "exdates": [exdate]},
        })
    })
    .collect();
    bodies.push(json!({
        "title": "Ünïcödé ".repeat(20).trim(),
        "description": "Ωμέγα 日本語 ".repeat(40),
        "starts_at": "2027-04-01T15:00:00Z",
        "ends_at": "2027-04-01T16:30:00Z",
        "time_zone": "Australia/Sydney",
        "location": location,
        "attendees": [{"user_id": attendees[0].id}],
    }));
    let mut meetings = Vec::new();
    for body in bodies {
        let (status, answer) = stack
            .command(Method::POST, "/v1/meetings", &organizer.token, body)
            .await;
        assert_eq!(status, 201, "{answer}");
        meetings.push(answer["id"].as_str().unwrap().to_owned());
    }
    change_occurrences(
        stack,
        &organizer.token,
        &meetings[0],
        &[
            (
                "2027-03-29T07:00:00Z",
                json!({"starts_at": "2027-03-30T12:00:00Z", "ends_at": "2027-03-30T13:30:00Z"}),
            ),
            ("2027-04-05T07:00:00Z", json!({"cancelled": true})),
        ],
    )
    .await;
    let (status, answer) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{}/response", meetings[0]),
            &attendees[0].token,
            json!({"response": "declined", "occurrence": "2027-04-12T07:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    RichCalendar {
        organizer,
        attendees,
        meetings,
        position: answer["position"].as_str().unwrap().to_owned(),
    }
}
