//! The `meetings` binary against a real database.

use std::process::Command;

use platform::testing::TestDatabase;

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
fn serve_refuses_sqlite_with_a_message_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_meetings"))
        .args(["serve", "--data-dir"])
        .arg(std::env::temp_dir().join(format!("meetings-cli-{}", uuid::Uuid::new_v4())))
        .env("MEETINGS_DATABASE_URL", "sqlite://./data/meetings.db")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("MEETINGS_DATABASE_URL"));
}
