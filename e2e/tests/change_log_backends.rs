//! A websocket resume replays the same events from either backend's change log: the generated
//! history with every event type projected into PostgreSQL and into the SQLite read-model file,
//! then every user's replay — of their user channel and of each meeting — in windows of the
//! log, and the checkpoint, asked of both.

use platform::db::sqlite::SqliteFile;
use platform::store::Position;
use platform::testing::history::history;
use platform::testing::{TestDatabase, TestDirectory};
use realtime::connection::changes::{ChangeLog, PgChangeLog, Range, SqliteChangeLog};
use uuid::Uuid;

#[tokio::test]
async fn resumes_replay_the_same_events_from_sqlite_as_from_postgresql() {
    let events = history(0x5EED);
    let upcasters = domain::upcasters::upcasters();
    let db = TestDatabase::new().await;
    let mut leader = projector::projection::lead(&db.pool)
        .await
        .unwrap()
        .unwrap();
    projector::apply_batch(&mut leader, &events, None, &upcasters)
        .await
        .unwrap();
    let directory = TestDirectory::new();
    let file = SqliteFile::open_read_models(&directory.file("meetings-read-models.db"))
        .await
        .unwrap();
    let mut writer = file.writer.acquire().await.unwrap();
    for batch in events.chunks(11) {
        projector::apply_batch(&mut *writer, batch, None, &upcasters)
            .await
            .unwrap();
    }
    drop(writer);
    let (postgres, sqlite) = (PgChangeLog(db.pool.clone()), SqliteChangeLog(file));

    let end = events.iter().map(|e| e.position).max().unwrap();
    assert_eq!(postgres.checkpoint().await.unwrap(), Some(end));
    assert_eq!(sqlite.checkpoint().await.unwrap(), Some(end));
    let ids = |kind: &str| -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter(|e| e.aggregate_type == kind)
            .map(|e| e.aggregate_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let (users, meetings) = (ids("user"), ids("meeting"));
    // Windows of the log: all of it, and (a third, two thirds].
    let third = events[events.len() / 3].position;
    let two_thirds = events[2 * events.len() / 3].position;
    let mut replayed = 0;
    for user in &users {
        let channels = std::iter::once(None).chain(meetings.iter().copied().map(Some));
        for meeting in channels {
            for (since, until) in [(Position::START, end), (third, two_thirds)] {
                let range = Range {
                    user: *user,
                    meeting,
                    since,
                    until,
                };
                let expected = postgres.changes(&range, 10_000).await.unwrap();
                let actual = sqlite.changes(&range, 10_000).await.unwrap();
                assert_eq!(expected, actual, "{range:?}");
                replayed += expected.len();
                // A limit cuts both at the same event.
                let first_two = sqlite.changes(&range, 2).await.unwrap();
                assert_eq!(first_two[..], actual[..actual.len().min(2)]);
            }
        }
    }
    assert!(replayed > 200, "the replays read events: {replayed}");
}
