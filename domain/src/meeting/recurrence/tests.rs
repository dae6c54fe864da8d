//! Expansion, daylight-saving and split tests of [`Series`].
use super::*;
use chrono::{Datelike, NaiveDate, NaiveTime};

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

/// Where the occurrences of `series` (no changes) between `from` and `to` start.
fn starts(series: &Series, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    series
        .between(utc(from), utc(to), &BTreeMap::new())
        .unwrap()
        .iter()
        .map(|o| o.starts_at)
        .collect()
}

fn local_times(series: &Series, zone: &str, from: &str, to: &str) -> Vec<NaiveTime> {
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    starts(series, from, to)
        .iter()
        .map(|start| start.with_timezone(&tz).time())
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
    assert_eq!(
        starts(&series, "2027-03-01T00:00:00Z", "2027-05-01T00:00:00Z"),
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
    // A later Monday brought forward into the window, and a change to a time that is no
    // occurrence (a Tuesday), which is never shown.
    let moved = |starts_at: &str| OccurrenceChange {
        starts_at: utc(starts_at),
        ends_at: utc(starts_at) + Duration::hours(1),
        cancelled: false,
    };
    changes.insert(utc("2027-02-01T09:00:00Z"), moved("2027-01-14T11:00:00Z"));
    changes.insert(utc("2027-01-12T09:00:00Z"), moved("2027-01-15T11:00:00Z"));
    let found = series
        .between(
            utc("2027-01-12T00:00:00Z"),
            utc("2027-01-19T00:00:00Z"),
            &changes,
        )
        .unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].original_start, utc("2027-01-11T09:00:00Z"));
    assert_eq!(found[0].starts_at, utc("2027-01-13T15:00:00Z"));
    assert!(found[0].changed && !found[0].cancelled);
    assert_eq!(found[1].original_start, utc("2027-02-01T09:00:00Z"));
    assert_eq!(found[1].starts_at, utc("2027-01-14T11:00:00Z"));
    assert!(found[2].cancelled);
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

#[test]
fn a_split_shares_out_count_and_exdates_and_keeps_the_local_time() {
    // Sydney, Mondays 09:00 from 2027-03-01; daylight saving ends on 2027-04-04
    // (09:00 is 22:00 UTC the day before, then 23:00 UTC).
    let start = utc("2027-02-28T22:00:00Z");
    let recurrence = Recurrence {
        rrule: "FREQ=WEEKLY;BYDAY=MO;COUNT=10".into(),
        exdates: vec![utc("2027-03-07T22:00:00Z"), utc("2027-04-25T23:00:00Z")],
    };
    let zone = "Australia/Sydney";
    let series = Series::new(start, start + Duration::hours(1), zone, &recurrence).unwrap();
    let at = utc("2027-04-11T23:00:00Z"); // the seventh instance, after the change
    let (before, after) = series.split(&recurrence, at).unwrap();
    assert_eq!(before.rrule, "FREQ=WEEKLY;BYDAY=MO;UNTIL=20270411T225959Z");
    assert_eq!(before.exdates, [utc("2027-03-07T22:00:00Z")]);
    // Six instances before `at`, the excluded one among them: four are left.
    assert_eq!(after.rrule, "FREQ=WEEKLY;BYDAY=MO;COUNT=4");
    assert_eq!(after.exdates, [utc("2027-04-25T23:00:00Z")]);

    let first = Series::new(start, start + Duration::hours(1), zone, &before).unwrap();
    let rest = Series::new(at, at + Duration::hours(1), zone, &after).unwrap();
    let window = (utc("2027-01-01T00:00:00Z"), utc("2028-01-01T00:00:00Z"));
    let starts = |s: &Series| -> Vec<DateTime<Utc>> {
        s.between(window.0, window.1, &BTreeMap::new())
            .unwrap()
            .iter()
            .map(|o| o.starts_at)
            .collect()
    };
    let whole = starts(&series);
    let mut joined = starts(&first);
    joined.extend(starts(&rest));
    assert_eq!(joined, whole, "the two halves are the whole series");
    assert_eq!(whole.len(), 8);
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    assert!(whole
        .iter()
        .all(|at| at.with_timezone(&tz).time() == NaiveTime::from_hms_opt(9, 0, 0).unwrap()));
}

#[test]
fn a_split_keeps_until_with_the_later_part_and_refuses_the_first_occurrence() {
    let series = weekly(
        "UTC",
        "2027-01-04T10:00:00Z",
        "FREQ=WEEKLY;UNTIL=20270301T100000Z",
    );
    let recurrence = Recurrence {
        rrule: "FREQ=WEEKLY;UNTIL=20270301T100000Z".into(),
        exdates: vec![],
    };
    let (before, after) = series
        .split(&recurrence, utc("2027-02-01T10:00:00Z"))
        .unwrap();
    assert_eq!(before.rrule, "FREQ=WEEKLY;UNTIL=20270201T095959Z");
    assert_eq!(after.rrule, "FREQ=WEEKLY;UNTIL=20270301T100000Z");
    for not_a_split in [
        "2027-01-04T10:00:00Z",
        "2027-02-02T10:00:00Z",
        "2027-03-08T10:00:00Z",
    ] {
        assert_eq!(
            series
                .split(&recurrence, utc(not_a_split))
                .unwrap_err()
                .field,
            "occurrence_start",
            "{not_a_split}"
        );
    }
}

/// A `BYMONTHDAY` counted from the month's end keeps a daily rule off the fast path: the
/// validated rule hides negative days, and the fast path once took the rule for every day.
#[test]
fn a_daily_rule_on_the_last_day_of_the_month_is_not_every_day() {
    let series = weekly(
        "Europe/Berlin",
        "2027-01-31T08:00:00Z",
        "FREQ=DAILY;BYMONTHDAY=-1",
    );
    assert_eq!(
        starts(&series, "2027-01-01T00:00:00Z", "2027-05-01T00:00:00Z"),
        [
            "2027-01-31T08:00:00Z",
            "2027-02-28T08:00:00Z",
            "2027-03-31T07:00:00Z",
            "2027-04-30T07:00:00Z",
        ]
        .map(utc)
    );
}

/// Monthly on the 31st skips the shorter months; on the last day (`-1`) it does not.
#[test]
fn a_monthly_rule_skips_months_without_its_day_and_counts_from_the_end() {
    let days = |rule: &str| -> Vec<u32> {
        let series = weekly("America/New_York", "2027-01-31T14:00:00Z", rule);
        starts(&series, "2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z")
            .iter()
            .map(|start| start.with_timezone(&chrono_tz::America::New_York).day())
            .collect()
    };
    assert_eq!(days("FREQ=MONTHLY"), [31, 31, 31]);
    assert_eq!(days("FREQ=MONTHLY;BYMONTHDAY=-1"), [31, 28, 31, 30, 31, 30]);
    assert_eq!(
        days("FREQ=MONTHLY;BYMONTHDAY=31,-1"),
        [31, 28, 31, 30, 31, 30]
    );
}

/// Plain rules expand by date arithmetic: the same starts as the `rrule` crate, over random
/// zones (daylight-saving gaps and folds, half-hour and 45-minute offsets), times,
/// frequencies, intervals, weekdays, days of the month, week starts and ends. Rules the fast
/// path does not take must be the ones it cannot expand.
#[test]
fn plain_rules_expand_exactly_as_the_rrule_crate_does() {
    let zones = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "UTC",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "America/St_Johns",
    ];
    let times = [
        "00:30", "02:30", "09:00", "23:45", "01:59", "03:00", "02:00",
    ];
    let days = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
    let mut seed = 0x5eed_u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let (mut compared, mut monthly, mut general_only) = (0, 0, 0);
    for _ in 0..1200 {
        let zone: chrono_tz::Tz = zones[next(7) as usize].parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(next(900) as i64);
        let time = NaiveTime::parse_from_str(times[next(7) as usize], "%H:%M").unwrap();
        let Some(start) = zone.from_local_datetime(&date.and_time(time)).earliest() else {
            continue;
        };
        let start = start.with_timezone(&Utc);
        let frequency = ["DAILY", "WEEKLY", "MONTHLY"][next(3) as usize];
        let mut rule = format!("FREQ={frequency};INTERVAL={}", 1 + next(3));
        // Weekdays for daily and weekly rules (a monthly one with them is not plain).
        let mask = if frequency == "MONTHLY" && next(4) != 0 {
            0
        } else {
            next(128)
        };
        let chosen: Vec<&str> = (0..7)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| days[i])
            .collect();
        if !chosen.is_empty() {
            rule.push_str(&format!(";BYDAY={}", chosen.join(",")));
        }
        // Days of the month, from the start and from the end, sometimes the start's own.
        if frequency == "MONTHLY" || next(8) == 0 {
            let mut month_days: Vec<String> = (0..next(3))
                .map(|_| match next(2) {
                    0 => (1 + next(31)).to_string(),
                    _ => format!("-{}", 1 + next(31)),
                })
                .collect();
            let local_day = start.with_timezone(&zone).day();
            if next(2) == 0 {
                month_days.push(local_day.to_string());
            }
            if !month_days.is_empty() {
                rule.push_str(&format!(";BYMONTHDAY={}", month_days.join(",")));
            }
        }
        rule.push_str(&format!(";WKST={}", ["MO", "SU", "WE"][next(3) as usize]));
        match next(3) {
            0 => rule.push_str(&format!(";COUNT={}", 1 + next(60))),
            1 => rule.push_str(&format!(
                ";UNTIL={}",
                (start + Duration::days(next(400) as i64)).format("%Y%m%dT%H%M%SZ")
            )),
            _ => {}
        }
        let dt_start = start.with_timezone(&Tz::Tz(zone));
        let unvalidated = rule.parse::<RRule<Unvalidated>>().unwrap();
        let month_days = unvalidated.get_by_month_day().to_vec();
        let Ok(validated) = unvalidated.validate(dt_start) else {
            // BYMONTHDAY with a weekly rule, which RFC 5545 forbids.
            assert!(
                rule.contains("WEEKLY") && rule.contains("BYMONTHDAY"),
                "{rule}"
            );
            continue;
        };
        let plain = plain::Plain::of(&validated, &month_days, start, zone);
        let set = RRuleSet::new(dt_start).rrule(validated);
        let general: Vec<DateTime<Utc>> = (&set)
            .into_iter()
            .take(200)
            .map(|d| d.with_timezone(&Utc))
            .collect();
        // Monthly without weekdays; daily or weekly without days of the month.
        let expect_plain = match frequency {
            "MONTHLY" => chosen.is_empty(),
            _ => !rule.contains("BYMONTHDAY"),
        };
        let Some(plain) = plain else {
            assert!(!expect_plain, "{rule} should be plain");
            general_only += 1;
            continue;
        };
        assert!(expect_plain, "{rule} is not plain");
        let fast: Vec<DateTime<Utc>> = plain.starts().take(200).collect();
        assert_eq!(fast, general, "{rule} from {start} in {zone}");
        compared += 1;
        monthly += usize::from(frequency == "MONTHLY");
    }
    assert!(compared > 700 && monthly > 200, "{compared} {monthly}");
    assert!(general_only > 50, "{general_only}");
}
