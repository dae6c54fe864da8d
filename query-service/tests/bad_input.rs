//! Malformed and invalid requests answer problem+json with the request id and the right status,
//! on each backend.

mod support;

use serde_json::json;
use support::{spawn_app, Backend};

async fn malformed_queries_answer_problem_json_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/v1/meetings/not-a-uuid", 400, None),
        ("/v1/meetings/not-a-uuid/messages", 400, None),
        ("/v1/meetings?cursor=garbage!", 422, Some("cursor")),
        ("/v1/meetings?cursor=eyJ4IjoxfQ", 422, Some("cursor")),
        ("/v1/meetings?limit=501", 422, Some("limit")),
        ("/v1/meetings?limit=0", 422, Some("limit")),
        ("/v1/meetings?limit=many", 422, Some("limit")),
        ("/v1/meetings?status=postponed", 422, Some("status")),
        (
            "/v1/meetings?from=2027-03-02T00:00:00Z&to=2027-03-01T00:00:00Z",
            422,
            Some("to"),
        ),
        ("/v1/meetings?from=tomorrow", 422, Some("from")),
        ("/v1/users?limit=501", 422, Some("limit")),
        ("/v1/users?cursor=%%%", 422, Some("cursor")),
        ("/v1/changes?after=42", 422, Some("after")),
        ("/v1/changes?limit=501", 422, Some("limit")),
        (
            "/v1/me/agenda?from=2027-03-02T00:00:00Z&to=2027-03-01T00:00:00Z",
            422,
            Some("to"),
        ),
        ("/v1/no-such-route", 404, None),
    ];
    for (path, status, field) in cases {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(&me.token)
            .header("X-Request-Id", "bad-input-test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), *status, "{path}");
        let body = support::assert_problem(response, *status).await;
        assert_eq!(body["request_id"], "bad-input-test", "{path}");
        if let Some(field) = field {
            assert_eq!(body["errors"][0]["field"], *field, "{path}: {body}");
        }
    }
}

async fn malformed_bodies_are_400_and_wrong_values_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user("Me").await;
    let response = app
        .client
        .post(app.url("/v1/freebusy"))
        .bearer_auth(&me.token)
        .header("content-type", "application/json")
        .body("{\"user_ids\": [")
        .send()
        .await
        .unwrap();
    support::assert_problem(response, 400).await;
    let response = app
        .post(
            "/v1/freebusy",
            Some(&me.token),
            &json!({"user_ids": ["nope"], "from": "2027-03-01T00:00:00Z", "to": "2027-03-02T00:00:00Z"}))
        .await;
    support::assert_problem(response, 422).await;
    let response = app
        .post(
            "/v1/find-times",
            Some(&me.token),
            &json!({"user_ids": [me.id], "duration_minutes": 30,
                    "from": "2027-03-01T00:00:00Z", "to": "2027-04-15T00:00:00Z"}),
        )
        .await;
    let body = support::assert_problem(response, 422).await;
    assert_eq!(body["errors"][0]["field"], "to");
}

platform::on_each_backend!(
    malformed_queries_answer_problem_json_naming_the_field,
    malformed_bodies_are_400_and_wrong_values_422,
);
