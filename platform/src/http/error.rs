//! RFC 9457 problem details: the one error format of every HTTP service.
//!
//! Handlers return [`super::Result`]; each variant has one status. Internal failures are
//! logged here once with their cause and answered with a generic body, never with the cause.
//! Store and database errors convert with `?`: a transient failure is 503 with
//! [`RETRY_AFTER_SECONDS`], a unique claim or lost race 409, anything else 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{DomainError, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

use super::request_id;
use crate::store::StoreError;

/// `Retry-After` of every 503, in seconds. One second: a failed statement drops its dead
/// connection and the next one gets a new connection, so a dropped connection, a lost
/// serialization race or a moment of overload is usually over by then, and a longer outage
/// just answers 503 again. One value for every dependency, so that clients need one rule.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Every error an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// The client did not send its request in time (`MEETINGS_HTTP_REQUEST_TIMEOUT`).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 413 for a body within the byte limit that holds more than a request may (an import's
    /// events); the string says what.
    #[error("{0}")]
    TooManyParts(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: u64,
        /// The database looked unreachable: the breaker checks it ([`crate::breaker`]).
        database: bool,
    },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The body of every error response (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI reference naming the kind of problem, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The `X-Request-Id` of the failed request, to quote in a support request.
    pub request_id: String,
    /// Present for 422: one entry per invalid field (JSON path of the request body).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ProblemFieldError>)]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a 422 answer.
#[derive(Serialize, ToSchema)]
pub struct ProblemFieldError {
    pub field: String,
    pub message: String,
}

impl ApiError {
    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError::new(field, message).into()
    }

    /// 503: a dependency is (perhaps briefly) unavailable; retry after [`RETRY_AFTER_SECONDS`].
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::Unavailable {
            detail: detail.into(),
            retry_after: RETRY_AFTER_SECONDS,
            database: false,
        }
    }

    /// 503 because PostgreSQL failed or is known to be down.
    pub fn database_unavailable() -> Self {
        ApiError::Unavailable {
            detail: "the database is unavailable, retry shortly".into(),
            retry_after: RETRY_AFTER_SECONDS,
            database: true,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } | ApiError::TooManyParts(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "malformed-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::PayloadTooLarge { .. } | ApiError::TooManyParts(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Validation { .. } => "validation",
            ApiError::TooManyRequests { .. } => "too-many-requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// One bad field: 422 naming it, as [`ApiError::invalid`] does.
impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        DomainError::from(error).into()
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation(errors) => ApiError::Validation {
                detail: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                errors,
            },
            DomainError::NotFound(detail) => ApiError::NotFound(detail),
            DomainError::Forbidden(detail) => ApiError::Forbidden(detail),
            DomainError::Conflict(detail) => ApiError::Conflict(detail),
            DomainError::Unavailable(detail) => {
                tracing::warn!(%detail, "dependency unavailable");
                // The domain's dependencies (the directory) live in the database.
                ApiError::Unavailable {
                    detail: "a dependency is unavailable, retry shortly".into(),
                    retry_after: RETRY_AFTER_SECONDS,
                    database: true,
                }
            }
        }
    }
}

/// The one transient → 503 rule: the store says which failures are worth retrying.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError::database_unavailable()
            }
            StoreError::Duplicate(what) => {
                ApiError::Conflict(format!("{what} is already registered"))
            }
            StoreError::Concurrency => {
                ApiError::Conflict("the resource was changed concurrently; retry".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Queries outside the event store (read models) answer like the store: their errors are
/// read by the same mapping of PostgreSQL errors, then by the rule above.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        crate::store::postgres::db_error(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let slug = self.slug();
        let detail = match &self {
            ApiError::Internal(cause) => {
                // Logged once, here; the client only learns that it was our fault.
                tracing::error!(error = format!("{cause:#}"), "internal error");
                "an internal error occurred; quote the request_id when reporting it".to_string()
            }
            other => other.to_string(),
        };
        let database_failed = matches!(self, ApiError::Unavailable { database: true, .. });
        let (errors, retry_after) = match self {
            ApiError::Validation { errors, .. } => (errors, None),
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => (vec![], Some(retry_after)),
            _ => (vec![], None),
        };
        let problem = Problem {
            kind: format!("/problems/{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            request_id: request_id::current()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            errors,
        };
        let body = serde_json::to_vec(&problem).expect("BUG: a Problem always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meetings\""),
            );
        }
        if database_failed {
            response
                .extensions_mut()
                .insert(crate::breaker::DatabaseFailed);
        }
        response
    }
}

/// Fallback for unknown routes, so even they answer problem+json.
pub async fn not_found_fallback() -> ApiError {
    ApiError::NotFound("no such resource".into())
}

/// Fallback for a known route with an unsupported method.
pub async fn method_not_allowed_fallback() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_store_and_database_failures_are_503_with_the_one_retry_after() {
        let errors = [
            ApiError::from(StoreError::Unavailable("connection reset".into())),
            ApiError::from(sqlx::Error::PoolTimedOut),
            ApiError::from(DomainError::Unavailable("directory down".into())),
        ];
        for error in errors {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
    }

    #[test]
    fn lost_races_and_taken_claims_are_409_and_other_failures_500() {
        let status = |error: StoreError| ApiError::from(error).status();
        assert_eq!(status(StoreError::Concurrency), StatusCode::CONFLICT);
        assert_eq!(status(StoreError::Duplicate("email")), StatusCode::CONFLICT);
        assert_eq!(
            status(StoreError::IdempotencyKeyTaken),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::from(sqlx::Error::RowNotFound).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
