//! The rows of the read-model tables, as the projector loads, folds and writes them. Plain
//! data: every other layer of the crate builds on these types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::OccurrenceChange;
use uuid::Uuid;

/// A row of `rm_users`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub email_key: String,
    pub display_name: String,
    pub time_zone: String,
    pub role: String,
    pub working_hours: Option<serde_json::Value>,
    pub active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `rm_meetings`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct MeetingRow {
    pub id: Uuid,
    pub organizer_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub time_zone: String,
    pub location: Option<String>,
    pub status: String,
    pub recurrence: Option<serde_json::Value>,
    /// Moved or cancelled occurrences of a series, by original start.
    pub occurrences: BTreeMap<DateTime<Utc>, OccurrenceChange>,
    /// iCalendar `SEQUENCE`: significant changes so far.
    pub sequence: i64,
    pub cancel_reason: Option<String>,
    pub version: i64,
    pub position: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `rm_meeting_attendees` (keyed by meeting and user).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AttendeeRow {
    pub meeting_id: Uuid,
    pub user_id: Uuid,
    pub optional: bool,
    pub response: String,
    pub comment: Option<String>,
    /// Answers to single occurrences of a series, by original start.
    pub occurrence_responses: BTreeMap<DateTime<Utc>, String>,
}

/// A row of `rm_agenda`, derived from a meeting and one of its people.
#[derive(Debug, Clone, PartialEq)]
pub struct AgendaRow {
    pub user_id: Uuid,
    pub meeting_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub title: String,
    pub status: String,
    pub is_organizer: bool,
    pub my_response: Option<String>,
    /// A series: what expands it (`platform::views::AgendaSeries`, as JSON); `starts_at` is
    /// then the earliest any occurrence starts.
    pub series: Option<serde_json::Value>,
    /// The end of a bounded series' last occurrence (`None`: single meeting or open-ended).
    pub series_ends_at: Option<DateTime<Utc>>,
}

/// A row of `rm_chat_messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRow {
    pub meeting_id: Uuid,
    pub message_id: Uuid,
    pub author_id: Uuid,
    pub text: String,
    pub posted_at: DateTime<Utc>,
    pub position: String,
}

/// A row of `rm_changes`: the event with who may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub position: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    /// The upcast payload as JSON text.
    pub data: String,
    pub audience: Vec<Uuid>,
}
