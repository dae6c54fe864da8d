//! Agenda, free/busy and find-times on each backend (a real PostgreSQL, and the SQLite files of
//! embedded mode).

mod support;

use domain::Role;
use serde_json::{json, Value};
use support::{ids, spawn_app, Backend, MeetingFixture};

async fn the_agenda_lists_meetings_overlapping_the_range_including_those_crossing_its_edges(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    let other = app.user("Other").await;
    let before = app
        .meeting(MeetingFixture::new(
            &me,
            "ends at from",
            "2027-03-01T08:00:00Z",
            "2027-03-01T09:00:00Z",
        ))
        .await;
    let across_from = app
        .meeting(
            MeetingFixture::new(
                &other,
                "crosses from",
                "2027-02-28T20:00:00Z",
                "2027-03-01T10:00:00Z",
            )
            .attendee(&me, "tentative"),
        )
        .await;
    let inside = app
        .meeting(MeetingFixture::new(
            &me,
            "inside",
            "2027-03-01T12:00:00Z",
            "2027-03-01T13:00:00Z",
        ))
        .await;
    let across_to = app
        .meeting(MeetingFixture::new(
            &me,
            "crosses to",
            "2027-03-01T16:30:00Z",
            "2027-03-01T18:00:00Z",
        ))
        .await;
    let _at_to = app
        .meeting(MeetingFixture::new(
            &me,
            "starts at to",
            "2027-03-01T17:00:00Z",
            "2027-03-01T18:00:00Z",
        ))
        .await;
    let _not_mine = app
        .meeting(MeetingFixture::new(
            &other,
            "not mine",
            "2027-03-01T12:00:00Z",
            "2027-03-01T13:00:00Z",
        ))
        .await;
    let _ = before;

    let body = app
        .get_json(
            "/v1/me/agenda?from=2027-03-01T09:00:00Z&to=2027-03-01T17:00:00Z",
            Some(&me.token),
        )
        .await;
    assert_eq!(
        ids(&body, "meeting_id"),
        vec![
            across_from.to_string(),
            inside.to_string(),
            across_to.to_string()
        ]
    );
    assert_eq!(body["items"][0]["my_response"], "tentative");
    assert_eq!(body["items"][0]["is_organizer"], false);
    assert_eq!(body["items"][1]["my_response"], Value::Null);
    assert_eq!(body["items"][1]["is_organizer"], true);
    assert_eq!(body["items"][1]["title"], "inside");
    assert_eq!(body["items"][1]["status"], "scheduled");
}

async fn the_agenda_requires_an_ordered_bounded_range(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    for (query, field) in [
        ("from=2027-03-01T00:00:00Z", "to"),
        ("to=2027-03-01T00:00:00Z", "from"),
        ("from=2027-03-02T00:00:00Z&to=2027-03-01T00:00:00Z", "to"),
        ("from=2027-03-01T00:00:00Z&to=2028-03-02T00:00:00Z", "to"),
        ("from=yesterday&to=2027-03-01T00:00:00Z", "from"),
    ] {
        let response = app
            .get(&format!("/v1/me/agenda?{query}"), Some(&me.token))
            .await;
        let body = support::assert_problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
}

async fn free_busy_merges_overlaps_and_ignores_cancelled_and_declined_meetings(backend: Backend) {
    let app = spawn_app(backend).await;
    let asker = app.user("Asker").await;
    let busy = app.user("Busy").await;
    let organizer = app.user("Org").await;
    let nobody = uuid::Uuid::now_v7();
    app.meeting(
        MeetingFixture::new(
            &organizer,
            "Secret A",
            "2027-03-01T09:00:00Z",
            "2027-03-01T10:00:00Z",
        )
        .attendee(&busy, "accepted"),
    )
    .await;
    app.meeting(MeetingFixture::new(
        &busy,
        "Secret B",
        "2027-03-01T09:30:00Z",
        "2027-03-01T11:00:00Z",
    ))
    .await;
    app.meeting(
        MeetingFixture::new(
            &organizer,
            "Declined",
            "2027-03-01T12:00:00Z",
            "2027-03-01T13:00:00Z",
        )
        .attendee(&busy, "declined"),
    )
    .await;
    app.meeting(
        MeetingFixture::new(
            &busy,
            "Cancelled",
            "2027-03-01T14:00:00Z",
            "2027-03-01T15:00:00Z",
        )
        .status("cancelled"),
    )
    .await;
    app.meeting(
        MeetingFixture::new(
            &organizer,
            "Maybe",
            "2027-03-01T16:00:00Z",
            "2027-03-01T18:00:00Z",
        )
        .attendee(&busy, "needs_action"),
    )
    .await;

    let body = app
        .post_json(
            "/v1/freebusy",
            Some(&asker.token),
            &json!({"user_ids": [busy.id, nobody, busy.id],
                    "from": "2027-03-01T00:00:00Z", "to": "2027-03-01T17:00:00Z"}),
        )
        .await;
    assert_eq!(
        body["users"][busy.id.to_string()],
        json!([
            {"starts_at": "2027-03-01T09:00:00Z", "ends_at": "2027-03-01T11:00:00Z"},
            {"starts_at": "2027-03-01T16:00:00Z", "ends_at": "2027-03-01T17:00:00Z"},
        ]),
        "merged, without declined or cancelled meetings, clipped to the range"
    );
    assert_eq!(body["users"][nobody.to_string()], json!([]));
    assert_eq!(body["users"].as_object().unwrap().len(), 2);
    assert!(
        !body.to_string().contains("Secret"),
        "free/busy never reveals titles"
    );
}

async fn free_busy_refuses_too_many_users_and_too_long_ranges(backend: Backend) {
    let app = spawn_app(backend).await;
    let asker = app.user("Asker").await;
    let many: Vec<uuid::Uuid> = (0..101).map(|_| uuid::Uuid::now_v7()).collect();
    let cases = [
        json!({"user_ids": many, "from": "2027-03-01T00:00:00Z", "to": "2027-03-02T00:00:00Z"}),
        json!({"user_ids": [], "from": "2027-03-01T00:00:00Z", "to": "2027-03-02T00:00:00Z"}),
        json!({"user_ids": [asker.id], "from": "2027-03-01T00:00:00Z", "to": "2027-06-01T00:00:00Z"}),
        json!({"user_ids": [asker.id], "from": "2027-03-02T00:00:00Z", "to": "2027-03-01T00:00:00Z"}),
    ];
    for body in cases {
        let response = app.post("/v1/freebusy", Some(&asker.token), &body).await;
        support::assert_problem(response, 422).await;
    }
}

async fn find_times_ranks_slots_where_everyone_is_free_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("Alice").await;
    let bob = app.user("Bob").await;
    // Alice is busy 09:00–10:00, Bob 10:00–11:00 (declined 11:00–12:00 does not count).
    app.meeting(MeetingFixture::new(
        &alice,
        "A",
        "2027-03-01T09:00:00Z",
        "2027-03-01T10:00:00Z",
    ))
    .await;
    app.meeting(MeetingFixture::new(
        &bob,
        "B",
        "2027-03-01T10:00:00Z",
        "2027-03-01T11:00:00Z",
    ))
    .await;
    app.meeting(
        MeetingFixture::new(&alice, "C", "2027-03-01T11:00:00Z", "2027-03-01T12:00:00Z")
            .attendee(&bob, "declined"),
    )
    .await;

    let body = app
        .post_json(
            "/v1/find-times",
            Some(&alice.token),
            &json!({"user_ids": [alice.id, bob.id], "duration_minutes": 60,
                    "from": "2027-03-01T09:00:00Z", "to": "2027-03-01T12:00:00Z"}),
        )
        .await;
    let suggestions = body["suggestions"].as_array().unwrap();
    let summary: Vec<(String, usize)> = suggestions
        .iter()
        .map(|s| {
            (
                s["starts_at"].as_str().unwrap().to_string(),
                s["available"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(summary[0], ("2027-03-01T09:00:00Z".to_string(), 1));
    assert!(
        summary.iter().all(|(_, n)| *n == 1),
        "Alice busy 09–10 and 11–12, Bob 10–11: no hour has both free: {summary:?}"
    );
    assert_eq!(
        suggestions[0]["available"],
        json!([bob.id]),
        "Bob is free 09–10"
    );
    assert_eq!(suggestions[0]["ends_at"], "2027-03-01T10:00:00Z");
    // With a 30-minute duration there is no common slot either; widen the window instead.
    let body = app
        .post_json(
            "/v1/find-times",
            Some(&alice.token),
            &json!({"user_ids": [alice.id, bob.id], "duration_minutes": 30,
                    "from": "2027-03-01T08:10:00Z", "to": "2027-03-01T13:00:00Z"}),
        )
        .await;
    let first = &body["suggestions"][0];
    assert_eq!(first["starts_at"], "2027-03-01T08:15:00Z", "grid-aligned");
    assert_eq!(first["available"], json!([alice.id, bob.id]));
    let all_free: Vec<&str> = body["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|s| s["available"].as_array().unwrap().len() == 2)
        .map(|s| s["starts_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        all_free,
        vec![
            "2027-03-01T08:15:00Z",
            "2027-03-01T08:30:00Z",
            "2027-03-01T12:00:00Z",
            "2027-03-01T12:15:00Z",
            "2027-03-01T12:30:00Z"
        ]
    );
}

async fn find_times_with_working_hours_only_stays_inside_everyones_hours(backend: Backend) {
    let app = spawn_app(backend).await;
    let berlin = app
        .user_with(
            "Berlin",
            Role::Member,
            "Europe/Berlin",
            Some(json!({"days": ["mon"], "start": "09:00", "end": "11:00"})),
        )
        .await;
    let anytime = app.user("Anytime").await;
    // 2027-03-01 is a Monday; Berlin 09:00–11:00 is 08:00–10:00 UTC.
    let body = app
        .post_json(
            "/v1/find-times",
            Some(&anytime.token),
            &json!({"user_ids": [berlin.id, anytime.id], "duration_minutes": 60,
                    "from": "2027-03-01T00:00:00Z", "to": "2027-03-02T00:00:00Z",
                    "working_hours_only": true}),
        )
        .await;
    let starts: Vec<&str> = body["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["starts_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        vec![
            "2027-03-01T08:00:00Z",
            "2027-03-01T08:15:00Z",
            "2027-03-01T08:30:00Z",
            "2027-03-01T08:45:00Z",
            "2027-03-01T09:00:00Z"
        ]
    );
}

async fn find_times_refuses_a_zero_duration(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    let response = app
        .post(
            "/v1/find-times",
            Some(&me.token),
            &json!({"user_ids": [me.id], "duration_minutes": 0,
                    "from": "2027-03-01T00:00:00Z", "to": "2027-03-02T00:00:00Z"}),
        )
        .await;
    let body = support::assert_problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "duration_minutes");
}

async fn a_range_holding_more_meetings_than_an_answer_may_list_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    app.busy_hours(me.id, 5_001).await;
    let whole_year = "/v1/me/agenda?from=2027-01-01T00:00:00Z&to=2027-12-31T00:00:00Z";
    let response = app.get(whole_year, Some(&me.token)).await;
    let problem = support::assert_problem(response, 422).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("shorter range"),
        "{problem}"
    );
    // A month is fine: 31 × 24 rows.
    let month = app
        .get_json(
            "/v1/me/agenda?from=2027-01-01T00:00:00Z&to=2027-02-01T00:00:00Z",
            Some(&me.token),
        )
        .await;
    assert_eq!(month["items"].as_array().unwrap().len(), 31 * 24);

    // Free/busy of 10 users, each busy every hour: 10 × 90 × 24 > 20,000 rows.
    let mut users = vec![me.id];
    for i in 0..9 {
        let other = app.user(&format!("Busy {i}")).await;
        app.busy_hours(other.id, 5_001).await;
        users.push(other.id);
    }
    let response = app
        .post(
            "/v1/freebusy",
            Some(&me.token),
            json!({"user_ids": users, "from": "2027-01-01T00:00:00Z", "to": "2027-03-31T00:00:00Z"}),
        )
        .await;
    support::assert_problem(response, 422).await;
    let week = app
        .post(
            "/v1/freebusy",
            Some(&me.token),
            json!({"user_ids": users, "from": "2027-01-01T00:00:00Z", "to": "2027-01-08T00:00:00Z"}),
        )
        .await;
    assert_eq!(week.status(), 200);
}

platform::on_each_backend!(
    the_agenda_lists_meetings_overlapping_the_range_including_those_crossing_its_edges,
    the_agenda_requires_an_ordered_bounded_range,
    free_busy_merges_overlaps_and_ignores_cancelled_and_declined_meetings,
    free_busy_refuses_too_many_users_and_too_long_ranges,
    find_times_ranks_slots_where_everyone_is_free_first,
    find_times_with_working_hours_only_stays_inside_everyones_hours,
    find_times_refuses_a_zero_duration,
    a_range_holding_more_meetings_than_an_answer_may_list_is_422,
);
