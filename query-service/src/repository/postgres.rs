//! [`ReadModels`] on PostgreSQL: the read models and, for the administrators' history and
//! `X-Min-Position`, the event log, in one database.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use platform::search;
use platform::store::Position;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    AgendaRow, AgendaRows, ChangeEvent, ChatMessage, DirectoryRow, DirectorySearch, Document,
    MeetingFilter, ProfileRow, ReadModels, Viewer,
};
use crate::params::like_escape;

#[derive(Clone)]
pub struct PgReadModels {
    pool: PgPool,
}

impl PgReadModels {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// SQL condition "the caller may see meeting `m`": its organizer, one of its attendees, or an
/// admin. Placeholders: `$1` is the admin flag, `$2` the caller's id.
const VISIBLE_TO_CALLER: &str = "($1 OR m.organizer_id = $2 OR EXISTS (
        SELECT 1 FROM rm_meeting_attendees a WHERE a.meeting_id = m.id AND a.user_id = $2))";

/// The one statement of a document lookup, for one lookup or many: `$1` meeting ids, `$2`
/// callers, `$3` admin flags, row `i` answering lookup `i` (1-based) when that caller may see
/// that meeting. The lookup is `LATERAL … LIMIT 1`, an index lookup per id whatever the plan
/// cache holds.
const LOOKUP_SQL: &str = "SELECT r.i, d.version, d.body::text
     FROM unnest($1::uuid[], $2::uuid[], $3::bool[]) WITH ORDINALITY AS r(id, caller, admin, i)
     JOIN LATERAL (SELECT version, body FROM rm_meeting_documents
                   WHERE meeting_id = r.id AND (r.admin OR r.caller = ANY(members))
                   LIMIT 1) d ON true";

#[async_trait]
impl ReadModels for PgReadModels {
    async fn can_see_meeting(&self, viewer: Viewer, meeting: Uuid) -> sqlx::Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM rm_meetings m WHERE m.id = $3 AND {VISIBLE_TO_CALLER})"
        );
        sqlx::query_scalar(&sql)
            .bind(viewer.admin)
            .bind(viewer.user_id)
            .bind(meeting)
            .fetch_one(&self.pool)
            .await
    }

    async fn meeting_page(
        &self,
        viewer: Viewer,
        filter: &MeetingFilter,
    ) -> sqlx::Result<Vec<(DateTime<Utc>, Uuid, String)>> {
        // Members: start from their own meetings (both lookups are index scans), so the cost
        // follows the caller's meetings, not the whole table. Admins: every meeting (`$1` is
        // true).
        let source = if viewer.admin {
            "rm_meetings m"
        } else {
            "(SELECT a.meeting_id AS id FROM rm_meeting_attendees a WHERE a.user_id = $2
              UNION SELECT id FROM rm_meetings WHERE organizer_id = $2) mine
             JOIN rm_meetings m ON m.id = mine.id"
        };
        let sql = format!(
            r"SELECT m.starts_at, m.id, d.body::text
              FROM {source} JOIN rm_meeting_documents d ON d.meeting_id = m.id
              WHERE {VISIBLE_TO_CALLER}
                AND ($3::timestamptz IS NULL OR m.ends_at > $3)
                AND ($4::timestamptz IS NULL OR m.starts_at < $4)
                AND ($5::text IS NULL OR m.status = $5)
                AND ($6::text IS NULL OR m.title ILIKE $6 ESCAPE '\')
                AND ($7::timestamptz IS NULL OR (m.starts_at, m.id) > ($7, $8::uuid))
              ORDER BY m.starts_at, m.id
              LIMIT $9"
        );
        let (after_start, after_id) = filter.after.unzip();
        sqlx::query_as(&sql)
            .bind(viewer.admin)
            .bind(viewer.user_id)
            .bind(filter.from)
            .bind(filter.to)
            .bind(&filter.status)
            .bind(
                filter
                    .title
                    .as_deref()
                    .map(|t| format!("%{}%", like_escape(t))),
            )
            .bind(after_start)
            .bind(after_id)
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await
    }

    async fn messages(
        &self,
        meeting: Uuid,
        after: Option<String>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChatMessage>> {
        sqlx::query_as(
            "SELECT message_id, author_id, text, posted_at, position FROM rm_chat_messages
             WHERE meeting_id = $1 AND ($2::text IS NULL OR position > $2)
             ORDER BY position LIMIT $3",
        )
        .bind(meeting)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn documents(&self, keys: &[(Uuid, Uuid, bool)]) -> sqlx::Result<Vec<Option<Document>>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(LOOKUP_SQL)
            .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await?;
        let mut found: Vec<Option<Document>> = vec![None; keys.len()];
        for (i, version, body) in rows {
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| found.get_mut(i)) {
                *slot = Some(Document { version, body });
            }
        }
        Ok(found)
    }

    async fn changes(
        &self,
        viewer: Viewer,
        after: Option<String>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChangeEvent>> {
        sqlx::query_as(
            "SELECT position, event_type, aggregate_type, aggregate_id, sequence, recorded_at, data
             FROM rm_changes
             WHERE ($1 OR audience @> ARRAY[$2::uuid])
               AND ($3::text IS NULL OR position > $3)
             ORDER BY position
             LIMIT $4",
        )
        .bind(viewer.admin)
        .bind(viewer.user_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
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
                 AND (series IS NOT NULL OR my_response IS DISTINCT FROM 'declined')"
            }
        };
        sqlx::query_as(&format!(
            "(SELECT {columns} FROM rm_agenda
              WHERE user_id = ANY($1) AND starts_at >= $2 AND starts_at < $3 AND ends_at > $4
                AND series IS NULL {extra}
              LIMIT $5)
             UNION ALL
             (SELECT {columns} FROM rm_agenda
              WHERE user_id = ANY($1) AND series IS NOT NULL AND starts_at < $3
                AND (series_ends_at IS NULL OR series_ends_at > $4) {extra}
              LIMIT $5)"
        ))
        .bind(users)
        .bind(from - longest)
        .bind(to)
        .bind(from)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn working_hours(
        &self,
        users: &[Uuid],
    ) -> sqlx::Result<Vec<(Uuid, String, Option<serde_json::Value>)>> {
        sqlx::query_as("SELECT id, time_zone, working_hours FROM rm_users WHERE id = ANY($1)")
            .bind(users)
            .fetch_all(&self.pool)
            .await
    }

    async fn profile(&self, user: Uuid) -> sqlx::Result<Option<ProfileRow>> {
        sqlx::query_as(
            "SELECT id, email, display_name, time_zone, role, working_hours, version
             FROM rm_users WHERE id = $1",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await
    }

    async fn display_name(&self, user: Uuid) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT display_name FROM rm_users WHERE id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await
    }

    async fn emails(&self, users: &[Uuid]) -> sqlx::Result<HashMap<Uuid, String>> {
        Ok(
            sqlx::query_as::<_, (Uuid, String)>(
                "SELECT id, email FROM rm_users WHERE id = ANY($1)",
            )
            .bind(users)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect(),
        )
    }

    async fn directory(
        &self,
        search: Option<&DirectorySearch>,
        after: Option<(String, Uuid)>,
        limit: i64,
    ) -> sqlx::Result<Vec<DirectoryRow>> {
        let (after_name, after_id) = after.unzip();
        let Some(search) = search else {
            return sqlx::query_as(
                r"SELECT id, display_name, email, lower(display_name) AS sort_name
                  FROM rm_users
                  WHERE active
                    AND ($1::text IS NULL OR (lower(display_name), id) > ($1, $2::uuid))
                  ORDER BY lower(display_name), id
                  LIMIT $3",
            )
            .bind(after_name)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await;
        };
        let Some(sql) = directory_search_sql(
            search.indexed.len(),
            !search.long.is_empty(),
            search.email.is_some(),
        ) else {
            return Ok(Vec::new());
        };
        let email = search.email.clone().unwrap_or_default();
        let mut statement = sqlx::query_as(sql)
            .bind(format!("{}%", like_escape(&email)))
            .bind(after_name)
            .bind(after_id)
            .bind(limit)
            .bind(
                email
                    .chars()
                    .take(search::INDEXED_PREFIX)
                    .collect::<String>(),
            )
            .bind(&search.long);
        for word in &search.indexed {
            statement = statement.bind(word);
        }
        statement.fetch_all(&self.pool).await
    }

    async fn feed_token(
        &self,
        user: Uuid,
        candidate: &str,
        candidate_hash: &[u8],
    ) -> sqlx::Result<String> {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT token FROM calendar_feeds WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(token) = existing {
            return Ok(token);
        }
        // Two first calls at once: the first one's token wins, the other reads it.
        sqlx::query(
            "INSERT INTO calendar_feeds (user_id, token_hash, token) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user)
        .bind(candidate_hash)
        .bind(candidate)
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar("SELECT token FROM calendar_feeds WHERE user_id = $1")
            .bind(user)
            .fetch_one(&self.pool)
            .await
    }

    async fn rotate_feed_token(&self, user: Uuid, token: &str, hash: &[u8]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO calendar_feeds (user_id, token_hash, token) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET token_hash = EXCLUDED.token_hash,
                token = EXCLUDED.token, created_at = now()",
        )
        .bind(user)
        .bind(hash)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn feed_owner(&self, hash: &[u8]) -> sqlx::Result<Option<(Uuid, String)>> {
        sqlx::query_as(
            "SELECT f.user_id, u.display_name FROM calendar_feeds f
             JOIN rm_users u ON u.id = f.user_id AND u.active
             WHERE f.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
    }

    async fn feed_documents(&self, user: Uuid, days: i32, limit: i64) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT d.body::text FROM rm_agenda a
             JOIN rm_meeting_documents d ON d.meeting_id = a.meeting_id
             WHERE a.user_id = $1
               AND (CASE WHEN a.series IS NULL THEN a.ends_at ELSE a.series_ends_at END
                    > now() - make_interval(days => $2)
                    OR (a.series IS NOT NULL AND a.series_ends_at IS NULL))
             ORDER BY a.starts_at DESC, a.meeting_id
             LIMIT $3",
        )
        .bind(user)
        .bind(days)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn failed_projections(&self) -> sqlx::Result<Vec<(String, Option<String>)>> {
        sqlx::query_as(
            "SELECT projection, failure FROM projection_checkpoints
             WHERE failed_at IS NOT NULL ORDER BY projection",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// One index probe of `events_global_position`.
    async fn written(&self, position: Position) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
             WHERE (transaction_id, id) >= ($1::text::xid8, $2))",
        )
        .bind(position.transaction_id.to_string())
        .bind(position.id)
        .fetch_one(&self.pool)
        .await
    }

    async fn ready(&self) -> Result<(), String> {
        platform::db::ready(&self.pool).await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// The directory search for a query of `words` words (0 to [`search::MAX_QUERY_WORDS`]), with
/// or without words longer than the indexed prefixes (`long`) and the whole query as the start
/// of an email address (`email`): one statement each. `rm_user_prefixes` is keyed (prefix,
/// name, id), so each query word is an ordered index range in the directory's order, merge-
/// joined with the others, and a page stops after its rows. Long words are then checked whole.
/// A single word finds email starts by itself (the address is one of the user's words); the
/// email branch is for a query with punctuation ("ada.lo"), which no name word contains.
///
/// `$1` email pattern, `$2`/`$3` cursor, `$4` page size + 1, `$5` the whole query as a prefix,
/// `$6` long words, `$7…` the words. `None` when there is nothing to look up.
pub fn directory_search_sql(words: usize, long: bool, email: bool) -> Option<&'static str> {
    static STATEMENTS: std::sync::LazyLock<Vec<Option<String>>> = std::sync::LazyLock::new(|| {
        let mut statements = Vec::new();
        for words in 0..=search::MAX_QUERY_WORDS {
            for long in [false, true] {
                for email in [false, true] {
                    statements.push(search_statement(words, long, email));
                }
            }
        }
        statements
    });
    let index = words.min(search::MAX_QUERY_WORDS) * 4 + usize::from(long) * 2 + usize::from(email);
    STATEMENTS[index].as_deref()
}

fn search_statement(words: usize, long: bool, email: bool) -> Option<String> {
    let after = |alias: &str| {
        format!("($2::text IS NULL OR ({alias}.sort_name, {alias}.user_id) > ($2, $3::uuid))")
    };
    let mut branches = Vec::new();
    if words > 0 {
        let joins: String = (2..=words)
            .map(|n| {
                format!(
                    " JOIN rm_user_prefixes p{n} ON p{n}.prefix = ${} \
                     AND p{n}.sort_name = p1.sort_name AND p{n}.user_id = p1.user_id",
                    n + 6
                )
            })
            .collect();
        let whole = if long {
            " AND NOT EXISTS (SELECT 1 FROM unnest($6::text[]) w \
                              WHERE NOT EXISTS (SELECT 1 FROM rm_users u, \
                                     unnest(u.search_prefixes) s \
                                     WHERE u.id = p1.user_id AND starts_with(s, w)))"
        } else {
            ""
        };
        branches.push(format!(
            "(SELECT p1.sort_name, p1.user_id FROM rm_user_prefixes p1{joins} \
             WHERE p1.prefix = $7 AND {}{whole} \
             ORDER BY p1.sort_name, p1.user_id LIMIT $4)",
            after("p1")
        ));
    }
    if email {
        branches.push(format!(
            "(SELECT e.sort_name, e.user_id FROM rm_user_prefixes e \
              JOIN rm_users eu ON eu.id = e.user_id \
              WHERE e.prefix = $5 AND eu.email_key LIKE $1 ESCAPE '\\' AND {} \
              ORDER BY e.sort_name, e.user_id LIMIT $4)",
            after("e")
        ));
    }
    (!branches.is_empty()).then(|| {
        format!(
            "SELECT u.id, u.display_name, u.email, h.sort_name \
             FROM ({}) h JOIN rm_users u ON u.id = h.user_id AND u.active \
             ORDER BY h.sort_name, h.user_id LIMIT $4",
            branches.join(" UNION ")
        )
    })
}
