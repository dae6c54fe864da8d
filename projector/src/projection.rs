//! Leadership and checkpoint of the projection: one projector per database is active at a
//! time ([`lead`]), and the checkpoint row records how far it got, or why it stopped.

use platform::store::Position;
use sqlx::{PgConnection, PgPool};

pub use crate::apply::{NOTIFY_CHANNEL, PROJECTION};
use crate::sql::documents;

/// Takes the projection's single-active lock ([`platform::leader::try_lead`]) and answers
/// its connection, or `None` while another projector (or a rebuild) of this database holds
/// it.
///
/// Batches are applied on this connection only, so no two projectors ever interleave their
/// read-modify-write of the read models, and a projector that lost its connection cannot
/// write without the lock.
pub async fn lead(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let Some(mut connection) = platform::leader::try_lead(pool, &lock_key()).await? else {
        return Ok(None);
    };
    // A database migrated from before meeting documents existed has meetings without
    // one; complete them before serving as the projector (cheap when none is missing),
    // with the planner's full choice: a backfill does read whole tables.
    let rendered = documents::backfill(&mut connection).await?;
    if rendered > 0 {
        tracing::info!(rendered, "rendered missing meeting documents");
    }
    key_lookup_plans(&mut connection).await?;
    Ok(Some(connection))
}

/// Name of the projection's single-active lock: held by the active projector, and taken by
/// a replay for its swap.
pub fn lock_key() -> String {
    format!("meetings-projector:{PROJECTION}")
}

/// Every statement of the projector looks rows up by key. Their plans are made once per
/// connection (generic, cached), possibly while the tables are still small, and a plan made
/// for a small table — scan it whole, hash it — stays in use as it grows: a batch's load
/// went from 1 to 15 ms within a minute of `bench pipeline-lag`. So on a connection that
/// applies batches the planner may not scan a table or hash-join it at all.
pub async fn key_lookup_plans(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('enable_seqscan', 'off', false), \
                set_config('enable_hashjoin', 'off', false), \
                set_config('enable_mergejoin', 'off', false)",
    )
    .execute(connection)
    .await?;
    Ok(())
}

/// Records that the projection stopped, so readiness fails until an operator acts.
pub async fn mark_failed(pool: &PgPool, failure: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position, failed_at, failure) \
         VALUES ($1, $2, now(), $3) \
         ON CONFLICT (projection) DO UPDATE SET failed_at = now(), failure = EXCLUDED.failure",
    )
    .bind(PROJECTION)
    .bind(Position::START.to_string())
    .bind(failure)
    .execute(pool)
    .await?;
    Ok(())
}

/// The stream sequence after which the consumer resumes (`None`: from the start).
pub async fn stream_sequence(pool: &PgPool) -> Result<Option<u64>, sqlx::Error> {
    let sequence: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT stream_sequence FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(PROJECTION)
    .fetch_optional(pool)
    .await?;
    Ok(sequence.flatten().and_then(|s| u64::try_from(s).ok()))
}

/// The stored checkpoint and failure, if any.
pub async fn status(pool: &PgPool) -> Result<(Option<Position>, Option<String>), sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT position, failure FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(PROJECTION)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((position, failure)) => (position.parse().ok(), failure),
        None => (None, None),
    })
}

/// Empties the read models and this projection's bookkeeping (before a rebuild).
pub async fn reset(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "TRUNCATE rm_users, rm_user_prefixes, rm_meetings, rm_meeting_attendees, rm_meeting_documents, rm_agenda, \
         rm_chat_messages, rm_changes",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_sequences WHERE projection = $1")
        .bind(PROJECTION)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
        .bind(PROJECTION)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
