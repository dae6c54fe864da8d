//! `X-Request-Id`: accepted from the client when sane, generated otherwise, echoed on every
//! response, attached to the tracing span of the request and readable anywhere in the request's
//! task (error bodies and event metadata use it). A W3C `traceparent` joins the caller's trace:
//! its trace id is kept (and, without `X-Correlation-Id`, becomes the correlation id), the
//! request gets a span id of its own, and events carry the result on to NATS and beyond.

use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request id, correlation id and trace context of the request being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId {
    id: Arc<str>,
    correlation: Arc<str>,
    traceparent: TraceParent,
}

impl RequestId {
    pub fn new(id: impl Into<Arc<str>>, correlation: Option<Arc<str>>) -> Self {
        Self::within(id, correlation, None)
    }

    /// A request inside the caller's trace `parent`, when it sent one; else a trace of its own.
    pub fn within(
        id: impl Into<Arc<str>>,
        correlation: Option<Arc<str>>,
        parent: Option<TraceParent>,
    ) -> Self {
        let id = id.into();
        let traceparent = match parent {
            Some(parent) => parent.child(),
            None => TraceParent::root(),
        };
        let correlation = correlation
            .or_else(|| parent.map(|p| Arc::from(p.trace_id_hex())))
            .unwrap_or_else(|| id.clone());
        Self {
            id,
            correlation,
            traceparent,
        }
    }

    /// The W3C trace context of this request (`00-<trace id>-<this request's span id>-<flags>`).
    pub fn traceparent(&self) -> TraceParent {
        self.traceparent
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

/// A W3C Trace Context `traceparent` (version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceParent {
    /// A new trace, not sampled (nothing here records traces; a collector in front may).
    pub fn root() -> Self {
        Self {
            trace_id: rand::random::<u128>().max(1),
            span_id: rand::random::<u64>().max(1),
            flags: 0,
        }
    }

    /// A span of this trace below this one.
    pub fn child(self) -> Self {
        Self {
            span_id: rand::random::<u64>().max(1),
            ..self
        }
    }

    /// Parses a version-00 header; anything else (other versions included) is `None`, and the
    /// request then starts a trace of its own, as the specification allows.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if parts.next().is_some()
            || version != "00"
            || !lower_hex(trace, 32)
            || !lower_hex(span, 16)
            || !lower_hex(flags, 2)
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
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
    let parent = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let id = RequestId::within(
        sane_header(&request, &X_REQUEST_ID)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string())),
        sane_header(&request, &X_CORRELATION_ID),
        parent,
    );
    request.extensions_mut().insert(id.clone());
    let path = loggable_path(request.uri().path()).into_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        correlation_id = id.correlation_id(),
        traceparent = %id.traceparent(),
        method = %request.method(),
        path = %path,
    );
    let header = HeaderValue::from_str(id.as_str()).expect("BUG: sane ids are valid headers");
    let started = std::time::Instant::now();
    let mut response = CURRENT
        .scope(id, next.run(request))
        .instrument(span.clone())
        .await;
    // The access log: one line per request, inside its span so it carries the ids. Probes and
    // scrapes come every few seconds and say nothing about users: debug only.
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            tracing::debug!(status, elapsed_ms, "served");
        } else {
            tracing::info!(status, elapsed_ms, "served");
        }
    });
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
    fn a_callers_trace_is_joined_and_its_trace_id_correlates() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceParent::parse(header).unwrap();
        assert_eq!(parent.to_string(), header);
        let id = RequestId::within("r1", None, Some(parent));
        let own = id.traceparent().to_string();
        assert!(
            own.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{own}"
        );
        assert!(own.ends_with("-01"), "{own}");
        assert_ne!(own, header, "the request is a span of its own");
        assert_eq!(id.correlation_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let id = RequestId::within("r1", Some("c1".into()), Some(parent));
        assert_eq!(id.correlation_id(), "c1", "an explicit correlation id wins");
        assert_eq!(RequestId::new("r2", None).correlation_id(), "r2");
    }

    #[test]
    fn malformed_traceparents_start_a_trace_of_their_own() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let root = TraceParent::root().to_string();
        assert_eq!(TraceParent::parse(&root).map(|t| t.to_string()), Some(root));
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
