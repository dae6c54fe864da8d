//! iCalendar (RFC 5545) output: meetings as `VEVENT`s — a series with its `RRULE`/`EXDATE` and
//! each changed occurrence as its own `RECURRENCE-ID` component — with a `VTIMEZONE` for every
//! `TZID` used. Content lines end in CRLF and are folded at 75 octets, never inside a UTF-8
//! character.
//!
//! The input is the meeting document the query side serves (`views::Meeting`), so the JSON
//! and the calendar forms of a meeting cannot disagree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use uuid::Uuid;

use crate::views::Meeting;

/// Longest content line, in octets, before folding (RFC 5545 §3.1).
const LINE_OCTETS: usize = 75;
/// How many years after its first use a time zone's yearly rule is checked against the zone
/// database before it is written as an `RRULE` (otherwise every transition is listed).
const RULE_CHECK_YEARS: i32 = 30;

/// `METHOD` of a calendar object: a feed or download publishes, an invitation requests or
/// cancels (iTIP, RFC 5546).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Publish,
    Request,
    Cancel,
}

impl Method {
    fn as_str(self) -> &'static str {
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
            vtimezone(&mut out, tz, *year);
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
    out.line("DTSTART", &[("TZID", zone.into())], &local(tz, meeting.starts_at));
    out.line("DTEND", &[("TZID", zone.into())], &local(tz, meeting.ends_at));
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

    for changed in &meeting.occurrences {
        out.line("BEGIN", &[], "VEVENT");
        let occurrence = changed.occurrence;
        common(out, &|series, user| {
            meeting
                .attendees
                .iter()
                .find(|a| a.user_id == user)
                .and_then(|a| a.occurrence_responses.get(&occurrence))
                .cloned()
                .unwrap_or_else(|| series.to_owned())
        });
        out.line(
            "RECURRENCE-ID",
            &[("TZID", zone.into())],
            &local(tz, occurrence),
        );
        out.line("DTSTART", &[("TZID", zone.into())], &local(tz, changed.starts_at));
        out.line("DTEND", &[("TZID", zone.into())], &local(tz, changed.ends_at));
        out.line(
            "STATUS",
            &[],
            status(cancelled_all || changed.cancelled, &meeting.status),
        );
        out.line("END", &[], "VEVENT");
    }
    // Occurrences answered alone, not otherwise changed: their own component carries the
    // answer (at the rule's time).
    let changed: BTreeSet<DateTime<Utc>> = meeting.occurrences.iter().map(|o| o.occurrence).collect();
    let answered: BTreeSet<DateTime<Utc>> = meeting
        .attendees
        .iter()
        .flat_map(|a| a.occurrence_responses.keys().copied())
        .filter(|o| !changed.contains(o))
        .collect();
    let length = meeting.ends_at - meeting.starts_at;
    for occurrence in answered {
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
        out.line(
            "RECURRENCE-ID",
            &[("TZID", zone.into())],
            &local(tz, occurrence),
        );
        out.line("DTSTART", &[("TZID", zone.into())], &local(tz, occurrence));
        out.line(
            "DTEND",
            &[("TZID", zone.into())],
            &local(tz, occurrence + length),
        );
        out.line("STATUS", &[], status(cancelled_all, &meeting.status));
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
struct Lines {
    text: String,
}

impl Lines {
    fn line(&mut self, name: &str, params: &[(&str, String)], value: &str) {
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
/// character boundaries, each piece ended by CRLF.
fn fold_into(out: &mut String, line: &str) {
    let mut used = 0;
    for c in line.chars() {
        let width = c.len_utf8();
        if used + width > LINE_OCTETS {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += width;
    }
    out.push_str("\r\n");
}

/// One change of a zone's offset.
#[derive(Clone, Debug, PartialEq)]
struct Transition {
    at: DateTime<Utc>,
    from: i32,
    to: i32,
    daylight: bool,
    name: String,
}

/// The offset changes of `tz` in `year`, found day by day and then to the second.
fn transitions(tz: Tz, year: i32) -> Vec<Transition> {
    let offset_at = |at: DateTime<Utc>| tz.offset_from_utc_datetime(&at.naive_utc());
    let Some(mut day) = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).single() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    while day.year() == year {
        let next = day + Duration::days(1);
        let (before, after) = (offset_at(day), offset_at(next));
        if before.fix() != after.fix() || before.abbreviation() != after.abbreviation() {
            // The first second with the new offset.
            let (mut low, mut high) = (day, next);
            while high - low > Duration::seconds(1) {
                let mid = low + (high - low) / 2;
                if offset_at(mid) == before {
                    low = mid;
                } else {
                    high = mid;
                }
            }
            let new = offset_at(high);
            found.push(Transition {
                at: high,
                from: before.fix().local_minus_utc(),
                to: new.fix().local_minus_utc(),
                daylight: new.dst_offset() != Duration::zero(),
                name: new.abbreviation().unwrap_or("").to_owned(),
            });
        }
        day = next;
    }
    found
}

/// A yearly rule for a transition: its month, and its weekday counted from the start of the
/// month (or `-1` for the last one of the month).
fn yearly_rule(local_onset: NaiveDateTime) -> (u32, i32, chrono::Weekday) {
    let day = local_onset.day() as i32;
    let days_in_month = {
        let (y, m) = (local_onset.year(), local_onset.month());
        let next = if m == 12 {
            chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
        };
        next.map_or(31, |n| n.pred_opt().map_or(31, |d| d.day() as i32))
    };
    let nth = if day + 7 > days_in_month {
        -1
    } else {
        (day - 1) / 7 + 1
    };
    (local_onset.month(), nth, local_onset.weekday())
}

/// Whether the transition `t` happens at the rule's date and local time.
fn follows(t: &Transition, rule: (u32, i32, chrono::Weekday), time: chrono::NaiveTime) -> bool {
    let onset = (t.at + Duration::seconds(t.from as i64)).naive_utc();
    yearly_rule(onset) == rule && onset.time() == time
}

fn weekday_code(day: chrono::Weekday) -> &'static str {
    use chrono::Weekday::*;
    match day {
        Mon => "MO",
        Tue => "TU",
        Wed => "WE",
        Thu => "TH",
        Fri => "FR",
        Sat => "SA",
        Sun => "SU",
    }
}

fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    if s % 60 == 0 {
        format!("{sign}{:02}{:02}", s / 3600, (s % 3600) / 60)
    } else {
        format!("{sign}{:02}{:02}{:02}", s / 3600, (s % 3600) / 60, s % 60)
    }
}

/// The `VTIMEZONE` of `tz` valid from `first_year` on: two yearly `RRULE` observances when the
/// zone follows one yearly pattern for the next 30 years (what calendar apps expect), every
/// transition listed otherwise, and one `STANDARD` observance for a zone without changes.
fn vtimezone(out: &mut Lines, tz: Tz, first_year: i32) {
    out.line("BEGIN", &[], "VTIMEZONE");
    out.line("TZID", &[], tz.name());
    let start = first_year - 1;
    let years: Vec<Vec<Transition>> = (start..=first_year + RULE_CHECK_YEARS)
        .map(|year| transitions(tz, year))
        .collect();
    let observance = |out: &mut Lines, t: &Transition, rule: Option<String>| {
        let kind = if t.daylight { "DAYLIGHT" } else { "STANDARD" };
        out.line("BEGIN", &[], kind);
        let onset = (t.at + Duration::seconds(t.from as i64)).naive_utc();
        out.line("DTSTART", &[], &onset.format("%Y%m%dT%H%M%S").to_string());
        if let Some(rule) = rule {
            out.line("RRULE", &[], &rule);
        }
        out.line("TZOFFSETFROM", &[], &offset_text(t.from));
        out.line("TZOFFSETTO", &[], &offset_text(t.to));
        if !t.name.is_empty() {
            out.line("TZNAME", &[], &text(&t.name));
        }
        out.line("END", &[], kind);
    };
    let all: Vec<&Transition> = years.iter().flatten().collect();
    if all.is_empty() {
        // No change in the whole range: one standard observance at the zone's offset.
        let at = Utc
            .with_ymd_and_hms(first_year, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        let offset = tz.offset_from_utc_datetime(&at.naive_utc());
        let seconds = offset.fix().local_minus_utc();
        let fixed = Transition {
            at: Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).single().unwrap_or(at)
                - Duration::seconds(seconds as i64),
            from: seconds,
            to: seconds,
            daylight: false,
            name: offset.abbreviation().unwrap_or("").to_owned(),
        };
        observance(out, &fixed, None);
        out.line("END", &[], "VTIMEZONE");
        return;
    }
    // Two changes a year, each on the same rule every year: write the rules.
    let first = &years[0];
    let regular = first.len() == 2
        && years.iter().all(|year| {
            year.len() == 2
                && year.iter().zip(first).all(|(t, f)| {
                    let onset = (f.at + Duration::seconds(f.from as i64)).naive_utc();
                    t.from == f.from
                        && t.to == f.to
                        && follows(t, yearly_rule(onset), onset.time())
                })
        });
    if regular {
        for t in first {
            let onset = (t.at + Duration::seconds(t.from as i64)).naive_utc();
            let (month, nth, weekday) = yearly_rule(onset);
            observance(
                out,
                t,
                Some(format!(
                    "FREQ=YEARLY;BYMONTH={month};BYDAY={nth}{}",
                    weekday_code(weekday)
                )),
            );
        }
    } else {
        for t in all {
            observance(out, t, None);
        }
    }
    out.line("END", &[], "VTIMEZONE");
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

    #[test]
    fn text_escapes_what_rfc_5545_reserves() {
        assert_eq!(text("a;b,c\\d\r\ne\nf"), "a\\;b\\,c\\\\d\\ne\\nf");
    }

    #[test]
    fn vtimezones_follow_the_yearly_rules_of_each_hemisphere() {
        let render = |zone: Tz| {
            let mut out = Lines::default();
            vtimezone(&mut out, zone, 2027);
            out.text
        };
        let berlin = render(chrono_tz::Europe::Berlin);
        assert!(berlin.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU"), "{berlin}");
        assert!(berlin.contains("RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU"), "{berlin}");
        assert!(berlin.contains("DTSTART:20260329T020000\r\n"), "{berlin}");
        assert!(berlin.contains("TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200"), "{berlin}");
        let new_york = render(chrono_tz::America::New_York);
        assert!(new_york.contains("BYMONTH=3;BYDAY=2SU"), "{new_york}");
        assert!(new_york.contains("BYMONTH=11;BYDAY=1SU"), "{new_york}");
        let sydney = render(chrono_tz::Australia::Sydney);
        assert!(sydney.contains("BYMONTH=4;BYDAY=1SU"), "{sydney}");
        assert!(sydney.contains("BYMONTH=10;BYDAY=1SU"), "{sydney}");
        assert!(sydney.contains("TZOFFSETFROM:+1100\r\nTZOFFSETTO:+1000"), "{sydney}");
        let tokyo = render(chrono_tz::Asia::Tokyo);
        assert!(tokyo.contains("BEGIN:STANDARD") && !tokyo.contains("DAYLIGHT"), "{tokyo}");
        assert!(tokyo.contains("TZOFFSETTO:+0900"), "{tokyo}");
    }
}
