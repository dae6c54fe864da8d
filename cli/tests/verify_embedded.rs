//! `meetings events verify` on an embedded installation (the SQLite log and its anchors)
//! against an attacker who has the file: the same findings, at the same positions, as on
//! PostgreSQL (`verify.rs`).

mod support;

use support::problems;

use std::sync::Arc;

use audit::anchor::{AnchorReader, SqliteAnchors};
use platform::db::sqlite::SqliteFile;
use platform::store::{EventStore, Position, SqliteEventStore};
use platform::testing::TestDirectory;
use serde_json::Value;

/// An embedded installation with about `events` events generated through the domain,
/// anchored to its end as the serving process anchors it.
async fn anchored_installation(events: u64) -> (TestDirectory, SqliteFile) {
    let directory = TestDirectory::new();
    let file = platform::testing::open_events(&directory.file("meetings.db")).await;
    audit::generate::generate_into(audit::generate::Log::Sqlite(&file), events, &|_| {})
        .await
        .unwrap();
    let store = SqliteEventStore::new(file.clone());
    let anchored = audit::anchor::term(&mut SqliteAnchors(file.clone()), &store, None, true)
        .await
        .unwrap();
    assert!(anchored.is_some(), "the log is anchored");
    (directory, file)
}

/// `meetings events verify --json <extra>` on the installation in `directory`.
fn verify(directory: &TestDirectory, extra: &[&str]) -> (i32, Value) {
    let data_dir = directory.path.display().to_string();
    let mut args = vec!["events", "verify", "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = support::run(&args, &[("MEETINGS_DATA_DIR", &data_dir)]);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("no report: {stdout}\n{stderr}"));
    (code, report)
}

/// The SQLite log's position of row `id`.
fn position(id: i64) -> String {
    Position {
        transaction_id: 0,
        id,
    }
    .to_string()
}

/// The attacker: drops the guards, then runs `statements`.
async fn tamper(file: &SqliteFile, statements: &[String]) {
    for statement in [
        "DROP TRIGGER IF EXISTS events_no_update",
        "DROP TRIGGER IF EXISTS events_no_delete",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(statements.iter().cloned())
    {
        sqlx::query(&statement)
            .execute(&file.writer)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

async fn anchors(file: &SqliteFile) -> Vec<i64> {
    let anchors = SqliteAnchors(file.clone())
        .after(Position::START, 1000)
        .await
        .unwrap();
    anchors.iter().map(|a| a.position.id).collect()
}

#[tokio::test]
async fn an_edited_and_a_deleted_event_are_found_at_their_positions() {
    let (directory, file) = anchored_installation(500).await;
    let (code, report) = verify(&directory, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(report["events"].as_u64().unwrap() >= 500, "{report}");
    let anchored = *anchors(&file).await.last().unwrap();
    assert_eq!(report["verified_anchor"], position(anchored), "{report}");

    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, sequence FROM events WHERE aggregate_type = 'meeting' AND sequence = 3 \
         ORDER BY id LIMIT 2",
    )
    .fetch_all(&file.writer)
    .await
    .unwrap();
    let (edited, deleted) = (rows[0].0, rows[1].0);
    tamper(
        &file,
        &[
            format!(
                "UPDATE events SET payload = json_set(payload, '$.forged', 1) WHERE id = {edited}"
            ),
            format!("DELETE FROM events WHERE id = {deleted}"),
        ],
    )
    .await;

    let (code, report) = verify(&directory, &[]);
    assert_eq!(code, 1, "{report}");
    let found = problems(&report);
    assert!(
        found.contains(&("hash_mismatch".into(), position(edited))),
        "{found:?}"
    );
    // The event after the deleted one no longer continues its aggregate.
    assert!(
        found
            .iter()
            .any(|(kind, at)| kind == "sequence_gap" && *at > position(deleted)),
        "{found:?}"
    );
    // And the log no longer holds what was anchored.
    assert!(
        found.contains(&("anchor_mismatch".into(), position(anchored))),
        "{found:?}"
    );
}

/// What a per-aggregate chain cannot show — a whole aggregate gone, the newest events cut
/// off — the anchors do.
#[tokio::test]
async fn a_deleted_aggregate_and_a_cut_off_tail_are_found_by_the_anchors() {
    let (directory, file) = anchored_installation(2_500).await;
    let anchored = anchors(&file).await;
    assert!(
        anchored.len() >= 3,
        "an anchor every 1,000 events: {anchored:?}"
    );
    let (code, report) = verify(&directory, &[]);
    assert_eq!(code, 0, "{report}");
    // Resuming from a verified anchor reads only what follows it.
    let (code, resumed) = verify(&directory, &["--from", &position(anchored[0])]);
    assert_eq!(code, 0, "{resumed}");
    assert!(resumed["events"].as_u64() < report["events"].as_u64());

    // A meeting none of whose events was anchored.
    let meetings: Vec<(Vec<u8>, i64)> = sqlx::query_as(
        "SELECT aggregate_id, min(id) FROM events WHERE aggregate_type = 'meeting' \
         GROUP BY aggregate_id HAVING NOT EXISTS (SELECT 1 FROM event_anchors a JOIN events e \
                            ON a.position = printf('%016x%016x', 0, e.id) \
                            WHERE e.aggregate_id = events.aggregate_id) \
         ORDER BY min(id) LIMIT 1",
    )
    .fetch_all(&file.reader)
    .await
    .unwrap();
    let (meeting, first) = &meetings[0];
    let next_anchor = *anchored.iter().find(|a| **a >= *first).unwrap();
    let newest: i64 = sqlx::query_scalar("SELECT max(id) FROM events")
        .fetch_one(&file.reader)
        .await
        .unwrap();
    assert_eq!(newest, *anchored.last().unwrap(), "anchored to the end");
    tamper(
        &file,
        &[
            format!(
                "DELETE FROM events WHERE aggregate_id = x'{}'",
                hex(meeting)
            ),
            format!("DELETE FROM events WHERE id > {}", newest - 5),
        ],
    )
    .await;

    let (code, report) = verify(&directory, &[]);
    assert_eq!(code, 1, "{report}");
    let found = problems(&report);
    assert_eq!(
        found.first(),
        Some(&("anchor_mismatch".to_string(), position(next_anchor))),
        "{report:#}"
    );
    assert_eq!(
        found.last(),
        Some(&("truncated".to_string(), position(newest))),
        "{report:#}"
    );
    // Only the anchors see it: every per-aggregate chain left is intact.
    assert!(
        found
            .iter()
            .all(|(kind, _)| kind == "anchor_mismatch" || kind == "truncated"),
        "{found:?}"
    );
    assert!(report["problems"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("deleted"));
}

/// The serving process anchors the log it writes (`meetings serve`'s anchor task), so an
/// installation verifies with anchors without any operator step.
#[tokio::test]
async fn embedded_mode_anchors_its_log_as_it_grows() {
    let directory = TestDirectory::new();
    let file = platform::testing::open_events(&directory.file("meetings.db")).await;
    audit::generate::generate_into(audit::generate::Log::Sqlite(&file), 1_200, &|_| {})
        .await
        .unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::new(file.clone()));
    let task = tokio::spawn(audit::anchor::run_embedded(
        file.clone(),
        store,
        None,
        std::future::pending(),
    ));
    // The first anchor is due at the 1,000th event: no waiting for the time-based one.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while anchors(&file).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no anchor written");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    task.abort();
    let (code, report) = verify(&directory, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verified_anchor"], position(anchors(&file).await[0]));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
