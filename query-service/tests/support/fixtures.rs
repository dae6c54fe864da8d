//! Fixture rows, written through the projector's read-model writer on either backend.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::Role;
use projector::fold::Writes;
use projector::rows::{AgendaRow, AttendeeRow, ChangeRow, ChatRow, MeetingRow, UserRow};
use projector::sql::{Batch, Bookkeeping};
use projector::store::ReadModelConnection;
use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

use super::{Storage, TestApp};

/// A user present in `rm_users`, with a token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub token: String,
    /// The row as written, to write it again changed.
    row: UserRow,
}

/// A meeting to write; see [`TestApp::meeting`].
pub struct MeetingFixture<'a> {
    /// `None`: a new meeting; `Some`: the meeting's rows written again.
    pub id: Option<Uuid>,
    pub organizer: &'a TestUser,
    pub title: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: &'a str,
    pub version: i64,
    /// Attendee and their response.
    pub attendees: Vec<(&'a TestUser, &'a str)>,
}

impl<'a> MeetingFixture<'a> {
    pub fn new(organizer: &'a TestUser, title: &'a str, starts_at: &str, ends_at: &str) -> Self {
        Self {
            id: None,
            organizer,
            title,
            starts_at: time(starts_at),
            ends_at: time(ends_at),
            status: "scheduled",
            version: 3,
            attendees: vec![],
        }
    }

    pub fn attendee(mut self, user: &'a TestUser, response: &'a str) -> Self {
        self.attendees.push((user, response));
        self
    }

    pub fn status(mut self, status: &'a str) -> Self {
        self.status = status;
        self
    }

    /// The rows of meeting `id` at `version` (rewriting an existing meeting).
    pub fn rewrite(mut self, id: Uuid, version: i64) -> Self {
        self.id = Some(id);
        self.version = version;
        self
    }
}

pub fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("fixture times are RFC 3339")
        .with_timezone(&Utc)
}

/// A fixture batch: rows only. Its bookkeeping goes to a projection of its own, so the read
/// models' checkpoint moves only when a test says so ([`TestApp::project_up_to`]).
fn batch(writes: Writes) -> Batch {
    Batch {
        writes,
        bookkeeping: Bookkeeping {
            projection: "test_fixtures",
            sequences: Vec::new(),
            position: String::new(),
            stream_sequence: None,
            channel: "meetings_test_fixtures",
        },
    }
}

impl TestApp {
    pub fn token(&self, id: Uuid, role: Role) -> String {
        self.jwt.issue(id, role, Duration::from_secs(600))
    }

    /// Writes `writes` in one transaction, then renders the documents of `meetings` from the
    /// stored rows, as a projector batch does.
    pub async fn write(&self, writes: Writes, meetings: &[Uuid]) {
        let batch = batch(writes);
        match &self.storage {
            Storage::Postgres(db) => {
                let mut conn = db.pool.acquire().await.expect("a connection");
                let mut tx = conn.begin().await.expect("begin");
                tx.write(&batch).await.expect("write fixture rows");
                let rendered = tx.refresh_documents(meetings).await.expect("render");
                assert_eq!(rendered, meetings.len(), "every meeting has rows to render");
                tx.commit().await.expect("commit");
            }
            Storage::Sqlite { read_models, .. } => {
                let mut conn = read_models.writer.acquire().await.expect("a connection");
                let mut tx = conn.begin().await.expect("begin");
                tx.write(&batch).await.expect("write fixture rows");
                let rendered = tx.refresh_documents(meetings).await.expect("render");
                assert_eq!(rendered, meetings.len(), "every meeting has rows to render");
                tx.commit().await.expect("commit");
            }
        }
    }

    /// Renders the meeting's document from its rows, after a test wrote rows of it.
    pub async fn render_document(&self, meeting_id: Uuid) {
        self.write(Writes::default(), &[meeting_id]).await;
    }

    /// Writes an active member into `rm_users`.
    pub async fn user(&self, display_name: &str) -> TestUser {
        self.user_with(display_name, Role::Member, "UTC", None)
            .await
    }

    pub async fn user_with(
        &self,
        display_name: &str,
        role: Role,
        time_zone: &str,
        working_hours: Option<Value>,
    ) -> TestUser {
        let id = Uuid::now_v7();
        let email = format!(
            "{}.{}@example.com",
            display_name.to_lowercase().replace(' ', "."),
            &id.simple().to_string()[24..]
        );
        let now = Utc::now();
        let row = UserRow {
            id,
            email_key: email.to_lowercase(),
            email: email.clone(),
            display_name: display_name.to_string(),
            time_zone: time_zone.to_string(),
            role: role.as_str().to_string(),
            working_hours,
            active: true,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.write(
            Writes {
                users: vec![row.clone()],
                ..Writes::default()
            },
            &[],
        )
        .await;
        TestUser {
            id,
            email,
            display_name: display_name.to_string(),
            token: self.token(id, role),
            row,
        }
    }

    /// Marks `user` deactivated in `rm_users`.
    pub async fn deactivate(&self, user: &TestUser) {
        let row = UserRow {
            active: false,
            version: user.row.version + 1,
            ..user.row.clone()
        };
        self.write(
            Writes {
                users: vec![row],
                ..Writes::default()
            },
            &[],
        )
        .await;
    }

    /// Writes a meeting with its attendees and the agenda rows the projector would write,
    /// and renders its document.
    pub async fn meeting(&self, fixture: MeetingFixture<'_>) -> Uuid {
        let id = fixture.id.unwrap_or_else(Uuid::now_v7);
        let now = Utc::now();
        let meeting = MeetingRow {
            id,
            organizer_id: fixture.organizer.id,
            title: fixture.title.to_string(),
            description: Some("About things".to_string()),
            starts_at: fixture.starts_at,
            ends_at: fixture.ends_at,
            time_zone: "Europe/Berlin".to_string(),
            location: Some("Room 1".to_string()),
            status: fixture.status.to_string(),
            recurrence: None,
            occurrences: Default::default(),
            sequence: 0,
            cancel_reason: None,
            version: fixture.version,
            position: self.position(1),
            created_at: now,
            updated_at: now,
        };
        let agenda_row = |user_id, is_organizer, my_response: Option<&str>| AgendaRow {
            user_id,
            meeting_id: id,
            starts_at: fixture.starts_at,
            ends_at: fixture.ends_at,
            title: fixture.title.to_string(),
            status: fixture.status.to_string(),
            is_organizer,
            my_response: my_response.map(str::to_string),
            series: None,
            series_ends_at: None,
        };
        let mut writes = Writes {
            meetings: vec![meeting],
            agenda: vec![agenda_row(fixture.organizer.id, true, None)],
            ..Writes::default()
        };
        for (user, response) in &fixture.attendees {
            writes.attendees.push(AttendeeRow {
                meeting_id: id,
                user_id: user.id,
                optional: false,
                response: response.to_string(),
                comment: None,
                occurrence_responses: Default::default(),
            });
            writes
                .agenda
                .push(agenda_row(user.id, false, Some(response)));
        }
        self.write(writes, &[id]).await;
        id
    }

    /// Writes an attendee row as given (an unknown user, an optional one, a comment).
    pub async fn attendee_row(&self, row: AttendeeRow) {
        let meeting = row.meeting_id;
        self.write(
            Writes {
                attendees: vec![row],
                ..Writes::default()
            },
            &[meeting],
        )
        .await;
    }

    /// `n` agenda rows of `user`, one an hour from 2027-01-01 (half an hour each), of meetings
    /// that exist nowhere else: load for the agenda's and free/busy's limits.
    pub async fn busy_hours(&self, user: Uuid, n: i64) {
        let first = time("2027-01-01T00:00:00Z");
        let agenda = (0..n)
            .map(|h| AgendaRow {
                user_id: user,
                meeting_id: Uuid::new_v4(),
                starts_at: first + chrono::Duration::hours(h),
                ends_at: first + chrono::Duration::hours(h) + chrono::Duration::minutes(30),
                title: "busy".to_string(),
                status: "scheduled".to_string(),
                is_organizer: true,
                my_response: None,
                series: None,
                series_ends_at: None,
            })
            .collect();
        self.write(
            Writes {
                agenda,
                ..Writes::default()
            },
            &[],
        )
        .await;
    }

    /// Writes a chat message at position `n`.
    pub async fn message(&self, meeting_id: Uuid, author: &TestUser, text: &str, n: i64) {
        let chat = ChatRow {
            meeting_id,
            message_id: Uuid::now_v7(),
            author_id: author.id,
            text: text.to_string(),
            posted_at: Utc::now(),
            position: self.position(n),
        };
        self.write(
            Writes {
                chat: vec![chat],
                ..Writes::default()
            },
            &[],
        )
        .await;
    }

    /// Writes an event at position `n` visible to `audience`.
    pub async fn change(&self, n: i64, event_type: &str, aggregate_id: Uuid, audience: &[Uuid]) {
        let change = ChangeRow {
            position: self.position(n),
            event_id: Uuid::now_v7(),
            event_type: event_type.to_string(),
            aggregate_type: "meeting".to_string(),
            aggregate_id,
            sequence: n,
            recorded_at: Utc::now(),
            data: serde_json::json!({"n": n}).to_string(),
            audience: audience.to_vec(),
        };
        self.write(
            Writes {
                changes: vec![change],
                ..Writes::default()
            },
            &[],
        )
        .await;
    }
}
