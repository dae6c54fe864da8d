//! The contract between the projector (writes) and its readers (query-service waits, realtime
//! resumes): which checkpoint row to read and which channel announces it.

use crate::store::Position;

/// The projection that maintains every `rm_*` table; its row in `projection_checkpoints`.
pub const READ_MODELS: &str = "read_models";

/// PostgreSQL NOTIFY channel on which the projector announces its new checkpoint position
/// (payload: the position text), delivered when the batch commits.
pub const NOTIFY_CHANNEL: &str = "meetings_projected";

/// The read models' checkpoint, if the projector has written one: how far a reader of the
/// `rm_*` tables may assume they are.
pub async fn checkpoint(pool: &sqlx::PgPool) -> Result<Option<Position>, sqlx::Error> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
            .bind(READ_MODELS)
            .fetch_optional(pool)
            .await?;
    Ok(text.and_then(|text| match text.parse::<Position>() {
        Ok(position) => Some(position),
        Err(_) => {
            tracing::error!(%text, "projection checkpoint is not a position");
            None
        }
    }))
}
