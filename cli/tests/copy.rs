//! `meetings events copy --to postgres://…` moves a grown embedded installation: 100,000
//! events generated through the domain plus users who registered, scheduled and subscribed to
//! their calendar feed over HTTP. On PostgreSQL afterwards every event is there with its hash,
//! `meetings events verify` passes, the users log in with their passwords, and the query API
//! answers what embedded mode answered.

mod support;

use std::time::Duration;

use platform::store::{EventStore, PgEventStore, SqliteEventStore, StoredEvent};
use platform::testing::{self, meeting_body, TestClient, TestDatabase, TestDirectory, TestServer};
use serde_json::Value;

/// The requests compared between the two installations, as `user` sees them.
fn requests(meetings: &[String]) -> Vec<String> {
    let mut paths = vec![
        "/v1/users/me".to_owned(),
        "/v1/meetings?limit=100".to_owned(),
        "/v1/me/agenda?from=2026-12-01T00:00:00Z&to=2027-06-01T00:00:00Z".to_owned(),
        "/v1/users?limit=100".to_owned(),
        "/v1/users?q=number&limit=100".to_owned(),
    ];
    paths.extend(meetings.iter().map(|id| format!("/v1/meetings/{id}")));
    paths
}

/// Positions are each backend's own (docs/api.md: opaque): everything else must be equal.
fn without_positions(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("position");
            for field in map.values_mut() {
                *field = without_positions(field.take());
            }
        }
        Value::Array(items) => {
            for item in items {
                *item = without_positions(item.take());
            }
        }
        _ => {}
    }
    value
}

async fn answers(client: &TestClient, token: &str, paths: &[String]) -> Vec<(String, Value)> {
    let mut answers = vec![];
    for path in paths {
        let response = client.get(path, Some(token)).await;
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        answers.push((path.clone(), without_positions(body)));
    }
    answers
}

/// What must survive the move of each event: everything but its position.
fn essence(event: &StoredEvent) -> impl PartialEq + std::fmt::Debug {
    (
        event.aggregate_type.clone(),
        event.aggregate_id,
        event.sequence,
        event.event_type.clone(),
        event.event_version.clone(),
        event.payload.clone(),
        event.metadata.clone(),
        event.recorded_at,
        event.prev_hash.clone(),
        event.hash.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_installation_of_100_000_events_moves_to_postgres_whole() {
    testing::init_tracing();
    let directory = TestDirectory::new();
    let system = e2e::services::build_embedded(&directory, testing::jwt_keys(), |_| {})
        .await
        .unwrap();
    let (store, mut checkpoints, lock) = (system.store, system.checkpoints, system.lock);
    let generated = audit::generate::generate_into(
        audit::generate::Log::Sqlite(&system.events),
        100_000,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(generated.events >= 100_000, "{generated:?}");
    let server = TestServer::start(system.server);
    let ada = server.sign_up("Ada").await.unwrap();
    let bob = server.sign_up("Bob").await.unwrap();
    let mut meetings = vec![];
    for title in ["Kick-off", "Review", "Retro"] {
        let id = server
            .schedule(&ada.token, &meeting_body(title, &[bob.id]))
            .await
            .unwrap();
        meetings.push(id.to_string());
    }
    let feed = feed_path(&server, &ada.token).await;
    // Everything projected before the installation is read and stopped.
    let head = store.read_all(None, 1_000_000).await.unwrap();
    let head = head.last().unwrap().position;
    tokio::time::timeout(
        Duration::from_secs(300),
        checkpoints.wait_for(|c| c.is_some_and(|c| c >= head)),
    )
    .await
    .expect("embedded mode projects the log")
    .unwrap();
    let paths = requests(&meetings);
    let before = answers(&server, &ada.token, &paths).await;
    drop(server);
    drop(lock);

    let target = TestDatabase::new().await;
    let (code, stdout, stderr) = support::run(
        &["events", "copy", "--to", &target.url],
        &[("MEETINGS_DATA_DIR", &directory.path.display().to_string())],
    );
    println!("{stdout}");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 problem(s)"), "{stdout}");

    // Every event, in the same order, with the same hashes.
    let source = SqliteEventStore::new(
        platform::db::sqlite::SqliteFile::open_events(&directory.file("meetings.db"))
            .await
            .unwrap(),
    );
    let copied = PgEventStore::new(target.pool.clone());
    let source_events = source.read_all(None, 1_000_000).await.unwrap();
    let copied_events = testing::committed_events(&copied, &target.pool).await;
    assert_eq!(source_events.len(), copied_events.len());
    // The generated log, two registrations and three meetings.
    assert_eq!(source_events.len() as u64, generated.events + 5);
    for (a, b) in source_events.iter().zip(&copied_events) {
        assert_eq!(essence(a), essence(b));
    }
    let (code, stdout, stderr) = support::meetings(&target.url, &["events", "verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // The distributed services on the target answer the same, to the same passwords.
    let commands = e2e::services::serve_commands(&e2e::services::command_settings(&target.url, 4))
        .await
        .unwrap();
    let ada = commands.log_in(ada).await.expect("the password moved");
    let queries = e2e::services::serve_queries(&e2e::services::query_settings(&target.url, 4))
        .await
        .unwrap();
    let after = answers(&queries, &ada.token, &paths).await;
    for ((path, before), (_, after)) in before.iter().zip(&after) {
        assert_eq!(before, after, "{path}");
    }
    assert_eq!(before.len(), after.len());
    // The calendar feed's secret address moved with its owner.
    assert_eq!(feed_path(&queries, &ada.token).await, feed);
    let ics = queries.get(&feed, None).await;
    assert_eq!(ics.status(), 200);
    assert!(ics.text().await.unwrap().contains("Kick-off"));
}

/// The path of the user's secret calendar feed address (the host is each server's own).
async fn feed_path(client: &TestClient, token: &str) -> String {
    let feed = client.get_json("/v1/calendar/feed", Some(token)).await;
    let url = feed["url"].as_str().expect("a feed url");
    let path = &url[url.find("/v1/").expect("a path")..];
    path.to_owned()
}

/// A damaged source is refused whole — an edited event, or a meeting deleted outright (only
/// the source's anchors show that) — and the target keeps nothing of it.
#[tokio::test]
async fn a_source_that_does_not_verify_is_refused_and_nothing_is_copied() {
    let damages = [
        "UPDATE events SET payload = json_set(payload, '$.forged', 1) \
         WHERE id = (SELECT min(id) FROM events WHERE aggregate_type = 'meeting')",
        "DELETE FROM events WHERE aggregate_id = (SELECT aggregate_id FROM events \
         WHERE aggregate_type = 'meeting' GROUP BY aggregate_id \
         HAVING max(id) < (SELECT max(id) FROM events) ORDER BY min(id) LIMIT 1)",
    ];
    for damage in damages {
        let directory = TestDirectory::new();
        let file = testing::open_events(&directory.file("meetings.db")).await;
        audit::generate::generate_into(audit::generate::Log::Sqlite(&file), 500, &|_| {})
            .await
            .unwrap();
        let store = SqliteEventStore::new(file.clone());
        let mut anchors = audit::anchor::SqliteAnchors(file.clone());
        audit::anchor::term(&mut anchors, &store, None, true)
            .await
            .unwrap();
        for statement in [
            "DROP TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete",
            damage,
        ] {
            let done = sqlx::query(statement).execute(&file.writer).await.unwrap();
            assert!(statement.starts_with("DROP") || done.rows_affected() > 0);
        }
        let target = TestDatabase::new().await;
        let error =
            meetings::copy::to_postgres(&directory.file("meetings.db"), &target.url, &|_| {})
                .await
                .expect_err(damage);
        assert_eq!(error.exit_code(), 1, "{error}");
        assert!(error.to_string().contains("does not verify"), "{error}");
        let copied: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&target.pool)
            .await
            .unwrap();
        assert_eq!(copied, 0, "{damage}");
    }
}
