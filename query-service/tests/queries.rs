//! Profile, directory, meetings and chat history on each backend (a real PostgreSQL, and the
//! SQLite files of embedded mode).

mod support;

use std::collections::HashSet;

use domain::Role;
use projector::rows::AttendeeRow;
use serde_json::Value;
use support::{ids, spawn_app, Backend, MeetingFixture};

async fn the_profile_comes_from_the_read_model_with_working_hours_and_version(backend: Backend) {
    let app = spawn_app(backend).await;
    let hours = serde_json::json!({"days": ["mon", "tue"], "start": "09:00", "end": "17:00"});
    let ada = app
        .user_with("Ada", Role::Admin, "Europe/Berlin", Some(hours.clone()))
        .await;
    let body = app.get_json("/v1/users/me", Some(&ada.token)).await;
    assert_eq!(body["id"], ada.id.to_string());
    assert_eq!(body["email"], ada.email);
    assert_eq!(body["display_name"], "Ada");
    assert_eq!(body["time_zone"], "Europe/Berlin");
    assert_eq!(body["role"], "admin");
    assert_eq!(body["working_hours"], hours);
    assert_eq!(body["version"], 1);
}

async fn a_user_the_read_model_does_not_know_yet_gets_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token(uuid::Uuid::now_v7(), Role::Member);
    let response = app.get("/v1/users/me", Some(&token)).await;
    support::assert_problem(response, 404).await;
}

async fn queries_without_a_valid_token_are_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .get(app.url("/v1/meetings"))
        .send()
        .await
        .unwrap();
    support::assert_problem(response, 401).await;
    let response = app.get("/v1/me/agenda", Some("not-a-token")).await;
    support::assert_problem(response, 401).await;
}

async fn the_directory_matches_name_or_email_prefixes_case_insensitively_and_skips_inactive_users(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    let alice = app.user("Alice Smith").await;
    let alicia = app.user("alicia Jones").await;
    let _bob = app.user("Bob").await;
    let gone = app.user("Alina Gone").await;
    app.deactivate(&gone).await;

    let body = app.get_json("/v1/users?q=ALI", Some(&me.token)).await;
    assert_eq!(
        ids(&body, "id"),
        vec![alice.id.to_string(), alicia.id.to_string()]
    );
    assert_eq!(body["items"][0]["email"], alice.email);
    assert!(body["next_cursor"].is_null());

    let body = app.get_json("/v1/users?q=bob.", Some(&me.token)).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "email prefix");

    let body = app.get_json("/v1/users?q=%25", Some(&me.token)).await;
    assert!(
        body["items"].as_array().unwrap().is_empty(),
        "a % in q is literal, not a wildcard"
    );
}

async fn the_directory_finds_any_word_of_a_name_whatever_its_accents_and_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    let ada = app.user("Ada Lovelace").await;
    let zoe = app.user("Zoë Ørsted-Åberg").await;
    let plain = app.user("Zoe Plain").await;
    let long = app.user("Hubert Wolfeschlegelsteinhausenbergerdorff").await;
    let search = |q: &str| {
        let path = format!("/v1/users?q={}", q.replace(' ', "%20"));
        let (app, token) = (&app, me.token.clone());
        async move { ids(&app.get_json(&path, Some(&token)).await, "id") }
    };
    let (ada, zoe, plain, long) = (
        ada.id.to_string(),
        zoe.id.to_string(),
        plain.id.to_string(),
        long.id.to_string(),
    );
    assert_eq!(search("lovelace").await, [ada.as_str()], "a later word");
    assert_eq!(search("LOVE").await, [ada.as_str()], "its start, any case");
    assert_eq!(search("l").await, [ada.as_str()], "one letter");
    assert_eq!(
        search("love ada").await,
        [ada.as_str()],
        "every word, any order"
    );
    assert!(search("ada x").await.is_empty(), "every word must match");
    assert!(
        search("velace").await.is_empty(),
        "starts only, not the middle"
    );
    // Ordered by the lower-cased name as stored: "zoe plain" < "zoë ørsted…".
    assert_eq!(
        search("zoe").await,
        [plain.as_str(), zoe.as_str()],
        "Zoë by zoe"
    );
    assert_eq!(
        search("zoë").await,
        [plain.as_str(), zoe.as_str()],
        "zoe by zoë"
    );
    assert_eq!(search("orsted").await, [zoe.as_str()], "Ø folds to o");
    assert_eq!(search("aberg").await, [zoe.as_str()], "after a hyphen");
    assert_eq!(
        search("ada.love").await,
        [ada.as_str()],
        "the email's start"
    );
    assert_eq!(
        search("wolfeschlegelsteinhausenberger").await,
        [long.as_str()],
        "a word longer than the indexed prefixes"
    );
    assert!(
        search("wolfeschlegelsteinhausenbergerX").await.is_empty(),
        "checked whole beyond the indexed prefixes"
    );
}

async fn directory_pages_cover_everyone_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Zed").await;
    let mut expected = HashSet::from([me.id.to_string()]);
    for i in 0..11 {
        // Equal names make the id the deciding part of the sort key.
        let name = if i % 2 == 0 { "Sam" } else { "sam" };
        expected.insert(app.user(name).await.id.to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/users?limit=4".to_string();
    loop {
        let body = app.get_json(&path, Some(&me.token)).await;
        let page = ids(&body, "id");
        assert!(page.len() <= 4);
        seen.extend(page);
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/users?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len(), "no duplicates: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
}

async fn a_meeting_is_visible_to_organizer_attendees_and_admins_and_not_found_for_others(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Olga").await;
    let attendee = app.user("Anton").await;
    let stranger = app.user("Stan").await;
    let admin = app.user_with("Root", Role::Admin, "UTC", None).await;
    let id = app
        .meeting(
            MeetingFixture::new(
                &organizer,
                "Planning",
                "2027-03-01T10:00:00Z",
                "2027-03-01T11:00:00Z",
            )
            .attendee(&attendee, "accepted"),
        )
        .await;
    let path = format!("/v1/meetings/{id}");

    for who in [&organizer, &attendee, &admin] {
        let body = app.get_json(&path, Some(&who.token)).await;
        assert_eq!(body["id"], id.to_string(), "{}", who.display_name);
    }
    let body = app.get_json(&path, Some(&attendee.token)).await;
    assert_eq!(body["title"], "Planning");
    assert_eq!(body["organizer"]["id"], organizer.id.to_string());
    assert_eq!(body["organizer"]["display_name"], "Olga");
    assert_eq!(body["starts_at"], "2027-03-01T10:00:00Z");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["version"], 3);
    assert_eq!(
        body["attendees"],
        serde_json::json!([{"user_id": attendee.id, "display_name": "Anton",
                            "optional": false, "response": "accepted"}])
    );

    let stranger_sees =
        support::assert_problem(app.get(&path, Some(&stranger.token)).await, 404).await;
    let unknown = support::assert_problem(
        app.get(
            &format!("/v1/meetings/{}", uuid::Uuid::now_v7()),
            Some(&stranger.token),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(
        stranger_sees["detail"], unknown["detail"],
        "a hidden meeting looks exactly like a missing one"
    );
}

/// Reads that arrive together share one statement (`MEETINGS_READ_BATCH`); each keeps its
/// own answer and its own visibility, whoever else is in the batch.
async fn concurrent_reads_of_many_callers_each_get_their_own_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Olga").await;
    let attendee = app.user("Anton").await;
    let stranger = app.user("Stan").await;
    let admin = app.user_with("Root", Role::Admin, "UTC", None).await;
    let mut meetings = Vec::new();
    for n in 0..6 {
        let title = format!("Meeting {n}");
        let mut fixture = MeetingFixture::new(
            &organizer,
            &title,
            "2027-03-01T10:00:00Z",
            "2027-03-01T11:00:00Z",
        );
        if n % 2 == 0 {
            fixture = fixture.attendee(&attendee, "accepted");
        }
        meetings.push((app.meeting(fixture).await, title, n % 2 == 0));
    }
    let missing = (uuid::Uuid::now_v7(), String::new(), false);
    let mut requests = Vec::new();
    for round in 0..10 {
        for (id, title, attended) in meetings.iter().chain([&missing]) {
            for who in [&organizer, &attendee, &stranger, &admin] {
                let visible = !title.is_empty()
                    && (who.id != stranger.id && (who.id != attendee.id || *attended));
                let app = &app;
                requests.push(async move {
                    let response = app
                        .get(&format!("/v1/meetings/{id}"), Some(&who.token))
                        .await;
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap();
                    (round, id, title, visible, status, body)
                });
            }
        }
    }
    let answers = futures::future::join_all(requests).await;
    assert_eq!(answers.len(), 10 * 7 * 4);
    for (round, id, title, visible, status, body) in answers {
        if visible {
            assert_eq!(status, 200, "round {round}, {id}");
            assert_eq!(body["id"], id.to_string());
            assert_eq!(body["title"], title.as_str());
        } else {
            assert_eq!(status, 404, "round {round}, {id}: {body}");
        }
    }
}

async fn a_meeting_carries_its_version_as_etag_and_if_none_match_answers_304(backend: Backend) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Olga").await;
    let id = app
        .meeting(MeetingFixture::new(
            &organizer,
            "Planning",
            "2027-03-01T10:00:00Z",
            "2027-03-01T11:00:00Z",
        ))
        .await;
    let path = format!("/v1/meetings/{id}");
    let response = app.get(&path, Some(&organizer.token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");

    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&organizer.token)
        .header("If-None-Match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], "\"3\"");
    assert!(response.text().await.unwrap().is_empty());

    app.meeting(
        MeetingFixture::new(
            &organizer,
            "Planning",
            "2027-03-01T10:00:00Z",
            "2027-03-01T11:00:00Z",
        )
        .rewrite(id, 4),
    )
    .await;
    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&organizer.token)
        .header("If-None-Match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a stale ETag gets the new version");
    assert_eq!(response.headers()["etag"], "\"4\"");
}

async fn attendees_are_ordered_by_name_with_comments_and_unknown_users_and_match_the_list(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let organizer = app.user("Olga").await;
    let bob = app.user("bob").await;
    let alice = app.user("Alice").await;
    let carl = app.user("Carl").await;
    let id = app
        .meeting(
            MeetingFixture::new(
                &organizer,
                "Planning",
                "2027-03-01T10:00:00Z",
                "2027-03-01T11:00:00Z",
            )
            .attendee(&carl, "declined")
            .attendee(&bob, "accepted")
            .attendee(&alice, "tentative"),
        )
        .await;
    // An attendee the user read model does not know (yet), an optional one, a comment.
    let unknown = uuid::Uuid::now_v7();
    let commented = AttendeeRow {
        meeting_id: id,
        user_id: carl.id,
        optional: false,
        response: "declined".to_string(),
        comment: Some("Too early".to_string()),
        occurrence_responses: Default::default(),
    };
    app.attendee_row(AttendeeRow {
        user_id: unknown,
        optional: true,
        response: "needs_action".to_string(),
        comment: None,
        ..commented.clone()
    })
    .await;
    app.attendee_row(commented).await;

    let body = app
        .get_json(&format!("/v1/meetings/{id}"), Some(&organizer.token))
        .await;
    assert_eq!(
        body["attendees"],
        serde_json::json!([
            {"user_id": alice.id, "display_name": "Alice", "optional": false, "response": "tentative"},
            {"user_id": bob.id, "display_name": "bob", "optional": false, "response": "accepted"},
            {"user_id": carl.id, "display_name": "Carl", "optional": false, "response": "declined",
             "comment": "Too early"},
            {"user_id": unknown, "display_name": null, "optional": true, "response": "needs_action"},
        ]),
        "by lower(display_name), unknown names last"
    );
    let list = app.get_json("/v1/meetings", Some(&organizer.token)).await;
    assert_eq!(list["items"][0], body, "one meeting and the list agree");

    let lonely = app
        .meeting(MeetingFixture::new(
            &organizer,
            "Alone",
            "2027-03-02T10:00:00Z",
            "2027-03-02T11:00:00Z",
        ))
        .await;
    let body = app
        .get_json(&format!("/v1/meetings/{lonely}"), Some(&organizer.token))
        .await;
    assert_eq!(body["attendees"], serde_json::json!([]));
}

async fn the_meeting_list_shows_only_the_callers_meetings_and_admins_see_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let olga = app.user("Olga").await;
    let anton = app.user("Anton").await;
    let stan = app.user("Stan").await;
    let admin = app.user_with("Root", Role::Admin, "UTC", None).await;
    let organized = app
        .meeting(MeetingFixture::new(
            &olga,
            "Mine",
            "2027-03-01T10:00:00Z",
            "2027-03-01T11:00:00Z",
        ))
        .await;
    let invited = app
        .meeting(
            MeetingFixture::new(
                &stan,
                "Invited",
                "2027-03-02T10:00:00Z",
                "2027-03-02T11:00:00Z",
            )
            .attendee(&olga, "needs_action"),
        )
        .await;
    let others = app
        .meeting(
            MeetingFixture::new(
                &stan,
                "Others",
                "2027-03-03T10:00:00Z",
                "2027-03-03T11:00:00Z",
            )
            .attendee(&anton, "accepted"),
        )
        .await;

    let body = app.get_json("/v1/meetings", Some(&olga.token)).await;
    assert_eq!(
        ids(&body, "id"),
        vec![organized.to_string(), invited.to_string()]
    );
    assert_eq!(
        body["items"][1]["attendees"][0]["user_id"],
        olga.id.to_string()
    );
    let body = app.get_json("/v1/meetings", Some(&admin.token)).await;
    assert_eq!(
        ids(&body, "id"),
        vec![
            organized.to_string(),
            invited.to_string(),
            others.to_string()
        ]
    );
}

async fn the_meeting_list_filters_by_overlap_status_and_title(backend: Backend) {
    let app = spawn_app(backend).await;
    let olga = app.user("Olga").await;
    let early = app
        .meeting(MeetingFixture::new(
            &olga,
            "Early standup",
            "2027-03-01T08:00:00Z",
            "2027-03-01T09:00:00Z",
        ))
        .await;
    let spanning = app
        .meeting(MeetingFixture::new(
            &olga,
            "Long review",
            "2027-03-01T09:30:00Z",
            "2027-03-01T12:00:00Z",
        ))
        .await;
    let cancelled = app
        .meeting(
            MeetingFixture::new(
                &olga,
                "Cancelled review",
                "2027-03-01T13:00:00Z",
                "2027-03-01T14:00:00Z",
            )
            .status("cancelled"),
        )
        .await;

    let body = app
        .get_json(
            "/v1/meetings?from=2027-03-01T09:00:00Z&to=2027-03-01T13:00:00Z",
            Some(&olga.token),
        )
        .await;
    assert_eq!(
        ids(&body, "id"),
        vec![spanning.to_string()],
        "a meeting ending exactly at `from` or starting exactly at `to` does not overlap"
    );
    let body = app
        .get_json("/v1/meetings?status=cancelled", Some(&olga.token))
        .await;
    assert_eq!(ids(&body, "id"), vec![cancelled.to_string()]);
    let body = app
        .get_json("/v1/meetings?q=REVIEW", Some(&olga.token))
        .await;
    assert_eq!(
        ids(&body, "id"),
        vec![spanning.to_string(), cancelled.to_string()]
    );
    let body = app
        .get_json(
            "/v1/meetings?from=2027-03-01T07:00:00%2B00:00",
            Some(&olga.token),
        )
        .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert_eq!(body["items"][0]["id"], early.to_string());
}

async fn meeting_pages_follow_start_order_without_duplicates_or_omissions(backend: Backend) {
    let app = spawn_app(backend).await;
    let olga = app.user("Olga").await;
    let mut expected = Vec::new();
    for i in 0..7 {
        // Pairs of meetings share a start time: the id breaks the tie.
        let start = format!("2027-03-01T{:02}:00:00Z", 8 + i / 2);
        let end = format!("2027-03-01T{:02}:30:00Z", 8 + i / 2);
        expected.push((
            start.clone(),
            app.meeting(MeetingFixture::new(&olga, "M", &start, &end))
                .await
                .to_string(),
        ));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let mut seen = Vec::new();
    let mut path = "/v1/meetings?limit=3".to_string();
    let mut pages = 0;
    loop {
        let body = app.get_json(&path, Some(&olga.token)).await;
        seen.extend(ids(&body, "id"));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/meetings?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
}

async fn chat_history_is_in_position_order_for_participants_and_hidden_from_strangers(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let olga = app.user("Olga").await;
    let anton = app.user("Anton").await;
    let stan = app.user("Stan").await;
    let id = app
        .meeting(
            MeetingFixture::new(
                &olga,
                "Chat",
                "2027-03-01T10:00:00Z",
                "2027-03-01T11:00:00Z",
            )
            .attendee(&anton, "accepted"),
        )
        .await;
    for n in [3, 1, 5, 2, 4] {
        app.message(id, &olga, &format!("message {n}"), n).await;
    }
    let path = format!("/v1/meetings/{id}/messages");
    let first: Value = app
        .get_json(&format!("{path}?limit=2"), Some(&anton.token))
        .await;
    let texts: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["message 1", "message 2"]);
    assert_eq!(first["items"][0]["author_id"], olga.id.to_string());
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(cursor, app.position(2));
    let rest = app
        .get_json(&format!("{path}?after={cursor}"), Some(&anton.token))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert_eq!(rest["items"][0]["text"], "message 3");
    assert!(rest["next_cursor"].is_null());

    support::assert_problem(app.get(&path, Some(&stan.token)).await, 404).await;
}

platform::on_each_backend!(
    the_profile_comes_from_the_read_model_with_working_hours_and_version,
    a_user_the_read_model_does_not_know_yet_gets_404,
    queries_without_a_valid_token_are_401,
    the_directory_matches_name_or_email_prefixes_case_insensitively_and_skips_inactive_users,
    the_directory_finds_any_word_of_a_name_whatever_its_accents_and_case,
    directory_pages_cover_everyone_exactly_once,
    a_meeting_is_visible_to_organizer_attendees_and_admins_and_not_found_for_others,
    concurrent_reads_of_many_callers_each_get_their_own_answer,
    a_meeting_carries_its_version_as_etag_and_if_none_match_answers_304,
    attendees_are_ordered_by_name_with_comments_and_unknown_users_and_match_the_list,
    the_meeting_list_shows_only_the_callers_meetings_and_admins_see_all,
    the_meeting_list_filters_by_overlap_status_and_title,
    meeting_pages_follow_start_order_without_duplicates_or_omissions,
    chat_history_is_in_position_order_for_participants_and_hidden_from_strangers,
);
