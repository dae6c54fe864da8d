//! Documents the read side answers with, shared by the projector (which renders them once per
//! change, `rm_meeting_documents`) and the query-service (which serves them as stored and
//! describes them in its OpenAPI document).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::{OccurrenceChange, Recurrence, Series};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A user with the name to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub id: Uuid,
    /// `null` when the user is not (yet) in the read models.
    pub display_name: Option<String>,
}

/// An attendee and their answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attendee {
    pub user_id: Uuid,
    /// `null` when the user is not (yet) in the read models.
    pub display_name: Option<String>,
    pub optional: bool,
    /// `needs_action`, `accepted`, `declined` or `tentative`.
    pub response: String,
    /// The attendee's comment with their answer, when they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Answers to single occurrences of a series, by the occurrence's original start
    /// (extension of docs/api.md); absent when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub occurrence_responses: BTreeMap<DateTime<Utc>, String>,
}

/// One occurrence of a series that does not happen as the rule has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangedOccurrence {
    /// Its original start (where the rule puts it): the name of the occurrence.
    pub occurrence: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub cancelled: bool,
}

/// A meeting as its participants see it (`GET /v1/meetings/{id}`, items of `GET /v1/meetings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Meeting {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub organizer: Person,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// IANA time zone the meeting was planned in.
    pub time_zone: String,
    pub location: Option<String>,
    /// `scheduled`, `in_progress`, `ended` or `cancelled`.
    pub status: String,
    /// Attendees ordered by display name (case-insensitive, then by id; unknown names last).
    /// The organizer is not one of them.
    pub attendees: Vec<Attendee>,
    /// `{rrule, exdates?}` for a series; absent for a single meeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub recurrence: Option<serde_json::Value>,
    /// Occurrences of the series moved or cancelled, by original start (extension of
    /// docs/api.md); absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub occurrences: Vec<ChangedOccurrence>,
    /// Why the meeting was cancelled, when it was and a reason was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The aggregate's version; also the `ETag` and the `If-Match` of commands.
    pub version: i64,
    /// iCalendar `SEQUENCE`: raised by every significant change (time, rule, time zone, an
    /// occurrence moved or cancelled, the meeting cancelled) — extension of docs/api.md.
    #[serde(default)]
    pub sequence: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a person's agenda row holds about a series (`rm_agenda.series`): enough to expand it
/// inside any window without another read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgendaSeries {
    pub recurrence: Recurrence,
    pub time_zone: String,
    /// The first occurrence.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Moved or cancelled occurrences, by original start.
    #[serde(default)]
    pub changes: BTreeMap<DateTime<Utc>, OccurrenceChange>,
    /// The person's answers to single occurrences (their series answer is the row's).
    #[serde(default)]
    pub responses: BTreeMap<DateTime<Utc>, String>,
}

impl AgendaSeries {
    /// The series (`None` if its stored rule no longer builds, which the domain never
    /// records).
    pub fn series(&self) -> Option<Series> {
        Series::new(
            self.starts_at,
            self.ends_at,
            &self.time_zone,
            &self.recurrence,
        )
        .ok()
    }

    /// The answer of the person whose row this is to the occurrence named `original`: their
    /// answer to it alone if they gave one, else `series_response`, their answer to the
    /// series (`None` for the organizer, who does not answer).
    pub fn response_to<'a>(
        &'a self,
        original: &DateTime<Utc>,
        series_response: Option<&'a str>,
    ) -> Option<&'a str> {
        series_response.map(|series| self.responses.get(original).map_or(series, String::as_str))
    }

    /// The end of the series' last occurrence, moved ones included (`None`: open-ended), and
    /// the earliest start any occurrence has: the bounds the agenda row is indexed by.
    pub fn bounds(&self) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let earliest = self
            .changes
            .values()
            .map(|c| c.starts_at)
            .chain([self.starts_at])
            .min()
            .unwrap_or(self.starts_at);
        let last = self.series().and_then(|s| s.last_end()).map(|end| {
            self.changes
                .values()
                .map(|c| c.ends_at)
                .chain([end])
                .max()
                .unwrap_or(end)
        });
        (earliest, last)
    }
}

/// Serializes a UTC time as RFC 3339 exactly as chrono does (`2027-01-04T08:00:00Z`, with a
/// fraction only when there is one), about twice as fast for whole seconds: a year's agenda
/// writes tens of thousands of them (`serialize_with`).
pub fn utc_time<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match rfc3339_utc(time) {
        Some(text) => {
            serializer.serialize_str(std::str::from_utf8(&text).expect("BUG: ASCII digits"))
        }
        None => time.serialize(serializer),
    }
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ` when it is a whole second of the years 0–9999 (else
/// `None`: chrono's own form, with a fraction, applies).
pub fn rfc3339_utc(time: &DateTime<Utc>) -> Option<[u8; 20]> {
    use chrono::{Datelike, Timelike};
    let year = time.year();
    if time.nanosecond() != 0 || !(0..=9999).contains(&year) {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut value = value;
        for i in (0..width).rev() {
            text[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, time.month(), 2);
    put(8, time.day(), 2);
    put(11, time.hour(), 2);
    put(14, time.minute(), 2);
    put(17, time.second(), 2);
    Some(text)
}

/// [`utc_time`] for an optional time (`null` when absent).
pub fn optional_utc_time<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => utc_time(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// The order of [`Meeting::attendees`]: by display name ignoring case, then by id; attendees
/// whose name is unknown come last.
pub fn sort_attendees(attendees: &mut [Attendee]) {
    attendees.sort_by_cached_key(|a| {
        (
            a.display_name.is_none(),
            a.display_name.as_deref().map(str::to_lowercase),
            a.user_id,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_serialize_as_chrono_does() {
        #[derive(Serialize)]
        struct Fast(#[serde(serialize_with = "utc_time")] DateTime<Utc>);
        for text in [
            "2027-01-04T08:00:00Z",
            "1900-02-28T23:59:59Z",
            "9999-12-31T00:00:01Z",
            "2027-03-28T01:00:00.123456Z",
            "2027-03-28T01:00:00.5Z",
        ] {
            let time: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(
                serde_json::to_string(&Fast(time)).unwrap(),
                serde_json::to_string(&time).unwrap(),
                "{text}"
            );
        }
    }

    fn attendee(id: u128, name: Option<&str>) -> Attendee {
        Attendee {
            user_id: Uuid::from_u128(id),
            display_name: name.map(str::to_owned),
            optional: false,
            response: "needs_action".into(),
            comment: None,
            occurrence_responses: BTreeMap::new(),
        }
    }

    #[test]
    fn attendees_sort_by_name_ignoring_case_then_id_with_unknown_names_last() {
        let mut attendees = vec![
            attendee(1, None),
            attendee(2, Some("bob")),
            attendee(3, Some("Alice")),
            attendee(5, Some("Bob")),
            attendee(4, Some("Bob")),
        ];
        sort_attendees(&mut attendees);
        let order: Vec<u128> = attendees.iter().map(|a| a.user_id.as_u128()).collect();
        assert_eq!(order, vec![3, 2, 4, 5, 1]);
    }
}
