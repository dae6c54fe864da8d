//! A service serving inside the test (or benchmark) process, stopped gracefully when its
//! handle is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::client::TestClient;

/// A spawned service and a client for it. Dropping it starts the service's graceful
/// shutdown (no new connections; requests in flight finish).
pub struct TestServer {
    pub api: TestClient,
    stop: Option<oneshot::Sender<()>>,
}

/// Completes when the [`TestServer`] that handed it out is dropped: pass it to the service's
/// `run_until`.
pub struct Stop(oneshot::Receiver<()>);

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A sent value and a dropped sender both mean stop.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl TestServer {
    /// Spawns `run(stop)` — typically `|stop| app.run_until(stop)` of an application bound
    /// to `address` — on the current runtime. The listener is bound already, so the service
    /// is ready: no waiting.
    pub fn spawn<Run, Fut>(address: SocketAddr, run: Run) -> Self
    where
        Run: FnOnce(Stop) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(run(Stop(stopped)));
        Self {
            api: TestClient::new(format!("http://{address}")),
            stop: Some(stop),
        }
    }
}

impl TestServer {
    /// Serves a built service (what its binary runs) until the handle is dropped.
    pub fn start(server: crate::service::Server) -> Self {
        Self::spawn(server.local_addr(), |stop| server.run_until(stop))
    }
}

impl Deref for TestServer {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.api
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
