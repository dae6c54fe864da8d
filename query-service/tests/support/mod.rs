//! Test harness: the query-service started as its binary starts it (`query_service::build`) on
//! port 0, against a fresh PostgreSQL database whose read models the tests fill directly (the
//! projector is not part of these tests). The pieces come from `platform::testing`.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::Role;
use platform::auth::JwtKeys;
use platform::config::HttpLimits;
use platform::store::Position;
use platform::testing::{self, TestClient, TestDatabase, TestServer};
use query_service::{QueryArgs, Settings};
use serde_json::Value;
use uuid::Uuid;

/// Shared with every service's tests (not every test binary uses it).
#[allow(unused_imports)]
pub use platform::testing::assert_problem;

pub struct TestApp {
    /// First field: dropped (stopping the service) before the database.
    server: TestServer,
    /// Keys of the service's JWT settings, to issue tokens for fixture users.
    pub jwt: Arc<JwtKeys>,
    pub db: TestDatabase,
}

/// Requests go to the service: `app.get(..)`, `app.url(..)`, `app.client`.
impl Deref for TestApp {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.server
    }
}

/// The service with the default `X-Min-Position` wait (2 s).
pub async fn spawn_app() -> TestApp {
    spawn_app_with_wait(query_service::DEFAULT_MIN_POSITION_WAIT).await
}

pub async fn spawn_app_with_wait(min_position_wait: Duration) -> TestApp {
    testing::init_tracing();
    let db = TestDatabase::new().await;
    let settings = Settings {
        database: testing::database_settings(&db.url, 20),
        jwt: testing::jwt_settings(),
        log: testing::log_settings(),
        http: HttpLimits::default(),
        listen: testing::LISTEN,
        query: QueryArgs {
            min_position_wait,
            ..QueryArgs::default()
        },
    };
    let server = query_service::build(&settings)
        .await
        .expect("the query-service builds");
    TestApp {
        server: TestServer::start(server),
        jwt: testing::jwt_keys(),
        db,
    }
}

/// A user present in `rm_users`, with a token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub token: String,
}

/// A meeting to insert; see [`TestApp::meeting`].
pub struct MeetingFixture<'a> {
    pub organizer: &'a TestUser,
    pub title: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: &'a str,
    /// Attendee and their response.
    pub attendees: Vec<(&'a TestUser, &'a str)>,
}

impl<'a> MeetingFixture<'a> {
    pub fn new(organizer: &'a TestUser, title: &'a str, starts_at: &str, ends_at: &str) -> Self {
        Self {
            organizer,
            title,
            starts_at: time(starts_at),
            ends_at: time(ends_at),
            status: "scheduled",
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
}

pub fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("fixture times are RFC 3339")
        .with_timezone(&Utc)
}

/// The `n`th position of a test (increasing with `n`).
pub fn position(n: i64) -> String {
    Position {
        transaction_id: 1000,
        id: n,
    }
    .to_string()
}

impl TestApp {
    pub fn token(&self, id: Uuid, role: Role) -> String {
        self.jwt.issue(id, role, Duration::from_secs(600))
    }

    /// Inserts an active member into `rm_users`.
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
        sqlx::query(
            "INSERT INTO rm_users (id, email, email_key, display_name, time_zone, role,
                                   working_hours, active, version, created_at, updated_at,
                                   search_words)
             VALUES ($1, $2, lower($2), $3, $4, $5, $6, true, 1, now(), now(), $7)",
        )
        .bind(id)
        .bind(&email)
        .bind(display_name)
        .bind(time_zone)
        .bind(role.as_str())
        .bind(working_hours)
        .bind(platform::search::user_words(display_name, &email))
        .execute(&self.db.pool)
        .await
        .expect("insert rm_users");
        // The directory's prefix rows, as the projector writes them with the user.
        sqlx::query(
            "INSERT INTO rm_user_prefixes (prefix, sort_name, user_id)
             SELECT DISTINCT p, lower(display_name), id FROM rm_users, unnest(search_prefixes) p
             WHERE id = $1",
        )
        .bind(id)
        .execute(&self.db.pool)
        .await
        .expect("insert rm_user_prefixes");
        TestUser {
            id,
            email,
            display_name: display_name.to_string(),
            token: self.token(id, role),
        }
    }

    /// Inserts a meeting with its attendees and the agenda rows the projector would write.
    pub async fn meeting(&self, fixture: MeetingFixture<'_>) -> Uuid {
        let id = Uuid::now_v7();
        let pool = &self.db.pool;
        sqlx::query(
            "INSERT INTO rm_meetings (id, organizer_id, title, description, starts_at, ends_at,
                 time_zone, location, status, recurrence, cancel_reason, version, position,
                 created_at, updated_at)
             VALUES ($1, $2, $3, 'About things', $4, $5, 'Europe/Berlin', 'Room 1', $6, NULL,
                     NULL, 3, $7, now(), now())",
        )
        .bind(id)
        .bind(fixture.organizer.id)
        .bind(fixture.title)
        .bind(fixture.starts_at)
        .bind(fixture.ends_at)
        .bind(fixture.status)
        .bind(position(1))
        .execute(pool)
        .await
        .expect("insert rm_meetings");
        self.agenda_row(&fixture, id, fixture.organizer.id, true, None)
            .await;
        for (user, response) in &fixture.attendees {
            sqlx::query(
                "INSERT INTO rm_meeting_attendees (meeting_id, user_id, optional, response)
                 VALUES ($1, $2, false, $3)",
            )
            .bind(id)
            .bind(user.id)
            .bind(*response)
            .execute(pool)
            .await
            .expect("insert rm_meeting_attendees");
            self.agenda_row(&fixture, id, user.id, false, Some(response))
                .await;
        }
        self.render_document(id).await;
        id
    }

    /// Renders the meeting's document from its rows, as a projector batch would: after a
    /// test changed those rows by SQL.
    pub async fn render_document(&self, meeting_id: Uuid) {
        let mut conn = self.db.pool.acquire().await.expect("connection");
        let rendered = projector::sql::documents::refresh(&mut conn, &[meeting_id])
            .await
            .expect("render the meeting document");
        assert_eq!(rendered, 1, "meeting {meeting_id} has rows to render");
    }

    async fn agenda_row(
        &self,
        fixture: &MeetingFixture<'_>,
        meeting_id: Uuid,
        user_id: Uuid,
        is_organizer: bool,
        my_response: Option<&str>,
    ) {
        sqlx::query(
            "INSERT INTO rm_agenda (user_id, meeting_id, starts_at, ends_at, title, status,
                                    is_organizer, my_response)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(user_id)
        .bind(meeting_id)
        .bind(fixture.starts_at)
        .bind(fixture.ends_at)
        .bind(fixture.title)
        .bind(fixture.status)
        .bind(is_organizer)
        .bind(my_response)
        .execute(&self.db.pool)
        .await
        .expect("insert rm_agenda");
    }

    /// Inserts a chat message at position `n`.
    pub async fn message(&self, meeting_id: Uuid, author: &TestUser, text: &str, n: i64) {
        sqlx::query(
            "INSERT INTO rm_chat_messages (meeting_id, message_id, author_id, text, posted_at, position)
             VALUES ($1, $2, $3, $4, now(), $5)",
        )
        .bind(meeting_id)
        .bind(Uuid::now_v7())
        .bind(author.id)
        .bind(text)
        .bind(position(n))
        .execute(&self.db.pool)
        .await
        .expect("insert rm_chat_messages");
    }

    /// Inserts an event at position `n` visible to `audience`.
    pub async fn change(&self, n: i64, event_type: &str, aggregate_id: Uuid, audience: &[Uuid]) {
        sqlx::query(
            "INSERT INTO rm_changes (position, event_id, event_type, aggregate_type, aggregate_id,
                                     sequence, recorded_at, data, audience)
             VALUES ($1, $2, $3, 'meeting', $4, $5, now(), $6, $7)",
        )
        .bind(position(n))
        .bind(Uuid::now_v7())
        .bind(event_type)
        .bind(aggregate_id)
        .bind(n)
        .bind(serde_json::json!({"n": n}))
        .bind(audience)
        .execute(&self.db.pool)
        .await
        .expect("insert rm_changes");
    }

    /// A stand-in event at `position(n)`, so that the store has written that far: an
    /// `X-Min-Position` past the newest stored event is refused (422) without waiting.
    pub async fn stored_up_to(&self, n: i64) {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, event_id, recorded_at,
                                 transaction_id, id, hash)
             VALUES ('test', $1, 1, 'StandIn', '1', '{}', '{}', $1, now(), '1000'::xid8, $2,
                     '\\x00')",
        )
        .bind(Uuid::now_v7())
        .bind(n)
        .execute(&self.db.pool)
        .await
        .expect("insert a stand-in event");
    }

    /// What the projector does when it commits: move the checkpoint and notify, in one
    /// transaction.
    pub async fn project_up_to(&self, position: &str) {
        let mut tx = self.db.pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, position) VALUES ('read_models', $1)
             ON CONFLICT (projection) DO UPDATE SET position = $1, updated_at = now()",
        )
        .bind(position)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("SELECT pg_notify('meetings_projected', $1)")
            .bind(position)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// Ids of a list response's `items` under `key`.
pub fn ids(body: &Value, key: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item[key].as_str().unwrap().to_string())
        .collect()
}
