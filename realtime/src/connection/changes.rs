//! The gateway's seam over the change read model it replays resumes from (`rm_changes` and
//! the checkpoint of the read models): PostgreSQL, or the SQLite file of embedded mode.

use async_trait::async_trait;
use platform::bus::EventEnvelope;
use platform::db::sqlite::{json_column, time_column, SqliteFile};
use platform::store::{EventMetadata, Position};
use sqlx::sqlite::SqliteRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// What a replay reads: `user`'s changes (of `meeting` only, when given) in (`since`,
/// `until`].
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub user: Uuid,
    pub meeting: Option<Uuid>,
    pub since: Position,
    pub until: Position,
}

/// The change read model.
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// How far the read models are.
    async fn checkpoint(&self) -> anyhow::Result<Option<Position>>;

    /// The changes of `range` the user may see, in order, at most `limit`.
    async fn changes(&self, range: &Range, limit: i64) -> anyhow::Result<Vec<EventEnvelope>>;
}

/// An envelope with what an event frame shows; the read model keeps no metadata.
#[allow(clippy::too_many_arguments)]
fn envelope(
    position: &str,
    event_id: Uuid,
    event_type: String,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    data: serde_json::Value,
) -> anyhow::Result<EventEnvelope> {
    Ok(EventEnvelope {
        event_id,
        position: position
            .parse()
            .map_err(|_| anyhow::anyhow!("bad position"))?,
        event_type,
        event_version: String::new(),
        aggregate_type,
        aggregate_id,
        sequence,
        recorded_at,
        data,
        metadata: EventMetadata {
            event_id,
            actor_id: None,
            request_id: String::new(),
            correlation_id: String::new(),
            causation_id: String::new(),
            traceparent: None,
        },
    })
}

/// [`ChangeLog`] on PostgreSQL.
pub struct PgChangeLog(pub PgPool);

/// One row of `rm_changes`.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    position: String,
    event_id: Uuid,
    event_type: String,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    data: serde_json::Value,
}

const COLUMNS: &str = "position, event_id, event_type, aggregate_type, aggregate_id, \
                       sequence, recorded_at, data";

#[async_trait]
impl ChangeLog for PgChangeLog {
    async fn checkpoint(&self) -> anyhow::Result<Option<Position>> {
        Ok(platform::projection::checkpoint(&self.0).await?)
    }

    async fn changes(&self, range: &Range, limit: i64) -> anyhow::Result<Vec<EventEnvelope>> {
        let sql = match range.meeting {
            None => format!(
                "SELECT {COLUMNS} FROM rm_changes \
                 WHERE audience @> ARRAY[$1]::uuid[] AND position > $2 AND position <= $3 \
                 ORDER BY position LIMIT $4"
            ),
            Some(_) => format!(
                "SELECT {COLUMNS} FROM rm_changes \
                 WHERE aggregate_id = $5 AND position > $2 AND position <= $3 \
                   AND audience @> ARRAY[$1]::uuid[] \
                 ORDER BY position LIMIT $4"
            ),
        };
        let query = sqlx::query_as::<_, ChangeRow>(&sql)
            .bind(range.user)
            .bind(range.since.to_string())
            .bind(range.until.to_string())
            .bind(limit);
        let query = match range.meeting {
            Some(meeting) => query.bind(meeting),
            None => query,
        };
        query
            .fetch_all(&self.0)
            .await?
            .into_iter()
            .map(|r| {
                envelope(
                    &r.position,
                    r.event_id,
                    r.event_type,
                    r.aggregate_type,
                    r.aggregate_id,
                    r.sequence,
                    r.recorded_at,
                    r.data,
                )
            })
            .collect()
    }
}

/// [`ChangeLog`] on the read-model file of embedded mode: the audience is rows of
/// `rm_change_audience` keyed (user, position).
pub struct SqliteChangeLog(pub SqliteFile);

fn sqlite_envelope(row: &SqliteRow) -> anyhow::Result<EventEnvelope> {
    envelope(
        row.try_get("position")?,
        row.try_get("event_id")?,
        row.try_get("event_type")?,
        row.try_get("aggregate_type")?,
        row.try_get("aggregate_id")?,
        row.try_get("sequence")?,
        time_column(row, "recorded_at")?,
        json_column(row, "data")?,
    )
}

#[async_trait]
impl ChangeLog for SqliteChangeLog {
    async fn checkpoint(&self) -> anyhow::Result<Option<Position>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = ?")
                .bind(platform::projection::READ_MODELS)
                .fetch_optional(&self.0.reader)
                .await?;
        Ok(text.and_then(|text| text.parse().ok()))
    }

    async fn changes(&self, range: &Range, limit: i64) -> anyhow::Result<Vec<EventEnvelope>> {
        let rows = sqlx::query(
            "SELECT c.position, c.event_id, c.event_type, c.aggregate_type, c.aggregate_id, \
                    c.sequence, c.recorded_at, c.data \
             FROM rm_change_audience a JOIN rm_changes c ON c.position = a.position \
             WHERE a.user_id = $1 AND a.position > $2 AND a.position <= $3 \
               AND ($5 IS NULL OR c.aggregate_id = $5) \
             ORDER BY a.position LIMIT $4",
        )
        .bind(range.user)
        .bind(range.since.to_string())
        .bind(range.until.to_string())
        .bind(limit)
        .bind(range.meeting)
        .fetch_all(&self.0.reader)
        .await?;
        rows.iter().map(sqlite_envelope).collect()
    }
}
