//! Directory search through the whole pipeline: the words the projector writes for a
//! registration and a rename are the ones the query-service looks up.

use e2e::{Backend, Stack};
use reqwest::Method;
use serde_json::json;

async fn registered_and_renamed_users_are_found_by_any_word_without_accents(backend: Backend) {
    let stack = Stack::on(backend).await;
    let (_, token, _) = stack.user("Searcher").await;
    let (zoe, zoe_token, registered) = stack.user("Zoë Ørsted").await;
    let found = |q: &'static str, position: String| {
        let stack = &stack;
        let token = token.clone();
        async move {
            let (status, body) = stack
                .query(&format!("/v1/users?q={q}"), &token, &position)
                .await;
            assert_eq!(status, 200, "{body}");
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("orsted", registered.clone()).await, [zoe.to_string()]);
    assert_eq!(found("ZOE", registered.clone()).await, [zoe.to_string()]);

    let (status, renamed) = stack
        .command(
            Method::PATCH,
            "/v1/users/me",
            &zoe_token,
            json!({"display_name": "Zoë Brønsted-Lund"}),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    let position = renamed["position"].as_str().unwrap().to_string();
    assert!(
        found("orsted", position.clone()).await.is_empty(),
        "the old word is gone"
    );
    assert_eq!(found("bronsted", position.clone()).await, [zoe.to_string()]);
    assert_eq!(found("lund", position).await, [zoe.to_string()]);
}

platform::on_each_backend!(registered_and_renamed_users_are_found_by_any_word_without_accents,);
