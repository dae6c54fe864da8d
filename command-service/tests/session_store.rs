//! The session store's contract, the same tests on PostgreSQL and on SQLite: a refresh token
//! rotates once, a spent one presented again ends its family (and its access tokens, in this
//! process at once), logins are throttled with growing delays.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use command_service::sessions::{
    Attempt, PgSessionStore, Rotation, SessionStore, SqliteSessionStore, ThrottlePolicy,
};
use platform::auth::revocation::Revocations;
use platform::store::{Commit, EventMetadata, EventStore, NewEvent, SideEffect};
use platform::testing::{Backend, TestStore};
use uuid::Uuid;

struct Sessions {
    test: TestStore,
    sessions: Arc<dyn SessionStore>,
    revocations: Arc<Revocations>,
}

async fn sessions(backend: Backend) -> Sessions {
    let test = TestStore::new(backend).await;
    let revocations = Arc::new(Revocations::default());
    let sessions: Arc<dyn SessionStore> = match (&test.postgres, &test.sqlite) {
        (Some(db), _) => Arc::new(PgSessionStore::new(db.pool.clone())),
        (_, Some((file, _))) => {
            Arc::new(SqliteSessionStore::new(file.clone()).with_revocations(revocations.clone()))
        }
        _ => unreachable!(),
    };
    Sessions {
        test,
        sessions,
        revocations,
    }
}

/// A commit of one event of the user `user_id` after `expected_sequence`, with `effect`.
fn user_commit(
    user_id: Uuid,
    expected_sequence: i64,
    event_type: &str,
    effect: SideEffect,
) -> Commit {
    Commit {
        aggregate_type: "user",
        aggregate_id: user_id,
        expected_sequence,
        prev_hash: None,
        events: vec![NewEvent {
            event_type: event_type.into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({}),
            metadata: EventMetadata {
                event_id: Uuid::now_v7(),
                actor_id: Some(user_id),
                request_id: "r".into(),
                correlation_id: "c".into(),
                causation_id: "r".into(),
                traceparent: None,
            },
            recorded_at: Utc::now(),
        }],
        side_effects: vec![effect],
        idempotency: None,
    }
}

/// A registered account (refresh tokens belong to one).
async fn account(test: &TestStore) -> Uuid {
    let user_id = Uuid::now_v7();
    let claim = SideEffect::CreateAccount {
        user_id,
        email_key: format!("{user_id}@example.com"),
        password_hash: "$argon2id$placeholder".into(),
    };
    test.store
        .commit(user_commit(user_id, 0, "UserRegistered", claim))
        .await
        .unwrap();
    user_id
}

async fn a_refresh_token_rotates_once_and_its_reuse_ends_the_family(backend: Backend) {
    let s = sessions(backend).await;
    let user_id = account(&s.test).await;
    let family_id = Uuid::now_v7();
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    let in_a_month = Utc::now() + chrono::Duration::days(30);
    s.sessions
        .issue_refresh(user_id, family_id, b"first", in_an_hour, in_a_month)
        .await
        .unwrap();

    let rotated = s
        .sessions
        .rotate_refresh(b"first", b"second", in_an_hour)
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated { user_id, family_id });
    let reused = s
        .sessions
        .rotate_refresh(b"first", b"third", in_an_hour)
        .await
        .unwrap();
    assert_eq!(reused, Rotation::Reused { user_id, family_id });
    // The whole family is revoked: the token that replaced the spent one is void too.
    let after = s
        .sessions
        .rotate_refresh(b"second", b"fourth", in_an_hour)
        .await
        .unwrap();
    assert_eq!(after, Rotation::Invalid);
    assert_eq!(
        s.sessions
            .rotate_refresh(b"unknown", b"fifth", in_an_hour)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    if backend == Backend::Sqlite {
        // One process: the revocation is known at once, no notification channel between.
        assert_eq!(s.revocations.len(), 1);
    }
}

async fn concurrent_presentations_of_one_token_rotate_it_exactly_once(backend: Backend) {
    let s = sessions(backend).await;
    let user_id = account(&s.test).await;
    let family_id = Uuid::now_v7();
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    s.sessions
        .issue_refresh(user_id, family_id, b"token", in_an_hour, in_an_hour)
        .await
        .unwrap();
    let attempts = (0..8u8).map(|i| {
        let sessions = s.sessions.clone();
        tokio::spawn(async move {
            sessions
                .rotate_refresh(b"token", &[b'r', i], in_an_hour)
                .await
                .unwrap()
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), Rotation::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
}

async fn a_token_past_its_family_end_is_invalid(backend: Backend) {
    let s = sessions(backend).await;
    let user_id = account(&s.test).await;
    let ended = Utc::now() - chrono::Duration::seconds(1);
    s.sessions
        .issue_refresh(
            user_id,
            Uuid::now_v7(),
            b"old",
            Utc::now() + chrono::Duration::hours(1),
            ended,
        )
        .await
        .unwrap();
    let rotation = s
        .sessions
        .rotate_refresh(b"old", b"new", Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rotation, Rotation::Invalid);
}

async fn logout_revokes_the_family_of_its_owner_only(backend: Backend) {
    let s = sessions(backend).await;
    let (owner, stranger) = (account(&s.test).await, account(&s.test).await);
    let family_id = Uuid::now_v7();
    let later = Utc::now() + chrono::Duration::hours(1);
    s.sessions
        .issue_refresh(owner, family_id, b"mine", later, later)
        .await
        .unwrap();
    s.sessions.revoke_family(b"mine", stranger).await.unwrap();
    assert!(matches!(
        s.sessions
            .rotate_refresh(b"mine", b"mine2", later)
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    s.sessions.revoke_family(b"mine2", owner).await.unwrap();
    assert_eq!(
        s.sessions
            .rotate_refresh(b"mine2", b"mine3", later)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    if backend == Backend::Sqlite {
        assert_eq!(
            s.revocations.len(),
            1,
            "the logout is known in this process at once"
        );
    }
}

async fn failed_logins_are_blocked_with_growing_delays_and_cleared_by_a_success(backend: Backend) {
    let s = sessions(backend).await;
    let policy = ThrottlePolicy {
        free_failures: 2,
        base_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(600),
        forget_after: Duration::from_secs(3600),
    };
    let attempt = || {
        s.sessions
            .begin_attempt("ada@example.com", "10.0.0.1", &policy)
    };
    for _ in 0..2 {
        let Attempt::Allowed {
            blocked_until_if_wrong,
        } = attempt().await.unwrap()
        else {
            panic!("the free failures are allowed");
        };
        assert!(blocked_until_if_wrong <= Utc::now(), "no delay yet");
    }
    let Attempt::Allowed {
        blocked_until_if_wrong,
    } = attempt().await.unwrap()
    else {
        panic!("the third attempt is allowed, and blocks the next ones if wrong");
    };
    let delay = blocked_until_if_wrong - Utc::now();
    assert!(delay > chrono::Duration::seconds(50), "{delay}");
    assert!(
        matches!(attempt().await.unwrap(), Attempt::Blocked(until) if until == blocked_until_if_wrong)
    );
    // Another address is throttled on its own.
    assert!(matches!(
        s.sessions
            .begin_attempt("ada@example.com", "10.0.0.2", &policy)
            .await
            .unwrap(),
        Attempt::Allowed { .. }
    ));
    s.sessions
        .clear_failures("ada@example.com", "10.0.0.1")
        .await
        .unwrap();
    assert!(matches!(attempt().await.unwrap(), Attempt::Allowed { .. }));
}

async fn purge_keeps_revoked_tokens_through_the_revocation_window(backend: Backend) {
    let s = sessions(backend).await;
    let user_id = account(&s.test).await;
    let just_expired = Utc::now() - chrono::Duration::seconds(5);
    s.sessions
        .issue_refresh(user_id, Uuid::now_v7(), b"e", just_expired, just_expired)
        .await
        .unwrap();
    let long_ago = Utc::now() - chrono::Duration::days(2);
    s.sessions
        .issue_refresh(user_id, Uuid::now_v7(), b"g", long_ago, long_ago)
        .await
        .unwrap();
    let purged = s.sessions.purge(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(purged, 1, "only the token expired before the window");
}

platform::on_each_backend!(
    a_refresh_token_rotates_once_and_its_reuse_ends_the_family,
    concurrent_presentations_of_one_token_rotate_it_exactly_once,
    a_token_past_its_family_end_is_invalid,
    logout_revokes_the_family_of_its_owner_only,
    failed_logins_are_blocked_with_growing_delays_and_cleared_by_a_success,
    purge_keeps_revoked_tokens_through_the_revocation_window,
);

/// Embedded mode has no `NOTIFY`: a commit that revokes (a password change) tells this
/// process's revocations itself, after it committed.
#[tokio::test]
async fn on_sqlite_a_committed_password_change_revokes_access_in_this_process() {
    let s = sessions(Backend::Sqlite).await;
    let user_id = account(&s.test).await;
    let (file, _) = s.test.sqlite.as_ref().unwrap();
    let store = platform::store::SqliteEventStore::new(file.clone())
        .with_revocations(s.revocations.clone());
    let change = |expected_sequence| {
        let effect = SideEffect::SetPassword {
            user_id,
            password_hash: "$argon2id$other".into(),
        };
        user_commit(user_id, expected_sequence, "PasswordChanged", effect)
    };
    // A conflicting commit rolls back: nothing is revoked.
    assert!(store.commit(change(0)).await.is_err());
    assert!(s.revocations.is_empty());
    store.commit(change(1)).await.unwrap();
    assert_eq!(s.revocations.len(), 1);
    let account = store.account(user_id).await.unwrap().unwrap();
    assert_eq!(account.session_version, 1);
}
