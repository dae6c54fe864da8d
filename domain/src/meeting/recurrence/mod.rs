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

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rrule::{Frequency, RRule, RRuleSet, Tz, Unvalidated};
use serde::{Deserialize, Serialize};

use super::values::Recurrence;
use plain::Plain;

mod plain;
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

impl OccurrenceChange {
    /// Puts `occurrence` at `starts_at`–`ends_at` in `changes` (on again if it was
    /// cancelled); back where the rule has it (`length` long from its original start), it is
    /// no longer a change at all. The one rule both the aggregate and the read models fold.
    pub fn reschedule(
        changes: &mut BTreeMap<DateTime<Utc>, OccurrenceChange>,
        occurrence: DateTime<Utc>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        length: Duration,
    ) {
        if starts_at == occurrence && ends_at == occurrence + length {
            changes.remove(&occurrence);
        } else {
            changes.insert(
                occurrence,
                OccurrenceChange {
                    starts_at,
                    ends_at,
                    cancelled: false,
                },
            );
        }
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
    /// The same rule by date arithmetic, when it is a plain one (see [`Plain`]).
    plain: Option<Plain>,
    exdates: BTreeSet<DateTime<Utc>>,
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
        let month_days = unvalidated.get_by_month_day().to_vec();
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
            plain: Plain::of(&rule, &month_days, starts_at, zone),
            exdates: recurrence.exdates.iter().copied().collect(),
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
        let mut iter: Box<dyn Iterator<Item = DateTime<Utc>> + '_> = match &self.plain {
            Some(plain) => Box::new(plain.starts().filter(|s| !self.exdates.contains(s))),
            None => Box::new(
                (&self.set.clone().limit())
                    .into_iter()
                    .map(|start| start.with_timezone(&Utc)),
            ),
        };
        let mut taken = 0usize;
        std::iter::from_fn(move || {
            if taken >= MAX_COUNT as usize * 20 {
                return None;
            }
            let next = iter.next()?;
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
        // Changes now inside the window, wherever their original start is: each is listed if
        // the rule has that start, which one walk finds for all of them.
        let moved_in: Vec<_> = changes
            .iter()
            .filter(|(_, change)| change.starts_at < to && change.ends_at > from)
            .collect();
        let walk_to = moved_in.last().map_or(to, |(original, _)| {
            to.max(**original + Duration::seconds(1))
        });
        let mut moved_in = moved_in.into_iter().peekable();
        // Natural starts from `from - duration` on overlap the window.
        let lower = from - self.duration;
        for start in self.natural(Some(walk_to)) {
            while let Some((original, change)) = moved_in.next_if(|(o, _)| **o <= start) {
                if *original == start {
                    found.push(Occurrence {
                        original_start: start,
                        starts_at: change.starts_at,
                        ends_at: change.ends_at,
                        cancelled: change.cancelled,
                        changed: true,
                    });
                }
            }
            if start <= lower || start >= to || changes.contains_key(&start) {
                continue; // outside, or changed (placed above if now inside)
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
        if found.len() > MAX_EXPANDED {
            return Err(MAX_EXPANDED);
        }
        found.sort_by_key(|o| (o.starts_at, o.original_start));
        Ok(found)
    }

    /// The rule split at the occurrence `at` (not the first): the part before it, ending just
    /// before `at`, and the part from `at` on, whose first occurrence is `at`. A `COUNT` is
    /// shared out (the rule's instances before `at` stay with the first part); an `UNTIL`
    /// stays with the second; exdates go where they fall.
    pub fn split(
        &self,
        recurrence: &Recurrence,
        at: DateTime<Utc>,
    ) -> Result<(Recurrence, Recurrence), FieldError> {
        if at <= self.starts_at || !self.is_occurrence(at) {
            return Err(FieldError::new(
                "occurrence_start",
                "must be an occurrence of the series after its first one",
            ));
        }
        let kept: Vec<&str> = recurrence
            .rrule
            .trim()
            .split(';')
            .filter(|part| {
                let key = part.split('=').next().unwrap_or("").trim();
                !key.eq_ignore_ascii_case("COUNT") && !key.eq_ignore_ascii_case("UNTIL")
            })
            .collect();
        let kept = kept.join(";");
        let until = (at - Duration::seconds(1)).format("%Y%m%dT%H%M%SZ");
        let before = Recurrence {
            rrule: format!("{kept};UNTIL={until}"),
            exdates: recurrence
                .exdates
                .iter()
                .filter(|d| **d < at)
                .copied()
                .collect(),
        };
        let rest = match self.rule.get_count() {
            Some(count) => {
                // COUNT counts the rule's instances, excluded dates included (RFC 5545).
                let counted =
                    RRuleSet::new(self.set.get_dt_start().to_owned()).rrule(self.rule.clone());
                let instances = (&counted)
                    .into_iter()
                    .take_while(|start| start.with_timezone(&Utc) < at)
                    .count();
                let left = (count as usize).saturating_sub(instances);
                format!("{kept};COUNT={left}")
            }
            None => match self.rule.get_until() {
                Some(until) => format!(
                    "{kept};UNTIL={}",
                    until.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ")
                ),
                None => kept,
            },
        };
        let after = Recurrence {
            rrule: rest,
            exdates: recurrence
                .exdates
                .iter()
                .filter(|d| **d >= at)
                .copied()
                .collect(),
        };
        Ok((before, after))
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
mod tests;
