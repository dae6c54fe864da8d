//! One user action followed by its correlation id through the JSON logs of every service, run
//! as the binaries an operator runs: command-service (with its relay), projector,
//! query-service and the realtime gateway, on a real PostgreSQL and NATS.

use std::time::Duration;

use e2e::processes::{DeletesStream, ServiceProcess};
use e2e::ws;
use platform::testing::{self, meeting_body, TestClient, TestDatabase, JWT_SECRET};
use serde_json::Value;

/// The JSON log records of `process` that mention `needle` anywhere.
fn records_with(process: &ServiceProcess, needle: &str) -> Vec<Value> {
    process
        .lines()
        .iter()
        .filter(|line| line.contains(needle))
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{} logged a line that is not JSON ({e}): {line}",
                    process.name
                )
            })
        })
        .collect()
}

/// The value of `key` in the record's own fields or in any of its enclosing spans.
fn field<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record["fields"][key].as_str().or_else(|| {
        record["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span[key].as_str())
    })
}

#[tokio::test]
async fn one_correlation_id_finds_the_action_in_every_services_logs() {
    let db = TestDatabase::new().await;
    let stream = testing::unique_stream_name("CORR");
    let nats = testing::nats_url();
    let _cleanup = DeletesStream(nats.clone(), stream.clone());
    let common = [
        ("MEETINGS_DATABASE_URL", db.url.as_str()),
        ("MEETINGS_JWT_SECRET", JWT_SECRET),
        ("MEETINGS_NATS_URL", nats.as_str()),
        ("MEETINGS_STREAM", stream.as_str()),
    ];
    let mut commands = ServiceProcess::start("command-service", &common);
    let mut projector = ServiceProcess::start("projector", &common);
    let mut queries = ServiceProcess::start("query-service", &common);
    let mut realtime = ServiceProcess::start("realtime", &common);
    let command_api = TestClient::new(&commands.base);
    let query_api = TestClient::new(&queries.base);

    let ada = command_api.sign_up("Ada").await.unwrap();
    let mut socket = ws::authed(
        &format!("{}/v1/ws", realtime.base.replacen("http", "ws", 1)),
        &ada.token,
    )
    .await;
    ws::subscribe(&mut socket, "user:me", None).await;

    // The caller's own trace: its trace id must come back in every service's lines.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let correlation = format!("corr-{}", uuid::Uuid::new_v4());
    let response = command_api
        .request(reqwest::Method::POST, "/v1/meetings", Some(&ada.token))
        .header("X-Correlation-Id", &correlation)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&meeting_body("Traced", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let scheduled: Value = response.json().await.unwrap();
    let position = scheduled["position"].as_str().unwrap();

    let pushed = ws::next_within(&mut socket, Duration::from_secs(20)).await;
    assert_eq!(pushed["event"]["type"], "MeetingScheduled", "{pushed}");
    let read = query_api
        .get_at(
            &format!("/v1/meetings/{}", scheduled["id"].as_str().unwrap()),
            Some(&ada.token),
            position,
        )
        .header("X-Correlation-Id", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let projected = |line: &str| line.contains(&correlation) && line.contains("\"projected\"");
    projector.wait_for_line(Duration::from_secs(20), projected);
    realtime.wait_for_line(Duration::from_secs(20), |line| {
        line.contains(&correlation) && line.contains("\"dispatched\"")
    });

    // command-service: the request's own lines, and its relay publishing the event.
    commands.wait_for_line(Duration::from_secs(20), |line| {
        line.contains(&correlation) && line.contains("\"published\"")
    });
    let command_lines = records_with(&commands, &correlation);
    assert!(
        command_lines
            .iter()
            .any(|r| r["fields"]["message"] == "served"
                && field(r, "request_id") == Some(&request_id)),
        "command-service logged the request: {command_lines:#?}"
    );
    let published: Vec<_> = command_lines
        .iter()
        .filter(|r| r["fields"]["stage"] == "published")
        .collect();
    assert!(
        !published.is_empty(),
        "the relay logged the event: {command_lines:#?}"
    );
    for stage_lines in [
        published,
        records_with(&projector, &correlation).iter().collect(),
        records_with(&realtime, &correlation).iter().collect(),
    ] {
        for record in stage_lines {
            assert_eq!(
                field(record, "request_id"),
                Some(request_id.as_str()),
                "{record}"
            );
            assert_eq!(
                field(record, "causation_id"),
                Some(request_id.as_str()),
                "{record}"
            );
            let traceparent = field(record, "traceparent").unwrap_or_default();
            assert!(
                traceparent.starts_with(&format!("00-{trace_id}-")),
                "the caller's trace goes on: {record}"
            );
        }
    }
    // The access line is written once the answer has gone out, and read from the process's
    // output by another thread: wait for it rather than look once (it was missed in a CI run).
    queries.wait_for_line(Duration::from_secs(20), |line| {
        line.contains(&correlation) && line.contains("\"served\"")
    });
    let query_lines = records_with(&queries, &correlation);
    assert!(
        query_lines
            .iter()
            .any(|r| r["fields"]["message"] == "served"
                && field(r, "path").is_some_and(|p| p.starts_with("/v1/meetings/"))),
        "query-service logged the read: {query_lines:#?}"
    );
    // Every line of every service is JSON: nothing printed around the logger.
    for process in [&commands, &projector, &queries, &realtime] {
        records_with(process, "");
    }
}
