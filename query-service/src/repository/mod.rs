//! The query side's seam over its storage: every read the routes make, as one method each,
//! implemented per backend — PostgreSQL ([`postgres`]) and the SQLite files of embedded mode
//! ([`sqlite`]). Routes validate, authorize and render; only the SQL differs.

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use platform::store::Position;
use platform::views::AgendaSeries;
use uuid::Uuid;

use serde::Serialize;
use utoipa::ToSchema;

pub use postgres::PgReadModels;
pub use sqlite::SqliteReadModels;

/// A stored document: the aggregate version (the `ETag`) and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub version: i64,
    pub body: String,
}

/// One event.
#[derive(Debug, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ChangeEvent {
    /// Global position (opaque; sorts as a string in global order).
    pub position: String,
    /// Event type, e.g. `MeetingScheduled`.
    #[serde(rename = "type")]
    #[sqlx(rename = "event_type")]
    pub kind: String,
    /// `user` or `meeting`.
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// Sequence of the event within its aggregate.
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// One chat message.
#[derive(Debug, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ChatMessage {
    pub message_id: Uuid,
    pub author_id: Uuid,
    pub text: String,
    pub posted_at: DateTime<Utc>,
    /// Global position of the message's event; pass as `after` to read on from here.
    pub position: String,
}

/// Who asks: what they may see depends on it.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: Uuid,
    pub admin: bool,
}

/// What `GET /v1/meetings` selects.
#[derive(Debug, Clone, Default)]
pub struct MeetingFilter {
    /// Meetings that end after this.
    pub from: Option<DateTime<Utc>>,
    /// Meetings that start before this.
    pub to: Option<DateTime<Utc>>,
    pub status: Option<String>,
    /// Text the title contains, case-insensitively (already validated).
    pub title: Option<String>,
    /// The page starts after this (start, id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Rows to read (the page size + 1).
    pub limit: i64,
}

/// A row of `rm_agenda` as the range queries read it.
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct AgendaRow {
    pub user_id: Uuid,
    pub meeting_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub title: String,
    pub status: String,
    pub my_response: Option<String>,
    pub is_organizer: bool,
    pub series: Option<sqlx::types::Json<AgendaSeries>>,
}

/// Which agenda rows a range query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgendaRows {
    /// Everything (the agenda).
    All,
    /// What can make someone busy: not cancelled, and single meetings not declined (a series
    /// declined as a whole may still have occurrences accepted one by one).
    Busy,
}

/// A user's profile row.
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub time_zone: String,
    pub role: String,
    pub working_hours: Option<serde_json::Value>,
    pub version: i64,
}

/// A directory row with its sort key (the cursor).
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct DirectoryRow {
    pub id: Uuid,
    pub display_name: String,
    pub email: String,
    pub sort_name: String,
}

/// A directory lookup: the query's words as the index has them, the words longer than it
/// (checked whole), and the whole query as the start of an email address.
#[derive(Debug, Clone)]
pub struct DirectorySearch {
    pub indexed: Vec<String>,
    pub long: Vec<String>,
    /// `Some(folded query)` when the query could be the start of an email address.
    pub email: Option<String>,
}

/// Every read of the query side.
#[async_trait]
pub trait ReadModels: Send + Sync {
    /// Whether the meeting exists and `viewer` may see it (organizer, attendee or admin).
    async fn can_see_meeting(&self, viewer: Viewer, meeting: Uuid) -> sqlx::Result<bool>;

    /// (start, id, document) of the meetings `viewer` may see that match `filter`, ordered
    /// by start then id.
    async fn meeting_page(
        &self,
        viewer: Viewer,
        filter: &MeetingFilter,
    ) -> sqlx::Result<Vec<(DateTime<Utc>, Uuid, String)>>;

    /// Chat messages of `meeting` after `after`, in posting order, at most `limit`.
    async fn messages(
        &self,
        meeting: Uuid,
        after: Option<String>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChatMessage>>;

    /// The documents of `keys` (meeting, caller, admin) each caller may see, in order.
    async fn documents(&self, keys: &[(Uuid, Uuid, bool)]) -> sqlx::Result<Vec<Option<Document>>>;

    /// Events `viewer` may see after `after`, in global order, at most `limit`.
    async fn changes(
        &self,
        viewer: Viewer,
        after: Option<String>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChangeEvent>>;

    /// The agenda rows of `users` that can overlap `[from, to)`: single meetings by their
    /// range (a meeting lasts at most `longest`), series by their bounds; at most `limit`
    /// single meetings and `limit` series per user.
    async fn agenda_rows(
        &self,
        users: &[Uuid],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        longest: chrono::Duration,
        rows: AgendaRows,
        limit: i64,
    ) -> sqlx::Result<Vec<AgendaRow>>;

    /// (id, time zone, working hours) of `users` known to the read models.
    async fn working_hours(
        &self,
        users: &[Uuid],
    ) -> sqlx::Result<Vec<(Uuid, String, Option<serde_json::Value>)>>;

    async fn profile(&self, user: Uuid) -> sqlx::Result<Option<ProfileRow>>;

    /// The display name of a user (`None`: not in the read models).
    async fn display_name(&self, user: Uuid) -> sqlx::Result<Option<String>>;

    /// The email addresses of `users` known to the read models.
    async fn emails(&self, users: &[Uuid]) -> sqlx::Result<HashMap<Uuid, String>>;

    /// Active users in directory order (name, then id) after `after`, at most `limit`;
    /// those matching `search` when given.
    async fn directory(
        &self,
        search: Option<&DirectorySearch>,
        after: Option<(String, Uuid)>,
        limit: i64,
    ) -> sqlx::Result<Vec<DirectoryRow>>;

    /// The user's calendar feed token, made from `candidate` (and its hash) if there is none
    /// yet; two first calls at once both answer the one that was stored.
    async fn feed_token(
        &self,
        user: Uuid,
        candidate: &str,
        candidate_hash: &[u8],
    ) -> sqlx::Result<String>;

    /// Replaces the user's feed token.
    async fn rotate_feed_token(&self, user: Uuid, token: &str, hash: &[u8]) -> sqlx::Result<()>;

    /// The active user a feed token hash belongs to, with their display name.
    async fn feed_owner(&self, hash: &[u8]) -> sqlx::Result<Option<(Uuid, String)>>;

    /// Documents of the user's meetings and series that ended at most `days` ago (or have
    /// no end), the latest first, at most `limit`.
    async fn feed_documents(&self, user: Uuid, days: i32, limit: i64) -> sqlx::Result<Vec<String>>;

    /// Projections stopped on an event they cannot apply, with the recorded failure.
    async fn failed_projections(&self) -> sqlx::Result<Vec<(String, Option<String>)>>;

    /// Whether the event log holds an event at or after `position`.
    async fn written(&self, position: Position) -> sqlx::Result<bool>;

    /// Whether the storage is reachable and migrated (readiness).
    async fn ready(&self) -> Result<(), String>;

    /// The backend's name, as readiness reports it (`postgres`, `sqlite`).
    fn backend(&self) -> &'static str;
}
