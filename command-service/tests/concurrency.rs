//! Concurrent writers: every command is applied or refused explicitly (409/412), sequences
//! stay contiguous, and no update is lost.

mod support;

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::{json, Value};
use support::{spawn_app, Backend};
use uuid::Uuid;

async fn fifty_concurrent_invites_to_one_meeting_are_each_applied_or_refused_and_none_is_lost(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Organizer").await;
    let meeting = app.schedule(&organizer, &[]).await;

    // 50 distinct invitees, registered directly (logins are not needed for them).
    let mut invitees = vec![];
    for i in 0..50 {
        let response = app
            .register(
                &format!("invitee-{i}-{}@example.com", Uuid::new_v4().simple()),
                "correct horse battery",
                &format!("Invitee {i}"),
            )
            .await;
        assert_eq!(response.status(), 201);
        let id: Uuid = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        invitees.push(id);
    }

    let path = format!("/v1/meetings/{meeting}/attendees");
    let responses = join_all(
        invitees
            .iter()
            .map(|invitee| app.post(&path, Some(&organizer.token), json!({"user_id": invitee}))),
    )
    .await;

    let mut applied = HashSet::new();
    let mut versions = HashSet::new();
    for (invitee, response) in invitees.iter().zip(responses) {
        match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.unwrap();
                assert!(
                    versions.insert(body["version"].as_i64().unwrap()),
                    "versions are unique"
                );
                applied.insert(*invitee);
            }
            409 | 412 => {}
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert!(!applied.is_empty());

    let events = app.all_events().await;
    let meeting_events: Vec<_> = events
        .iter()
        .filter(|e| e.aggregate_id == meeting)
        .collect();
    let sequences: Vec<i64> = meeting_events.iter().map(|e| e.sequence).collect();
    let expected: Vec<i64> = (1..=meeting_events.len() as i64).collect();
    assert_eq!(sequences, expected, "sequences are contiguous");

    // Exactly the applied invitations are in the store: nothing lost, nothing extra.
    let invited: HashSet<Uuid> = meeting_events
        .iter()
        .filter(|e| e.event_type == "AttendeeInvited")
        .map(|e| e.payload["user_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(invited, applied);
    assert_eq!(meeting_events.len(), 1 + applied.len());
    // The versions answered are exactly the sequences written.
    let expected_versions: HashSet<i64> = (2..=1 + applied.len() as i64).collect();
    assert_eq!(versions, expected_versions);
}

async fn concurrent_updates_with_the_same_if_match_let_exactly_one_win(backend: Backend) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Organizer").await;
    let meeting = app.schedule(&organizer, &[]).await;

    let responses = join_all((0..20).map(|i| {
        app.client
            .patch(app.url(&format!("/v1/meetings/{meeting}")))
            .bearer_auth(&organizer.token)
            .header("If-Match", "\"1\"")
            .json(&json!({"title": format!("Title {i}")}))
            .send()
    }))
    .await;
    let statuses: Vec<u16> = responses
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 412),
        "{statuses:?}"
    );
    assert_eq!(
        app.event_count().await,
        1 + 1 + 1,
        "registration, schedule, one update"
    );
}

async fn twenty_concurrent_registrations_of_one_email_in_mixed_case_create_exactly_one_user(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let local = format!("someone-{}", Uuid::new_v4().simple());
    let variants: Vec<String> = (0..20)
        .map(|i| {
            let mut email = format!("{local}@Example.COM");
            if i % 2 == 0 {
                email = email.to_uppercase();
            } else if i % 3 == 0 {
                email = format!("  {}  ", email.to_lowercase());
            }
            email
        })
        .collect();
    let responses = join_all(
        variants
            .iter()
            .map(|email| app.register(email, "correct horse battery", "Someone")),
    )
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );

    let users: i64 = app
        .count("SELECT count(*) FROM events WHERE event_type = 'UserRegistered'")
        .await;
    assert_eq!(users, 1);
    let accounts: i64 = app.count("SELECT count(*) FROM accounts").await;
    assert_eq!(accounts, 1);
}

#[tokio::test]
async fn registrations_on_two_service_replicas_sharing_a_database_still_claim_an_email_once() {
    // Two independent command-service instances (separate pools, as on separate hosts) against
    // one database: uniqueness comes from the database, not from process memory.
    let first = spawn_app(Backend::Postgres).await;
    let second = support::spawn_replica(&first).await;
    let email = format!("twice-{}@example.com", Uuid::new_v4().simple());
    let upper = email.to_uppercase();
    let (a, b) = tokio::join!(
        first.register(&email, "correct horse battery", "A"),
        second.register(&upper, "correct horse battery", "B"),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
}

async fn a_fresh_id_that_exists_after_all_is_decided_against_its_events_not_overwritten(
    backend: Backend,
) {
    use axum::http::StatusCode;
    use command_service::executor::{CommandMeta, CommandRequest, Executor};
    use domain::{Actor, Meeting, MeetingCommand, Role, ScheduleMeeting};

    let app = spawn_app(backend).await;
    let organizer = app.user("Organizer").await;
    let existing = app.schedule(&organizer, &[]).await;
    let before = app.event_count().await;

    let executor = Executor::new(
        app.store.clone(),
        std::sync::Arc::new(domain::upcasters::upcasters()),
    );
    let meta = CommandMeta {
        request_id: platform::http::RequestId::generate(),
        if_match: None,
        idempotency_key: None,
    };
    let start = chrono::Utc::now() + chrono::Duration::days(1);
    let services = domain::MeetingServices::new(std::sync::Arc::new(NoUsers));
    let result = executor
        .execute::<Meeting>(
            &services,
            CommandRequest {
                aggregate_id: existing,
                actor_id: Some(organizer.id),
                meta: &meta,
                fingerprint: ("test", serde_json::Value::Null),
                commands: vec![MeetingCommand::Schedule(ScheduleMeeting {
                    meeting_id: existing,
                    actor: Actor::new(organizer.id, Role::Member),
                    title: "Duplicate".into(),
                    description: None,
                    starts_at: start,
                    ends_at: start + chrono::Duration::hours(1),
                    time_zone: "UTC".into(),
                    location: None,
                    attendees: vec![],
                    recurrence: None,
                })],
                side_effects: vec![],
                success: StatusCode::CREATED,
                location: None,
                message_id: None,
                fresh_id: true,
                charged: false,
            },
        )
        .await;
    let error = result.expect_err("the meeting exists");
    assert_eq!(error.status(), StatusCode::CONFLICT);
    assert_eq!(app.event_count().await, before);
}

struct NoUsers;

#[async_trait::async_trait]
impl domain::UserDirectory for NoUsers {
    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, String> {
        Ok(ids.to_vec())
    }
}

struct EveryoneExists;

#[async_trait::async_trait]
impl domain::UserDirectory for EveryoneExists {
    async fn missing_users(&self, _ids: &[Uuid]) -> Result<Vec<Uuid>, String> {
        Ok(Vec::new())
    }
}

/// The executor caches aggregates it loaded; another replica (its own cache) appends in
/// between. The cached replica must decide on the current state, and what both wrote must be
/// exactly what a cold load of the store gives.
async fn a_cached_aggregate_never_hides_what_another_replica_appended(backend: Backend) {
    use axum::http::StatusCode;
    use command_service::executor::{CommandMeta, CommandRequest, Executor};
    use domain::{Actor, AttendeeSpec, Meeting, MeetingCommand, Role};

    let app = spawn_app(backend).await;
    let organizer = app.user("Organizer").await;
    let ann = app.user("Ann").await;
    let bob = app.user("Bob").await;
    let meeting = app.schedule(&organizer, &[]).await;
    let replica = |_: ()| {
        Executor::new(
            app.store.clone(),
            std::sync::Arc::new(domain::upcasters::upcasters()),
        )
    };
    let (cached, other) = (replica(()), replica(()));
    let services = domain::MeetingServices::new(std::sync::Arc::new(EveryoneExists));
    let invite = |user: Uuid| {
        vec![MeetingCommand::Invite {
            actor: Actor::new(organizer.id, Role::Member),
            attendee: AttendeeSpec {
                user_id: user,
                optional: false,
            },
        }]
    };
    let meta = CommandMeta {
        request_id: platform::http::RequestId::generate(),
        if_match: None,
        idempotency_key: None,
    };
    let run = |executor: &Executor, user: Uuid| {
        let request = CommandRequest {
            aggregate_id: meeting,
            actor_id: Some(organizer.id),
            meta: &meta,
            fingerprint: ("test", serde_json::Value::Null),
            commands: invite(user),
            side_effects: vec![],
            success: StatusCode::OK,
            location: None,
            message_id: None,
            fresh_id: false,
            charged: false,
        };
        let executor = executor.clone();
        let services = &services;
        async move { executor.execute::<Meeting>(services, request).await }
    };

    let first = cached.load::<Meeting>(meeting).await.unwrap();
    assert!(first.aggregate.attendees().is_empty());
    // The other replica invites Ann behind the cached copy's back.
    run(&other, ann.id).await.unwrap();
    let refreshed = cached.load::<Meeting>(meeting).await.unwrap();
    assert_eq!(refreshed.version, first.version + 1);
    assert_eq!(refreshed.aggregate.attendees().len(), 1);

    // Inviting Ann again through the cached replica is decided on the current state.
    let again = run(&cached, ann.id).await;
    assert!(again.is_err(), "Ann attends already");
    run(&other, bob.id).await.unwrap();
    // The cached replica is one event behind now; its decision must still see Bob.
    assert!(run(&cached, bob.id).await.is_err(), "Bob attends already");

    let cold = replica(()).load::<Meeting>(meeting).await.unwrap();
    let warm = cached.load::<Meeting>(meeting).await.unwrap();
    assert_eq!(warm.version, cold.version);
    assert_eq!(warm.last_hash, cold.last_hash);
    assert_eq!(warm.aggregate, cold.aggregate);
    assert_eq!(cold.aggregate.attendees().len(), 2);
}

/// A replica decides on its cached state without reading the store first. Whenever that
/// state is stale, whatever the decision was — a refusal, a no-op, a stale `If-Match` — is
/// made again on the loaded state: only a commit, which the sequence guards, is ever
/// answered from the cache.
async fn a_stale_cache_never_refuses_skips_or_fails_a_precondition_in_place_of_the_store(
    backend: Backend,
) {
    use axum::http::StatusCode;
    use command_service::executor::{CommandMeta, CommandRequest, Executor};
    use domain::{Actor, AttendeeSpec, Meeting, MeetingCommand, ResponseStatus, Role};

    let app = spawn_app(backend).await;
    let organizer = app.user("Organizer").await;
    let ann = app.user("Ann").await;
    let meeting = app.schedule(&organizer, &[]).await;
    let replica = || {
        Executor::new(
            app.store.clone(),
            std::sync::Arc::new(domain::upcasters::upcasters()),
        )
    };
    let (cached, other) = (replica(), replica());
    let services = domain::MeetingServices::new(std::sync::Arc::new(EveryoneExists));
    let run = |executor: &Executor, actor: Uuid, command: MeetingCommand, if_match: Option<i64>| {
        let executor = executor.clone();
        let services = &services;
        async move {
            let meta = CommandMeta {
                request_id: platform::http::RequestId::generate(),
                if_match,
                idempotency_key: None,
            };
            let request = CommandRequest {
                aggregate_id: meeting,
                actor_id: Some(actor),
                meta: &meta,
                fingerprint: ("test", serde_json::Value::Null),
                commands: vec![command],
                side_effects: vec![],
                success: StatusCode::OK,
                location: None,
                message_id: None,
                fresh_id: false,
                charged: false,
            };
            let response = executor.execute::<Meeting>(services, request).await?;
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            Ok::<i64, platform::http::ApiError>(etag.trim_matches('"').parse().unwrap())
        }
    };
    let respond = |response: ResponseStatus| MeetingCommand::Respond {
        actor: Actor::new(ann.id, Role::Member),
        response,
        comment: None,
        occurrence: None,
    };

    assert_eq!(cached.load::<Meeting>(meeting).await.unwrap().version, 1);
    let invite = MeetingCommand::Invite {
        actor: Actor::new(organizer.id, Role::Member),
        attendee: AttendeeSpec {
            user_id: ann.id,
            optional: false,
        },
    };
    assert_eq!(run(&other, organizer.id, invite, None).await.unwrap(), 2);
    // Cached: Ann does not attend. Stored: she does — her answer is taken, not refused.
    let accepted = run(&cached, ann.id, respond(ResponseStatus::Accepted), None).await;
    assert_eq!(accepted.unwrap(), 3, "refused on the stale cached state");

    let retitle = |title: &str| MeetingCommand::UpdateDetails {
        actor: Actor::new(organizer.id, Role::Member),
        title: Some(title.to_owned()),
        description: None,
        location: None,
        time_zone: None,
    };
    assert_eq!(
        run(&cached, organizer.id, retitle("Alpha"), None)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        run(&other, organizer.id, retitle("Beta"), None)
            .await
            .unwrap(),
        5
    );
    // Cached: the title is Alpha, so retitling to Alpha is a no-op there. Stored: it is Beta.
    let events = app.event_count().await;
    let retitled = run(&cached, organizer.id, retitle("Alpha"), None).await;
    assert_eq!(retitled.unwrap(), 6, "answered as a no-op from the cache");
    assert_eq!(app.event_count().await, events + 1);

    assert_eq!(
        run(&other, ann.id, respond(ResponseStatus::Tentative), None)
            .await
            .unwrap(),
        7
    );
    // The client saw version 7 (from the other replica); the cache is at 6.
    let declined = run(&cached, ann.id, respond(ResponseStatus::Declined), Some(7)).await;
    assert_eq!(declined.unwrap(), 8, "412 from the stale cached version");
    // A really stale If-Match is still refused.
    let stale = run(&cached, ann.id, respond(ResponseStatus::Accepted), Some(7)).await;
    assert_eq!(stale.unwrap_err().status(), StatusCode::PRECONDITION_FAILED);

    let cold = replica().load::<Meeting>(meeting).await.unwrap();
    let warm = cached.load::<Meeting>(meeting).await.unwrap();
    assert_eq!((warm.version, &warm.last_hash), (8, &cold.last_hash));
    assert_eq!(warm.aggregate, cold.aggregate);
}

/// After a commit the executor keeps the state the command produced. It once applied the new
/// events to that state a second time, so an invited attendee sat in the cache twice and the
/// next decision saw a meeting the store never held.
async fn the_cache_after_a_commit_equals_a_cold_load_of_the_store(backend: Backend) {
    use command_service::executor::{CommandMeta, CommandRequest, Executor};
    use domain::{Actor, AttendeeSpec, Meeting, MeetingCommand, Role};

    let app = spawn_app(backend).await;
    let organizer = app.user("Organizer").await;
    let ann = app.user("Ann").await;
    let meeting = app.schedule(&organizer, &[]).await;
    let executor = || {
        Executor::new(
            app.store.clone(),
            std::sync::Arc::new(domain::upcasters::upcasters()),
        )
    };
    let warm = executor();
    let services = domain::MeetingServices::new(std::sync::Arc::new(EveryoneExists));
    let meta = CommandMeta {
        request_id: platform::http::RequestId::generate(),
        if_match: None,
        idempotency_key: None,
    };
    let invite = vec![MeetingCommand::Invite {
        actor: Actor::new(organizer.id, Role::Member),
        attendee: AttendeeSpec {
            user_id: ann.id,
            optional: false,
        },
    }];
    warm.execute::<Meeting>(
        &services,
        CommandRequest::new(
            meeting,
            Some(organizer.id),
            &meta,
            ("test", serde_json::Value::Null),
            invite,
        ),
    )
    .await
    .expect("the invitation is accepted");

    let cached = warm.load::<Meeting>(meeting).await.unwrap();
    let stored = executor().load::<Meeting>(meeting).await.unwrap();
    assert_eq!(cached.aggregate.attendees().len(), 1, "Ann is invited once");
    assert_eq!(cached.aggregate, stored.aggregate);
}

platform::on_each_backend!(
    fifty_concurrent_invites_to_one_meeting_are_each_applied_or_refused_and_none_is_lost,
    concurrent_updates_with_the_same_if_match_let_exactly_one_win,
    twenty_concurrent_registrations_of_one_email_in_mixed_case_create_exactly_one_user,
    a_fresh_id_that_exists_after_all_is_decided_against_its_events_not_overwritten,
    a_cached_aggregate_never_hides_what_another_replica_appended,
    a_stale_cache_never_refuses_skips_or_fails_a_precondition_in_place_of_the_store,
    the_cache_after_a_commit_equals_a_cold_load_of_the_store,
);
