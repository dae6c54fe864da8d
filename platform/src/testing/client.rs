//! HTTP calls against a service under test, and the client journeys tests repeat: sign up
//! (register, then log in) and schedule a meeting. Plain HTTP, so any service that serves
//! the route — or the all-in-one `meetings serve` — can be the target.

use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// Password of every user [`TestClient::sign_up`] registers.
pub const PASSWORD: &str = "correct horse battery";

/// A base URL and a client with a timeout, so a hung service fails the test instead of
/// stalling it.
#[derive(Clone, Debug)]
pub struct TestClient {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    pub client: reqwest::Client,
}

/// A registered, logged-in user.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    /// Access token.
    pub token: String,
    pub refresh_token: String,
    /// Position of the registration event (for `X-Min-Position`).
    pub position: String,
}

impl TestClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("BUG: a client without TLS settings builds"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to `path`, with `token` as bearer when given; add headers and send.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A GET that must see the read models at `position` at least (`X-Min-Position`); send it
    /// yourself (under a timeout, say).
    pub fn get_at(&self, path: &str, token: Option<&str>, position: &str) -> RequestBuilder {
        self.request(Method::GET, path, token)
            .header("X-Min-Position", position)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        send(self.request(Method::GET, path, token)).await
    }

    /// The body of a GET that must answer 200.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        ok_json(self.get(path, token).await, "GET", path).await
    }

    /// The text of a GET that must answer 200 (`/metrics`, say).
    pub async fn get_text(&self, path: &str, token: Option<&str>) -> String {
        ok_text(self.get(path, token).await, "GET", path).await
    }

    /// The body of a POST that must answer 200 (a query with a body, such as free/busy).
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: impl Serialize) -> Value {
        ok_json(self.post(path, token, body).await, "POST", path).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: impl Serialize) -> Response {
        send(self.request(Method::POST, path, token).json(&body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: impl Serialize) -> Response {
        send(self.request(Method::PATCH, path, token).json(&body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        send(self.request(Method::DELETE, path, token)).await
    }

    pub async fn register(&self, email: &str, password: &str, display_name: &str) -> Response {
        self.post(
            "/v1/auth/register",
            None,
            registration(email, password, display_name),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/v1/auth/login", None, credentials(email, password))
            .await
    }

    /// Registers a user with a unique email and [`PASSWORD`], and logs them in.
    pub async fn sign_up(&self, display_name: &str) -> anyhow::Result<TestUser> {
        let email = unique_email(display_name);
        let response = self
            .request(Method::POST, "/v1/auth/register", None)
            .json(&registration(&email, PASSWORD, display_name))
            .send()
            .await?;
        let registered = body_of(response, 201, "register").await?;
        let user = TestUser {
            id: text_field(&registered, "id")?
                .parse()
                .context("register answered an id that is not a UUID")?,
            email,
            password: PASSWORD.to_string(),
            token: String::new(),
            refresh_token: String::new(),
            position: text_field(&registered, "position")?,
        };
        self.log_in(user).await
    }

    /// Logs `user` in again: the same user with fresh tokens (carrying a new role, say).
    pub async fn log_in(&self, user: TestUser) -> anyhow::Result<TestUser> {
        let response = self
            .request(Method::POST, "/v1/auth/login", None)
            .json(&credentials(&user.email, &user.password))
            .send()
            .await?;
        let tokens = body_of(response, 200, "login").await?;
        Ok(TestUser {
            token: text_field(&tokens, "access_token")?,
            refresh_token: text_field(&tokens, "refresh_token")?,
            ..user
        })
    }

    /// Schedules the meeting of `body` (see [`meeting_body`]); its id.
    pub async fn schedule(&self, token: &str, body: &Value) -> anyhow::Result<Uuid> {
        let response = self
            .request(Method::POST, "/v1/meetings", Some(token))
            .json(body)
            .send()
            .await?;
        let scheduled = body_of(response, 201, "schedule").await?;
        text_field(&scheduled, "id")?
            .parse()
            .context("schedule answered an id that is not a UUID")
    }
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("request failed")
}

async fn ok_text(response: Response, method: &str, path: &str) -> String {
    let status = response.status();
    let body = response.text().await.expect("response body");
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

async fn ok_json(response: Response, method: &str, path: &str) -> Value {
    let body = ok_text(response, method, path).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

fn registration(email: &str, password: &str, display_name: &str) -> Value {
    json!({"email": email, "password": password, "display_name": display_name})
}

fn credentials(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

/// `<name>-<uuid>@example.com`, the name lower-cased with anything but letters and digits
/// replaced.
fn unique_email(display_name: &str) -> String {
    let name: String = display_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{name}-{}@example.com", Uuid::new_v4().simple())
}

/// The JSON body of a response that must have `status`.
async fn body_of(response: Response, status: u16, what: &str) -> anyhow::Result<Value> {
    let actual = response.status();
    let text = response.text().await?;
    anyhow::ensure!(actual == status, "{what}: {actual} {text}");
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

fn text_field(body: &Value, field: &str) -> anyhow::Result<String> {
    body[field]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no `{field}` in {body}"))
}

/// A valid schedule request for tomorrow, 10:00–11:00 UTC (see [`meeting_body_on`]).
pub fn meeting_body(title: &str, attendees: &[Uuid]) -> Value {
    let tomorrow = chrono::Utc::now()
        .date_naive()
        .succ_opt()
        .expect("BUG: tomorrow exists");
    meeting_body_on(tomorrow, title, attendees)
}

/// A valid schedule request on `day`, 10:00–11:00 UTC, shown in Europe/Berlin.
pub fn meeting_body_on(day: NaiveDate, title: &str, attendees: &[Uuid]) -> Value {
    json!({
        "title": title,
        "starts_at": format!("{day}T10:00:00Z"),
        "ends_at": format!("{day}T11:00:00Z"),
        "time_zone": "Europe/Berlin",
        "attendees": attendees.iter().map(|id| json!({"user_id": id})).collect::<Vec<_>>(),
    })
}

/// Asserts an RFC 9457 body with the response's request id, and returns it.
pub async fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert!(body["detail"].is_string());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_unique_and_made_of_the_name() {
        let first = unique_email("RT 7");
        assert!(first.starts_with("rt-7-"), "{first}");
        assert!(first.ends_with("@example.com"));
        assert_ne!(first, unique_email("RT 7"));
    }
}
