//! `realtime`: the websocket gateway (docs/api.md "Realtime", docs/architecture.md, guarantee 7).
//!
//! Each instance consumes the event stream once (an ordered JetStream consumer) into an
//! in-process [`hub::Hub`] that fans events out to connection queues. Resumes with `since`
//! replay from the event store (meeting channels) or the change read model (`user:me`) up to
//! the point where live delivery began, so nothing is missed or repeated. Presence spans
//! instances over NATS.

pub mod connection;
pub mod hub;
pub mod presence;
pub mod protocol;

use std::net::SocketAddr;
use std::sync::Arc;

use async_nats::jetstream;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use platform::auth::JwtKeys;
use platform::bus::{EventEnvelope, EventSource, StreamName};
use platform::config::{DatabaseSettings, HttpLimits, JwtSettings, LogSettings, NatsSettings};
use platform::http::health::{self, PostgresReady, ReadinessCheck};
use platform::http::ApiError;
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::EventStore;
use sqlx::PgPool;

use crate::connection::changes::ChangeLog;
pub use crate::connection::shared::{shared, shared_with, Shared};
use crate::connection::Limits;
use crate::hub::Hub;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";

/// Largest accepted websocket frame and message (docs/api.md: 64 KiB, else close 1009).
pub const MAX_FRAME: usize = 64 * 1024;

/// Bytes of queued frames collected before a socket write (see [`connection`]'s batching).
pub const WRITE_BUFFER: usize = 8 * 1024;

#[derive(clap::Parser, Clone, Debug)]
#[command(name = "realtime", version, about = "meetings websocket gateway")]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub http: HttpLimits,
    /// Address to bind, `host:port` such as `0.0.0.0:8083`.
    #[arg(long = "listen", env = "MEETINGS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// The gateway's own settings, flattened into its binary and into `meetings serve`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GatewayArgs {
    /// Browser origins allowed to open websockets (comma-separated, e.g.
    /// `https://app.example.com`). Requests without `Origin` (non-browser clients) and
    /// same-origin requests are always allowed.
    #[arg(
        long = "allowed-origins",
        env = "MEETINGS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
}

/// `/v1/ws` alone, for composition by the all-in-one `meetings serve`.
pub fn api_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .with_state(shared)
}

/// The gateway's HTTP surface: `/v1/ws`, health, metrics.
pub fn router(shared: Arc<Shared>, metrics: Metrics, pool: &PgPool) -> Router {
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(PostgresReady(pool.clone())),
        Arc::new(HubStarted(shared.hub.clone())),
    ];
    if let Some(client) = &shared.bus {
        checks.push(Arc::new(health::NatsReady(client.clone())));
    }
    let breaker = platform::breaker::DatabaseBreaker::new(pool.clone());
    let api = api_router(shared).merge(health::router(checks, metrics.clone()));
    let api = platform::breaker::protect(api, &breaker, &metrics);
    platform::http::finish_router(api, metrics)
}

/// Ready once the hub knows where live delivery starts (subscriptions wait for it).
struct HubStarted(Arc<Hub>);

#[async_trait::async_trait]
impl ReadinessCheck for HubStarted {
    fn name(&self) -> &'static str {
        "event_stream"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.position() {
            Some(_) => Ok(()),
            None => Err("not consuming the event stream yet".into()),
        }
    }
}

/// The in-process alternative to the stream: feeds the hub from the event store, from now
/// on, in global order (used by `meetings serve` without NATS).
pub async fn follow_store(
    store: Arc<dyn EventStore>,
    hub: Arc<Hub>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tail = platform::store::tail::StoreTail::new(
        store.as_ref(),
        platform::store::Position::START,
        500,
    );
    // Start at the current head: like the stream consumer, live events only.
    tokio::select! {
        () = &mut shutdown => return,
        () = tail.skip_to_end() => {}
    }
    hub.start_at(tail.position());
    loop {
        let events = tokio::select! {
            () = &mut shutdown => return,
            events = tail.next() => events,
        };
        for event in &events {
            hub.dispatch(&EventEnvelope::from(event)).await;
        }
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !origin_allowed(&headers, &shared.allowed_origins) {
        return ApiError::Forbidden("this origin may not open websockets".into()).into_response();
    }
    // Without the stream a socket would hear nothing live: refuse it at once, so that the
    // client retries (with `since`, it then misses nothing) instead of waiting on a dead line.
    // Sockets already open stay open: the consumer resumes where it stopped.
    // (`Pending` is the first connection still under way: sockets then wait for the hub to
    // start, as they always did.)
    if shared.bus.as_ref().is_some_and(|client| {
        client.connection_state() == async_nats::connection::State::Disconnected
    }) {
        return ApiError::unavailable("the event stream is unavailable, retry shortly")
            .into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return (StatusCode::BAD_REQUEST, rejection.body_text()).into_response();
        }
    };
    upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        // Small buffers keep idle connections cheap (tens of thousands per process). Frames
        // are written when flushed (every send, or once per batch of queued frames) or when
        // this much is pending.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| connection::serve(socket, shared))
}

/// Same-origin and origin-less requests pass; others must be on the allow-list.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin || a == "*") {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(host), Some(origin_host)) if host == origin_host)
}

/// Consumes the stream from now on (live only; resumes replay from the store) into the hub.
pub async fn consume(
    js: jetstream::Context,
    stream: StreamName,
    hub: Arc<Hub>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Stream sequence of the last event dispatched (0: none yet; the stream's sequences
    // start at 1): a consumer recreated after an error continues right after it, so
    // connected clients miss nothing.
    let last_sequence = std::sync::atomic::AtomicU64::new(0);
    let term = || async {
        if let Err(error) = consume_once(&js, &stream, &hub, &last_sequence).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "stream consumer interrupted; resuming"
            );
        }
        std::ops::ControlFlow::<()>::Continue(())
    };
    platform::leader::run_terms(shutdown, platform::leader::RETRY_DELAY, term).await;
}

async fn consume_once(
    js: &jetstream::Context,
    stream: &StreamName,
    hub: &Hub,
    last_sequence: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<()> {
    let mut handle = platform::bus::ensure_stream(js, stream).await?;
    // Live only at start (resumes replay from the read models): right after the stream's
    // last message, whose position the hub starts at, so that a resume right after a
    // start replays up to there. After an interruption, continue right after the last
    // dispatched event.
    if hub.position().is_none() {
        let (sequence, position) = last_message(&mut handle).await?;
        last_sequence.store(sequence, std::sync::atomic::Ordering::Relaxed);
        hub.start_at(position);
    }
    let resume_after =
        Some(last_sequence.load(std::sync::atomic::Ordering::Relaxed)).filter(|&s| s > 0);
    let mut messages = platform::bus::ordered_messages(
        &handle,
        resume_after,
        jetstream::consumer::DeliverPolicy::All,
    )
    .await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("pull: {e}"))?;
        match serde_json::from_slice::<EventEnvelope>(&message.payload) {
            Ok(event) => hub.dispatch(&event).await,
            Err(error) => {
                tracing::error!(%error, subject = message.subject.as_str(), "undecodable event")
            }
        }
        if let Ok(info) = message.info() {
            last_sequence.store(info.stream_sequence, std::sync::atomic::Ordering::Relaxed);
        }
    }
    anyhow::bail!("message stream ended")
}

/// The stream sequence and event position of the stream's last message (0 and the start
/// when it is empty).
async fn last_message(
    handle: &mut jetstream::stream::Stream,
) -> anyhow::Result<(u64, platform::store::Position)> {
    let sequence = handle
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
        .state
        .last_sequence;
    if sequence == 0 {
        return Ok((0, platform::store::Position::START));
    }
    let message = handle
        .get_raw_message(sequence)
        .await
        .map_err(|e| anyhow::anyhow!("last message: {e}"))?;
    let event: EventEnvelope = serde_json::from_slice(&message.payload)?;
    Ok((sequence, event.position))
}

/// Builds the gateway exactly as its binary runs it: connects to a migrated database and to
/// NATS, binds, and feeds the hub from the stream beside the server.
pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
    let jwt = Arc::new(JwtKeys::from_settings(&settings.jwt)?);
    let pool = platform::service::connect_migrated(&settings.database).await?;
    let (client, stream) =
        platform::service::connect_nats(&settings.nats, "meetings-realtime").await?;
    let listener = platform::service::bind(settings.listen).await?;
    Ok(assemble(
        listener,
        pool,
        jwt,
        client,
        stream,
        settings.gateway.allowed_origins.clone(),
        Limits::default(),
    )
    .with_limits(settings.http.clone()))
}

/// The gateway from its parts, as [`build`] makes it; fault tests call it directly with
/// limits (timers, queue sizes) that are not settings.
pub fn assemble(
    listener: tokio::net::TcpListener,
    pool: PgPool,
    jwt: Arc<JwtKeys>,
    client: async_nats::Client,
    stream: StreamName,
    allowed_origins: Vec<String>,
    limits: Limits,
) -> Server {
    let shared = shared(
        pool.clone(),
        jwt.clone(),
        Some((client.clone(), &stream)),
        allowed_origins,
        limits,
    );
    let metrics = Metrics::new();
    metrics.observe_pool(&pool);
    metrics.observe_nats("meetings-realtime", &client);
    shared.metrics.register(&metrics);
    let server = Server::new("realtime", listener, router(shared.clone(), metrics, &pool))
        .with_revocations(pool, &jwt);
    with_tasks(
        server,
        &shared,
        EventSource::Stream(jetstream::new(client), stream),
    )
}

/// A gateway without NATS, over the event store and its change log (embedded mode's parts),
/// on a listener of its own: another gateway of the same process, which a test can restart
/// or kill. `jwt` is the process's, so that revocations reach it.
pub fn assemble_over_store(
    listener: tokio::net::TcpListener,
    store: Arc<dyn EventStore>,
    changes: Arc<dyn ChangeLog>,
    jwt: Arc<JwtKeys>,
    allowed_origins: Vec<String>,
    limits: Limits,
) -> Server {
    let shared = shared_with(store.clone(), changes, jwt, None, allowed_origins, limits);
    let metrics = Metrics::new();
    shared.metrics.register(&metrics);
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(HubStarted(shared.hub.clone()))];
    let router = api_router(shared.clone()).merge(health::router(checks, metrics.clone()));
    let server = Server::new(
        "realtime",
        listener,
        platform::http::finish_router(router, metrics),
    );
    with_tasks(server, &shared, EventSource::Store(store))
}

/// Adds the gateway's background work to `server`: feeding the hub from `source`, and
/// presence.
pub fn with_tasks(server: Server, shared: &Shared, source: EventSource) -> Server {
    let hub = shared.hub.clone();
    let server = match source {
        EventSource::Stream(js, stream) => {
            server.with_task("realtime stream consumer", move |stop| async move {
                consume(js, stream, hub, stop.cancelled_owned()).await;
                Ok(())
            })
        }
        EventSource::Store(store) => {
            server.with_task("realtime store follower", move |stop| async move {
                follow_store(store, hub, stop.cancelled_owned()).await;
                Ok(())
            })
        }
    };
    let presence = shared.presence.clone();
    let server = server.with_task("presence", move |stop| async move {
        presence.run(stop.cancelled_owned()).await;
        Ok(())
    });
    let (presence, sockets, closing) = (
        shared.presence.clone(),
        shared.sockets.clone(),
        shared.shutdown.clone(),
    );
    server.with_task("websocket drain", move |stop| async move {
        stop.cancelled().await;
        drain(closing, &sockets).await;
        presence.depart().await;
        Ok(())
    })
}

/// How long a stopping gateway waits for its sockets' close handshakes.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes every socket with 1001 and waits (at most [`DRAIN_TIMEOUT`]) until they are gone,
/// each having left its channels.
async fn drain(
    closing: tokio_util::sync::CancellationToken,
    sockets: &tokio::sync::watch::Sender<usize>,
) {
    let open = *sockets.borrow();
    closing.cancel();
    let mut count = sockets.subscribe();
    if tokio::time::timeout(DRAIN_TIMEOUT, count.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        tracing::warn!(
            left = *sockets.borrow(),
            "sockets still open after the drain timeout"
        );
    }
    tracing::info!(closed = open, "websockets closed (1001) for shutdown");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn origins_are_allowed_when_absent_same_or_listed() {
        let allowed = vec!["https://app.example.com".to_string()];
        assert!(origin_allowed(&headers(None, "rt.example.com"), &allowed));
        assert!(origin_allowed(
            &headers(Some("https://app.example.com"), "rt.example.com"),
            &allowed
        ));
        assert!(origin_allowed(
            &headers(Some("http://rt.example.com"), "rt.example.com"),
            &[]
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "rt.example.com"),
            &allowed
        ));
    }
}
