//! iCalendar (RFC 5545) output: meetings as `VEVENT`s — a series with its `RRULE`/`EXDATE` and
//! each changed occurrence as its own `RECURRENCE-ID` component — with a `VTIMEZONE` for every
//! `TZID` used. Content lines end in CRLF and are folded at 75 octets, never inside a UTF-8
//! character.
//!
//! The input is the meeting document the query side serves (`views::Meeting`), so the JSON
//! and the calendar forms of a meeting cannot disagree.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::views::Meeting;

mod read;
mod timezone;
pub use read::{
    read, FileError, ImportProblem, ImportedCalendar, ImportedMeeting, ImportedOccurrence,
    MAX_IMPORT_EVENTS,
};

/// Longest content line, in octets, before folding (RFC 5545 §3.1).
const LINE_OCTETS: usize = 75;

/// `METHOD` of a calendar object: a feed or download publishes, an invitation requests or
/// cancels (iTIP, RFC 5546).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Publish,
    Request,
    Cancel,
}

impl Method {
    /// The name iCalendar and MIME (`text/calendar; method=…`) use.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// What a calendar needs besides the meetings: e-mail addresses of their people (for
/// `ORGANIZER`/`ATTENDEE`), the host that makes `UID`s unique, and a name.
pub struct Context<'a> {
    pub emails: &'a HashMap<Uuid, String>,
    /// Right-hand side of every `UID` (`<meeting id>@<domain>`).
    pub uid_domain: &'a str,
    /// `X-WR-CALNAME`, the name calendar apps show for a feed.
    pub name: Option<&'a str>,
    /// Written as `DTSTAMP` (the time the object was made, UTC).
    pub stamp: DateTime<Utc>,
}

/// A whole `VCALENDAR` with `meetings`.
pub fn calendar(meetings: &[Meeting], method: Method, context: &Context<'_>) -> String {
    let mut out = Lines::default();
    out.line("BEGIN", &[], "VCALENDAR");
    out.line("VERSION", &[], "2.0");
    out.line("PRODID", &[], "-//meetings//meetings calendar//EN");
    out.line("CALSCALE", &[], "GREGORIAN");
    out.line("METHOD", &[], method.as_str());
    if let Some(name) = context.name {
        out.line("X-WR-CALNAME", &[], &text(name));
    }
    // Each zone from the first year it is used in.
    let mut zones: BTreeMap<&str, i32> = BTreeMap::new();
    for meeting in meetings {
        let year = meeting
            .occurrences
            .iter()
            .map(|o| o.starts_at)
            .chain([meeting.starts_at])
            .min()
            .unwrap_or(meeting.starts_at)
            .year();
        let entry = zones.entry(meeting.time_zone.as_str()).or_insert(year);
        *entry = (*entry).min(year);
    }
    for (zone, year) in &zones {
        if let Ok(tz) = zone.parse::<Tz>() {
            out.text.push_str(&timezone::rendered(tz, *year));
        }
    }
    for meeting in meetings {
        vevents(&mut out, meeting, method, context);
    }
    out.line("END", &[], "VCALENDAR");
    out.text
}

/// The `VEVENT`s of one meeting: the meeting (or series) itself, then one per changed
/// occurrence.
fn vevents(out: &mut Lines, meeting: &Meeting, method: Method, context: &Context<'_>) {
    let tz: Option<Tz> = meeting.time_zone.parse().ok();
    let zone = tz.map(|tz| tz.name()).unwrap_or("UTC");
    let uid = format!("{}@{}", meeting.id, context.uid_domain);
    let cancelled_all = method == Method::Cancel || meeting.status == "cancelled";
    let common = |out: &mut Lines, response_of: &dyn Fn(&str, Uuid) -> String| {
        out.line("UID", &[], &uid);
        out.line("DTSTAMP", &[], &utc_stamp(context.stamp));
        out.line("SEQUENCE", &[], &meeting.sequence.to_string());
        out.line("SUMMARY", &[], &text(&meeting.title));
        if let Some(description) = &meeting.description {
            out.line("DESCRIPTION", &[], &text(description));
        }
        if let Some(location) = &meeting.location {
            out.line("LOCATION", &[], &text(location));
        }
        let organizer = person(
            context.emails,
            meeting.organizer.id,
            meeting.organizer.display_name.as_deref(),
        );
        out.line("ORGANIZER", &organizer.0, &organizer.1);
        for attendee in &meeting.attendees {
            let (mut params, address) = person(
                context.emails,
                attendee.user_id,
                attendee.display_name.as_deref(),
            );
            params.push((
                "ROLE",
                if attendee.optional {
                    "OPT-PARTICIPANT".into()
                } else {
                    "REQ-PARTICIPANT".into()
                },
            ));
            params.push((
                "PARTSTAT",
                partstat(&response_of(&attendee.response, attendee.user_id)).into(),
            ));
            params.push(("RSVP", "TRUE".into()));
            out.line("ATTENDEE", &params, &address);
        }
        out.line("CREATED", &[], &utc_stamp(meeting.created_at));
        out.line("LAST-MODIFIED", &[], &utc_stamp(meeting.updated_at));
    };

    out.line("BEGIN", &[], "VEVENT");
    common(out, &|series, _| series.to_owned());
    out.line(
        "DTSTART",
        &[("TZID", zone.into())],
        &local(tz, meeting.starts_at),
    );
    out.line(
        "DTEND",
        &[("TZID", zone.into())],
        &local(tz, meeting.ends_at),
    );
    if let Some(recurrence) = &meeting.recurrence {
        if let Some(rule) = recurrence["rrule"].as_str() {
            out.line("RRULE", &[], rule);
        }
        let exdates: Vec<String> = recurrence["exdates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str())
            .filter_map(|d| DateTime::parse_from_rfc3339(d).ok())
            .map(|d| local(tz, d.with_timezone(&Utc)))
            .collect();
        if !exdates.is_empty() {
            out.line("EXDATE", &[("TZID", zone.into())], &exdates.join(","));
        }
    }
    out.line("STATUS", &[], status(cancelled_all, &meeting.status));
    out.line("END", &[], "VEVENT");

    // One component per occurrence that is not as the rule has it: moved or cancelled, or
    // answered alone (at the rule's time, to carry the answer).
    let length = meeting.ends_at - meeting.starts_at;
    let mut overrides: BTreeMap<DateTime<Utc>, (DateTime<Utc>, DateTime<Utc>, bool)> = meeting
        .attendees
        .iter()
        .flat_map(|a| a.occurrence_responses.keys())
        .map(|o| (*o, (*o, *o + length, false)))
        .collect();
    for changed in &meeting.occurrences {
        overrides.insert(
            changed.occurrence,
            (changed.starts_at, changed.ends_at, changed.cancelled),
        );
    }
    for (occurrence, (starts_at, ends_at, cancelled)) in overrides {
        out.line("BEGIN", &[], "VEVENT");
        common(out, &|series, user| {
            meeting
                .attendees
                .iter()
                .find(|a| a.user_id == user)
                .and_then(|a| a.occurrence_responses.get(&occurrence))
                .cloned()
                .unwrap_or_else(|| series.to_owned())
        });
        let tzid = [("TZID", zone.to_owned())];
        out.line("RECURRENCE-ID", &tzid, &local(tz, occurrence));
        out.line("DTSTART", &tzid, &local(tz, starts_at));
        out.line("DTEND", &tzid, &local(tz, ends_at));
        out.line(
            "STATUS",
            &[],
            status(cancelled_all || cancelled, &meeting.status),
        );
        out.line("END", &[], "VEVENT");
    }
}

fn status(cancelled: bool, meeting_status: &str) -> &'static str {
    if cancelled || meeting_status == "cancelled" {
        "CANCELLED"
    } else {
        "CONFIRMED"
    }
}

fn partstat(response: &str) -> &'static str {
    match response {
        "accepted" => "ACCEPTED",
        "declined" => "DECLINED",
        "tentative" => "TENTATIVE",
        _ => "NEEDS-ACTION",
    }
}

/// `CN` and `mailto:` of a person (a `urn:uuid:` when the address is unknown).
fn person(
    emails: &HashMap<Uuid, String>,
    id: Uuid,
    name: Option<&str>,
) -> (Vec<(&'static str, String)>, String) {
    let mut params = Vec::new();
    if let Some(name) = name {
        params.push(("CN", param_value(name)));
    }
    let address = match emails.get(&id) {
        Some(email) => format!("mailto:{email}"),
        None => format!("urn:uuid:{id}"),
    };
    (params, address)
}

/// `YYYYMMDDTHHMMSSZ`.
fn utc_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The local date-time of `at` in `tz` (`YYYYMMDDTHHMMSS`), or UTC when the zone is unknown.
fn local(tz: Option<Tz>, at: DateTime<Utc>) -> String {
    match tz {
        Some(tz) => at.with_timezone(&tz).format("%Y%m%dT%H%M%S").to_string(),
        None => at.format("%Y%m%dT%H%M%S").to_string(),
    }
}

/// TEXT value escaping (RFC 5545 §3.3.11).
pub fn text(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => escaped.push_str("\\n"),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

/// A parameter value, quoted when it holds `:`, `;` or `,`; `"` and controls are dropped
/// (RFC 5545 has no escape for them).
fn param_value(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    if clean.contains([':', ';', ',']) {
        format!("\"{clean}\"")
    } else {
        clean
    }
}

/// Content lines, folded.
#[derive(Default)]
pub(crate) struct Lines {
    text: String,
}

impl Lines {
    pub(crate) fn line(&mut self, name: &str, params: &[(&str, String)], value: &str) {
        let mut line = String::with_capacity(name.len() + value.len() + 16);
        line.push_str(name);
        for (key, param) in params {
            let _ = write!(line, ";{key}={param}");
        }
        line.push(':');
        line.push_str(value);
        fold_into(&mut self.text, &line);
    }
}

/// Appends `line` folded at 75 octets (continuations start with one space, which counts), on
/// character boundaries, each piece ended by CRLF. Whole pieces are copied at once: a feed
/// is megabytes of lines, most of them short.
fn fold_into(out: &mut String, line: &str) {
    let mut rest = line;
    let mut room = LINE_OCTETS;
    while rest.len() > room {
        // A character is at most four octets and `room` at least 74: `cut` stays positive.
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        room = LINE_OCTETS - 1;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fold_at_75_octets_without_splitting_a_character() {
        let mut out = String::new();
        let value = "Zoë's ünïcödé planning — ".repeat(12);
        fold_into(&mut out, &format!("SUMMARY:{value}"));
        assert!(out.ends_with("\r\n"));
        let pieces: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(pieces.len() > 4);
        for (i, piece) in pieces.iter().enumerate() {
            assert!(piece.len() <= 75, "{i}: {} octets", piece.len());
            assert_eq!(piece.starts_with(' '), i > 0);
        }
        let unfolded: String = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| if i == 0 { *p } else { &p[1..] })
            .collect();
        assert_eq!(unfolded, format!("SUMMARY:{value}"));
    }

    /// The folding of RFC 5545 §3.1 character by character: what `fold_into` must write.
    fn fold_by_character(line: &str) -> String {
        let mut out = String::new();
        let mut used = 0;
        for c in line.chars() {
            if used + c.len_utf8() > LINE_OCTETS {
                out.push_str("\r\n ");
                used = 1;
            }
            out.push(c);
            used += c.len_utf8();
        }
        out.push_str("\r\n");
        out
    }

    #[test]
    fn lines_are_folded_as_late_as_the_octet_limit_allows() {
        // Every length around one and two folds, with one- to four-octet characters placed
        // across each fold.
        for filler in ["a", "é", "—", "😀"] {
            for prefix in 0..8 {
                for length in 60..160 {
                    let mut line = "x".repeat(prefix);
                    while line.len() < length {
                        line.push_str(filler);
                    }
                    let mut out = String::new();
                    fold_into(&mut out, &line);
                    assert_eq!(out, fold_by_character(&line), "{line:?}");
                }
            }
        }
        let mut out = String::new();
        fold_into(&mut out, "");
        assert_eq!(out, "\r\n");
    }

    #[test]
    fn text_escapes_what_rfc_5545_reserves() {
        assert_eq!(text("a;b,c\\d\r\ne\nf"), "a\\;b\\,c\\\\d\\ne\\nf");
    }
}
