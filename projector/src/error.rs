//! Why a batch could not be applied: the projector's one error type, shared by every layer
//! from the fold up.

use platform::bus::EventEnvelope;
use uuid::Uuid;

/// Why an event could not be applied. The projection stops on it; it never skips.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event does not fit the read models (unknown type, undecodable data, a missing row).
    #[error("cannot apply {event_type} {aggregate_type}/{aggregate_id}#{sequence}: {reason}")]
    Unapplicable {
        event_type: String,
        aggregate_type: String,
        aggregate_id: Uuid,
        sequence: i64,
        reason: String,
    },
    /// The database is unavailable; retrying may succeed.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The stream cannot continue the projection (it lost or trimmed events the projection
    /// needs); rebuild from the event store.
    #[error("{0}")]
    Inconsistent(String),
    /// The database refused the change (a constraint): the read models and the stream
    /// disagree; retrying would fail forever, so the projection stops.
    #[error("the read models refused the change: {0}")]
    Rejected(sqlx::Error),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> Self {
        if platform::db::is_transient(&error) {
            ProjectionError::Database(error)
        } else {
            ProjectionError::Rejected(error)
        }
    }
}

impl ProjectionError {
    /// `event` does not fit the read models, for `reason`.
    pub fn unapplicable(event: &EventEnvelope, reason: impl Into<String>) -> Self {
        ProjectionError::Unapplicable {
            event_type: event.event_type.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            reason: reason.into(),
        }
    }
}
