//! Pure time arithmetic of free/busy and find-times: merging busy intervals, working hours in a
//! user's time zone, and ranking candidate slots. No database, no HTTP, so it is unit-tested
//! exhaustively here.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

/// Candidate slots start on this grid (minutes past the hour, in UTC: 00, 15, 30, 45).
pub const GRID_MINUTES: i64 = 15;

/// At most this many suggestions are returned.
pub const MAX_SUGGESTIONS: usize = 20;

/// A half-open time interval `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { start, end }
    }
}

/// Sorts and merges intervals that overlap or touch (`[9,10)` and `[10,11)` become `[9,11)`:
/// for free/busy there is no free time between them). Empty intervals are dropped.
pub fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.retain(|i| i.end > i.start);
    intervals.sort_by_key(|i| (i.start, i.end));
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for interval in intervals {
        match merged.last_mut() {
            Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
            _ => merged.push(interval),
        }
    }
    merged
}

/// Cuts intervals to `[from, to)`, dropping those entirely outside.
pub fn clip(intervals: Vec<Interval>, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    intervals
        .into_iter()
        .map(|i| Interval::new(i.start.max(from), i.end.min(to)))
        .filter(|i| i.end > i.start)
        .collect()
}

/// Whether `[start, end)` overlaps any of `busy`, which must be sorted and merged.
fn overlaps(busy: &[Interval], start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    // Merged intervals are sorted by start and by end alike.
    let first_ending_after_start = busy.partition_point(|b| b.end <= start);
    busy.get(first_ending_after_start)
        .is_some_and(|b| b.start < end)
}

/// Working hours in a user's own time zone.
#[derive(Clone, Debug)]
pub struct LocalHours {
    pub time_zone: Tz,
    pub days: Vec<chrono::Weekday>,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl LocalHours {
    /// From the stored profile values; `None` when they cannot be understood (the user then
    /// counts as always available, and the caller logs it).
    pub fn from_profile(time_zone: &str, hours: &domain::WorkingHours) -> Option<Self> {
        Some(Self {
            time_zone: time_zone.parse().ok()?,
            days: hours.days.iter().map(|&d| d.into()).collect(),
            start: hours.start_time()?,
            end: hours.end_time()?,
        })
    }

    /// Whether `[start, end)` lies within one working day: same local date, a working weekday,
    /// from `start` to `end` local time.
    pub fn contains(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        use chrono::Datelike;
        let local_start = start.with_timezone(&self.time_zone);
        let local_end = end.with_timezone(&self.time_zone);
        local_start.date_naive() == local_end.date_naive()
            && self.days.contains(&local_start.weekday())
            && local_start.time() >= self.start
            && local_end.time() <= self.end
    }
}

/// One person to find a time for.
#[derive(Clone, Debug)]
pub struct Participant {
    pub id: Uuid,
    /// Busy intervals, sorted and merged (see [`merge`]).
    pub busy: Vec<Interval>,
    /// `None`: no working hours known, always available.
    pub working_hours: Option<LocalHours>,
}

/// A candidate meeting time and who is free for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Free participants, in the order they were given.
    pub available: Vec<Uuid>,
    /// Those of `available` for whom the slot lies inside their working hours in their own
    /// time zone (or who have none).
    pub in_working_hours: Vec<Uuid>,
}

/// The first grid point at or after `t`.
pub fn grid_ceil(t: DateTime<Utc>) -> DateTime<Utc> {
    let step = GRID_MINUTES * 60;
    let seconds = t.timestamp();
    let aligned = seconds.div_euclid(step) * step;
    let aligned = if aligned == seconds && t.timestamp_subsec_nanos() == 0 {
        aligned
    } else {
        aligned + step
    };
    DateTime::from_timestamp(aligned, 0).expect("BUG: grid points stay in chrono's range")
}

/// Candidate slots of `duration` on the 15-minute grid inside `[from, to]`, ranked by how many
/// participants are free (everyone free first), then by how many of them it suits in their
/// own working hours and time zone, earlier first among equals; at most [`MAX_SUGGESTIONS`]. Slots where nobody is free are never suggested. With
/// `working_hours_only`, a slot must lie inside the working hours of every participant that
/// has them.
pub fn find_times(
    participants: &[Participant],
    duration: Duration,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    working_hours_only: bool,
) -> Vec<Suggestion> {
    let step = Duration::minutes(GRID_MINUTES);
    let mut candidates = Vec::new();
    let mut start = grid_ceil(from);
    while start + duration <= to {
        let end = start + duration;
        let suits = |p: &Participant| {
            p.working_hours
                .as_ref()
                .is_none_or(|hours| hours.contains(start, end))
        };
        if !working_hours_only || participants.iter().all(suits) {
            let free: Vec<&Participant> = participants
                .iter()
                .filter(|p| !overlaps(&p.busy, start, end))
                .collect();
            if !free.is_empty() {
                candidates.push(Suggestion {
                    starts_at: start,
                    ends_at: end,
                    available: free.iter().map(|p| p.id).collect(),
                    in_working_hours: free.iter().filter(|p| suits(p)).map(|p| p.id).collect(),
                });
            }
        }
        start += step;
    }
    // Stable: among equally good slots the earlier one stays first.
    candidates.sort_by_key(|s| std::cmp::Reverse((s.available.len(), s.in_working_hours.len())));
    candidates.truncate(MAX_SUGGESTIONS);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, day, hour, minute, 0).unwrap()
    }

    fn iv(day: u32, h1: u32, m1: u32, h2: u32, m2: u32) -> Interval {
        Interval::new(t(day, h1, m1), t(day, h2, m2))
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn overlapping_and_touching_intervals_merge_and_disjoint_ones_stay() {
        let merged = merge(vec![
            iv(1, 13, 0, 14, 0),
            iv(1, 9, 0, 10, 0),
            iv(1, 9, 30, 11, 0),
            iv(1, 11, 0, 11, 30),
            iv(1, 9, 45, 9, 50),
        ]);
        assert_eq!(merged, vec![iv(1, 9, 0, 11, 30), iv(1, 13, 0, 14, 0)]);
    }

    #[test]
    fn clipping_cuts_to_the_range_and_drops_what_is_outside() {
        let clipped = clip(
            vec![iv(1, 7, 0, 9, 0), iv(1, 9, 30, 10, 0), iv(1, 11, 0, 13, 0)],
            t(1, 8, 0),
            t(1, 12, 0),
        );
        assert_eq!(
            clipped,
            vec![iv(1, 8, 0, 9, 0), iv(1, 9, 30, 10, 0), iv(1, 11, 0, 12, 0)]
        );
        assert!(clip(vec![iv(1, 5, 0, 6, 0)], t(1, 8, 0), t(1, 9, 0)).is_empty());
    }

    #[test]
    fn the_grid_rounds_up_to_the_next_quarter_hour() {
        assert_eq!(grid_ceil(t(1, 9, 0)), t(1, 9, 0));
        assert_eq!(grid_ceil(t(1, 9, 1)), t(1, 9, 15));
        assert_eq!(grid_ceil(t(1, 9, 0) + Duration::seconds(1)), t(1, 9, 15));
        assert_eq!(grid_ceil(t(1, 9, 50)), t(1, 10, 0));
    }

    #[test]
    fn slots_where_everyone_is_free_rank_first_then_by_time() {
        let alice = Participant {
            id: id(1),
            busy: merge(vec![iv(1, 9, 0, 10, 0)]),
            working_hours: None,
        };
        let bob = Participant {
            id: id(2),
            busy: merge(vec![iv(1, 10, 0, 10, 30)]),
            working_hours: None,
        };
        let suggestions = find_times(
            &[alice, bob],
            Duration::minutes(30),
            t(1, 9, 0),
            t(1, 11, 0),
            false,
        );
        let summary: Vec<_> = suggestions
            .iter()
            .map(|s| (s.starts_at, s.available.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (t(1, 10, 30), vec![id(1), id(2)]),
                (t(1, 9, 0), vec![id(2)]),
                (t(1, 9, 15), vec![id(2)]),
                (t(1, 9, 30), vec![id(2)]),
                // 09:45–10:15 overlaps both meetings: nobody is free, no suggestion.
                (t(1, 10, 0), vec![id(1)]),
                (t(1, 10, 15), vec![id(1)]),
            ]
        );
        assert!(suggestions
            .iter()
            .all(|s| s.ends_at - s.starts_at == Duration::minutes(30)));
    }

    #[test]
    fn slots_never_end_after_the_range_and_nobody_free_is_no_suggestion() {
        let busy = Participant {
            id: id(1),
            busy: merge(vec![iv(1, 9, 0, 10, 0)]),
            working_hours: None,
        };
        let suggestions = find_times(
            &[busy],
            Duration::minutes(60),
            t(1, 9, 0),
            t(1, 11, 10),
            false,
        );
        let starts: Vec<_> = suggestions.iter().map(|s| s.starts_at).collect();
        assert_eq!(starts, vec![t(1, 10, 0)]);
    }

    #[test]
    fn at_most_twenty_suggestions_are_made() {
        let free = Participant {
            id: id(1),
            busy: vec![],
            working_hours: None,
        };
        let suggestions = find_times(
            &[free],
            Duration::minutes(15),
            t(1, 0, 0),
            t(3, 0, 0),
            false,
        );
        assert_eq!(suggestions.len(), MAX_SUGGESTIONS);
        assert_eq!(suggestions[0].starts_at, t(1, 0, 0));
    }

    #[test]
    fn among_slots_everyone_is_free_for_those_inside_each_ones_working_hours_rank_first() {
        // Monday 2027-03-01: Berlin (UTC+1) works 09–17, New York (UTC−5) 09–17: both are at
        // work from 14:00 to 16:00 UTC only.
        let hours = |zone: &str| {
            LocalHours::from_profile(
                zone,
                &domain::WorkingHours {
                    days: vec![domain::Weekday::Mon],
                    start: "09:00".into(),
                    end: "17:00".into(),
                },
            )
        };
        let berlin = Participant {
            id: id(1),
            busy: vec![],
            working_hours: hours("Europe/Berlin"),
        };
        let new_york = Participant {
            id: id(2),
            busy: vec![],
            working_hours: hours("America/New_York"),
        };
        let suggestions = find_times(
            &[berlin, new_york],
            Duration::hours(1),
            t(1, 6, 0),
            t(1, 22, 0),
            false,
        );
        let both: Vec<DateTime<Utc>> = suggestions
            .iter()
            .take_while(|s| s.in_working_hours.len() == 2)
            .map(|s| s.starts_at)
            .collect();
        // 14:00, 14:15 … 15:00 start a one-hour slot inside both working days.
        assert_eq!(both.len(), 5, "{suggestions:?}");
        assert_eq!(both[0], t(1, 14, 0));
        assert_eq!(*both.last().unwrap(), t(1, 15, 0));
        // Then the slots inside one of them, earliest first: Berlin's morning.
        assert_eq!(suggestions[5].starts_at, t(1, 8, 0));
        assert_eq!(suggestions[5].in_working_hours, [id(1)]);
        assert!(suggestions.iter().all(|s| s.available.len() == 2));
    }

    #[test]
    fn working_hours_are_read_in_the_users_time_zone() {
        // 2027-03-01 is a Monday; Berlin is UTC+1 in March before the DST change.
        let hours = LocalHours::from_profile(
            "Europe/Berlin",
            &domain::WorkingHours {
                days: vec![domain::Weekday::Mon],
                start: "09:00".into(),
                end: "17:00".into(),
            },
        )
        .unwrap();
        assert!(hours.contains(t(1, 8, 0), t(1, 9, 0)), "09:00–10:00 Berlin");
        assert!(
            !hours.contains(t(1, 7, 45), t(1, 8, 45)),
            "starts 08:45 Berlin"
        );
        assert!(
            hours.contains(t(1, 15, 0), t(1, 16, 0)),
            "ends 17:00 Berlin"
        );
        assert!(
            !hours.contains(t(1, 15, 30), t(1, 16, 30)),
            "ends 17:30 Berlin"
        );
        assert!(
            !hours.contains(t(2, 8, 0), t(2, 9, 0)),
            "Tuesday is not a working day"
        );
    }

    #[test]
    fn with_working_hours_only_every_participants_hours_bound_the_slots() {
        let berlin = Participant {
            id: id(1),
            busy: vec![],
            working_hours: LocalHours::from_profile(
                "Europe/Berlin",
                &domain::WorkingHours {
                    days: vec![domain::Weekday::Mon],
                    start: "09:00".into(),
                    end: "12:00".into(),
                },
            ),
        };
        let london = Participant {
            id: id(2),
            busy: vec![],
            working_hours: LocalHours::from_profile(
                "Europe/London",
                &domain::WorkingHours {
                    days: vec![domain::Weekday::Mon],
                    start: "09:00".into(),
                    end: "17:00".into(),
                },
            ),
        };
        let anytime = Participant {
            id: id(3),
            busy: vec![],
            working_hours: None,
        };
        // Berlin 09–12 is 08–11 UTC, London 09–17 is 09–17 UTC: the overlap is 09–11 UTC.
        let suggestions = find_times(
            &[berlin, london, anytime],
            Duration::minutes(60),
            t(1, 0, 0),
            t(2, 0, 0),
            true,
        );
        let starts: Vec<_> = suggestions.iter().map(|s| s.starts_at).collect();
        assert_eq!(
            starts,
            vec![
                t(1, 9, 0),
                t(1, 9, 15),
                t(1, 9, 30),
                t(1, 9, 45),
                t(1, 10, 0)
            ]
        );
    }
}
