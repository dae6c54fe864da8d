use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn calendar(events: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
}

const SERIES: &str = "BEGIN:VEVENT\r\n\
UID:series-1@example.com\r\n\
DTSTAMP:20270101T000000Z\r\n\
DTSTART;TZID=Europe/Berlin:20270315T090000\r\n\
DTEND;TZID=Europe/Berlin:20270315T100000\r\n\
RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20270510T090000\r\n\
EXDATE;TZID=Europe/Berlin:20270322T090000,20270405T090000\r\n\
SUMMARY:Weekly\\, with Zoë\r\n\
DESCRIPTION:Line one\\nline two\r\n\
ATTENDEE;CN=Bob;ROLE=REQ-PARTICIPANT:mailto:Bob@Example.com\r\n\
ATTENDEE;ROLE=OPT-PARTICIPANT:MAILTO:carol@example.com\r\n\
ATTENDEE:urn:uuid:00000000-0000-0000-0000-000000000001\r\n\
BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n\
END:VEVENT\r\n";

const MOVED: &str = "BEGIN:VEVENT\r\n\
UID:series-1@example.com\r\n\
RECURRENCE-ID;TZID=Europe/Berlin:20270412T090000\r\n\
DTSTART;TZID=Europe/Berlin:20270413T140000\r\n\
DURATION:PT1H30M\r\n\
SUMMARY:Weekly\r\n\
END:VEVENT\r\n";

const CANCELLED: &str = "BEGIN:VEVENT\r\n\
UID:series-1@example.com\r\n\
RECURRENCE-ID:20270419T070000Z\r\n\
DTSTART:20270419T070000Z\r\n\
DTEND:20270419T080000Z\r\n\
STATUS:CANCELLED\r\n\
SUMMARY:Weekly\r\n\
END:VEVENT\r\n";

#[test]
fn a_series_reads_with_its_zone_rule_exdates_attendees_and_occurrences() {
    // The occurrences come before their series: order in the file does not matter.
    let read = read(&calendar(&format!("{MOVED}{CANCELLED}{SERIES}"))).unwrap();
    assert_eq!(read.errors, []);
    let [meeting] = read.meetings.as_slice() else {
        panic!("{:?}", read.meetings);
    };
    assert_eq!(meeting.uid, "series-1@example.com");
    assert_eq!(meeting.line, 19);
    assert_eq!(meeting.title, "Weekly, with Zoë");
    assert_eq!(meeting.description.as_deref(), Some("Line one\nline two"));
    assert_eq!(meeting.time_zone, "Europe/Berlin");
    assert_eq!(meeting.starts_at, utc("2027-03-15T08:00:00Z"));
    assert_eq!(meeting.ends_at, utc("2027-03-15T09:00:00Z"));
    let recurrence = meeting.recurrence.as_ref().unwrap();
    // A local UNTIL becomes UTC (summer time by then).
    assert_eq!(
        recurrence.rrule,
        "FREQ=WEEKLY;BYDAY=MO;UNTIL=20270510T070000Z"
    );
    assert_eq!(
        recurrence.exdates,
        [utc("2027-03-22T08:00:00Z"), utc("2027-04-05T07:00:00Z")]
    );
    assert_eq!(
        meeting.attendees,
        [
            ("bob@example.com".to_owned(), false),
            ("carol@example.com".to_owned(), true)
        ]
    );
    assert!(!meeting.cancelled);
    assert_eq!(
        meeting.occurrences,
        BTreeMap::from([
            (
                utc("2027-04-12T07:00:00Z"),
                ImportedOccurrence {
                    starts_at: utc("2027-04-13T12:00:00Z"),
                    ends_at: utc("2027-04-13T13:30:00Z"),
                    cancelled: false,
                }
            ),
            (
                utc("2027-04-19T07:00:00Z"),
                ImportedOccurrence {
                    starts_at: utc("2027-04-19T07:00:00Z"),
                    ends_at: utc("2027-04-19T08:00:00Z"),
                    cancelled: true,
                }
            ),
        ])
    );
}

#[test]
fn folded_lines_unfold_and_lf_only_files_read_too() {
    let folded = SERIES
        .replace(
            "SUMMARY:Weekly\\, with Zoë\r\n",
            "SUMMARY:A long title that goes on and on and on past the seventy-five o\r\n ctet line limit, with Zoë\r\n",
        )
        .replace("\r\n", "\n");
    let read = read(&calendar(&folded).replace("\r\n", "\n")).unwrap();
    assert_eq!(read.errors, []);
    assert_eq!(
        read.meetings[0].title,
        "A long title that goes on and on and on past the seventy-five octet line limit, with Zoë"
    );
}

#[test]
fn each_broken_event_is_reported_with_its_line_and_the_good_ones_are_read() {
    let good = "BEGIN:VEVENT\r\nUID:good\r\nDTSTART:20270301T090000Z\r\nDTEND:20270301T100000Z\r\nSUMMARY:Good\r\nEND:VEVENT\r\n";
    let broken: [(&str, Option<&str>, &str); 12] = [
        ("BEGIN:VEVENT\r\nUID:no-start\r\nSUMMARY:x\r\nDTEND:20270301T100000Z\r\nEND:VEVENT\r\n", Some("no-start"), "DTSTART is missing"),
        ("BEGIN:VEVENT\r\nUID:all-day\r\nDTSTART;VALUE=DATE:20270301\r\nDTEND;VALUE=DATE:20270302\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("all-day"), "all-day"),
        ("BEGIN:VEVENT\r\nUID:floating\r\nDTSTART:20270301T090000\r\nDTEND:20270301T100000\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("floating"), "floating"),
        ("BEGIN:VEVENT\r\nUID:zone\r\nDTSTART;TZID=Mars/Olympus Mons:20270301T090000\r\nDTEND;TZID=Mars/Olympus Mons:20270301T100000\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("zone"), "unknown time zone"),
        ("BEGIN:VEVENT\r\nUID:unreadable\r\nthis line has no colon\r\nEND:VEVENT\r\n", Some("unreadable"), "unreadable event"),
        ("BEGIN:VEVENT\r\nDTSTART:20270301T090000Z\r\nDTEND:20270301T100000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\n", None, "UID is missing"),
        ("BEGIN:VEVENT\r\nUID:rdate\r\nDTSTART:20270301T090000Z\r\nDTEND:20270301T100000Z\r\nRDATE:20270302T090000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("rdate"), "RDATE"),
        ("BEGIN:VEVENT\r\nUID:orphan\r\nRECURRENCE-ID:20270301T090000Z\r\nDTSTART:20270301T100000Z\r\nDTEND:20270301T110000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("orphan"), "without its series"),
        ("BEGIN:VEVENT\r\nUID:no-end\r\nDTSTART:20270301T090000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("no-end"), "DTEND or DURATION"),
        ("BEGIN:VEVENT\r\nUID:no-title\r\nDTSTART:20270301T090000Z\r\nDTEND:20270301T100000Z\r\nEND:VEVENT\r\n", Some("no-title"), "SUMMARY"),
        ("BEGIN:VEVENT\r\nUID:gap\r\nDTSTART;TZID=Europe/Berlin:20270328T023000\r\nDURATION:PT1H\r\nSUMMARY:x\r\nEND:VEVENT\r\n", Some("gap"), "daylight-saving gap"),
        ("BEGIN:VEVENT\r\nUID:good\r\nDTSTART:20270301T090000Z\r\nDTEND:20270301T100000Z\r\nSUMMARY:Again\r\nEND:VEVENT\r\n", Some("good"), "a second event with this UID"),
    ];
    let mut events = good.to_owned();
    let mut expected_lines = vec![];
    let mut line = 4 + good.matches("\r\n").count();
    for (text, _, _) in &broken {
        expected_lines.push(line);
        line += text.matches("\r\n").count();
        events.push_str(text);
    }
    let read = read(&calendar(&events)).unwrap();
    // The first "good" stays, the second one with its UID is refused... and so is the first,
    // since which one is meant cannot be told.
    assert_eq!(read.meetings.len(), 0, "{:?}", read.meetings);
    assert_eq!(read.errors.len(), broken.len(), "{:#?}", read.errors);
    for ((_, uid, message), (error, line)) in
        broken.iter().zip(read.errors.iter().zip(&expected_lines))
    {
        assert_eq!(error.uid.as_deref(), *uid, "{error:?}");
        assert_eq!(error.line, Some(*line), "{error:?}");
        assert!(error.message.contains(message), "{message}: {error:?}");
    }
}

#[test]
fn an_event_with_more_attendees_than_a_meeting_may_have_is_refused() {
    let crowd: String = (0..=domain::meeting::MAX_ATTENDEES)
        .map(|i| format!("ATTENDEE:mailto:guest{i}@example.com\r\n"))
        .collect();
    let read = read(&calendar(
        &SERIES.replace("END:VEVENT", &format!("{crowd}END:VEVENT")),
    ))
    .unwrap();
    assert_eq!(read.meetings, []);
    assert!(
        read.errors[0].message.contains("attendees"),
        "{:?}",
        read.errors
    );
}

#[test]
fn a_bad_occurrence_refuses_its_whole_series() {
    let bad = MOVED.replace("DURATION:PT1H30M", "DURATION:soon");
    let read = read(&calendar(&format!("{SERIES}{bad}"))).unwrap();
    assert_eq!(read.meetings, []);
    assert_eq!(read.errors.len(), 1);
    assert!(
        read.errors[0].message.contains("DURATION"),
        "{:?}",
        read.errors
    );
}

#[test]
fn files_that_are_no_calendar_or_too_big_are_refused_whole() {
    assert_eq!(read("hello").unwrap_err(), FileError::NotACalendar);
    assert_eq!(
        read("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n").unwrap_err(),
        FileError::NotACalendar
    );
    let one = "BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n";
    assert_eq!(
        read(&calendar(&one.repeat(MAX_IMPORT_EVENTS + 1))).unwrap_err(),
        FileError::TooManyEvents(MAX_IMPORT_EVENTS + 1)
    );
}

#[test]
fn other_components_are_left_out_with_a_warning() {
    let todo = "BEGIN:VTODO\r\nUID:t\r\nSUMMARY:x\r\nEND:VTODO\r\n";
    let read = read(&calendar(&format!("{todo}{SERIES}"))).unwrap();
    assert_eq!(read.meetings.len(), 1);
    assert_eq!(read.warnings.len(), 1);
    assert_eq!(read.warnings[0].line, Some(4));
}

#[test]
fn durations_zones_and_untils_in_their_other_forms() {
    assert_eq!(parse_duration("PT1H30M"), Some(Duration::minutes(90)));
    assert_eq!(parse_duration("P1DT2H"), Some(Duration::hours(26)));
    assert_eq!(parse_duration("P1W"), Some(Duration::weeks(1)));
    for bad in ["", "P", "-PT1H", "PT0S", "PT1X", "1H"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    assert_eq!(
        zone("/mozilla.org/20050126_1/Europe/Berlin").unwrap(),
        Tz::Europe__Berlin
    );
    assert_eq!(
        utc_until("FREQ=DAILY;UNTIL=20270301", Tz::America__New_York).unwrap(),
        "FREQ=DAILY;UNTIL=20270302T045959Z"
    );
}
