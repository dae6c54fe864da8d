//! The event store as tests see it once every commit is readable in global order.

use std::time::Duration;

use sqlx::PgPool;

use crate::store::{EventStore, StoredEvent};

/// Every committed event of `pool`'s database, in global order. The global-order reader stops
/// below the oldest running transaction of the whole PostgreSQL cluster (other tests' too), so
/// this waits (up to 30 s) until it has caught up with everything committed.
pub async fn committed_events(store: &dyn EventStore, pool: &PgPool) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed = event_count(pool).await;
        let events = store.read_all(None, 1_000_000).await.unwrap();
        if events.len() as i64 == committed {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the global-order reader saw {} of {committed} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rows of the `events` table, committed or not yet readable in global order.
pub async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count events")
}
