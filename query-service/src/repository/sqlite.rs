//! [`ReadModels`] on the SQLite files of embedded mode: the read models in
//! `meetings-read-models.db`, the event log and the calendar feed tokens (which no event
//! rebuilds) in `meetings.db`.
//!
//! What PostgreSQL does with arrays and lateral joins is a loop of primary-key lookups here:
//! in-process, a statement costs microseconds, not a round trip. Times are microseconds,
//! ids 16-byte blobs, JSON text (`migrations/sqlite`).

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use platform::db::sqlite::{
    from_micros, json_column, json_text, micros, optional_json_column, time_column, SqliteFile,
    EVENTS_MIGRATOR, READ_MODELS_MIGRATOR,
};
use platform::store::Position;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::{
    AgendaRow, AgendaRows, ChangeEvent, ChatMessage, DirectoryRow, DirectorySearch, Document,
    MeetingFilter, ProfileRow, ReadModels, Viewer,
};
use crate::params::like_escape;

#[derive(Clone)]
pub struct SqliteReadModels {
    events: SqliteFile,
    read_models: SqliteFile,
}

impl SqliteReadModels {
    pub fn new(events: SqliteFile, read_models: SqliteFile) -> Self {
        Self {
            events,
            read_models,
        }
    }
}

fn agenda_row(row: &SqliteRow) -> sqlx::Result<AgendaRow> {
    Ok(AgendaRow {
        user_id: row.try_get("user_id")?,
        meeting_id: row.try_get("meeting_id")?,
        starts_at: time_column(row, "starts_at")?,
        ends_at: time_column(row, "ends_at")?,
        title: row.try_get("title")?,
        status: row.try_get("status")?,
        my_response: row.try_get("my_response")?,
        is_organizer: row.try_get("is_organizer")?,
        series: optional_json_column(row, "series")?.map(sqlx::types::Json),
    })
}

fn change(row: &SqliteRow) -> sqlx::Result<ChangeEvent> {
    Ok(ChangeEvent {
        position: row.try_get("position")?,
        kind: row.try_get("event_type")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        recorded_at: time_column(row, "recorded_at")?,
        data: json_column(row, "data")?,
    })
}

const CHANGE_COLUMNS: &str = "c.position, c.event_type, c.aggregate_type, c.aggregate_id, \
                              c.sequence, c.recorded_at, c.data";

#[async_trait]
impl ReadModels for SqliteReadModels {
    async fn can_see_meeting(&self, viewer: Viewer, meeting: Uuid) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm_meetings m WHERE m.id = $3 AND ($1 \
                OR m.organizer_id = $2 OR EXISTS (SELECT 1 FROM rm_meeting_attendees a \
                                                  WHERE a.meeting_id = m.id AND a.user_id = $2)))",
        )
        .bind(viewer.admin)
        .bind(viewer.user_id)
        .bind(meeting)
        .fetch_one(&self.read_models.reader)
        .await
    }

    async fn meeting_page(
        &self,
        viewer: Viewer,
        filter: &MeetingFilter,
    ) -> sqlx::Result<Vec<(DateTime<Utc>, Uuid, String)>> {
        // Members start from their own meetings, as on PostgreSQL; admins from all of them.
        let source = if viewer.admin {
            "rm_meetings m"
        } else {
            "(SELECT a.meeting_id AS id FROM rm_meeting_attendees a WHERE a.user_id = $2 \
              UNION SELECT id FROM rm_meetings WHERE organizer_id = $2) mine \
             JOIN rm_meetings m ON m.id = mine.id"
        };
        let sql = format!(
            "SELECT m.starts_at, m.id, d.body FROM {source} \
             JOIN rm_meeting_documents d ON d.meeting_id = m.id \
             WHERE ($1 OR m.organizer_id = $2 OR EXISTS (SELECT 1 FROM rm_meeting_attendees a \
                    WHERE a.meeting_id = m.id AND a.user_id = $2)) \
               AND ($3 IS NULL OR m.ends_at > $3) \
               AND ($4 IS NULL OR m.starts_at < $4) \
               AND ($5 IS NULL OR m.status = $5) \
               AND ($6 IS NULL OR instr(m.title_key, $6) > 0) \
               AND ($7 IS NULL OR (m.starts_at, m.id) > ($7, $8)) \
             ORDER BY m.starts_at, m.id LIMIT $9"
        );
        let (after_start, after_id) = filter.after.unzip();
        let rows: Vec<(i64, Uuid, String)> = sqlx::query_as(&sql)
            .bind(viewer.admin)
            .bind(viewer.user_id)
            .bind(filter.from.map(micros))
            .bind(filter.to.map(micros))
            .bind(&filter.status)
            .bind(filter.title.as_deref().map(str::to_lowercase))
            .bind(after_start.map(micros))
            .bind(after_id)
            .bind(filter.limit)
            .fetch_all(&self.read_models.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(starts_at, id, body)| (from_micros(starts_at), id, body))
            .collect())
    }

    async fn messages(
        &self,
        meeting: Uuid,
        after: Option<String>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChatMessage>> {
        let rows = sqlx::query(
            "SELECT message_id, author_id, text, posted_at, position FROM rm_chat_messages \
             WHERE meeting_id = $1 AND ($2 IS NULL OR position > $2) \
             ORDER BY position LIMIT $3",
        )
        .bind(meeting)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read_models.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChatMessage {
                    message_id: row.try_get("message_id")?,
                    author_id: row.try_get("author_id")?,
                    text: row.try_get("text")?,
                    posted_at: time_column(row, "posted_at")?,
                    position: row.try_get("position")?,
                })
            })
            .collect()
    }

    async fn documents(&self, keys: &[(Uuid, Uuid, bool)]) -> sqlx::Result<Vec<Option<Document>>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut connection = self.read_models.reader.acquire().await?;
        for (meeting, caller, admin) in keys {
            let row: Option<(i64, String, String)> = sqlx::query_as(
                "SELECT version, body, members FROM rm_meeting_documents WHERE meeting_id = ?",
            )
            .bind(meeting)
            .fetch_optional(&mut *connection)
            .await?;
            found.push(match row {
                Some((version, body, members)) => {
                    let members: Vec<Uuid> = json_text("members", &members)?;
                    (*admin || members.contains(caller)).then_some(Document { version, body })
                }
                None => None,
            });
        }
        Ok(found)
    }

    async fn changes(
        &self,
        viewer: Viewer,
        after: Option<String>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChangeEvent>> {
        let rows = if viewer.admin {
            sqlx::query(&format!(
                "SELECT {CHANGE_COLUMNS} FROM rm_changes c \
                 WHERE ($1 IS NULL OR c.position > $1) ORDER BY c.position LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read_models.reader)
            .await?
        } else {
            sqlx::query(&format!(
                "SELECT {CHANGE_COLUMNS} FROM rm_change_audience a \
                 JOIN rm_changes c ON c.position = a.position \
                 WHERE a.user_id = $1 AND ($2 IS NULL OR a.position > $2) \
                 ORDER BY a.position LIMIT $3"
            ))
            .bind(viewer.user_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read_models.reader)
            .await?
        };
        rows.iter().map(change).collect()
    }

    async fn agenda_rows(
        &self,
        users: &[Uuid],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        longest: chrono::Duration,
        rows: AgendaRows,
        limit: i64,
    ) -> sqlx::Result<Vec<AgendaRow>> {
        let columns = "user_id, meeting_id, starts_at, ends_at, title, status, my_response, \
                       is_organizer, series";
        let extra = match rows {
            AgendaRows::All => "",
            AgendaRows::Busy => {
                "AND status <> 'cancelled' \
                 AND (series IS NOT NULL OR my_response IS NOT 'declined')"
            }
        };
        let singles = format!(
            "SELECT {columns} FROM rm_agenda \
             WHERE user_id = $1 AND starts_at >= $2 AND starts_at < $3 AND ends_at > $4 \
               AND series IS NULL {extra} LIMIT $5"
        );
        let series = format!(
            "SELECT {columns} FROM rm_agenda \
             WHERE user_id = $1 AND series IS NOT NULL AND starts_at < $3 \
               AND (series_ends_at IS NULL OR series_ends_at > $4) {extra} LIMIT $5"
        );
        let mut found = Vec::new();
        let mut connection = self.read_models.reader.acquire().await?;
        for user in users {
            for sql in [&singles, &series] {
                let rows = sqlx::query(sql)
                    .bind(user)
                    .bind(micros(from - longest))
                    .bind(micros(to))
                    .bind(micros(from))
                    .bind(limit)
                    .fetch_all(&mut *connection)
                    .await?;
                for row in &rows {
                    found.push(agenda_row(row)?);
                }
            }
        }
        Ok(found)
    }

    async fn working_hours(
        &self,
        users: &[Uuid],
    ) -> sqlx::Result<Vec<(Uuid, String, Option<serde_json::Value>)>> {
        let mut found = Vec::new();
        let mut connection = self.read_models.reader.acquire().await?;
        for user in users {
            let row = sqlx::query("SELECT id, time_zone, working_hours FROM rm_users WHERE id = ?")
                .bind(user)
                .fetch_optional(&mut *connection)
                .await?;
            if let Some(row) = row {
                found.push((
                    row.try_get("id")?,
                    row.try_get("time_zone")?,
                    optional_json_column(&row, "working_hours")?,
                ));
            }
        }
        Ok(found)
    }

    async fn profile(&self, user: Uuid) -> sqlx::Result<Option<ProfileRow>> {
        let row = sqlx::query(
            "SELECT id, email, display_name, time_zone, role, working_hours, version \
             FROM rm_users WHERE id = ?",
        )
        .bind(user)
        .fetch_optional(&self.read_models.reader)
        .await?;
        row.map(|row| {
            Ok(ProfileRow {
                id: row.try_get("id")?,
                email: row.try_get("email")?,
                display_name: row.try_get("display_name")?,
                time_zone: row.try_get("time_zone")?,
                role: row.try_get("role")?,
                working_hours: optional_json_column(&row, "working_hours")?,
                version: row.try_get("version")?,
            })
        })
        .transpose()
    }

    async fn display_name(&self, user: Uuid) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT display_name FROM rm_users WHERE id = ?")
            .bind(user)
            .fetch_optional(&self.read_models.reader)
            .await
    }

    async fn emails(&self, users: &[Uuid]) -> sqlx::Result<HashMap<Uuid, String>> {
        let mut found = HashMap::new();
        let mut connection = self.read_models.reader.acquire().await?;
        for user in users {
            let email: Option<String> =
                sqlx::query_scalar("SELECT email FROM rm_users WHERE id = ?")
                    .bind(user)
                    .fetch_optional(&mut *connection)
                    .await?;
            if let Some(email) = email {
                found.insert(*user, email);
            }
        }
        Ok(found)
    }

    async fn directory(
        &self,
        search: Option<&DirectorySearch>,
        after: Option<(String, Uuid)>,
        limit: i64,
    ) -> sqlx::Result<Vec<DirectoryRow>> {
        let (after_name, after_id) = after.unzip();
        let mut connection = self.read_models.reader.acquire().await?;
        let Some(search) = search else {
            let rows = sqlx::query(
                "SELECT id, display_name, email, sort_name FROM rm_users \
                 WHERE active AND ($1 IS NULL OR (sort_name, id) > ($1, $2)) \
                 ORDER BY sort_name, id LIMIT $3",
            )
            .bind(after_name)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await?;
            return rows.iter().map(directory_row).collect();
        };
        // The page's (name, id) keys from each branch, as on PostgreSQL; merged in order.
        let mut keys: BTreeSet<(String, Uuid)> = BTreeSet::new();
        if let Some((first, others)) = search.indexed.split_first() {
            let joins: String = (0..others.len())
                .map(|n| {
                    format!(
                        " JOIN rm_user_prefixes p{n} ON p{n}.prefix = ${} \
                         AND p{n}.sort_name = p.sort_name AND p{n}.user_id = p.user_id",
                        n + 5
                    )
                })
                .collect();
            // Long words are checked whole below, so their page cannot stop early in SQL.
            let page = if search.long.is_empty() {
                "LIMIT $4"
            } else {
                ""
            };
            let sql = format!(
                "SELECT p.sort_name, p.user_id FROM rm_user_prefixes p{joins} \
                 WHERE p.prefix = $1 AND ($2 IS NULL OR (p.sort_name, p.user_id) > ($2, $3)) \
                 ORDER BY p.sort_name, p.user_id {page}"
            );
            let mut query = sqlx::query_as::<_, (String, Uuid)>(&sql)
                .bind(first)
                .bind(&after_name)
                .bind(after_id)
                .bind(limit);
            for word in others {
                query = query.bind(word);
            }
            for (name, id) in query.fetch_all(&mut *connection).await? {
                if !search.long.is_empty() {
                    let words: String =
                        sqlx::query_scalar("SELECT search_words FROM rm_users WHERE id = ?")
                            .bind(id)
                            .fetch_one(&mut *connection)
                            .await?;
                    let whole = search
                        .long
                        .iter()
                        .all(|long| words.split(' ').any(|word| word.starts_with(long.as_str())));
                    if !whole {
                        continue;
                    }
                }
                keys.insert((name, id));
            }
        }
        if let Some(email) = &search.email {
            let prefix: String = email
                .chars()
                .take(platform::search::INDEXED_PREFIX)
                .collect();
            let rows: Vec<(String, Uuid)> = sqlx::query_as(
                "SELECT e.sort_name, e.user_id FROM rm_user_prefixes e \
                 JOIN rm_users eu ON eu.id = e.user_id \
                 WHERE e.prefix = $1 AND eu.email_key LIKE $2 ESCAPE '\\' \
                   AND ($3 IS NULL OR (e.sort_name, e.user_id) > ($3, $4)) \
                 ORDER BY e.sort_name, e.user_id LIMIT $5",
            )
            .bind(prefix)
            .bind(format!("{}%", like_escape(email)))
            .bind(&after_name)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await?;
            keys.extend(rows);
        }
        let mut found = Vec::new();
        for (_, id) in keys {
            if found.len() as i64 >= limit {
                break;
            }
            let row = sqlx::query(
                "SELECT id, display_name, email, sort_name FROM rm_users WHERE id = ? AND active",
            )
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?;
            if let Some(row) = row {
                found.push(directory_row(&row)?);
            }
        }
        Ok(found)
    }

    async fn feed_token(
        &self,
        user: Uuid,
        candidate: &str,
        candidate_hash: &[u8],
    ) -> sqlx::Result<String> {
        // One writer: the insert and the read back cannot interleave with another first call.
        sqlx::query(
            "INSERT INTO calendar_feeds (user_id, token_hash, token, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(candidate_hash)
        .bind(candidate)
        .bind(micros(Utc::now()))
        .execute(&self.events.writer)
        .await?;
        sqlx::query_scalar("SELECT token FROM calendar_feeds WHERE user_id = ?")
            .bind(user)
            .fetch_one(&self.events.writer)
            .await
    }

    async fn rotate_feed_token(&self, user: Uuid, token: &str, hash: &[u8]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO calendar_feeds (user_id, token_hash, token, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET \
                token_hash = excluded.token_hash, token = excluded.token, \
                created_at = excluded.created_at",
        )
        .bind(user)
        .bind(hash)
        .bind(token)
        .bind(micros(Utc::now()))
        .execute(&self.events.writer)
        .await?;
        Ok(())
    }

    async fn feed_owner(&self, hash: &[u8]) -> sqlx::Result<Option<(Uuid, String)>> {
        let owner: Option<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM calendar_feeds WHERE token_hash = ?")
                .bind(hash)
                .fetch_optional(&self.events.reader)
                .await?;
        let Some(owner) = owner else {
            return Ok(None);
        };
        let name: Option<String> =
            sqlx::query_scalar("SELECT display_name FROM rm_users WHERE id = ? AND active")
                .bind(owner)
                .fetch_optional(&self.read_models.reader)
                .await?;
        Ok(name.map(|name| (owner, name)))
    }

    async fn feed_documents(&self, user: Uuid, days: i32, limit: i64) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT d.body FROM rm_agenda a \
             JOIN rm_meeting_documents d ON d.meeting_id = a.meeting_id \
             WHERE a.user_id = $1 \
               AND ((CASE WHEN a.series IS NULL THEN a.ends_at ELSE a.series_ends_at END) > $2 \
                    OR (a.series IS NOT NULL AND a.series_ends_at IS NULL)) \
             ORDER BY a.starts_at DESC, a.meeting_id LIMIT $3",
        )
        .bind(user)
        .bind(micros(Utc::now() - chrono::Duration::days(i64::from(days))))
        .bind(limit)
        .fetch_all(&self.read_models.reader)
        .await
    }

    async fn failed_projections(&self) -> sqlx::Result<Vec<(String, Option<String>)>> {
        sqlx::query_as(
            "SELECT projection, failure FROM projection_checkpoints \
             WHERE failed_at IS NOT NULL ORDER BY projection",
        )
        .fetch_all(&self.read_models.reader)
        .await
    }

    async fn written(&self, position: Position) -> sqlx::Result<bool> {
        // Positions of this log are `(0, id)`; any other names no event here.
        if position.transaction_id != 0 {
            return Ok(false);
        }
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE id >= ?)")
            .bind(position.id)
            .fetch_one(&self.events.reader)
            .await
    }

    async fn ready(&self) -> Result<(), String> {
        self.events
            .ready(&EVENTS_MIGRATOR)
            .await
            .map_err(|e| format!("events: {e}"))?;
        self.read_models
            .ready(&READ_MODELS_MIGRATOR)
            .await
            .map_err(|e| format!("read models: {e}"))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

fn directory_row(row: &SqliteRow) -> sqlx::Result<DirectoryRow> {
    Ok(DirectoryRow {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        sort_name: row.try_get("sort_name")?,
    })
}
