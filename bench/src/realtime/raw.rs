//! The transport floor of `bench realtime`: a raw tokio-tungstenite server in this process, as
//! a broadcast to many clients (fan-out) and as an echo round trip at a rate (latency).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::clients::{connect, wait_count, ws_config};
use crate::stats::summary;

/// What the baselines do, taken from the gateway measurement they are the floor of.
pub struct Floors {
    /// Clients of the broadcast.
    pub connections: usize,
    /// Broadcasts, one at a time.
    pub fanout_repetitions: usize,
    /// Clients of the echo round trips.
    pub clients: usize,
    /// Round trips per second.
    pub rate: f64,
    pub duration: Duration,
}

/// Both baselines, printed as they complete.
pub async fn baselines(options: &Floors) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (broadcast, _) = tokio::sync::broadcast::channel::<String>(16);
    let server = {
        let broadcast = broadcast.clone();
        tokio::spawn(async move {
            loop {
                let socket = match listener.accept().await {
                    Ok((socket, _)) => socket,
                    Err(error) => {
                        eprintln!("baseline accept: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let mut rx = broadcast.subscribe();
                tokio::spawn(async move {
                    let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(socket, Some(ws_config()))
                            .await
                    else {
                        return;
                    };
                    let (mut tx, mut incoming) = ws.split();
                    loop {
                        tokio::select! {
                            message = incoming.next() => match message {
                                Some(Ok(Message::Text(text))) => { if tx.send(Message::Text(text)).await.is_err() { return } }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                            frame = rx.recv() => match frame {
                                Ok(frame) => { if tx.send(Message::text(frame)).await.is_err() { return } }
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(_) => return,
                            },
                        }
                    }
                });
            }
        })
    };
    let url = format!("ws://{address}");

    // Broadcast to many.
    let n = options.connections;
    let (arrivals_tx, mut arrivals_rx) = mpsc::unbounded_channel::<Instant>();
    let connected = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(256));
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (url, arrivals, connected) = (url.clone(), arrivals_tx.clone(), connected.clone());
        clients.push(tokio::spawn(async move {
            let Ok(ws) = connect(&url).await else {
                return;
            };
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            let (_tx, mut rx) = ws.split();
            while let Some(Ok(message)) = rx.next().await {
                if let Message::Text(text) = message {
                    if text.starts_with("{\"type\":\"event\"") {
                        let _ = arrivals.send(Instant::now());
                    }
                }
            }
        }));
    }
    let reached = wait_count(&connected, n, &AtomicUsize::new(0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frame = format!(
        "{{\"type\":\"event\",\"channel\":\"meeting:{}\",\"position\":\"0000000000000001\",\"event\":{{\"type\":\"MessagePosted\",\"data\":{{\"text\":\"fan-out\"}}}}}}",
        Uuid::new_v4()
    );
    let mut all = Vec::new();
    for _ in 0..options.fanout_repetitions {
        let sent = Instant::now();
        broadcast.send(frame.clone())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut delays = Vec::with_capacity(reached);
        while delays.len() < reached {
            match tokio::time::timeout_at(deadline, arrivals_rx.recv()).await {
                Ok(Some(at)) => delays
                    .push(u32::try_from(at.duration_since(sent).as_micros()).unwrap_or(u32::MAX)),
                _ => break,
            }
        }
        delays.sort_unstable();
        println!(
            "baseline fanout (raw tokio-tungstenite broadcast, {reached} clients): {}",
            summary(&delays)
        );
        all.extend(delays);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    all.sort_unstable();
    println!("baseline fanout: all: {}", summary(&all));
    for client in &clients {
        client.abort();
    }
    drop(clients);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Echo round trips at the latency rate, spread over the same number of clients.
    let mut senders = Vec::new();
    let (rtt_tx, mut rtt_rx) = mpsc::unbounded_channel::<u32>();
    for _ in 0..options.clients {
        let ws = connect(&url).await?;
        let (tx, mut rx) = ws.split();
        let rtt = rtt_tx.clone();
        let origin = Instant::now();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                if let Ok(sent) = text.parse::<u64>() {
                    let now = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = rtt.send(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
                }
            }
        });
        senders.push((tx, origin));
    }
    let total = (options.rate * options.duration.as_secs_f64()).round() as usize;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        interval.tick().await;
        let index = i % senders.len();
        let (tx, origin) = &mut senders[index];
        let now = origin.elapsed().as_micros();
        tx.send(Message::text(now.to_string())).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut rtts = Vec::with_capacity(total);
    while let Ok(rtt) = rtt_rx.try_recv() {
        rtts.push(rtt);
    }
    rtts.sort_unstable();
    println!(
        "baseline latency (raw tokio-tungstenite echo round trip, {} clients, {:.0}/s): {}",
        options.clients,
        options.rate,
        summary(&rtts)
    );
    server.abort();
    Ok(())
}
