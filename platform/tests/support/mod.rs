//! A real server on 127.0.0.1:0 with short limits, and raw HTTP/1.1 over TCP, so that tests
//! control every byte and every pause the way a slow client would.

#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use platform::config::HttpLimits;
use platform::service::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Routes of the tests, behind the layers every service has.
pub fn router() -> Router {
    let routes = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow but done"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route("/upgrade", get(upgrade_to_echo));
    platform::http::finish_router(routes, platform::metrics::Metrics::new())
}

/// Switches to a raw byte echo, the way a websocket upgrade hands the socket over.
async fn upgrade_to_echo(request: axum::extract::Request) -> axum::response::Response {
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = io.read(&mut buf).await {
            if io.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    axum::response::Response::builder()
        .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(axum::body::Body::empty())
        .unwrap()
}

/// Limits in milliseconds, for tests that need them short.
pub fn limits(header: u64, request: u64, idle: u64, max_connections: u32) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(header),
        request_timeout: Duration::from_millis(request),
        idle_timeout: Duration::from_millis(idle),
        max_connections,
    }
}

/// A running server; `stop` shuts it down gracefully, `stopped` is its end.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub stopped: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start(limits: HttpLimits) -> Running {
    let listener = platform::service::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server = Server::new("test", listener, router()).with_limits(limits);
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        stopped,
    }
}

/// `GET path` on a keep-alive connection.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Reads one response: its status and body (`Content-Length` bodies only).
pub async fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head[9..12].parse().expect("a status code");
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// One `GET` on a new connection.
pub async fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(get_request(path).as_bytes()).await?;
    read_response(&mut stream).await
}

/// Waits until the server closes `stream` (end of stream or reset), reading and discarding
/// whatever it still sends; `Err` when it is still open after `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<(), String> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| format!("the connection was still open after {within:?}"))
}
