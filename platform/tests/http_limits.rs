//! The HTTP server's limits against slow and too many clients (docs/architecture.md,
//! guarantee 11), on real sockets: header, body, request and idle timeouts, the connection
//! cap, graceful shutdown and upgrades.

mod support;

use std::time::{Duration, Instant};

use support::{closed_within, get_once, get_request, limits, read_response, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `bytes` one at a time, `every` apart, until the server closes the connection;
/// returns how long after `since` that was (None: it never closed while trickling).
async fn trickle_until_closed(
    stream: &mut TcpStream,
    bytes: &[u8],
    every: Duration,
    since: Instant,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    for byte in bytes {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(since.elapsed()),
                Ok(n) => panic!(
                    "the server answered a request it never got whole: {}",
                    String::from_utf8_lossy(&buf[..n])
                ),
            },
            () = tokio::time::sleep(every) => {
                if stream.write_all(&[*byte]).await.is_err() {
                    return Some(since.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off_at_the_header_timeout() {
    let server = start(limits(500, 10_000, 10_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let connected = Instant::now();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: test\r\nX-Trickle: ")
        .await
        .unwrap();
    // 100 bytes, one per 100 ms: 10 s if the server let it.
    let closed = trickle_until_closed(
        &mut stream,
        &[b'a'; 100],
        Duration::from_millis(100),
        connected,
    )
    .await
    .expect("a trickled head was never cut off");
    assert!(
        closed >= Duration::from_millis(450) && closed < Duration::from_millis(1500),
        "closed after {closed:?}, the header timeout is 500 ms"
    );
    // The server itself is fine.
    assert_eq!(
        get_once(server.addr, "/ok").await.unwrap(),
        (200, "ok".into())
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
    let server = start(limits(500, 10_000, 10_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let connected = Instant::now();
    closed_within(&mut stream, Duration::from_secs(3))
        .await
        .unwrap();
    let closed = connected.elapsed();
    assert!(
        closed >= Duration::from_millis(450),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_by_the_request_timeout_with_408() {
    let server = start(limits(10_000, 500, 10_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let head_sent = Instant::now();
    let (mut read, mut write) = stream.split();
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let answer = async {
        let mut answer = Vec::new();
        // The answer, then the end of the connection.
        let _ = read.read_to_end(&mut answer).await;
        (
            head_sent.elapsed(),
            String::from_utf8_lossy(&answer).to_string(),
        )
    };
    let (elapsed, answer) = tokio::select! {
        answered = answer => answered,
        () = trickle => panic!("the whole trickled body was accepted"),
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2000),
        "answered and closed after {elapsed:?}, the request timeout is 500 ms"
    );
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_and_the_connection_stays_usable() {
    // /slow takes 500 ms.
    let server = start(limits(10_000, 200, 10_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(get_request("/slow").as_bytes())
        .await
        .unwrap();
    let (status, body) = read_response(&mut stream).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("/problems/unavailable"), "{body}");
    stream
        .write_all(get_request("/ok").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream).await.unwrap(),
        (200, "ok".into())
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is shorter than the idle one: waiting between requests is idle time.
    let server = start(limits(300, 10_000, 1_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(get_request("/ok").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream).await.unwrap(),
        (200, "ok".into())
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream
        .write_all(get_request("/ok").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream).await.unwrap(),
        (200, "ok".into()),
        "the keep-alive connection was closed before the idle timeout"
    );
    let idle_since = Instant::now();
    closed_within(&mut stream, Duration::from_secs(3))
        .await
        .unwrap();
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(950) && idle < Duration::from_millis(2000),
        "closed after {idle:?} idle, the idle timeout is 1 s"
    );
}

#[tokio::test]
async fn at_the_connection_cap_a_new_connection_waits_until_one_closes() {
    let server = start(limits(30_000, 30_000, 30_000, 5)).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    // The kernel completes the handshake (listen backlog); the server does not accept it.
    let mut sixth = TcpStream::connect(server.addr).await.unwrap();
    sixth
        .write_all(get_request("/ok").as_bytes())
        .await
        .unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), read_response(&mut sixth)).await;
    assert!(
        waiting.is_err(),
        "a sixth connection was served: {waiting:?}"
    );

    // The connections already open are unaffected by the cap.
    held[1].write_all(b"Host: test\r\n\r\n").await.unwrap();
    assert_eq!(
        read_response(&mut held[1]).await.unwrap(),
        (200, "ok".into())
    );

    drop(held.remove(0));
    let served = tokio::time::timeout(Duration::from_secs(3), read_response(&mut sixth))
        .await
        .expect("the waiting connection was not served after one closed");
    assert_eq!(served.unwrap(), (200, "ok".into()));
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_then_refuses_connections() {
    let mut server = start(limits(10_000, 10_000, 10_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(get_request("/ok").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap(), (200, "ok".into()));
    stream
        .write_all(get_request("/slow").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop();
    assert_eq!(
        read_response(&mut stream).await.unwrap(),
        (200, "slow but done".into())
    );
    closed_within(&mut idle, Duration::from_secs(2))
        .await
        .expect("shutdown left an idle connection open");
    tokio::time::timeout(Duration::from_secs(2), &mut server.stopped)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn an_upgraded_connection_outlives_every_timeout() {
    let server = start(limits(200, 200, 200, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, _) = read_response(&mut stream).await.unwrap();
    assert_eq!(status, 101);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.write_all(b"still here").await.unwrap();
    let mut echoed = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut echoed))
        .await
        .expect("no echo")
        .expect("the upgraded connection was closed");
    assert_eq!(&echoed, b"still here");
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let server = start(limits(10_000, 10_000, 10_000, 100)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(get_request("/peer").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream).await.unwrap(),
        (200, local.to_string())
    );
}
