//! NATS for tests and benchmarks: the server they use, and JetStream streams of their own so
//! that runs never share events.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;

use super::cleanup::run_detached;
use crate::bus::StreamName;

/// NATS used by tests; `MEETINGS_TEST_NATS_URL` overrides. Tests fail (never skip) without it.
pub fn nats_url() -> String {
    std::env::var("MEETINGS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Connects without retrying, so a missing server is reported at once.
pub async fn connect_nats(url: &str) -> anyhow::Result<async_nats::Client> {
    let (address, options) = crate::bus::options(url);
    options
        .connection_timeout(Duration::from_secs(3))
        .connect(&address)
        .await
        .with_context(|| {
            format!("cannot connect to NATS with JetStream at {address} (start it: see README)")
        })
}

/// [`connect_nats`] for tests: panics with the message.
pub async fn nats_client(url: &str) -> async_nats::Client {
    connect_nats(url).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// `<prefix><uuid>`: a stream name no other run uses.
pub fn unique_stream_name(prefix: &str) -> StreamName {
    StreamName::new(&format!("{prefix}{}", uuid::Uuid::new_v4().simple()))
        .expect("BUG: letters and digits make a stream name")
}

/// A stream created for one run, with the services' stream settings.
pub struct ScratchStream {
    pub js: jetstream::Context,
    pub name: StreamName,
}

impl ScratchStream {
    pub async fn create(nats_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let js = jetstream::new(connect_nats(nats_url).await?);
        let name = unique_stream_name(prefix);
        crate::bus::ensure_stream(&js, &name).await?;
        Ok(Self { js, name })
    }

    pub async fn delete(&self) -> anyhow::Result<()> {
        self.js
            .delete_stream(self.name.as_str())
            .await
            .with_context(|| format!("cannot delete stream {}", self.name.as_str()))?;
        Ok(())
    }

    /// Deletes stream `name` from within `Drop`, over a connection of its own.
    pub fn delete_detached(nats_url: &str, name: &StreamName) {
        let (url, name) = (nats_url.to_string(), name.as_str().to_string());
        run_detached(move || async move {
            if let Ok(client) = connect_nats(&url).await {
                jetstream::new(client).delete_stream(&name).await.ok();
            }
        });
    }
}
