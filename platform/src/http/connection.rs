//! The HTTP/1.1 server of every service, in place of `axum::serve`, which has no timeouts and
//! no connection cap (docs/architecture.md, guarantee 11).
//!
//! - At most `MEETINGS_HTTP_MAX_CONNECTIONS` sockets are open at once, websockets included:
//!   each holds a semaphore permit until it closes. At the cap the loop stops accepting, so
//!   further clients wait in the kernel's listen backlog and are served as sockets close;
//!   the connections already open are not disturbed.
//! - Each connection is watched through its phases: a request head must be complete within
//!   `MEETINGS_HTTP_HEADER_TIMEOUT` of the connection's start or of the first byte of a later
//!   request (slowloris clients trickle headers forever); between requests a keep-alive
//!   connection may wait `MEETINGS_HTTP_IDLE_TIMEOUT`; while a request is served, its
//!   handler and body are bounded by `MEETINGS_HTTP_REQUEST_TIMEOUT` ([`super::timeout`]);
//!   an upgraded connection (websocket) is its handler's business. hyper's own header timer
//!   is set to the idle and header timeouts together, so a connection is closed even if this
//!   watch were wrong.
//! - Shutdown stops accepting, closes idle connections and lets requests in flight finish, as
//!   `axum::serve` did. Handlers still find `ConnectInfo<SocketAddr>`.
//!
//! HTTP/2 is not offered, as before (axum's `http2` feature was never enabled).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use futures::FutureExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::timeout::RequestTimeout;
use crate::config::HttpLimits;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and returns
/// once every connection still open has finished its request in flight (upgraded connections
/// are not waited for).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let stop = CancellationToken::new();
    // Every connection task holds a receiver; `closed()` resolves when the last is dropped.
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut at_cap = false;
    let spawn = |stream, remote, permit| {
        tokio::spawn(connection(
            stream,
            remote,
            permit,
            router.clone(),
            limits.clone(),
            stop.clone(),
            open_rx.clone(),
        ));
    };
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached (MEETINGS_HTTP_MAX_CONNECTIONS): \
                         new connections wait until one closes"
                    );
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("BUG: the connection semaphore is never closed")
                    }
                }
            }
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // The client gave up before we accepted: nothing to do.
                Err(error) if is_connection_error(&error) => continue,
                // Out of file descriptors or memory: wait instead of spinning.
                Err(error) => {
                    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        spawn(stream, remote, permit);
    }
    // Connections the kernel has already completed belong to clients that sent, or are
    // sending, a request: serve them instead of resetting them with the listener.
    while let Some(Ok((stream, remote))) = listener.accept().now_or_never() {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            break;
        };
        spawn(stream, remote, permit);
    }
    drop(listener);
    stop.cancel();
    drop(open_rx);
    open_tx.closed().await;
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Turns Nagle's algorithm off on an accepted socket: a response written in several pieces
/// (a body in chunks, the head apart from the body) would otherwise hold its last small
/// piece until the client acknowledged the one before, which clients delay by up to 40 ms.
fn without_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY could not be set");
    }
}

/// How long a stopping server waits for a request whose head is arriving on an open
/// connection before closing it.
const HEAD_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection until the client closes it, a timeout closes it, or shutdown has let
/// its request in flight finish.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
    _open: watch::Receiver<()>,
) {
    without_delay(&stream);
    let activity = Arc::new(Activity::new(limits.header_timeout, limits.idle_timeout));
    let io = TokioIo::new(WatchedIo {
        stream,
        activity: activity.clone(),
        _permit: permit,
    });
    let service = ConnectionService {
        router,
        remote,
        request_timeout: limits.request_timeout,
        activity: activity.clone(),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.saturating_add(limits.idle_timeout));
    let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
    let mut stopping = false;
    let mut head_grace: Option<Instant> = None;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
                return;
            }
            reason = activity.expired() => {
                // Dropping the connection closes the socket.
                tracing::debug!(%remote, "closing a connection: {reason}");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                // A connection still receiving its request head has a request on the way
                // (hyper would close it as idle): let that request in first, within a grace.
                if activity.receiving_head() {
                    head_grace = Some(Instant::now() + HEAD_GRACE);
                } else {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(Duration::from_millis(5)), if head_grace.is_some() => {
                if !activity.receiving_head() || head_grace.is_some_and(|at| at <= Instant::now()) {
                    head_grace = None;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Where a connection is, for the header and idle timeouts.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request head, which must be complete by then.
    Head(Instant),
    /// Between requests, no byte of the next one yet; closed at that instant.
    Idle(Instant),
    /// Serving this many requests (hyper serves one at a time; a count keeps it honest).
    Busy(usize),
    /// Handed over to a websocket (or another upgrade): no longer ours to time.
    Upgraded,
}

/// The phase of one connection, shared by its socket, its service and its task.
struct Activity {
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            header_timeout,
            idle_timeout,
            phase: Mutex::new(Phase::Head(Instant::now() + header_timeout)),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The lock is never held across code that can panic.
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase();
        *phase = next(*phase);
        drop(phase);
        self.changed.notify_one();
    }

    /// Bytes arrived: when idle, they start the next request's head.
    fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now() + self.header_timeout);
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Upgraded => Phase::Upgraded,
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        });
    }

    fn request_finished(&self) {
        let idle_until = Instant::now() + self.idle_timeout;
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            Phase::Busy(_) => Phase::Idle(idle_until),
            other => other,
        });
    }

    /// Waiting for the head of the connection's first request (not idle between requests).
    fn receiving_head(&self) -> bool {
        matches!(*self.phase(), Phase::Head(_))
    }

    fn upgraded(&self) {
        self.update(|_| Phase::Upgraded);
    }

    /// Resolves when the connection has overstayed its phase, saying which limit it broke.
    async fn expired(&self) -> &'static str {
        loop {
            let changed = self.changed.notified();
            let (deadline, reason) = match *self.phase() {
                Phase::Head(deadline) => (
                    Some(deadline),
                    "no complete request head within MEETINGS_HTTP_HEADER_TIMEOUT",
                ),
                Phase::Idle(deadline) => (Some(deadline), "idle for MEETINGS_HTTP_IDLE_TIMEOUT"),
                Phase::Busy(_) | Phase::Upgraded => (None, ""),
            };
            match deadline {
                Some(deadline) if deadline <= Instant::now() => return reason,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The socket, telling the connection's [`Activity`] when bytes arrive, and holding the
/// connection's permit for as long as it is open (through an upgrade too).
struct WatchedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router as hyper calls it on one connection: adds `ConnectInfo` and the request
/// timeout to each request, and marks the connection busy until the response is sent.
struct ConnectionService {
    router: Router,
    remote: SocketAddr,
    request_timeout: Duration,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<GuardedBody>, Infallible>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let guard = RequestGuard::new(self.activity.clone());
        let mut request: Request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        request
            .extensions_mut()
            .insert(RequestTimeout(self.request_timeout));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                guard.activity.upgraded();
            }
            Ok(response.map(|body| GuardedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

/// One request in flight on a connection, from its head until its response body is dropped
/// (sent, or abandoned with the connection).
struct RequestGuard {
    activity: Arc<Activity>,
}

impl RequestGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self { activity }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.request_finished();
    }
}

/// A response body that keeps its request in flight while hyper sends it.
pub struct GuardedBody {
    body: Body,
    _guard: RequestGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
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
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_send_without_waiting_for_acknowledgements() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (stream, _) = accepted.unwrap();
        assert!(!stream.nodelay().unwrap(), "the kernel's default changed");
        without_delay(&stream);
        assert!(stream.nodelay().unwrap());
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn phases_set_the_deadline_and_an_upgrade_ends_the_watch() {
        let header = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        let activity = Activity::new(header, idle);
        let started = Instant::now();
        assert_eq!(
            activity.expired().await,
            "no complete request head within MEETINGS_HTTP_HEADER_TIMEOUT"
        );
        assert_eq!(started.elapsed(), header);

        activity.request_started();
        activity.request_started();
        activity.request_finished();
        let busy = tokio::time::timeout(Duration::from_secs(3600), activity.expired()).await;
        assert!(busy.is_err(), "a busy connection expired");

        activity.request_finished();
        let idle_from = Instant::now();
        assert_eq!(
            activity.expired().await,
            "idle for MEETINGS_HTTP_IDLE_TIMEOUT"
        );
        assert_eq!(idle_from.elapsed(), idle);

        // A byte while idle starts the header clock.
        activity.request_started();
        activity.request_finished();
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.bytes_read();
        let head_from = Instant::now();
        assert_eq!(
            activity.expired().await,
            "no complete request head within MEETINGS_HTTP_HEADER_TIMEOUT"
        );
        assert_eq!(head_from.elapsed(), header);

        activity.request_started();
        activity.upgraded();
        activity.request_finished();
        let upgraded = tokio::time::timeout(Duration::from_secs(3600), activity.expired()).await;
        assert!(upgraded.is_err(), "an upgraded connection expired");
    }
}
