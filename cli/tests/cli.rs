//! The `meetings` binary against a real database.

use std::process::Command;

use platform::testing::{TestClient, TestDatabase};

fn meetings(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meetings"))
        .args(args)
        .env("MEETINGS_DATABASE_URL", database_url)
        .env("MEETINGS_LOG_FORMAT", "text")
        .output()
        .expect("run meetings")
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let db = TestDatabase::new().await; // already migrated once by the harness
    for _ in 0..2 {
        let output = meetings(&db.url, &["migrate"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    }
    assert!(platform::db::migrations_applied(&db.pool).await.unwrap());
}

#[tokio::test]
async fn promote_names_unknown_emails_and_promotes_known_ones() {
    let db = TestDatabase::new().await;
    let output = meetings(&db.url, &["users", "promote", "nobody@example.com"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nobody@example.com"));

    let user_id = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO accounts (user_id, email_key, password_hash) VALUES ($1, $2, 'x')")
        .bind(user_id)
        .bind("admin@example.com")
        .execute(&db.pool)
        .await
        .unwrap();
    // A user exists only with its registration event; write it through the store.
    let store = platform::store::PgEventStore::new(db.pool.clone());
    use platform::store::EventStore;
    store
        .commit(platform::store::Commit {
            aggregate_type: "user",
            aggregate_id: user_id,
            expected_sequence: 0,
            prev_hash: None,
            events: vec![platform::store::NewEvent {
                event_type: "UserRegistered".into(),
                event_version: "2.0".into(),
                payload: serde_json::json!({
                    "user_id": user_id, "email": "Admin@example.com", "display_name": "Ada",
                    "time_zone": "UTC", "role": "member"
                }),
                metadata: platform::store::EventMetadata {
                    event_id: uuid::Uuid::now_v7(),
                    actor_id: None,
                    request_id: "test".into(),
                    correlation_id: "test".into(),
                    causation_id: "test".into(),
                    traceparent: None,
                },
                recorded_at: chrono::Utc::now(),
            }],
            side_effects: vec![],
            idempotency: None,
        })
        .await
        .unwrap();

    let output = meetings(&db.url, &["users", "promote", "ADMIN@example.com"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = store.load("user", user_id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_type, "RoleChanged");
    assert_eq!(events[1].payload["role"], "admin");
    assert_eq!(
        events[1].metadata.actor_id,
        Some(uuid::Uuid::nil()),
        "the operator acted"
    );
    assert!(events[1].metadata.request_id.starts_with("cli-"));
}

#[test]
fn serve_refuses_a_malformed_sqlite_url_and_sqlite_with_nats_naming_the_settings() {
    let serve = |url: &str, nats: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_meetings"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(std::env::temp_dir().join(format!("meetings-cli-{}", uuid::Uuid::new_v4())))
            .env("MEETINGS_DATABASE_URL", url)
            .env_remove("MEETINGS_NATS_URL");
        if let Some(nats) = nats {
            command.env("MEETINGS_NATS_URL", nats);
        }
        command.output().unwrap()
    };
    let output = serve("sqlite://", None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("MEETINGS_DATABASE_URL"));
    let directory = std::env::temp_dir().join(format!("meetings-cli-{}", uuid::Uuid::new_v4()));
    let output = serve(
        &format!("sqlite://{}", directory.display()),
        Some("nats://127.0.0.1:4222"),
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("MEETINGS_NATS_URL"));
    std::fs::remove_dir_all(directory).ok();
}

/// Kills the child process when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[tokio::test]
async fn serve_runs_commands_queries_and_the_projector_in_one_process() {
    use std::io::BufRead;
    let db = TestDatabase::new().await;
    let data_dir = std::env::temp_dir().join(format!("meetings-serve-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_meetings"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("MEETINGS_DATABASE_URL", &db.url)
        .env_remove("MEETINGS_NATS_URL")
        .env("MEETINGS_LOG_FORMAT", "text")
        // The README's own examples of the query side's settings: serve once refused `500ms`.
        .env("MEETINGS_MIN_POSITION_WAIT", "500ms")
        .env("MEETINGS_READ_BATCH", "16")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // Logs share stdout; find the announcement, then keep draining so the child never blocks.
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("meetings is listening on"))
        .expect("serve announces its address");
    std::thread::spawn(move || lines.for_each(drop));
    let base = line
        .rsplit(' ')
        .next()
        .expect("the listening line ends with the URL")
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");

    let api = TestClient::new(&base);
    let ada = api.sign_up("Ada").await.expect("register and log in");
    let token = ada.token.as_str();

    // Websockets on the same port, fed from the store in-process.
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    ws.send(Message::Text(
        serde_json::json!({"type": "auth", "token": token})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(
        serde_json::json!({"type": "subscribe", "channel": "user:me"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    // Schedule only once the gateway has confirmed the subscription: a command answered before
    // that would be history, not a live push, and this test is about the live path.
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_ne!(frame["type"], "error", "{frame}");
                if frame["type"] == "subscribed" {
                    break;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("websocket before subscribed: {other:?}"),
        }
    }

    let scheduled: serde_json::Value = api
        .post(
            "/v1/meetings",
            Some(token),
            serde_json::json!({
                "title": "Kick-off", "starts_at": "2027-01-04T09:00:00Z",
                "ends_at": "2027-01-04T10:00:00Z", "time_zone": "Europe/London"
            }),
        )
        .await
        .json()
        .await
        .unwrap();
    let meeting = api
        .get_at(
            &format!("/v1/meetings/{}", scheduled["id"].as_str().unwrap()),
            Some(token),
            scheduled["position"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        meeting.status(),
        200,
        "the in-process projector made it visible"
    );
    let meeting: serde_json::Value = meeting.json().await.unwrap();
    assert_eq!(meeting["title"], "Kick-off");
    let mut pushed = None;
    while pushed.is_none() {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "event" && frame["event"]["type"] == "MeetingScheduled" {
                    pushed = Some(frame);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("websocket: {other:?}"),
        }
    }
    assert_eq!(pushed.unwrap()["position"], scheduled["position"]);

    let openapi = api.get_json("/v1/openapi.json", None).await;
    assert!(openapi["paths"]["/v1/meetings"]["post"].is_object());
    assert!(openapi["paths"]["/v1/me/agenda"]["get"].is_object());
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    drop(running);
    std::fs::remove_dir_all(&data_dir).ok();
}
