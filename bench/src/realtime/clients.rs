//! The websocket clients of the benchmark, for the gateway and the raw baselines alike:
//! connect, authenticate, subscribe, and time stamp every event frame that arrives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Websocket settings of every client here and of the raw baseline server: a 4 KiB read buffer
/// like the gateway's. tokio-tungstenite's default (128 KiB) is zero-filled before every read
/// (`FrameCodec::read_in`), which made 10 000 clients on this box spend most of their CPU in
/// `memset` and delayed the arrival time stamps of the gateway's fan-out and of the raw
/// broadcast baseline alike.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// A client connection with [`ws_config`].
pub async fn connect(
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), false).await?;
    Ok(ws)
}

/// A received event frame: (arrival, position).
pub type Arrival = (Instant, String);

/// What a client does after its first subscriptions.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Hold,
    Subscribe(String),
    Close,
}

/// One gateway client: auth, subscribe to `channels`, count itself in `ready`, then report
/// every event frame to `events` and follow `stage`.
pub async fn client(
    url: String,
    token: String,
    channels: Vec<String>,
    ready: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<Arrival>,
    mut stage: watch::Receiver<Stage>,
) -> anyhow::Result<()> {
    let ws = connect(&url).await?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text(
        json!({"type":"auth","token":token}).to_string(),
    ))
    .await?;
    wait_for(&mut rx, "\"ready\"").await?;
    for channel in &channels {
        tx.send(Message::text(
            json!({"type":"subscribe","channel":channel}).to_string(),
        ))
        .await?;
        wait_for(&mut rx, "\"subscribed\"").await?;
    }
    ready.fetch_add(1, Ordering::Relaxed);
    loop {
        tokio::select! {
            frame = rx.next() => {
                let Some(frame) = frame else { return Ok(()) };
                if let Message::Text(text) = frame? {
                    if let Some(position) = event_position(&text) {
                        let _ = events.send((Instant::now(), position.to_string()));
                    } else if text.contains("\"subscribed\"") {
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            changed = stage.changed() => {
                if changed.is_err() { return Ok(()) }
                let next = stage.borrow_and_update().clone();
                match next {
                    Stage::Hold => {}
                    Stage::Subscribe(channel) => {
                        tx.send(Message::text(
                            json!({"type":"subscribe","channel":channel}).to_string(),
                        ))
                        .await?;
                    }
                    Stage::Close => {
                        let _ = tx.send(Message::Close(None)).await;
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The position of an event frame, without parsing the whole JSON.
fn event_position(text: &str) -> Option<&str> {
    if !text.starts_with("{\"type\":\"event\"") {
        return None;
    }
    let start = text.find("\"position\":\"")? + "\"position\":\"".len();
    let end = start + text[start..].find('"')?;
    Some(&text[start..end])
}

/// Reads frames until one contains `needle`; errors on an error frame, a close or 30 s.
async fn wait_for<S>(rx: &mut S, needle: &str) -> anyhow::Result<()>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, rx.next())
            .await
            .context("timed out")?
            .context("closed")??;
        if let Message::Text(text) = &frame {
            if text.contains(needle) {
                return Ok(());
            }
            if text.contains("\"error\"") {
                anyhow::bail!("server error: {text}");
            }
        }
        if let Message::Close(close) = frame {
            anyhow::bail!("closed: {close:?}");
        }
    }
}

/// Waits until `counter` reaches `target` (or stalls for 30 s); returns the value reached.
pub async fn wait_count(counter: &AtomicUsize, target: usize, errors: &AtomicUsize) -> usize {
    let mut last = (0, Instant::now());
    loop {
        let now = counter.load(Ordering::Relaxed);
        if now + errors.load(Ordering::Relaxed) >= target {
            return now;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Descriptors open in this process: what closed clients leave behind.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Delays of the deliveries of `position` to up to `expected` clients.
pub async fn collect(
    events: &mut mpsc::UnboundedReceiver<Arrival>,
    position: &str,
    accepted: Instant,
    expected: usize,
    timeout: Duration,
) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delays = Vec::with_capacity(expected);
    while delays.len() < expected {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((at, got))) if got == position => delays.push(
                u32::try_from(at.saturating_duration_since(accepted).as_micros())
                    .unwrap_or(u32::MAX),
            ),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    delays.sort_unstable();
    delays
}
