//! Embedded mode as a newcomer runs it: the `meetings` binary with no configuration but a data
//! directory — no PostgreSQL, no NATS. The README's walkthrough (register, log in, schedule,
//! agenda, a websocket event), then `kill -9` in the middle of a burst of commands: every
//! command that was answered 2xx is there after the restart, and the read models equal the
//! ones rebuilt from the event log alone.

use std::time::Duration;

use e2e::processes::ServiceProcess;
use e2e::ws;
use platform::testing::{meeting_body, TestClient, TestDirectory};
use serde_json::Value;
use uuid::Uuid;

fn serve(directory: &TestDirectory) -> ServiceProcess {
    let data = directory.path.display().to_string();
    ServiceProcess::start_with("meetings", &["serve"], &[("MEETINGS_DATA_DIR", &data)])
}

/// Every meeting the user's list shows, as JSON, read once the read models include `position`.
async fn all_meetings(client: &TestClient, token: &str, position: &str) -> Vec<Value> {
    let mut meetings = Vec::new();
    let mut path = "/v1/meetings?limit=500".to_owned();
    loop {
        let response = client
            .get_at(&path, Some(token), position)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        meetings.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/meetings?limit=500&cursor={cursor}"),
            None => return meetings,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_mode_serves_the_walkthrough_and_loses_no_answered_command_to_kill_9() {
    let directory = TestDirectory::new();
    let mut process = serve(&directory);
    let client = TestClient::new(process.base.clone());
    let user = client.sign_up("Ada").await.unwrap();

    // A websocket sees the meeting scheduled.
    let ws_url = format!("{}/v1/ws", process.base.replace("http://", "ws://"));
    let mut socket = ws::authed(&ws_url, &user.token).await;
    assert_eq!(
        ws::subscribe(&mut socket, "user:me", None).await["type"],
        "subscribed"
    );
    let first = client
        .schedule(&user.token, &meeting_body("Kick-off", &[]))
        .await
        .unwrap();
    // The user's own registration may come first.
    let mut event = ws::next_within(&mut socket, Duration::from_secs(10)).await;
    if event["event"]["type"] == "UserRegistered" {
        event = ws::next_within(&mut socket, Duration::from_secs(10)).await;
    }
    assert_eq!(event["event"]["type"], "MeetingScheduled", "{event}");
    assert_eq!(event["event"]["aggregate_id"], first.to_string(), "{event}");
    let agenda = client
        .get_json(
            "/v1/me/agenda?from=2020-01-01T00:00:00Z&to=2020-12-31T00:00:00Z",
            Some(&user.token),
        )
        .await;
    assert!(agenda["items"].is_array(), "{agenda}");
    drop(socket);

    // A burst of commands from four clients, killed in the middle.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for writer in 0..4 {
        let client = client.clone();
        let token = user.token.clone();
        let answered = answered_tx.clone();
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let body = meeting_body(&format!("burst {writer}-{n}"), &[]);
                let sent = client
                    .request(reqwest::Method::POST, "/v1/meetings", Some(&token))
                    .json(&body)
                    .send()
                    .await;
                // The kill cuts requests off: those were never answered.
                match sent {
                    Ok(response) if response.status() == 201 => {
                        let created: Value = response.json().await.unwrap_or_default();
                        if let (Some(id), Some(position)) =
                            (created["id"].as_str(), created["position"].as_str())
                        {
                            let id: Uuid = id.parse().unwrap();
                            answered.send((id, position.to_owned())).ok();
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    drop(answered_tx);
    // Let the burst run until a few dozen commands were answered, then kill.
    let mut answered = Vec::new();
    while answered.len() < 40 {
        answered.push(answered_rx.recv().await.expect("the burst answers"));
    }
    process.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    while let Ok(more) = answered_rx.try_recv() {
        answered.push(more);
    }

    // Restarted: every answered meeting is there.
    let process = serve(&directory);
    let client = TestClient::new(process.base.clone());
    let user = client.log_in(user).await.unwrap();
    // One more command after the restart: reading at its position sees the whole log
    // projected, the commits of the burst that were never answered included.
    let last = client
        .post(
            "/v1/meetings",
            Some(&user.token),
            &meeting_body("after", &[]),
        )
        .await;
    assert_eq!(last.status(), 201);
    let last: Value = last.json().await.unwrap();
    let newest = last["position"].as_str().unwrap().to_owned();
    let listed = all_meetings(&client, &user.token, &newest).await;
    let ids: std::collections::HashSet<String> = listed
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for (id, _) in &answered {
        assert!(ids.contains(&id.to_string()), "answered meeting {id} lost");
    }
    assert!(ids.contains(&first.to_string()));

    // The read models equal the ones rebuilt from the log alone.
    drop(process);
    std::fs::remove_file(directory.file("meetings-read-models.db")).unwrap();
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(directory.file(&format!("meetings-read-models.db{suffix}"))).ok();
    }
    let process = serve(&directory);
    let client = TestClient::new(process.base.clone());
    let user = client.log_in(user).await.unwrap();
    let rebuilt = all_meetings(&client, &user.token, &newest).await;
    assert_eq!(rebuilt, listed);
}
