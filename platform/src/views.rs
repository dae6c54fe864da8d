//! Documents the read side answers with, shared by the projector (which renders them once per
//! change, `rm_meeting_documents`) and the query-service (which serves them as stored and
//! describes them in its OpenAPI document).

use chrono::{DateTime, Utc};
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
    /// Why the meeting was cancelled, when it was and a reason was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The aggregate's version; also the `ETag` and the `If-Match` of commands.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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

    fn attendee(id: u128, name: Option<&str>) -> Attendee {
        Attendee {
            user_id: Uuid::from_u128(id),
            display_name: name.map(str::to_owned),
            optional: false,
            response: "needs_action".into(),
            comment: None,
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
