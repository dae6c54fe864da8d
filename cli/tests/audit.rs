//! `meetings events history | state | export` and `GET /v1/admin/history/…` against the
//! running system, on each backend: what they say about the past must be what the query API
//! answered then.

mod support;

use support::meetings;

use e2e::{Backend, Stack};
use platform::testing::meeting_body;
use reqwest::Method;
use serde_json::{json, Value};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The fields a meeting's state and the query API's meeting share.
fn shared_fields(meeting: &Value) -> Value {
    json!({
        "title": meeting["title"],
        "description": meeting["description"],
        "starts_at": meeting["starts_at"].as_str().map(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        "ends_at": meeting["ends_at"].as_str().map(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        "time_zone": meeting["time_zone"],
        "location": meeting["location"],
        "status": meeting["status"],
    })
}

async fn state_at_a_time_or_position_is_what_the_query_api_answered_then(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (guest, guest_token, _) = stack.user("Grace").await;
    let (_, token, _) = stack.user("Ada").await;
    let (status, scheduled) = stack
        .command(
            Method::POST,
            "/v1/meetings",
            &token,
            meeting_body("Planning", &[guest]),
        )
        .await;
    assert_eq!(status, 201, "{scheduled}");
    let id = scheduled["id"].as_str().unwrap().to_string();
    let first_position = scheduled["position"].as_str().unwrap().to_string();
    let (_, first) = stack
        .query(&format!("/v1/meetings/{id}"), &token, &first_position)
        .await;
    let first_time = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let (status, _) = stack
        .command(
            Method::PATCH,
            &format!("/v1/meetings/{id}"),
            &token,
            json!({"title": "Planning (moved)", "starts_at": "2031-05-05T08:00:00Z", "ends_at": "2031-05-05T09:30:00Z", "location": "Room 7"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, answered) = stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{id}/response"),
            &guest_token,
            json!({"response": "tentative", "comment": "maybe"}),
        )
        .await;
    assert_eq!(status, 200);
    let second_position = answered["position"].as_str().unwrap().to_string();
    let (_, second) = stack
        .query(&format!("/v1/meetings/{id}"), &token, &second_position)
        .await;

    let url = &stack.database_url();
    assert_ne!(shared_fields(&first), shared_fields(&second));
    assert!(first["title"].is_string() && first["starts_at"].is_string());
    for (point, expected) in [
        (first_time.to_rfc3339(), &first),
        (first_position.clone(), &first),
        (second_position.clone(), &second),
    ] {
        let (code, out, err) = meetings(
            url,
            &["events", "state", "meeting", &id, "--at", &point, "--json"],
        );
        assert_eq!(code, 0, "{err}");
        let state: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(state["version"], expected["version"], "at {point}");
        assert_eq!(
            shared_fields(&state["state"]),
            shared_fields(expected),
            "at {point}"
        );
    }
    // The guest's answer, as the API shows it, is in the state too.
    let (_, out, _) = meetings(
        url,
        &[
            "events",
            "state",
            "meeting",
            &id,
            "--at",
            &second_position,
            "--json",
        ],
    );
    assert!(out.contains("tentative") && out.contains("maybe"), "{out}");

    let (code, out, err) = meetings(
        url,
        &[
            "events",
            "state",
            "meeting",
            &id,
            "--diff",
            &first_position,
            &second_position,
        ],
    );
    assert_eq!(code, 0, "{err}");
    for changed in [".title", ".starts_at", ".ends_at", ".location"] {
        assert!(
            out.contains(&format!("{changed}:")),
            "{changed} missing from:\n{out}"
        );
    }
    assert!(
        !out.contains(".time_zone:"),
        "unchanged fields are not listed:\n{out}"
    );

    // Before the meeting existed there is no state: a finding (1), not a usage error.
    let (code, _, _) = meetings(
        url,
        &[
            "events",
            "state",
            "meeting",
            &id,
            "--at",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 1);
}

async fn history_export_and_the_admin_route_tell_the_same_story(backend: Backend) {
    let stack = Stack::on(backend).await;
    let admin = stack.commands.sign_up("Root").await.unwrap();
    command_service::admin::set_role(stack.store.clone(), &admin.email, domain::Role::Admin)
        .await
        .unwrap();
    let admin = stack.commands.log_in(admin).await.unwrap();
    let (guest, guest_token, _) = stack.user("Grace").await;
    let (organizer, token, _) = stack.user("Ada").await;
    let (_, scheduled) = stack
        .command(
            Method::POST,
            "/v1/meetings",
            &token,
            meeting_body("Retro", &[guest]),
        )
        .await;
    let id = scheduled["id"].as_str().unwrap().to_string();
    stack
        .command(
            Method::POST,
            &format!("/v1/meetings/{id}/response"),
            &guest_token,
            json!({"response": "accepted"}),
        )
        .await;
    for n in 0..3 {
        let (status, _) = stack
            .command(
                Method::POST,
                &format!("/v1/meetings/{id}/messages"),
                &token,
                json!({"text": format!("line {n}\nwith a break")}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let url = &stack.database_url();

    // The table: one line per event plus the header, each summary on one line.
    let (code, table, err) = meetings(url, &["events", "history", "meeting", &id]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 5, "{table}");
    assert!(lines[1].contains("MeetingScheduled") && lines[1].contains("\"Retro\""));
    assert!(lines[2].contains("answered accepted"), "{table}");
    assert!(lines[3].contains("\"line 0 with a break\""), "{table}");

    let (code, out, _) = meetings(url, &["events", "history", "meeting", &id, "--json"]);
    assert_eq!(code, 0);
    let history = json_lines(&out);
    assert_eq!(history.len(), 5);
    assert_eq!(history[0]["metadata"]["actor_id"], json!(organizer));
    assert_eq!(history[1]["actor_id"], json!(guest));
    assert_eq!(history[4]["payload"]["text"], "line 2\nwith a break");

    // The admin route answers the same entries, a page at a time.
    let page = stack
        .queries
        .get_json(
            &format!("/v1/admin/history/meeting/{id}?limit=3"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap()[..], history[..3]);
    assert_eq!(page["next_after_sequence"], 3);
    let rest = stack
        .queries
        .get_json(
            &format!("/v1/admin/history/meeting/{id}?after_sequence=3"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap()[..], history[3..]);
    assert_eq!(rest["next_after_sequence"], Value::Null);
    // Nobody else learns anything, not even whether the meeting exists.
    for (path, token) in [
        (format!("/v1/admin/history/meeting/{id}"), &token),
        (format!("/v1/admin/history/meeting/{id}"), &guest_token),
        (format!("/v1/admin/history/plan/{id}"), &admin.token),
        (
            format!("/v1/admin/history/meeting/{}", uuid::Uuid::now_v7()),
            &admin.token,
        ),
    ] {
        let response = stack.queries.get(&path, Some(token)).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = stack
        .queries
        .get(
            &format!("/v1/admin/history/meeting/{id}?limit=5000"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(response.status(), 422);

    // The export holds every event in global order; an aggregate's lines are its history
    // without the summaries.
    let head = stack.store_head().await;
    let (code, out, err) = meetings(url, &["events", "export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    let exported = json_lines(&out);
    let stored = stack.committed_events().await;
    assert_eq!(exported.len(), stored.len());
    assert!(exported
        .windows(2)
        .all(|w| w[0]["position"].as_str() < w[1]["position"].as_str()));
    assert_eq!(exported.last().unwrap()["position"], head.to_string());
    let mine: Vec<Value> = exported
        .iter()
        .filter(|e| e["aggregate_id"] == json!(id))
        .cloned()
        .collect();
    let without_summary: Vec<Value> = history
        .iter()
        .map(|entry| {
            let mut entry = entry.clone();
            entry.as_object_mut().unwrap().remove("summary");
            entry
        })
        .collect();
    assert_eq!(mine, without_summary);

    // Filters: by type, by actor, from a position (inclusive), to a file, as CSV.
    let (_, out, _) = meetings(
        url,
        &[
            "events",
            "export",
            "--aggregate-type",
            "user",
            "--format",
            "jsonl",
        ],
    );
    let users = json_lines(&out);
    assert_eq!(
        users.len(),
        3 + 1,
        "three registrations and one role change"
    );
    let (_, out, _) = meetings(url, &["events", "export", "--actor", &guest.to_string()]);
    assert_eq!(json_lines(&out).len(), 1, "the guest's answer");
    let third = exported[exported.len() - 3]["position"].as_str().unwrap();
    let (_, out, _) = meetings(url, &["events", "export", "--from", third]);
    assert_eq!(json_lines(&out), exported[exported.len() - 3..]);
    let file = std::env::temp_dir().join(format!("export-{}.csv", uuid::Uuid::new_v4()));
    let (code, _, err) = meetings(
        url,
        &[
            "events",
            "export",
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("exported {} events", stored.len())),
        "{err}"
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).ok();
    assert_eq!(csv.lines().count(), stored.len() + 1);
    assert!(csv.starts_with("position,aggregate_type,aggregate_id,sequence,"));
}

platform::on_each_backend!(
    state_at_a_time_or_position_is_what_the_query_api_answered_then,
    history_export_and_the_admin_route_tell_the_same_story,
);
