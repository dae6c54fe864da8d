//! Recurring series: the RFC 5545 rule (`RRULE`, `EXDATE`) read in the series' own time zone,
//! and its expansion into occurrences with the per-occurrence changes applied.
//!
//! The rule repeats the *local* start time: a weekly 09:00 `Europe/Berlin` series is at
//! 09:00 in Berlin before and after daylight-saving changes, so its UTC instant moves by an
//! hour twice a year. Every occurrence lasts as long as the first (an absolute duration).
//!
//! An occurrence is named by its *original* start in UTC — where the rule puts it — whether or
//! not it was moved since. Expansion is always bounded: by a window, or by the rule's own
//! `COUNT`/`UNTIL`; an open-ended rule is never expanded without a window.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rrule::{Frequency, RRule, RRuleSet, Tz, Unvalidated};
use serde::{Deserialize, Serialize};

use super::values::Recurrence;
use crate::common::FieldError;

/// Longest rule text accepted.
pub const MAX_RRULE_CHARS: usize = 500;
/// Most excluded dates of one series.
pub const MAX_EXDATES: usize = 1_000;
/// Largest `COUNT` of a rule.
pub const MAX_COUNT: u32 = 5_000;
/// Most occurrences with their own time, cancellation or answers in one series.
pub const MAX_CHANGED_OCCURRENCES: usize = 1_000;
/// Most occurrences one expansion returns; a window that holds more is the caller's error.
pub const MAX_EXPANDED: usize = 10_000;

/// What happened to one occurrence of a series, by its original start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceChange {
    /// Its start now (the original one unless moved).
    pub starts_at: DateTime<Utc>,
    /// Its end now.
    pub ends_at: DateTime<Utc>,
    /// Called off (the series goes on).
    #[serde(default)]
    pub cancelled: bool,
}

impl OccurrenceChange {
    /// Marks `occurrence` cancelled in `changes`: where it was moved to if it was, else at the
    /// rule's time, `length` long. The one rule both the aggregate and the read models fold.
    pub fn cancel(
        changes: &mut BTreeMap<DateTime<Utc>, OccurrenceChange>,
        occurrence: DateTime<Utc>,
        length: Duration,
    ) {
        changes
            .entry(occurrence)
            .or_insert(OccurrenceChange {
                starts_at: occurrence,
                ends_at: occurrence + length,
                cancelled: true,
            })
            .cancelled = true;
    }
}

/// One occurrence of a series, as the calendar shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// Where the rule puts it: the occurrence's name (`RECURRENCE-ID`).
    pub original_start: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Called off alone (the series goes on).
    pub cancelled: bool,
    /// Moved or cancelled: not as the rule has it.
    pub changed: bool,
}

/// A rule bound to its series: first start, duration and time zone.
#[derive(Clone, Debug)]
pub struct Series {
    set: RRuleSet,
    rule: RRule,
    duration: Duration,
    starts_at: DateTime<Utc>,
}

impl Series {
    /// The series of a meeting starting `starts_at`, ending `ends_at` (its first occurrence),
    /// planned in `time_zone`. Checks what [`validate_recurrence`] checks.
    pub fn new(
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        time_zone: &str,
        recurrence: &Recurrence,
    ) -> Result<Self, FieldError> {
        let zone: chrono_tz::Tz = time_zone
            .parse()
            .map_err(|_| FieldError::new("time_zone", "must be an IANA time zone name"))?;
        let text = recurrence.rrule.trim();
        if text.is_empty() || text.chars().count() > MAX_RRULE_CHARS {
            return Err(invalid(format!(
                "must be 1 to {MAX_RRULE_CHARS} characters"
            )));
        }
        if text.contains(['\r', '\n']) || text.to_ascii_uppercase().starts_with("RRULE") {
            return Err(invalid(
                "give the rule's value only, e.g. FREQ=WEEKLY;BYDAY=MO (no RRULE: prefix, one line)",
            ));
        }
        let unvalidated: RRule<Unvalidated> = text
            .parse()
            .map_err(|e: rrule::RRuleError| invalid(e.to_string()))?;
        match unvalidated.get_freq() {
            Frequency::Yearly | Frequency::Monthly | Frequency::Weekly | Frequency::Daily => {}
            _ => return Err(invalid("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")),
        }
        if unvalidated.get_count().is_some_and(|c| c > MAX_COUNT) {
            return Err(invalid(format!("COUNT must be at most {MAX_COUNT}")));
        }
        if !unvalidated.get_by_hour().is_empty()
            || !unvalidated.get_by_minute().is_empty()
            || !unvalidated.get_by_second().is_empty()
        {
            // One occurrence a day at most: the series' start gives the time of day.
            return Err(invalid(
                "BYHOUR, BYMINUTE and BYSECOND are not supported: the start gives the time",
            ));
        }
        let dt_start = starts_at.with_timezone(&Tz::Tz(zone));
        let rule = unvalidated
            .validate(dt_start)
            .map_err(|e| invalid(e.to_string()))?;
        if recurrence.exdates.len() > MAX_EXDATES {
            return Err(FieldError::new(
                "recurrence.exdates",
                format!("at most {MAX_EXDATES} dates"),
            ));
        }
        let mut set = RRuleSet::new(dt_start).rrule(rule.clone());
        for exdate in &recurrence.exdates {
            set = set.exdate(exdate.with_timezone(&Tz::UTC));
        }
        let series = Series {
            set,
            rule,
            duration: ends_at - starts_at,
            starts_at,
        };
        // RFC 5545 counts DTSTART as the first occurrence even when the rule does not
        // produce it; calendars disagree on that, so it must agree with the rule.
        let first = series.natural(None).next();
        if first != Some(starts_at) {
            return Err(invalid(
                "starts_at must be an occurrence of the rule (its first one), in the meeting's time zone",
            ));
        }
        Ok(series)
    }

    /// The natural occurrence starts (rule minus exdates), from the first, bounded by the
    /// rule's own end and the crate's loop limit; `until` stops the walk early.
    fn natural(&self, until: Option<DateTime<Utc>>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut iter = (&self.set.clone().limit()).into_iter();
        let mut taken = 0usize;
        std::iter::from_fn(move || {
            if taken >= MAX_COUNT as usize * 20 {
                return None;
            }
            let next = iter.next()?.with_timezone(&Utc);
            taken += 1;
            match until {
                Some(until) if next >= until => None,
                _ => Some(next),
            }
        })
    }

    /// First start of the series.
    pub fn starts_at(&self) -> DateTime<Utc> {
        self.starts_at
    }

    /// How long each occurrence lasts (unless moved).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The rule as stored (normalized by the parser), for `RRULE:` lines.
    pub fn rrule_text(&self) -> String {
        self.rule.to_string()
    }

    /// Whether `at` is an original start the rule produces (exdates excluded).
    pub fn is_occurrence(&self, at: DateTime<Utc>) -> bool {
        if at < self.starts_at {
            return false;
        }
        self.natural(Some(at + Duration::seconds(1)))
            .any(|start| start == at)
    }

    /// Whether the rule ends (`COUNT` or `UNTIL`); an open-ended series is expanded only
    /// inside a window.
    pub fn is_bounded(&self) -> bool {
        self.rule.get_count().is_some() || self.rule.get_until().is_some()
    }

    /// The end of the last natural occurrence of a bounded rule (`None`: open-ended). Moved
    /// occurrences are the caller's to add.
    pub fn last_end(&self) -> Option<DateTime<Utc>> {
        if !self.is_bounded() {
            return None;
        }
        self.natural(None)
            .last()
            .map(|start| start + self.duration)
            .or(Some(self.starts_at + self.duration))
    }

    /// Occurrences overlapping `[from, to)`, sorted by start, with `changes` applied: moved
    /// ones where they are now, cancelled ones marked. At most [`MAX_EXPANDED`]; `Err` with
    /// that number when the window holds more.
    pub fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        changes: &BTreeMap<DateTime<Utc>, OccurrenceChange>,
    ) -> Result<Vec<Occurrence>, usize> {
        let mut found = Vec::new();
        // Natural starts from `from - duration` on overlap the window.
        let lower = from - self.duration;
        for start in self.natural(Some(to)) {
            if start <= lower {
                continue;
            }
            if changes.contains_key(&start) {
                continue; // placed below, where it is now
            }
            found.push(Occurrence {
                original_start: start,
                starts_at: start,
                ends_at: start + self.duration,
                cancelled: false,
                changed: false,
            });
            if found.len() > MAX_EXPANDED {
                return Err(MAX_EXPANDED);
            }
        }
        for (original, change) in changes {
            if change.starts_at < to && change.ends_at > from && self.is_occurrence(*original) {
                found.push(Occurrence {
                    original_start: *original,
                    starts_at: change.starts_at,
                    ends_at: change.ends_at,
                    cancelled: change.cancelled,
                    changed: true,
                });
            }
        }
        if found.len() > MAX_EXPANDED {
            return Err(MAX_EXPANDED);
        }
        found.sort_by_key(|o| (o.starts_at, o.original_start));
        Ok(found)
    }

    /// The local date-time of `at` in the series' zone (for `RECURRENCE-ID;TZID=` lines).
    pub fn local(&self, at: DateTime<Utc>) -> chrono::NaiveDateTime {
        self.set
            .get_dt_start()
            .timezone()
            .from_utc_datetime(&at.naive_utc())
            .naive_local()
    }
}

fn invalid(message: impl Into<String>) -> FieldError {
    FieldError::new("recurrence.rrule", message)
}

/// Checks a series' rule against its first occurrence and zone: `Ok` when [`Series::new`]
/// accepts it.
pub fn validate_recurrence(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    time_zone: &str,
    recurrence: &Recurrence,
) -> Result<(), FieldError> {
    Series::new(starts_at, ends_at, time_zone, recurrence).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekly(zone: &str, first: &str, rule: &str) -> Series {
        let start = utc(first);
        Series::new(
            start,
            start + Duration::hours(1),
            zone,
            &Recurrence {
                rrule: rule.into(),
                exdates: vec![],
            },
        )
        .unwrap()
    }

    fn local_times(series: &Series, zone: &str, from: &str, to: &str) -> Vec<NaiveTime> {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        series
            .between(utc(from), utc(to), &BTreeMap::new())
            .unwrap()
            .iter()
            .map(|o| o.starts_at.with_timezone(&tz).time())
            .collect()
    }

    /// Weekly 09:00 across both transitions of a zone: the local time holds, the UTC instant
    /// moves by the zone's offset change.
    fn stays_at_nine(zone: &str, first: &str, from: &str, to: &str, utc_hours: &[u32]) {
        let series = weekly(zone, first, "FREQ=WEEKLY");
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let times = local_times(&series, zone, from, to);
        assert!(times.len() >= 40, "{zone}: {}", times.len());
        assert!(times.iter().all(|t| *t == nine), "{zone}: {times:?}");
        let mut seen: Vec<u32> = series
            .between(utc(from), utc(to), &BTreeMap::new())
            .unwrap()
            .iter()
            .map(|o| chrono::Timelike::hour(&o.starts_at))
            .collect();
        seen.dedup();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, utc_hours, "{zone}: UTC hours");
    }

    #[test]
    fn a_weekly_berlin_meeting_stays_at_nine_across_both_dst_changes() {
        // CET (UTC+1) in winter, CEST (UTC+2) from 2027-03-28 to 2027-10-31.
        stays_at_nine(
            "Europe/Berlin",
            "2027-01-04T08:00:00Z",
            "2027-01-01T00:00:00Z",
            "2027-12-31T00:00:00Z",
            &[7, 8],
        );
    }

    #[test]
    fn a_weekly_new_york_meeting_stays_at_nine_across_both_dst_changes() {
        // EST (UTC-5), EDT (UTC-4) from 2027-03-14 to 2027-11-07.
        stays_at_nine(
            "America/New_York",
            "2027-01-04T14:00:00Z",
            "2027-01-01T00:00:00Z",
            "2027-12-31T00:00:00Z",
            &[13, 14],
        );
    }

    #[test]
    fn a_weekly_sydney_meeting_stays_at_nine_across_both_dst_changes() {
        // AEDT (UTC+11) in the southern summer, AEST (UTC+10) from 2027-04-04 to 2027-10-03.
        stays_at_nine(
            "Australia/Sydney",
            "2027-01-03T22:00:00Z",
            "2027-01-01T00:00:00Z",
            "2027-12-31T00:00:00Z",
            &[22, 23],
        );
    }

    #[test]
    fn the_occurrences_around_the_berlin_spring_change_move_by_one_hour_in_utc() {
        let series = weekly(
            "Europe/Berlin",
            "2027-03-22T08:00:00Z",
            "FREQ=WEEKLY;COUNT=3",
        );
        let starts: Vec<_> = series
            .between(
                utc("2027-03-01T00:00:00Z"),
                utc("2027-05-01T00:00:00Z"),
                &BTreeMap::new(),
            )
            .unwrap()
            .into_iter()
            .map(|o| o.starts_at)
            .collect();
        assert_eq!(
            starts,
            vec![
                utc("2027-03-22T08:00:00Z"),
                utc("2027-03-29T07:00:00Z"),
                utc("2027-04-05T07:00:00Z")
            ]
        );
        assert_eq!(series.last_end(), Some(utc("2027-04-05T08:00:00Z")));
    }

    #[test]
    fn moved_and_cancelled_occurrences_show_where_they_are_now() {
        let series = weekly("UTC", "2027-01-04T09:00:00Z", "FREQ=WEEKLY;BYDAY=MO");
        let mut changes = BTreeMap::new();
        // The second Monday moves to Wednesday (outside the natural slot), the third is off.
        changes.insert(
            utc("2027-01-11T09:00:00Z"),
            OccurrenceChange {
                starts_at: utc("2027-01-13T15:00:00Z"),
                ends_at: utc("2027-01-13T16:00:00Z"),
                cancelled: false,
            },
        );
        changes.insert(
            utc("2027-01-18T09:00:00Z"),
            OccurrenceChange {
                starts_at: utc("2027-01-18T09:00:00Z"),
                ends_at: utc("2027-01-18T10:00:00Z"),
                cancelled: true,
            },
        );
        let found = series
            .between(
                utc("2027-01-12T00:00:00Z"),
                utc("2027-01-19T00:00:00Z"),
                &changes,
            )
            .unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].original_start, utc("2027-01-11T09:00:00Z"));
        assert_eq!(found[0].starts_at, utc("2027-01-13T15:00:00Z"));
        assert!(found[0].changed && !found[0].cancelled);
        assert!(found[1].cancelled);
        // The moved one is no longer on its original Monday.
        let monday = series
            .between(
                utc("2027-01-11T00:00:00Z"),
                utc("2027-01-12T00:00:00Z"),
                &changes,
            )
            .unwrap();
        assert!(monday.is_empty(), "{monday:?}");
    }

    #[test]
    fn exdates_remove_occurrences_and_open_ended_rules_stay_unbounded() {
        let start = utc("2027-01-04T09:00:00Z");
        let series = Series::new(
            start,
            start + Duration::minutes(30),
            "UTC",
            &Recurrence {
                rrule: "FREQ=DAILY".into(),
                exdates: vec![utc("2027-01-05T09:00:00Z")],
            },
        )
        .unwrap();
        assert!(!series.is_bounded());
        assert_eq!(series.last_end(), None);
        assert!(!series.is_occurrence(utc("2027-01-05T09:00:00Z")));
        assert!(series.is_occurrence(utc("2027-01-06T09:00:00Z")));
        assert!(!series.is_occurrence(utc("2027-01-06T09:30:00Z")));
        let days = series
            .between(start, utc("2027-01-08T00:00:00Z"), &BTreeMap::new())
            .unwrap();
        let dates: Vec<NaiveDate> = days.iter().map(|o| o.starts_at.date_naive()).collect();
        assert_eq!(
            dates,
            ["2027-01-04", "2027-01-06", "2027-01-07"].map(|d| d.parse::<NaiveDate>().unwrap())
        );
    }

    #[test]
    fn a_window_far_into_an_open_series_is_bounded_and_answers() {
        let series = weekly("Europe/Berlin", "2027-01-04T08:00:00Z", "FREQ=DAILY");
        let found = series
            .between(
                utc("2040-06-01T00:00:00Z"),
                utc("2040-06-08T00:00:00Z"),
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(found.len(), 7);
        assert!(series
            .between(
                utc("2027-01-01T00:00:00Z"),
                utc("2060-01-01T00:00:00Z"),
                &BTreeMap::new()
            )
            .is_err());
    }

    #[test]
    fn rules_that_cannot_make_a_calendar_series_are_refused_with_the_reason() {
        let start = utc("2027-01-04T09:00:00Z"); // a Monday
        let refuse = |rule: &str| {
            Series::new(
                start,
                start + Duration::hours(1),
                "UTC",
                &Recurrence {
                    rrule: rule.into(),
                    exdates: vec![],
                },
            )
            .unwrap_err()
            .message
        };
        assert!(refuse("FREQ=HOURLY").contains("FREQ"));
        assert!(refuse("RRULE:FREQ=DAILY").contains("prefix"));
        assert!(refuse("FREQ=DAILY;COUNT=100000").contains("COUNT"));
        assert!(refuse("FREQ=WEEKLY;BYDAY=TU").contains("first"));
        assert!(refuse("FREQ=DAILY;BYHOUR=9,10").contains("BYHOUR"));
        assert!(!refuse("FREQ=SOMETIMES").is_empty());
        assert!(!refuse("").is_empty());
        assert!(refuse(&"FREQ=DAILY;".repeat(100)).contains("characters"));
    }
}
