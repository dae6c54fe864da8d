//! The rules most meeting series have — daily or weekly with plain weekdays, monthly on days of
//! the month, an interval, `COUNT` or `UNTIL` — expanded by date arithmetic instead of the
//! `rrule` crate's general iterator, which is about two orders of magnitude slower per
//! occurrence (an agenda over a year of 200 weekly series walks 10,000 of them in one
//! request). Every other rule goes through `rrule`.
//!
//! The results are the crate's, occurrence for occurrence (a property test compares them,
//! daylight-saving gaps and folds included): local times that do not exist or exist twice are
//! placed as the crate places them, at the time's distance from local midnight.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use rrule::{Frequency, NWeekday, RRule};

/// How a plain rule repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Daily,
    Weekly,
    Monthly,
}

/// A daily or weekly rule with nothing but interval, plain weekdays and an end, or a monthly
/// one with nothing but interval, days of the month and an end.
#[derive(Clone, Debug)]
pub(super) struct Plain {
    zone: chrono_tz::Tz,
    first_date: NaiveDate,
    time: NaiveTime,
    step: Step,
    interval: i64,
    /// Weekdays as days after the week start (weekly), or the allowed weekdays (daily; empty:
    /// every day), sorted; unused monthly.
    days: Vec<u32>,
    /// Days of the month (monthly): 1 to 31, or -1 (the last) to -31, as `BYMONTHDAY` has
    /// them.
    month_days: Vec<i8>,
    week_start: Weekday,
    count: Option<u32>,
    until: Option<DateTime<Utc>>,
}

impl Plain {
    /// The plain form of `rule` starting at `start` in `zone`, if it has one. `month_days`
    /// are the rule's `BYMONTHDAY` values as written: the validated rule keeps only the
    /// positive ones and has no accessor for the others.
    pub(super) fn of(
        rule: &RRule,
        month_days: &[i8],
        start: DateTime<Utc>,
        zone: chrono_tz::Tz,
    ) -> Option<Self> {
        let step = match rule.get_freq() {
            Frequency::Daily => Step::Daily,
            Frequency::Weekly => Step::Weekly,
            Frequency::Monthly => Step::Monthly,
            _ => return None,
        };
        if !rule.get_by_set_pos().is_empty()
            || !rule.get_by_month().is_empty()
            || !rule.get_by_year_day().is_empty()
            || !rule.get_by_week_no().is_empty()
        {
            return None;
        }
        let local = start.with_timezone(&zone).naive_local();
        let week_start = rule.get_week_start();
        let (days, month_days) = match step {
            Step::Monthly if rule.get_by_weekday().is_empty() => {
                let mut month_days = match month_days {
                    [] => vec![i8::try_from(local.day()).ok()?],
                    days => days.to_vec(),
                };
                month_days.sort_unstable();
                month_days.dedup();
                (Vec::new(), month_days)
            }
            Step::Daily | Step::Weekly if month_days.is_empty() => {
                (Self::weekdays(rule, step, local.weekday())?, Vec::new())
            }
            _ => return None,
        };
        Some(Self {
            zone,
            first_date: local.date(),
            time: local.time(),
            step,
            interval: i64::from(rule.get_interval().max(1)),
            days,
            month_days,
            week_start,
            count: rule.get_count(),
            until: rule.get_until().map(|until| until.with_timezone(&Utc)),
        })
    }

    /// The `days` of a daily or weekly rule; `None` for an ordinal weekday
    /// (`2MO`), which is no plain rule. A weekly rule without weekdays repeats `first`'s.
    fn weekdays(rule: &RRule, step: Step, first: Weekday) -> Option<Vec<u32>> {
        let weekly = step == Step::Weekly;
        let week_start = rule.get_week_start();
        let mut weekdays = Vec::new();
        for day in rule.get_by_weekday() {
            match day {
                NWeekday::Every(day) => weekdays.push(*day),
                NWeekday::Nth(..) => return None,
            }
        }
        if weekly && weekdays.is_empty() {
            weekdays.push(first);
        }
        let mut days: Vec<u32> = weekdays
            .iter()
            .map(|day| match weekly {
                true => (7 + day.num_days_from_monday() - week_start.num_days_from_monday()) % 7,
                false => day.num_days_from_monday(),
            })
            .collect();
        days.sort_unstable();
        days.dedup();
        Some(days)
    }

    /// The rule's starts in order, from the first, ending with `COUNT`/`UNTIL` (excluded
    /// dates are the caller's to drop: `COUNT` counts them, as RFC 5545 says).
    pub(super) fn starts(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut dates = self.dates();
        let mut emitted = 0u32;
        std::iter::from_fn(move || loop {
            if self.count.is_some_and(|count| emitted >= count) {
                return None;
            }
            let date = dates.next()?;
            let Some(start) = self.instant(date) else {
                continue;
            };
            if self.until.is_some_and(|until| start > until) {
                return None;
            }
            emitted += 1;
            return Some(start);
        })
    }

    /// Candidate local dates, in order, unbounded.
    fn dates(&self) -> Box<dyn Iterator<Item = NaiveDate> + '_> {
        let first = self.first_date;
        if self.step == Step::Monthly {
            return Box::new(self.monthly_dates());
        }
        if self.step == Step::Daily {
            let step = self.interval;
            return Box::new(
                (0..)
                    .map_while(move |k: i64| first.checked_add_signed(Duration::days(k * step)))
                    .filter(|date| {
                        self.days.is_empty()
                            || self.days.contains(&date.weekday().num_days_from_monday())
                    }),
            );
        }
        let back = (7 + first.weekday().num_days_from_monday()
            - self.week_start.num_days_from_monday())
            % 7;
        let week = first - Duration::days(i64::from(back));
        let step = 7 * self.interval;
        Box::new(
            (0..)
                .map_while(move |k: i64| week.checked_add_signed(Duration::days(k * step)))
                .flat_map(move |week| {
                    self.days
                        .iter()
                        .map(move |day| week + Duration::days(i64::from(*day)))
                })
                .filter(move |date| *date >= first),
        )
    }

    /// Candidate local dates of a monthly rule, in order, unbounded: each listed day that the
    /// month has, every `interval` months from the first.
    fn monthly_dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        let first = self.first_date;
        let month_one = first.with_day(1).unwrap_or(first);
        (0..)
            .map_while(move |k: i64| {
                let months = u32::try_from(k * self.interval).ok()?;
                month_one.checked_add_months(chrono::Months::new(months))
            })
            .flat_map(move |month| {
                let next = month.checked_add_months(chrono::Months::new(1));
                let length = next.map_or(31, |next| (next - month).num_days()) as i32;
                let mut dates: Vec<NaiveDate> = self
                    .month_days
                    .iter()
                    .filter_map(|day| {
                        let day = i32::from(*day);
                        let day = if day < 0 { length + 1 + day } else { day };
                        (1..=length)
                            .contains(&day)
                            .then(|| month.with_day(day as u32))
                            .flatten()
                    })
                    .collect();
                dates.sort_unstable();
                dates.dedup();
                dates
            })
            .filter(move |date| *date >= first)
    }

    /// The instant of `time` on local `date`: the local time itself when it exists once,
    /// else that far after local midnight (what the `rrule` crate does in a gap or fold).
    fn instant(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        if let Some(at) = self
            .zone
            .from_local_datetime(&date.and_time(self.time))
            .single()
        {
            return Some(at.with_timezone(&Utc));
        }
        let midnight = self
            .zone
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .single()?;
        Some(midnight.with_timezone(&Utc) + (self.time - NaiveTime::MIN))
    }
}
