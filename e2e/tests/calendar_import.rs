//! iCalendar in, through the whole system: a feed written by this product imports into
//! another user's calendar as the same meetings (and again changes nothing), an edited file
//! updates them, and broken files are refused component by component, never half a meeting.

use e2e::calendar::{
    change_occurrences, feed_occurrences, feed_text, items, rich_calendar, utc, Seen, RICH_SPAN,
};
use e2e::{Backend, Stack};
use platform::testing::TestUser;
use reqwest::Method;
use serde_json::{json, Value};

/// Posts `ics` to the import as `token`'s user: (status, body).
async fn import(stack: &Stack, token: &str, ics: &str) -> (u16, Value) {
    let response = stack
        .commands
        .request(Method::POST, "/v1/calendar/import", Some(token))
        .header("content-type", "text/calendar; charset=utf-8")
        .body(ics.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What must survive a round trip of a meeting document (ids, organizer, versions and
/// times of change aside).
fn essence(document: &Value) -> Value {
    let attendees: Vec<Value> = document["attendees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json!([a["user_id"], a["optional"]]))
        .collect();
    json!({
        "title": document["title"],
        "description": document["description"],
        "location": document["location"],
        "starts_at": document["starts_at"],
        "ends_at": document["ends_at"],
        "time_zone": document["time_zone"],
        "status": document["status"],
        "recurrence": document["recurrence"],
        "occurrences": document["occurrences"],
        "attendees": attendees,
    })
}

/// Asserts that each of `originals` (read as their organizer) has a copy among `created`
/// (read as its importer, who organizes it) with the same [`essence`], found by title;
/// returns the copies' documents.
async fn same_meetings(
    stack: &Stack,
    (owner, originals): (&str, &[String]),
    (importer, created): (&TestUser, &[String]),
    position: &str,
) -> Vec<Value> {
    let mut copies = vec![];
    for id in created {
        let (status, copy) = stack
            .query(&format!("/v1/meetings/{id}"), &importer.token, position)
            .await;
        assert_eq!(status, 200, "{copy}");
        copies.push(copy);
    }
    for original in originals {
        let (status, theirs) = stack
            .query(&format!("/v1/meetings/{original}"), owner, position)
            .await;
        assert_eq!(status, 200, "{theirs}");
        let mine = copies
            .iter()
            .find(|copy| copy["title"] == theirs["title"])
            .unwrap_or_else(|| panic!("a copy of {theirs}"));
        assert_eq!(essence(mine), essence(&theirs));
        assert_eq!(mine["organizer"]["id"], importer.id.to_string());
    }
    copies
}

/// Occurrences without the meeting ids, sorted: the same for a copy as for its original.
fn without_ids(seen: Vec<Seen>) -> Vec<(String, String, String, String)> {
    let mut rest: Vec<_> = seen
        .into_iter()
        .map(|(_, s, e, st, p)| (s, e, st, p))
        .collect();
    rest.sort();
    rest
}

fn ids(result: &Value, list: &str) -> Vec<String> {
    result[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {result}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The document of the first meeting an import created, read at the import's position.
async fn first_created(stack: &Stack, token: &str, result: &Value) -> Value {
    let created = ids(result, "created");
    let (status, document) = stack
        .query(
            &format!("/v1/meetings/{}", created[0]),
            token,
            result["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{document}");
    document
}

async fn a_feed_imports_into_another_calendar_as_the_same_meetings_once(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (_, alice, _) = stack.user("Alice").await;
    let bob = stack.commands.sign_up("Bob").await.unwrap();
    let carol = stack.commands.sign_up("Carol").await.unwrap();
    let dave = stack.commands.sign_up("Dave").await.unwrap();
    let schedule = |body: Value| {
        let stack = &stack;
        let alice = alice.clone();
        async move {
            let (status, answer) = stack
                .command(Method::POST, "/v1/meetings", &alice, body)
                .await;
            assert_eq!(status, 201, "{answer}");
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let berlin = schedule(json!({
        "title": "Weekly sync; «Zoë» & co, with a title long enough to be folded in the file",
        "description": "Agenda:\n1. Ünïcödé\n2. Commas, semicolons; backslashes \\",
        "location": "Room 1, 2nd floor",
        "starts_at": "2027-03-15T08:00:00Z", "ends_at": "2027-03-15T09:00:00Z",
        "time_zone": "Europe/Berlin",
        "attendees": [{"user_id": bob.id}, {"user_id": carol.id, "optional": true}],
        "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=10", "exdates": ["2027-03-22T08:00:00Z"]},
    }))
    .await;
    let new_york = schedule(json!({
        "title": "Stand-up", "starts_at": "2027-03-01T14:00:00Z", "ends_at": "2027-03-01T14:15:00Z",
        "time_zone": "America/New_York", "attendees": [{"user_id": bob.id}],
        "recurrence": {"rrule": "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20270331T000000Z"},
    }))
    .await;
    let single = schedule(json!({
        "title": "Review", "starts_at": "2027-04-01T12:00:00Z", "ends_at": "2027-04-01T13:30:00Z",
        "time_zone": "Australia/Sydney", "attendees": [{"user_id": carol.id}],
    }))
    .await;
    change_occurrences(
        &stack,
        &alice,
        &berlin,
        &[
            (
                "2027-03-29T07:00:00Z",
                json!({"starts_at": "2027-03-30T12:00:00Z"}),
            ),
            ("2027-04-05T07:00:00Z", json!({"cancelled": true})),
        ],
    )
    .await;
    let written = change_occurrences(
        &stack,
        &alice,
        &new_york,
        &[("2027-03-10T14:00:00Z", json!({"cancelled": true}))],
    )
    .await;
    let ics = feed_text(&stack, &alice, &written).await;

    // Dave imports Alice's feed: three meetings of his own, as hers are.
    let (status, result) = import(&stack, &dave.token, &ics).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["errors"], json!([]), "{result}");
    let created = ids(&result, "created");
    assert_eq!(created.len(), 3, "{result}");
    let position = result["position"].as_str().unwrap().to_owned();
    let originals = [berlin.clone(), new_york.clone(), single.clone()];
    let copies = same_meetings(&stack, (&alice, &originals), (&dave, &created), &position).await;
    assert_eq!(copies.len(), 3);
    // The independent parser reads Dave's feed as it reads Alice's.
    let (from, to) = ("2027-02-01T00:00:00Z", "2027-06-01T00:00:00Z");
    let theirs = feed_occurrences(&ics, from, to, &bob.email);
    let mine = feed_occurrences(
        &feed_text(&stack, &dave.token, &position).await,
        from,
        to,
        &bob.email,
    );
    assert_eq!(without_ids(mine), without_ids(theirs));

    // Again: nothing changes. Alice's own feed names her meetings: nothing changes either.
    // Bob attends two of them: they are in his calendar already; the third becomes his.
    let (_, again) = import(&stack, &dave.token, &ics).await;
    assert_eq!(ids(&again, "unchanged").len(), 3, "{again}");
    assert_eq!(
        ids(&again, "created").len() + ids(&again, "updated").len(),
        0
    );
    let (_, own) = import(&stack, &alice, &ics).await;
    let mut unchanged = ids(&own, "unchanged");
    unchanged.sort();
    let mut hers = vec![berlin.clone(), new_york.clone(), single.clone()];
    hers.sort();
    assert_eq!(unchanged, hers, "{own}");
    let (_, attending) = import(&stack, &bob.token, &ics).await;
    assert_eq!(ids(&attending, "created").len(), 1, "{attending}");
    assert_eq!(
        attending["warnings"].as_array().unwrap().len(),
        2,
        "{attending}"
    );

    // An edited file updates: the Berlin series renamed, its moved occurrence back in place,
    // Carol no longer invited.
    let edited = ics.replace("\r\n ", "").replace(
        "SUMMARY:Weekly sync\\; «Zoë» & co\\, with a title long enough to be folded in the file",
        "SUMMARY:Weekly sync (renamed)",
    );
    let edited = drop_component_with(&edited, "RECURRENCE-ID;TZID=Europe/Berlin:20270329T090000");
    let edited = edited
        .lines()
        .filter(|l| {
            !(l.starts_with("ATTENDEE") && l.contains(&carol.email) && !l.contains("Review"))
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let (status, result) = import(&stack, &dave.token, &edited).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["errors"], json!([]), "{result}");
    let updated = ids(&result, "updated");
    assert!(!updated.is_empty(), "{result}");
    let position = result["position"].as_str().unwrap().to_owned();
    let (_, renamed) = stack
        .query(
            &format!("/v1/meetings/{}", updated[0]),
            &dave.token,
            &position,
        )
        .await;
    assert_eq!(renamed["title"], "Weekly sync (renamed)", "{result}");
    let occurrences = renamed["occurrences"].as_array().unwrap();
    assert_eq!(occurrences.len(), 1, "{renamed}");
    assert_eq!(occurrences[0]["cancelled"], true);
    assert_eq!(
        utc(occurrences[0]["occurrence"].as_str().unwrap()),
        utc("2027-04-05T07:00:00Z")
    );
    assert_eq!(
        renamed["attendees"].as_array().unwrap().len(),
        1,
        "{renamed}"
    );
}

async fn a_rich_feed_round_trips_through_import_with_its_attendees_text_and_occurrence_changes(
    backend: Backend,
) {
    let stack = Stack::on(backend).await;
    let rich = rich_calendar(&stack).await;
    let alice = &rich.organizer;
    let ics = feed_text(&stack, &alice.token, &rich.position).await;
    // What the round trip has to carry is in the file: folded non-ASCII lines, all seven
    // attendees, the moved and the cancelled occurrence, the excluded date.
    let unfolded = ics.replace("\r\n ", "");
    assert!(
        ics.split("\r\n")
            .any(|l| l.starts_with(' ') && !l.is_ascii()),
        "no folded non-ASCII line: {ics}"
    );
    for attendee in &rich.attendees {
        assert!(
            unfolded.contains(&format!("mailto:{}", attendee.email)),
            "{ics}"
        );
    }
    for line in [
        "SUMMARY:Série hebdomadaire — Europe/Berlin — Ωμέγα 日本語 «Zoë» Ünïcödé",
        "RECURRENCE-ID;TZID=Europe/Berlin:20270329T090000",
        "DTSTART;TZID=Europe/Berlin:20270330T140000",
        "STATUS:CANCELLED",
        "EXDATE;TZID=Europe/Berlin:20270503T090000",
    ] {
        assert!(unfolded.contains(line), "{line} in {ics}");
    }

    // Dave imports it: three meetings of his own, each as Alice's is.
    let dave = stack.commands.sign_up("Dave").await.unwrap();
    let (status, result) = import(&stack, &dave.token, &ics).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["errors"], json!([]), "{result}");
    assert_eq!(result["warnings"], json!([]), "{result}");
    let created = ids(&result, "created");
    let position = result["position"].as_str().unwrap().to_owned();
    let copies = same_meetings(
        &stack,
        (&alice.token, &rich.meetings),
        (&dave, &created),
        &position,
    )
    .await;
    assert_eq!(copies.len(), 3, "{result}");
    let berlin = copies
        .iter()
        .find(|c| c["time_zone"] == "Europe/Berlin")
        .unwrap();
    assert_eq!(berlin["attendees"].as_array().unwrap().len(), 7, "{berlin}");
    assert_eq!(
        berlin["recurrence"]["exdates"],
        json!(["2027-05-03T07:00:00Z"])
    );
    assert_eq!(
        berlin["occurrences"].as_array().unwrap().len(),
        2,
        "{berlin}"
    );

    // Dave's agenda over the series' span is Alice's: the same occurrences, times, states.
    let agenda = |token: String, position: String| {
        let stack = &stack;
        async move {
            let (from, to) = RICH_SPAN;
            let path = format!("/v1/me/agenda?from={from}&to={to}");
            let (status, agenda) = stack.query(&path, &token, &position).await;
            assert_eq!(status, 200, "{agenda}");
            let mut seen: Vec<Value> = items(&agenda)
                .iter()
                .map(|i| {
                    json!([
                        i["starts_at"],
                        i["ends_at"],
                        i["status"],
                        i["occurrence"],
                        i["title"]
                    ])
                })
                .collect();
            seen.sort_by_key(Value::to_string);
            seen
        }
    };
    let theirs = agenda(alice.token.clone(), position.clone()).await;
    let mine = agenda(dave.token.clone(), position.clone()).await;
    assert_eq!(theirs.len(), 9 + 11 + 1, "{theirs:?}");
    assert_eq!(mine, theirs);
    // And the independent parser reads Dave's feed as Alice's, for an attendee's eyes.
    let (from, to) = RICH_SPAN;
    let guest = &rich.attendees[1].email;
    let mine = feed_text(&stack, &dave.token, &position).await;
    assert_eq!(
        without_ids(feed_occurrences(&mine, from, to, guest)),
        without_ids(feed_occurrences(&ics, from, to, guest))
    );
}

/// `ics` without the component holding `marker`.
fn drop_component_with(ics: &str, marker: &str) -> String {
    let mut out = Vec::new();
    let mut component: Vec<&str> = Vec::new();
    for line in ics.split("\r\n") {
        if line == "BEGIN:VEVENT" || !component.is_empty() {
            component.push(line);
            if line == "END:VEVENT" {
                if !component.contains(&marker) {
                    out.append(&mut component);
                }
                component.clear();
            }
        } else {
            out.push(line);
        }
    }
    out.join("\r\n")
}

async fn broken_files_are_refused_component_by_component_and_nothing_half_is_created(
    backend: Backend,
) {
    let stack = Stack::on(backend).await;
    let (_, token, registered) = stack.user("Erin").await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ics/broken");
    // file, the line its bad component starts on, what the error says.
    let fixtures = [
        ("occurrence-off-the-rule.ics", 4, "no such occurrence"),
        ("all-day.ics", 4, "all-day"),
        ("unknown-zone.ics", 4, "unknown time zone"),
        ("hourly-rule.ics", 4, "FREQ"),
        ("too-long.ics", 4, "24 hours"),
        ("no-colon.ics", 4, "unreadable event"),
        ("no-uid.ics", 4, "UID is missing"),
        ("orphan-occurrence.ics", 4, "without its series"),
        ("floating.ics", 4, "floating"),
    ];
    let good = "BEGIN:VEVENT\r\nUID:good@example.com\r\nDTSTART:20270601T090000Z\r\n\
                DTEND:20270601T100000Z\r\nSUMMARY:Good\r\nEND:VEVENT\r\n";
    for (file, line, message) in fixtures {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        let (status, result) = import(&stack, &token, &text).await;
        assert_eq!(status, 200, "{file}: {result}");
        assert_eq!(ids(&result, "created").len(), 0, "{file}: {result}");
        let errors = result["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{file}: {result}");
        assert_eq!(errors[0]["line"], line, "{file}: {result}");
        assert!(
            errors[0]["message"].as_str().unwrap().contains(message),
            "{file}: {result}"
        );
        // With a good event beside it, the good one is imported and the bad one is not.
        let mixed = text.replace("END:VCALENDAR", &format!("{good}END:VCALENDAR"));
        let (status, result) = import(&stack, &token, &mixed).await;
        assert_eq!(status, 200, "{file}: {result}");
        assert_eq!(
            result["errors"].as_array().unwrap().len(),
            1,
            "{file}: {result}"
        );
        let (_, agenda) = stack
            .query(
                "/v1/me/agenda?from=2027-01-01T00:00:00Z&to=2027-12-31T00:00:00Z",
                &token,
                result["position"].as_str().unwrap(),
            )
            .await;
        let titles: Vec<&str> = agenda["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Good"], "{file}: {agenda}");
    }

    // Three bad components and a good one in one file: each bad one is reported with its own
    // UID and the line it starts on in the file as sent (a folded line before counts); the
    // good one is created, whole.
    let text = std::fs::read_to_string(format!("{dir}/several-bad-one-good.ics")).unwrap();
    let (status, result) = import(&stack, &token, &text).await;
    assert_eq!(status, 200, "{result}");
    let errors: Vec<(&Value, &Value)> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["uid"], &e["line"]))
        .collect();
    assert_eq!(
        errors,
        [
            (&json!("several-all-day"), &json!(4)),
            (&json!("several-unknown-zone"), &json!(19)),
            (&json!("several-garbled"), &json!(25)),
        ],
        "{result}"
    );
    for (error, message) in result["errors"].as_array().unwrap().iter().zip([
        "all-day",
        "unknown time zone",
        "unreadable event",
    ]) {
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{result}"
        );
    }
    assert_eq!(ids(&result, "created").len(), 1, "{result}");
    let document = first_created(&stack, &token, &result).await;
    assert_eq!(document["title"], "Good among bad", "{document}");
    assert_eq!(
        document["description"],
        "A description folded over three lines of the file, so that the lines of the \
         components after it count the file as sent, not as unfolded",
    );
    assert_eq!(document["starts_at"], "2027-06-02T09:00:00Z", "{document}");

    // Not a calendar: 422. Not text/calendar: 415. Ten megabytes: 413. All problem+json.
    let text = std::fs::read_to_string(format!("{dir}/not-a-calendar.ics")).unwrap();
    let (status, problem) = import(&stack, &token, &text).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("VCALENDAR"));
    let response = stack
        .commands
        .request(Method::POST, "/v1/calendar/import", Some(&token))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let huge = format!(
        "BEGIN:VCALENDAR\r\nX-PADDING:{}\r\nEND:VCALENDAR\r\n",
        "x".repeat(10 * 1024 * 1024)
    );
    let (status, problem) = import(&stack, &token, &huge).await;
    assert_eq!(status, 413, "{problem}");
    assert!(problem["request_id"].is_string(), "{problem}");
    // Small, but more events than one import takes: 413 too, before anything is looked at.
    let many = format!(
        "BEGIN:VCALENDAR\r\n{}END:VCALENDAR\r\n",
        "BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n".repeat(1_001)
    );
    let (status, problem) = import(&stack, &token, &many).await;
    assert_eq!(status, 413, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("1000 events"),
        "{problem}"
    );
    // Outlook names its zones the Windows way: read by CLDR's table.
    let outlook = "BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nPRODID:Microsoft Exchange Server 2010\r\n\
        VERSION:2.0\r\nBEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\n\
        DTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
        RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\n\
        DTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
        RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
        BEGIN:VEVENT\r\nUID:040000008200E00074C5B7101A82E00800000000@outlook\r\n\
        SUMMARY;LANGUAGE=de-DE:Jour fixe\r\n\
        DTSTART;TZID=W. Europe Standard Time:20270705T090000\r\n\
        DTEND;TZID=W. Europe Standard Time:20270705T093000\r\n\
        RRULE:FREQ=WEEKLY;UNTIL=20270830T070000Z;INTERVAL=1;BYDAY=MO;WKST=MO\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";
    let (status, result) = import(&stack, &token, outlook).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["errors"], json!([]), "{result}");
    let document = first_created(&stack, &token, &result).await;
    assert_eq!(document["time_zone"], "Europe/Berlin", "{document}");
    assert_eq!(document["starts_at"], "2027-07-05T07:00:00Z", "{document}");

    // Nothing but the good events and Outlook's series was ever written.
    let (_, meetings) = stack
        .query(
            "/v1/meetings?from=2027-01-01T00:00:00Z&to=2028-01-01T00:00:00Z",
            &token,
            &registered,
        )
        .await;
    assert_eq!(
        meetings["items"].as_array().map(Vec::len),
        Some(3),
        "{meetings}"
    );
}

platform::on_each_backend!(
    a_feed_imports_into_another_calendar_as_the_same_meetings_once,
    a_rich_feed_round_trips_through_import_with_its_attendees_text_and_occurrence_changes,
    broken_files_are_refused_component_by_component_and_nothing_half_is_created,
);
