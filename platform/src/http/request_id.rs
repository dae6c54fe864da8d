//! `X-Request-Id`: accepted from the client when sane, generated otherwise, echoed on every
//! response, attached to the tracing span of the request and readable anywhere in the request's
//! task (error bodies and event metadata use it).

use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The request id and correlation id of the request being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId {
    id: Arc<str>,
    correlation: Arc<str>,
}

impl RequestId {
    pub fn new(id: impl Into<Arc<str>>, correlation: Option<Arc<str>>) -> Self {
        let id = id.into();
        let correlation = correlation.unwrap_or_else(|| id.clone());
        Self { id, correlation }
    }

    pub fn generate() -> Self {
        Self::new(uuid::Uuid::now_v7().to_string(), None)
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Correlation id: the client's `X-Correlation-Id` when sane, else the request id; it follows
    /// one user action across services and events.
    pub fn correlation_id(&self) -> &str {
        &self.correlation
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The request id of the request this task serves, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A client-supplied id is kept when it is 1–128 visible ASCII characters.
pub fn is_sane(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())
}

fn sane_header(request: &Request, name: &HeaderName) -> Option<Arc<str>> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map(Arc::from)
}

/// Path segments that are secrets (a calendar feed's token is its only credential): logs show
/// the route's shape instead.
const SECRET_PATHS: [&str; 1] = ["/v1/calendar/feeds/"];

/// `path` as logs may show it: the secret segment of a secret-bearing path replaced.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in SECRET_PATHS {
        if let Some(rest) = path.strip_prefix(prefix) {
            if !rest.is_empty() {
                return std::borrow::Cow::Owned(format!("{prefix}[redacted]"));
            }
        }
    }
    std::borrow::Cow::Borrowed(path)
}

/// Middleware: resolves the id, runs the rest of the stack inside its scope and span, echoes it.
pub async fn request_id_middleware(mut request: Request, next: Next) -> Response {
    let id = match sane_header(&request, &X_REQUEST_ID) {
        Some(id) => RequestId::new(id, sane_header(&request, &X_CORRELATION_ID)),
        None => RequestId::new(
            uuid::Uuid::now_v7().to_string(),
            sane_header(&request, &X_CORRELATION_ID),
        ),
    };
    request.extensions_mut().insert(id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        correlation_id = id.correlation_id(),
        method = %request.method(),
        path = %loggable_path(request.uri().path()),
    );
    let header = HeaderValue::from_str(id.as_str()).expect("BUG: sane ids are valid headers");
    let mut response = CURRENT.scope(id, next.run(request)).instrument(span).await;
    response.headers_mut().insert(X_REQUEST_ID.clone(), header);
    response
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .or_else(current)
            .unwrap_or_else(RequestId::generate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_tokens_never_reach_the_logs() {
        assert_eq!(
            loggable_path("/v1/calendar/feeds/s3cr3t-t0ken.ics"),
            "/v1/calendar/feeds/[redacted]"
        );
        assert_eq!(loggable_path("/v1/calendar/feed"), "/v1/calendar/feed");
        assert_eq!(loggable_path("/v1/meetings/1.ics"), "/v1/meetings/1.ics");
    }

    #[test]
    fn sane_ids_are_short_visible_ascii() {
        assert!(is_sane("abc-123_X.y"));
        assert!(is_sane(&"a".repeat(128)));
        assert!(!is_sane(&"a".repeat(129)));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("tab\t"));
        assert!(!is_sane("ünïcode"));
    }
}
