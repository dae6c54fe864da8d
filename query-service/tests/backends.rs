//! The query side reads the same answers from either backend: the generated history with every
//! event type, projected into PostgreSQL and into the SQLite files of embedded mode, then every
//! read of [`ReadModels`] asked of both with the same arguments — for each user and an admin,
//! every meeting, paged and filtered — must answer the same.

use std::sync::Arc;

use chrono::{Duration, Utc};
use platform::db::sqlite::SqliteFile;
use platform::testing::history::{history, start};
use platform::testing::{open_events, TestDatabase, TestDirectory};
use query_service::repository::{
    AgendaRows, DirectorySearch, MeetingFilter, PgReadModels, ReadModels, SqliteReadModels, Viewer,
};
use uuid::Uuid;

struct Backends {
    postgres: Arc<dyn ReadModels>,
    sqlite: Arc<dyn ReadModels>,
    _db: TestDatabase,
    _directory: TestDirectory,
}

async fn backends() -> (Backends, Vec<Uuid>, Vec<Uuid>) {
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
    let events_file = open_events(&directory.file("events.db")).await;
    let read_models = SqliteFile::open_read_models(&directory.file("read-models.db"))
        .await
        .unwrap();
    let mut writer = read_models.writer.acquire().await.unwrap();
    for batch in events.chunks(13) {
        projector::apply_batch(&mut *writer, batch, None, &upcasters)
            .await
            .unwrap();
    }
    drop(writer);
    let ids = |kind: &str| {
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
    (
        Backends {
            postgres: Arc::new(PgReadModels::new(db.pool.clone())),
            sqlite: Arc::new(SqliteReadModels::new(events_file, read_models)),
            _db: db,
            _directory: directory,
        },
        users,
        meetings,
    )
}

/// Asks both backends the same and compares; answers what they said (so a test can check
/// that it was not nothing).
macro_rules! same {
    ($backends:expr, |$r:ident| $call:expr) => {{
        let expected = {
            let $r = &$backends.postgres;
            $call.await.unwrap()
        };
        let actual = {
            let $r = &$backends.sqlite;
            $call.await.unwrap()
        };
        assert_eq!(expected, actual, "{}", stringify!($call));
        expected
    }};
}

/// [`same!`] for reads whose order is no part of their contract (the agenda's rows, which the
/// handler sorts itself): compared sorted by `key`.
macro_rules! same_sorted {
    ($backends:expr, |$r:ident| $call:expr, $key:expr) => {{
        let mut expected = {
            let $r = &$backends.postgres;
            $call.await.unwrap()
        };
        let mut actual = {
            let $r = &$backends.sqlite;
            $call.await.unwrap()
        };
        expected.sort_by_key($key);
        actual.sort_by_key($key);
        assert_eq!(expected, actual, "{}", stringify!($call));
        expected
    }};
}

#[tokio::test]
async fn every_read_answers_the_same_on_sqlite_as_on_postgresql() {
    let (b, users, meetings) = backends().await;
    let mut viewers: Vec<Viewer> = users
        .iter()
        .map(|&user_id| Viewer {
            user_id,
            admin: false,
        })
        .collect();
    viewers.push(Viewer {
        user_id: users[0],
        admin: true,
    });
    let (mut seen_meetings, mut seen_changes, mut seen_agenda) = (0, 0, 0);
    for viewer in &viewers {
        for meeting in &meetings {
            same!(b, |r| r.can_see_meeting(*viewer, *meeting));
        }
        // Meetings, paged by (start, id), all of them and filtered.
        for filter in [
            MeetingFilter::default(),
            MeetingFilter {
                from: Some(start() + Duration::days(3)),
                to: Some(start() + Duration::days(40)),
                ..MeetingFilter::default()
            },
            MeetingFilter {
                status: Some("cancelled".into()),
                ..MeetingFilter::default()
            },
            MeetingFilter {
                title: Some("MEETING 1".into()),
                ..MeetingFilter::default()
            },
        ] {
            let mut after = None;
            loop {
                let page = MeetingFilter {
                    after,
                    limit: 5,
                    ..filter.clone()
                };
                let rows = same!(b, |r| r.meeting_page(*viewer, &page));
                seen_meetings += rows.len();
                match rows.last() {
                    Some((starts_at, id, _)) if rows.len() == 5 => after = Some((*starts_at, *id)),
                    _ => break,
                }
            }
        }
        // Changes, paged by position.
        let mut after = None;
        loop {
            let page = same!(b, |r| r.changes(*viewer, after.clone(), 7));
            seen_changes += page.len();
            match page.last() {
                Some(last) => after = Some(last.position.clone()),
                None => break,
            }
        }
        for rows in [AgendaRows::All, AgendaRows::Busy] {
            let agenda = same_sorted!(
                b,
                |r| r.agenda_rows(
                    &[viewer.user_id],
                    start() - Duration::days(1),
                    start() + Duration::days(366),
                    Duration::hours(24),
                    rows,
                    1_000
                ),
                |row| (row.user_id, row.meeting_id)
            );
            seen_agenda += agenda.len();
        }
    }
    assert!(seen_meetings > 50 && seen_changes > 100 && seen_agenda > 20);

    let keys: Vec<(Uuid, Uuid, bool)> = meetings
        .iter()
        .flat_map(|&m| viewers.iter().map(move |v| (m, v.user_id, v.admin)))
        .collect();
    let documents = same!(b, |r| r.documents(&keys));
    assert!(documents.iter().any(Option::is_some) && documents.iter().any(Option::is_none));
    for meeting in &meetings {
        same!(b, |r| r.messages(*meeting, None, 1_000));
        same!(b, |r| r.messages(
            *meeting,
            Some("0000000000000070".into()),
            3
        ));
    }
    same_sorted!(b, |r| r.working_hours(&users), |row| row.0);
    assert_eq!(same!(b, |r| r.emails(&users)).len(), users.len());
    for user in &users {
        same!(b, |r| r.profile(*user));
        same!(b, |r| r.display_name(*user));
    }

    // The directory: everyone, and searches by words, long words and email starts.
    let mut after = None;
    let mut listed = 0;
    loop {
        let page = same!(b, |r| r.directory(None, after.clone(), 3));
        listed += page.len();
        match page.last() {
            Some(last) if page.len() == 3 => after = Some((last.sort_name.clone(), last.id)),
            _ => break,
        }
    }
    assert!(listed > 3);
    for q in [
        "user",
        "user 3",
        "finally",
        "3",
        "user3@exa",
        "nobody",
        "usernumberthirtyfourpluslong",
    ] {
        let query = platform::search::Query::new(q);
        let email = !query.email.contains(char::is_whitespace)
            && query.email.contains(|c: char| !c.is_alphanumeric());
        let search = DirectorySearch {
            indexed: query.indexed(),
            long: query.long(),
            email: email.then(|| query.email.clone()),
        };
        same!(b, |r| r.directory(Some(&search), None, 50));
        same!(b, |r| r.directory(Some(&search), None, 1));
    }

    // Feed tokens: made once, rotated, found by hash; the feed's documents.
    let token = same!(b, |r| r.feed_token(users[1], "first", b"hash-1"));
    assert_eq!(token, "first");
    same!(b, |r| r.feed_token(users[1], "second", b"hash-2"));
    same!(b, |r| r.rotate_feed_token(users[1], "third", b"hash-3"));
    assert!(same!(b, |r| r.feed_owner(b"hash-1")).is_none());
    let owner = same!(b, |r| r.feed_owner(b"hash-3"));
    assert_eq!(owner.map(|(id, _)| id), Some(users[1]));
    let days = i32::try_from((Utc::now() - start()).num_days()).unwrap() + 30;
    for user in &users {
        same!(b, |r| r.feed_documents(*user, days, 2_000));
    }
    assert!(same!(b, |r| r.failed_projections()).is_empty());
    b.postgres.ready().await.unwrap();
    b.sqlite.ready().await.unwrap();
}
