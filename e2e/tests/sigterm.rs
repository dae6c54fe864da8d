//! SIGTERM, as an orchestrator sends it on every deploy, during load: the binaries drain.
//! No command answered 2xx is lost, no request in flight is cut off, websockets are closed
//! with 1001, and the other gateway instance shows the leave at once (not after presence
//! expiry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::processes::{DeletesStream, ServiceProcess};
use e2e::ws;
use futures::StreamExt;
use platform::testing::{self, meeting_body, TestClient, TestDatabase, JWT_SECRET};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// What one request of the load ended with.
enum Outcome {
    /// Answered 201: the meeting must exist.
    Created(Uuid),
    /// Refused before it was sent: the listener was closed (stopping). Not in flight.
    NotConnected,
    /// Any other answer or failure: a request in flight was cut off or refused.
    Other(String),
}

async fn one_command(client: &reqwest::Client, base: &str, token: &str) -> Outcome {
    let sent = client
        .post(format!("{base}/v1/meetings"))
        .bearer_auth(token)
        .json(&meeting_body("Load", &[]))
        .send()
        .await;
    match sent {
        Ok(response) if response.status() == 201 => {
            let body: Value = response.json().await.unwrap();
            Outcome::Created(body["id"].as_str().unwrap().parse().unwrap())
        }
        Ok(response) => Outcome::Other(format!("answered {}", response.status())),
        Err(error) if error.is_connect() => Outcome::NotConnected,
        Err(error) => Outcome::Other(format!("{error:?}")),
    }
}

#[tokio::test]
async fn sigterm_during_load_loses_nothing_and_closes_sockets_with_1001() {
    let db = TestDatabase::new().await;
    let stream = testing::unique_stream_name("TERM");
    let nats = testing::nats_url();
    let _cleanup = DeletesStream(nats.clone(), stream.clone());
    let common = [
        ("MEETINGS_DATABASE_URL", db.url.as_str()),
        ("MEETINGS_JWT_SECRET", JWT_SECRET),
        ("MEETINGS_NATS_URL", nats.as_str()),
        ("MEETINGS_STREAM", stream.as_str()),
    ];
    // The load is one robot user: lift the per-user limits (tested on their own).
    let unlimited = [
        ("MEETINGS_COMMAND_RATE", "1000000"),
        ("MEETINGS_COMMAND_BURST", "1000000"),
        ("MEETINGS_MEETINGS_PER_DAY", "1000000"),
    ];
    let mut commands =
        ServiceProcess::start("command-service", &[&common[..], &unlimited].concat());
    let mut leaving = ServiceProcess::start("realtime", &common);
    let staying = ServiceProcess::start("realtime", &common);
    let api = TestClient::new(&commands.base);
    let ada = api.sign_up("Ada").await.unwrap();
    let bob = api.sign_up("Bob").await.unwrap();
    let meeting = api
        .schedule(&ada.token, &meeting_body("Stand-up", &[bob.id]))
        .await
        .unwrap();
    let channel = format!("meeting:{meeting}");
    let ws_url =
        |process: &ServiceProcess| format!("{}/v1/ws", process.base.replacen("http", "ws", 1));

    // Bob watches the meeting on the instance that stays; Ada joins it on the one that stops.
    let mut bob_socket = ws::authed(&ws_url(&staying), &bob.token).await;
    ws::subscribe(&mut bob_socket, &channel, None).await;
    let mut ada_socket = ws::authed(&ws_url(&leaving), &ada.token).await;
    ws::subscribe(&mut ada_socket, &channel, None).await;
    let joined = loop {
        let frame = ws::next(&mut bob_socket).await;
        if frame["type"] == "join" || frame["type"] == "presence" {
            let users = frame["users"].as_array().cloned().unwrap_or_default();
            if frame["user_id"] == json!(ada.id) || users.contains(&json!(ada.id)) {
                break frame;
            }
        }
    };
    assert_eq!(joined["channel"], channel.as_str());

    // Load: workers sending commands, each on a fresh connection (a reused idle connection can
    // be closed by the server as the client reuses it, which says nothing about draining).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let stop_load = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, base, token) = (client.clone(), commands.base.clone(), ada.token.clone());
        let stop_load = stop_load.clone();
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let stopped = stop_load.notified();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = &mut stopped => break,
                    outcome = one_command(&client, &base, &token) => {
                        let refused = matches!(outcome, Outcome::NotConnected);
                        outcomes.push(outcome);
                        if refused {
                            break;
                        }
                    }
                }
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    commands.terminate();
    leaving.terminate();
    let terminated = Instant::now();

    // Ada's socket hears 1001 from the stopping instance, and Bob sees her leave right away.
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ada_socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) | None => return 0,
                Some(Ok(_)) => {}
                Some(Err(error)) => panic!("the socket failed instead of closing: {error}"),
            }
        }
    })
    .await
    .expect("the stopping gateway closes its sockets");
    assert_eq!(close, 1001);
    let left = loop {
        let frame = ws::next_within(&mut bob_socket, Duration::from_secs(5)).await;
        if frame["type"] == "leave" && frame["user_id"] == json!(ada.id) {
            break terminated.elapsed();
        }
    };
    assert!(
        left < Duration::from_secs(3),
        "the leave came {left:?} after SIGTERM: presence expiry, not a departure"
    );

    assert!(commands.wait_exit(Duration::from_secs(30)).success());
    assert!(leaving.wait_exit(Duration::from_secs(30)).success());
    stop_load.notify_waiters();
    let mut created = Vec::new();
    for worker in workers {
        for outcome in worker.await.unwrap() {
            match outcome {
                Outcome::Created(id) => created.push(id),
                Outcome::NotConnected => {}
                Outcome::Other(what) => panic!("a request in flight was cut off: {what}"),
            }
        }
    }
    assert!(
        created.len() >= 8,
        "the load ran: {} commands",
        created.len()
    );
    // Every answered command is stored.
    let stored: Vec<Uuid> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'MeetingScheduled' \
         AND aggregate_id = ANY($1)",
    )
    .bind(&created)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), created.len(), "answered commands were lost");
}
