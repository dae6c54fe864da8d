//! HTTP plumbing shared by every service: the server, errors, request ids, timeouts,
//! extractors, health, metrics.

pub mod chunks;
pub mod connection;
pub mod error;
pub mod extract;
pub mod health;
pub mod request_id;
pub mod timeout;

pub use error::{ApiError, Problem, RETRY_AFTER_SECONDS};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use request_id::RequestId;

use axum::http::{header, HeaderValue};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

/// What handlers return: a bare `?` turns store, database and domain errors into [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Layers every service puts around its router: request ids (outermost, so even 404s and
/// extractor rejections carry one), metrics by route template, the request timeout the server
/// sets (inside both, so a timed-out request has an id and is counted), and RFC 9457
/// fallbacks for unknown routes and methods.
pub fn finish_router<S>(router: Router<S>, metrics: crate::metrics::Metrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        // Stop reading bodies at the limit instead of buffering up to axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(extract::BODY_LIMIT))
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .layer(axum::middleware::from_fn(timeout::request_timeout))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track_http,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Answers carry tokens and personal data: no shared or disk cache may keep them. A
        // route with its own policy sets the header itself.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn(request_id::request_id_middleware))
}
