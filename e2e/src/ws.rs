//! A websocket client of the gateway for tests: connect, authenticate, send JSON, read the
//! next JSON frame (pings are answered by the library).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connect")
        .0
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// Next JSON text frame within 30 s (generous: after a NATS restart, clients reconnect with
/// backoff); a close frame fails the test.
pub async fn next(ws: &mut Ws) -> Value {
    next_within(ws, Duration::from_secs(30)).await
}

/// Next JSON text frame within `within`; a close frame fails the test.
pub async fn next_within(ws: &mut Ws, within: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(within, ws.next())
            .await
            .unwrap_or_else(|_| panic!("a frame within {within:?}"))
            .expect("the connection is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// A connection that sent `auth` with `token` and got `ready`.
pub async fn authed(url: &str, token: &str) -> Ws {
    let mut ws = connect(url).await;
    send(&mut ws, json!({"type": "auth", "token": token})).await;
    assert_eq!(next(&mut ws).await["type"], "ready");
    ws
}

/// `subscribe` to `channel` (resuming after `since`, if given); the server's answer.
pub async fn subscribe(ws: &mut Ws, channel: &str, since: Option<&str>) -> Value {
    let mut message = json!({"type": "subscribe", "channel": channel});
    if let Some(since) = since {
        message["since"] = json!(since);
    }
    send(ws, message).await;
    next(ws).await
}

/// Every frame the server had queued before its answer to a ping.
pub async fn until_pong(ws: &mut Ws) -> Vec<Value> {
    send(ws, json!({"type": "ping"})).await;
    let mut frames = vec![];
    loop {
        let frame = next(ws).await;
        if frame["type"] == "pong" {
            return frames;
        }
        frames.push(frame);
    }
}

/// The close code the server sends within `within` (skipping other frames), and when.
pub async fn closed_within(ws: &mut Ws, within: Duration) -> (u16, Duration) {
    let started = std::time::Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (frame.code.into(), started.elapsed())
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame within {within:?}: {other:?}"),
        }
    }
}

/// The close code the server sends next, within 10 s.
pub async fn close_code(ws: &mut Ws) -> u16 {
    closed_within(ws, Duration::from_secs(10)).await.0
}
