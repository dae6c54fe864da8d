//! How a command is answered: its status, a [`CommandBody`], `ETag` and `Location`.

use axum::http::header::{ETAG, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use platform::store::CommitOutcome;
use serde::Serialize;
use uuid::Uuid;

/// The outcome of a command, as answered to the client.
#[derive(Debug, Clone)]
pub struct CommandResponse {
    pub status: StatusCode,
    pub outcome: CommitOutcome,
    pub location: Option<String>,
    pub message_id: Option<Uuid>,
}

/// Body of every command response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommandBody {
    /// Id of the aggregate the command changed.
    pub id: Uuid,
    /// The aggregate's version after the command; also the `ETag`.
    pub version: i64,
    /// Global position of the command's last event, for `X-Min-Position` on queries.
    pub position: String,
    /// The new message's id (POST /v1/meetings/{id}/messages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let body = CommandBody {
            id: self.outcome.aggregate_id,
            version: self.outcome.version,
            position: self.outcome.position.to_string(),
            message_id: self.message_id,
        };
        let etag = format!("\"{}\"", self.outcome.version);
        answer(self.status, body, Some(etag), self.location)
    }
}

/// A command answer (also a replayed one): `body` unless the status is 204, plus the headers
/// that are valid.
pub(super) fn answer(
    status: StatusCode,
    body: impl Serialize,
    etag: Option<String>,
    location: Option<String>,
) -> Response {
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, Json(body)).into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [(ETAG, etag), (LOCATION, location)] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    response
}
