//! `VTIMEZONE` components from the zone database (chrono-tz): the offset changes of a zone,
//! written as yearly rules when they follow one, else listed one by one.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use super::{text, Lines};

/// How many years after its first use a time zone's yearly rule is checked against the zone
/// database before it is written as an `RRULE` (otherwise every transition is listed).
const RULE_CHECK_YEARS: i32 = 30;

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

/// Most rendered `VTIMEZONE`s kept (a zone and a first year each; the years come from the
/// meetings, so the set is not bounded by the zone database alone).
const RENDERED_MOST: usize = 2_048;

/// The `VTIMEZONE` of `tz` from `first_year` on as folded lines ([`vtimezone`]), rendered
/// once: every feed with meetings in that zone writes the same lines, and finding the
/// transitions of 32 years day by day costs a feed more than its events.
pub(super) fn rendered(tz: Tz, first_year: i32) -> Arc<str> {
    static RENDERED: LazyLock<Rendered> = LazyLock::new(Default::default);
    rendered_in(&RENDERED, RENDERED_MOST, tz, first_year)
}

/// Rendered `VTIMEZONE`s by zone and first year.
type Rendered = Mutex<HashMap<(Tz, i32), Arc<str>>>;

/// [`rendered`] with its cache and bound: a full cache starts over.
fn rendered_in(cache: &Rendered, most: usize, tz: Tz, first_year: i32) -> Arc<str> {
    let cached = cache
        .lock()
        .expect("BUG: poisoned")
        .get(&(tz, first_year))
        .cloned();
    if let Some(text) = cached {
        return text;
    }
    let mut lines = Lines::default();
    vtimezone(&mut lines, tz, first_year);
    let text: Arc<str> = lines.text.into();
    let mut rendered = cache.lock().expect("BUG: poisoned");
    if rendered.len() >= most {
        rendered.clear();
    }
    rendered.insert((tz, first_year), Arc::clone(&text));
    text
}

/// The `VTIMEZONE` of `tz` valid from `first_year` on: two yearly `RRULE` observances when the
/// zone follows one yearly pattern for the next 30 years (what calendar apps expect), every
/// transition listed otherwise, and one `STANDARD` observance for a zone without changes.
pub(super) fn vtimezone(out: &mut Lines, tz: Tz, first_year: i32) {
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
            at: Utc
                .with_ymd_and_hms(1970, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or(at)
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
                    t.from == f.from && t.to == f.to && follows(t, yearly_rule(onset), onset.time())
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
    fn a_rendered_vtimezone_is_kept_and_the_cache_is_bounded() {
        let cache = Rendered::default();
        let berlin = chrono_tz::Europe::Berlin;
        let first = rendered_in(&cache, 2, berlin, 2027);
        let mut direct = Lines::default();
        vtimezone(&mut direct, berlin, 2027);
        assert_eq!(&*first, direct.text.as_str());
        assert!(Arc::ptr_eq(&first, &rendered_in(&cache, 2, berlin, 2027)));
        // Another first year is another component.
        let earlier = rendered_in(&cache, 2, berlin, 2020);
        assert!(earlier.contains("DTSTART:20190331T020000"), "{earlier}");
        assert_eq!(cache.lock().unwrap().len(), 2);
        // Full: the next one starts the cache over.
        rendered_in(&cache, 2, chrono_tz::UTC, 2027);
        assert_eq!(cache.lock().unwrap().len(), 1);
        assert!(!Arc::ptr_eq(&first, &rendered_in(&cache, 2, berlin, 2027)));
    }

    #[test]
    fn vtimezones_follow_the_yearly_rules_of_each_hemisphere() {
        let render = |zone: Tz| {
            let mut out = Lines::default();
            vtimezone(&mut out, zone, 2027);
            out.text
        };
        let berlin = render(chrono_tz::Europe::Berlin);
        assert!(
            berlin.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU"),
            "{berlin}"
        );
        assert!(
            berlin.contains("RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU"),
            "{berlin}"
        );
        assert!(berlin.contains("DTSTART:20260329T020000\r\n"), "{berlin}");
        assert!(
            berlin.contains("TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200"),
            "{berlin}"
        );
        let new_york = render(chrono_tz::America::New_York);
        assert!(new_york.contains("BYMONTH=3;BYDAY=2SU"), "{new_york}");
        assert!(new_york.contains("BYMONTH=11;BYDAY=1SU"), "{new_york}");
        let sydney = render(chrono_tz::Australia::Sydney);
        assert!(sydney.contains("BYMONTH=4;BYDAY=1SU"), "{sydney}");
        assert!(sydney.contains("BYMONTH=10;BYDAY=1SU"), "{sydney}");
        assert!(
            sydney.contains("TZOFFSETFROM:+1100\r\nTZOFFSETTO:+1000"),
            "{sydney}"
        );
        let tokyo = render(chrono_tz::Asia::Tokyo);
        assert!(
            tokyo.contains("BEGIN:STANDARD") && !tokyo.contains("DAYLIGHT"),
            "{tokyo}"
        );
        assert!(tokyo.contains("TZOFFSETTO:+0900"), "{tokyo}");
    }
}
