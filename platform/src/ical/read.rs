//! iCalendar in (RFC 5545): a calendar file read into the meetings it describes, each bad
//! component reported with its line and the reason, never half a meeting.
//!
//! Content lines are parsed by the `icalendar` crate, one top-level component at a time, so
//! that one broken component does not hide the others and every error names the line its
//! component starts on (in the file as sent, before unfolding). What the meetings of this
//! product cannot hold is refused per component with a message saying so: all-day events,
//! floating times, zones that are neither IANA nor Windows names, `RDATE`,
//! `RANGE=THISANDFUTURE`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use domain::Recurrence;
use icalendar::parser::{read_components, unfold, Component, Property};

/// Most `VEVENT`s one file may hold.
pub const MAX_IMPORT_EVENTS: usize = 1_000;

/// A meeting as the file describes it: the series or single event (`VEVENT` without
/// `RECURRENCE-ID`) with its changed occurrences.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedMeeting {
    pub uid: String,
    /// Line of its `BEGIN:VEVENT` (1-based, in the file as sent).
    pub line: usize,
    pub title: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// IANA name of the zone `DTSTART` is given in (`UTC` for UTC times).
    pub time_zone: String,
    pub recurrence: Option<Recurrence>,
    /// Addresses (`mailto:`, lower-cased) with whether attendance is optional.
    pub attendees: Vec<(String, bool)>,
    /// `STATUS:CANCELLED`.
    pub cancelled: bool,
    /// Occurrences with their own time or cancelled, by original start.
    pub occurrences: BTreeMap<DateTime<Utc>, ImportedOccurrence>,
}

/// One occurrence of a series that is not as the rule has it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedOccurrence {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub cancelled: bool,
}

/// Why a component (or the file) was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub uid: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

/// What a file holds: the meetings read, the components refused, and remarks on what was
/// read but left out (an unsupported component kind, a property ignored).
#[derive(Debug, Default)]
pub struct ImportedCalendar {
    pub meetings: Vec<ImportedMeeting>,
    pub errors: Vec<ImportProblem>,
    pub warnings: Vec<ImportProblem>,
}

/// Why a whole file is refused before any component is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error(
        "not an iCalendar file: it must start with BEGIN:VCALENDAR and end with END:VCALENDAR"
    )]
    NotACalendar,
    #[error("at most {MAX_IMPORT_EVENTS} events (VEVENT) per file; this one has {0}")]
    TooManyEvents(usize),
}

/// One top-level component of the file: its kind, first line and text.
struct Block<'a> {
    kind: String,
    line: usize,
    lines: Vec<&'a str>,
}

/// Reads `text` (a whole `VCALENDAR`).
pub fn read(text: &str) -> Result<ImportedCalendar, FileError> {
    let blocks = blocks(text)?;
    let events = blocks.iter().filter(|b| b.kind == "VEVENT").count();
    if events > MAX_IMPORT_EVENTS {
        return Err(FileError::TooManyEvents(events));
    }
    let mut calendar = ImportedCalendar::default();
    // Series first, then their occurrences, whatever order the file has them in.
    let mut masters: BTreeMap<String, ImportedMeeting> = BTreeMap::new();
    let mut overrides: Vec<(usize, String, DateTime<Utc>, ImportedOccurrence)> = vec![];
    let mut refused_uids: Vec<String> = vec![];
    for block in &blocks {
        match block.kind.as_str() {
            "VEVENT" => {}
            // Zones are taken from their IANA names (TZID), not from the definitions.
            "VTIMEZONE" => continue,
            other => {
                calendar.warnings.push(ImportProblem {
                    uid: None,
                    line: Some(block.line),
                    message: format!("{other} left out: only events (VEVENT) are imported"),
                });
                continue;
            }
        }
        let problem = |uid: Option<String>, message: String| ImportProblem {
            uid,
            line: Some(block.line),
            message,
        };
        let joined = block.lines.join("\r\n") + "\r\n";
        let unfolded = unfold(&joined);
        let component = match read_components(&unfolded).map(|mut c| c.pop()) {
            Ok(Some(component)) => component,
            Ok(None) => {
                calendar
                    .errors
                    .push(problem(uid_in(&block.lines), "an empty event".into()));
                continue;
            }
            Err(error) => {
                let first = error.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                calendar.errors.push(problem(
                    uid_in(&block.lines),
                    format!("unreadable event: {}", clip(first)),
                ));
                continue;
            }
        };
        let uid = match prop(&component, "UID").map(|p| p.val.as_str().trim().to_owned()) {
            Some(uid) if !uid.is_empty() && uid.chars().count() <= 255 => uid,
            Some(_) => {
                calendar
                    .errors
                    .push(problem(None, "UID must be 1 to 255 characters".into()));
                continue;
            }
            None => {
                calendar.errors.push(problem(None, "UID is missing".into()));
                continue;
            }
        };
        match event(&component, block.line, &uid) {
            Ok(Event::Master(meeting)) => match masters.entry(uid) {
                std::collections::btree_map::Entry::Occupied(taken) => {
                    calendar.errors.push(problem(
                        Some(taken.key().clone()),
                        "a second event with this UID (and no RECURRENCE-ID)".into(),
                    ));
                    refused_uids.push(taken.key().clone());
                }
                std::collections::btree_map::Entry::Vacant(free) => {
                    free.insert(*meeting);
                }
            },
            Ok(Event::Occurrence(original, occurrence)) => {
                overrides.push((block.line, uid, original, occurrence));
            }
            Err(message) => {
                calendar.errors.push(problem(Some(uid.clone()), message));
                refused_uids.push(uid);
            }
        }
    }
    for (line, uid, original, occurrence) in overrides {
        if refused_uids.contains(&uid) {
            continue;
        }
        match masters.get_mut(&uid) {
            Some(master) if master.recurrence.is_some() => {
                master.occurrences.insert(original, occurrence);
            }
            Some(_) => calendar.errors.push(ImportProblem {
                uid: Some(uid),
                line: Some(line),
                message: "RECURRENCE-ID on an event that does not repeat".into(),
            }),
            None => calendar.errors.push(ImportProblem {
                uid: Some(uid),
                line: Some(line),
                message: "an occurrence (RECURRENCE-ID) without its series in the file".into(),
            }),
        }
    }
    // A series refused for a bad occurrence is refused whole: never half a meeting.
    calendar.meetings = masters
        .into_values()
        .filter(|m| !refused_uids.contains(&m.uid))
        .collect();
    calendar.meetings.sort_by_key(|m| m.line);
    calendar.errors.sort_by_key(|e| e.line);
    Ok(calendar)
}

/// The top-level components of the `VCALENDAR` in `text`, with their first lines.
fn blocks(text: &str) -> Result<Vec<Block<'_>>, FileError> {
    let lines: Vec<&str> = text
        .trim_start_matches('\u{feff}')
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let content: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, *l))
        .collect();
    let is = |line: &str, what: &str| line.trim_end().eq_ignore_ascii_case(what);
    match (content.first(), content.last()) {
        (Some((_, first)), Some((_, last)))
            if is(first, "BEGIN:VCALENDAR") && is(last, "END:VCALENDAR") => {}
        _ => return Err(FileError::NotACalendar),
    }
    let mut blocks = vec![];
    let mut current: Option<(Block<'_>, usize)> = None;
    for &(number, line) in &content[1..content.len() - 1] {
        let upper = line.trim_end().to_ascii_uppercase();
        match current.as_mut() {
            None => {
                if let Some(kind) = upper.strip_prefix("BEGIN:") {
                    current = Some((
                        Block {
                            kind: kind.to_owned(),
                            line: number,
                            lines: vec![line],
                        },
                        1,
                    ));
                }
                // Calendar properties (VERSION, PRODID, METHOD, X-…) are not needed.
            }
            Some((block, depth)) => {
                block.lines.push(line);
                if upper.starts_with("BEGIN:") {
                    *depth += 1;
                } else if upper.starts_with("END:") {
                    *depth -= 1;
                    if *depth == 0 {
                        blocks.push(current.take().expect("BUG: a block is open").0);
                    }
                }
            }
        }
    }
    if let Some((block, _)) = current {
        // Unclosed: handed on, so the parser reports it with its line.
        blocks.push(block);
    }
    Ok(blocks)
}

/// A `UID:` line of a component the parser could not read, to name it in the error.
fn uid_in(lines: &[&str]) -> Option<String> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("UID:"))
        .map(|uid| uid.trim().chars().take(255).collect())
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

enum Event {
    Master(Box<ImportedMeeting>),
    Occurrence(DateTime<Utc>, ImportedOccurrence),
}

fn prop<'c>(component: &'c Component<'_>, name: &str) -> Option<&'c Property<'c>> {
    component
        .properties
        .iter()
        .find(|p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn props<'c>(component: &'c Component<'_>, name: &str) -> Vec<&'c Property<'c>> {
    component
        .properties
        .iter()
        .filter(|p| p.name.as_str().eq_ignore_ascii_case(name))
        .collect()
}

fn param<'p>(property: &'p Property<'_>, name: &str) -> Option<&'p str> {
    property
        .params
        .iter()
        .find(|p| p.key.as_str().eq_ignore_ascii_case(name))
        .and_then(|p| p.val.as_ref())
        .map(|v| v.as_str().trim_matches('"'))
}

fn text_of(component: &Component<'_>, name: &str) -> Option<String> {
    prop(component, name)
        .map(|p| p.val.clone().unescape_text().as_str().trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// One `VEVENT`: a series or single meeting, or one occurrence of a series.
fn event(component: &Component<'_>, line: usize, uid: &str) -> Result<Event, String> {
    for unsupported in ["RDATE", "EXRULE"] {
        if prop(component, unsupported).is_some() {
            return Err(format!(
                "{unsupported} is not supported; use RRULE and EXDATE"
            ));
        }
    }
    let start = prop(component, "DTSTART").ok_or("DTSTART is missing")?;
    let (starts_at, zone) = date_time(start, None).map_err(|e| format!("DTSTART: {e}"))?;
    let ends_at = match (prop(component, "DTEND"), prop(component, "DURATION")) {
        (Some(end), None) => {
            date_time(end, Some(zone))
                .map_err(|e| format!("DTEND: {e}"))?
                .0
        }
        (None, Some(duration)) => {
            starts_at
                + parse_duration(duration.val.as_str()).ok_or("DURATION must be like PT1H30M")?
        }
        (Some(_), Some(_)) => return Err("DTEND and DURATION both given".into()),
        (None, None) => return Err("DTEND or DURATION is required".into()),
    };
    let cancelled = prop(component, "STATUS")
        .is_some_and(|s| s.val.as_str().trim().eq_ignore_ascii_case("CANCELLED"));
    if let Some(recurrence_id) = prop(component, "RECURRENCE-ID") {
        if param(recurrence_id, "RANGE").is_some() {
            return Err("RANGE=THISANDFUTURE is not supported: split the series into two".into());
        }
        let (original, _) =
            date_time(recurrence_id, Some(zone)).map_err(|e| format!("RECURRENCE-ID: {e}"))?;
        return Ok(Event::Occurrence(
            original,
            ImportedOccurrence {
                starts_at,
                ends_at,
                cancelled,
            },
        ));
    }
    let rules = props(component, "RRULE");
    if rules.len() > 1 {
        return Err("more than one RRULE".into());
    }
    let recurrence = match rules.first() {
        None => None,
        Some(rule) => {
            let mut exdates = vec![];
            for exdate in props(component, "EXDATE") {
                for value in exdate.val.as_str().split(',') {
                    let (at, _) = date_time_value(
                        value,
                        param(exdate, "TZID"),
                        param(exdate, "VALUE"),
                        Some(zone),
                    )
                    .map_err(|e| format!("EXDATE: {e}"))?;
                    exdates.push(at);
                }
            }
            Some(Recurrence {
                rrule: utc_until(rule.val.as_str(), zone)?,
                exdates,
            })
        }
    };
    let mut attendees = vec![];
    for attendee in props(component, "ATTENDEE") {
        let address = attendee.val.as_str().trim();
        let Some(email) = address
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
            .map(|_| address[7..].trim().to_lowercase())
        else {
            continue; // not an e-mail address: nobody to map it to
        };
        let optional = param(attendee, "ROLE").is_some_and(|r| {
            r.eq_ignore_ascii_case("OPT-PARTICIPANT") || r.eq_ignore_ascii_case("NON-PARTICIPANT")
        });
        if !attendees.iter().any(|(e, _)| *e == email) {
            attendees.push((email, optional));
        }
        if attendees.len() > domain::meeting::MAX_ATTENDEES {
            return Err(format!(
                "more than {} attendees: a meeting has at most that many",
                domain::meeting::MAX_ATTENDEES
            ));
        }
    }
    Ok(Event::Master(Box::new(ImportedMeeting {
        uid: uid.to_owned(),
        line,
        title: text_of(component, "SUMMARY").ok_or("SUMMARY (the title) is missing")?,
        description: text_of(component, "DESCRIPTION"),
        location: text_of(component, "LOCATION"),
        starts_at,
        ends_at,
        time_zone: zone.name().to_owned(),
        recurrence,
        attendees,
        cancelled,
        occurrences: BTreeMap::new(),
    })))
}

/// A DATE-TIME property: UTC (`…Z`), or local in its `TZID` (or, for `DTEND` and the like,
/// in `default_zone` when it has none but is not floating either). Returns the instant and
/// the zone it was given in.
fn date_time(
    property: &Property<'_>,
    default_zone: Option<Tz>,
) -> Result<(DateTime<Utc>, Tz), String> {
    date_time_value(
        property.val.as_str(),
        param(property, "TZID"),
        param(property, "VALUE"),
        default_zone,
    )
}

/// [`date_time`] of one value with its `TZID` and `VALUE` parameters.
fn date_time_value(
    value: &str,
    tzid: Option<&str>,
    value_type: Option<&str>,
    default_zone: Option<Tz>,
) -> Result<(DateTime<Utc>, Tz), String> {
    let value = value.trim();
    let is_date = value_type.is_some_and(|v| v.eq_ignore_ascii_case("DATE"))
        || (value.len() == 8 && value.chars().all(|c| c.is_ascii_digit()));
    if is_date {
        return Err("all-day events (dates without a time) are not supported".into());
    }
    if let Some(utc) = value.strip_suffix('Z').or_else(|| value.strip_suffix('z')) {
        let naive = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .map_err(|_| format!("{value:?} is not a date-time like 20270301T090000Z"))?;
        let zone = match tzid {
            Some(tzid) => zone(tzid)?,
            None => default_zone.unwrap_or(Tz::UTC),
        };
        return Ok((Utc.from_utc_datetime(&naive), zone));
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S")
        .map_err(|_| format!("{value:?} is not a date-time like 20270301T090000"))?;
    let zone = match (tzid, default_zone) {
        (Some(tzid), _) => zone(tzid)?,
        (None, Some(zone)) => zone,
        (None, None) => {
            return Err("a floating time (no TZID, no Z) names no instant: give a TZID".into())
        }
    };
    let local = zone.from_local_datetime(&naive).earliest().ok_or_else(|| {
        format!(
            "{value} does not exist in {} (a daylight-saving gap)",
            zone.name()
        )
    })?;
    Ok((local.with_timezone(&Utc), zone))
}

/// An IANA zone from a `TZID`: an IANA name, also in the `/vendor/…/Europe/Berlin` form some
/// producers use, or a Windows zone name as Outlook and Exchange write them (`W. Europe
/// Standard Time`), mapped by CLDR's table to its world-wide default zone.
fn zone(tzid: &str) -> Result<Tz, String> {
    let tzid = tzid.trim();
    if let Ok(zone) = tzid.parse::<Tz>() {
        return Ok(zone);
    }
    if let Some(zone) = localzone::win_zone_to_iana(tzid, Some("001")).and_then(|z| z.parse().ok())
    {
        return Ok(zone);
    }
    let parts: Vec<&str> = tzid.split('/').collect();
    (1..parts.len())
        .filter_map(|from| parts[from..].join("/").parse::<Tz>().ok())
        .next()
        .ok_or_else(|| {
            format!(
                "unknown time zone {:?}: use an IANA name such as Europe/Berlin",
                clip(tzid)
            )
        })
}

/// The rule with a local or DATE `UNTIL` turned into UTC (the form the product keeps).
fn utc_until(rule: &str, zone: Tz) -> Result<String, String> {
    let parts: Vec<String> = rule
        .trim()
        .split(';')
        .map(|part| {
            let Some((key, value)) = part.split_once('=') else {
                return Ok(part.to_owned());
            };
            if !key.trim().eq_ignore_ascii_case("UNTIL") || value.ends_with(['Z', 'z']) {
                return Ok(part.to_owned());
            }
            let local = match NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S") {
                Ok(at) => at,
                Err(_) => NaiveDate::parse_from_str(value, "%Y%m%d")
                    .map_err(|_| format!("RRULE: UNTIL {value:?} is no date or date-time"))?
                    .and_hms_opt(23, 59, 59)
                    .expect("BUG: 23:59:59 is a time"),
            };
            let at = zone
                .from_local_datetime(&local)
                .earliest()
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&local));
            Ok(format!("UNTIL={}", at.format("%Y%m%dT%H%M%SZ")))
        })
        .collect::<Result<_, String>>()?;
    Ok(parts.join(";"))
}

/// An RFC 5545 DURATION (`P1W`, `P1DT2H`, `PT1H30M`); positive only.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim().strip_prefix('+').unwrap_or(text.trim());
    let rest = text.strip_prefix('P')?;
    let (days_part, time_part) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = Duration::zero();
    let mut take = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, seconds) = units.iter().find(|(u, _)| *u == c)?;
            let n: i64 = number.parse().ok()?;
            total += Duration::seconds(n.checked_mul(*seconds)?);
            number.clear();
        }
        number.is_empty().then_some(())
    };
    take(days_part, &[('W', 604_800), ('D', 86_400)])?;
    if let Some(time) = time_part {
        take(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    (total > Duration::zero()).then_some(total)
}

#[cfg(test)]
mod tests;
