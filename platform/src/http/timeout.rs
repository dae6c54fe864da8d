//! The whole-request timeout (`MEETINGS_HTTP_REQUEST_TIMEOUT`): a request must be answered
//! within it, reading its body included, so a client that trickles its body is cut off as
//! surely as a handler that hangs.
//!
//! The server ([`super::connection`]) puts the limit into each request as [`RequestTimeout`];
//! this middleware, placed by [`super::finish_router`] inside the request id and the metrics,
//! enforces it, so a timed-out request is answered with problem+json carrying its request id
//! and is counted like any other answer. A websocket upgrade answers at once (101) and its
//! socket lives on outside the request, so it is not bounded by this.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};

use super::ApiError;

/// How long the request carrying this extension may take. Requests without it (a router
/// called directly in a test) are not bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// Middleware: answers 408 when the time runs out while the request body is still arriving
/// (the client is slow), else 503 with `Retry-After` (we are).
pub async fn request_timeout(request: Request, next: Next) -> Response {
    let Some(&RequestTimeout(limit)) = request.extensions().get::<RequestTimeout>() else {
        return next.run(request).await;
    };
    let received = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        if body.is_end_stream() {
            received.store(true, Ordering::Relaxed);
            body
        } else {
            Body::new(WatchedBody {
                body,
                received: received.clone(),
            })
        }
    });
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) if !received.load(Ordering::Relaxed) => {
            let mut response = ApiError::RequestTimeout(format!(
                "the request body did not arrive within {}",
                humantime::format_duration(limit)
            ))
            .into_response();
            // The rest of the body is never read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Err(_) => ApiError::unavailable(format!(
            "the request was not answered within {}; retry shortly",
            humantime::format_duration(limit)
        ))
        .into_response(),
    }
}

/// A request body that says when it has been read to its end.
struct WatchedBody {
    body: Body,
    received: Arc<AtomicBool>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.body.is_end_stream() {
            this.received.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late"
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(axum::middleware::from_fn(request_timeout))
    }

    fn with_timeout(mut request: Request) -> Request {
        request
            .extensions_mut()
            .insert(RequestTimeout(Duration::from_millis(50)));
        request
    }

    #[tokio::test]
    async fn a_slow_handler_is_answered_503_with_retry_after() {
        let request = with_timeout(Request::get("/slow").body(Body::empty()).unwrap());
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_answered_408_and_closes_the_connection() {
        let (_sender, body) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let request = with_timeout(
            Request::post("/echo")
                .body(Body::from_stream(body))
                .unwrap(),
        );
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn without_the_extension_nothing_is_bounded_and_fast_requests_pass() {
        let request = with_timeout(Request::post("/echo").body(Body::from("hi")).unwrap());
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let unbounded = app().oneshot(Request::get("/slow").body(Body::empty()).unwrap());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), unbounded)
                .await
                .is_err(),
            "a request without RequestTimeout was cut off"
        );
    }
}
