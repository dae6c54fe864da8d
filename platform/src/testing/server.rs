//! A service serving inside the test (or benchmark) process, stopped gracefully when its
//! handle is dropped.

use std::ops::Deref;

use tokio::sync::oneshot;

use super::client::TestClient;
use crate::service::Server;

/// A spawned service and a client for it. Dropping it starts the service's graceful
/// shutdown (no new connections; requests in flight finish).
pub struct TestServer {
    pub api: TestClient,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Serves a built service (what its binary runs) on the current runtime until the handle
    /// is dropped. The listener is bound already, so the service is ready: no waiting.
    pub fn start(server: Server) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let api = TestClient::new(format!("http://{}", server.local_addr()));
        // A sent value and a dropped sender both mean stop.
        let running = tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            api,
            stop: Some(stop),
            running: Some(running),
        }
    }

    /// Stops the service and waits until it has (its background tasks too), answering how
    /// its run ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.running.take() {
            Some(running) => running.await?,
            None => Ok(()),
        }
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
