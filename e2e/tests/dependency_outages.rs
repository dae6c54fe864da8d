//! A dependency goes away and comes back while the services keep running: requests fail fast
//! with 503 + `Retry-After` (never hanging on a pool or connect timeout) and succeed again by
//! themselves once it returns. PostgreSQL and NATS here are the tests' own, so they can be
//! stopped.

use std::time::{Duration, Instant};

use e2e::own_postgres::OwnPostgres;
use e2e::{services, ws, OwnNats, Stack};
use platform::testing::{meeting_body, TestClient};
use reqwest::Method;
use serde_json::Value;

/// The longest a refused request may take while its dependency is down.
const FAIL_FAST: Duration = Duration::from_millis(100);

/// Sends `request` and checks it is a 503 with `Retry-After` (a problem document unless it is
/// the readiness probe's own answer), answered within [`FAIL_FAST`].
async fn assert_fails_fast(what: &str, request: reqwest::RequestBuilder) {
    let readiness = what.starts_with("readiness");
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let took = started.elapsed();
    let headers = response.headers().clone();
    assert_eq!(response.status(), 503, "{what}: {headers:?}");
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..]),
        "{what}: {headers:?}"
    );
    assert!(
        headers.contains_key("x-request-id"),
        "{what}: the refusal has a request id"
    );
    if !readiness {
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{what}"
        );
    }
    assert!(took < FAIL_FAST, "{what} took {took:?} to be refused");
}

/// Polls `request` until it answers `status`, within `within`.
async fn eventually(
    what: &str,
    within: Duration,
    status: u16,
    request: impl Fn() -> reqwest::RequestBuilder,
) {
    let deadline = Instant::now() + within;
    loop {
        let answered = request().send().await.unwrap().status();
        if answered == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {answered} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn while_postgres_is_down_requests_fail_fast_and_recover_without_a_restart() {
    platform::testing::init_tracing();
    let postgres = OwnPostgres::start().await;
    let pool = platform::db::connect(&postgres.url(), 4).await.unwrap();
    platform::db::migrate(&pool).await.unwrap();
    pool.close().await;
    let commands = services::serve_commands(&services::command_settings(&postgres.url(), 8))
        .await
        .unwrap();
    let queries = services::serve_queries(&services::query_settings(&postgres.url(), 8))
        .await
        .unwrap();
    let ada = commands.sign_up("Ada").await.unwrap();
    let schedule = |api: &TestClient| {
        api.request(Method::POST, "/v1/meetings", Some(&ada.token))
            .json(&meeting_body("During an outage", &[]))
    };
    assert_eq!(schedule(&commands).send().await.unwrap().status(), 201);

    postgres.stop();
    for attempt in 0..20 {
        if attempt == 10 {
            // Long enough for the breaker's probes to back off and for any request that was
            // left waiting on the pool to have timed out.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        assert_fails_fast(&format!("command {attempt}"), schedule(&commands)).await;
        assert_fails_fast(
            &format!("query {attempt}"),
            queries.request(Method::GET, "/v1/meetings", Some(&ada.token)),
        )
        .await;
        assert_fails_fast(
            &format!("readiness {attempt}"),
            commands.request(Method::GET, "/readyz", None),
        )
        .await;
    }
    // Liveness does not depend on the database: the process is healthy, only not ready.
    assert_eq!(commands.get("/healthz", None).await.status(), 200);
    let metrics = commands.get_text("/metrics", None).await;
    assert!(
        metrics.contains("meetings_database_available 0"),
        "{metrics}"
    );

    postgres.start_again().await;
    // The breaker probes with backoff of at most two seconds (plus jitter).
    eventually(
        "a command after the restart",
        Duration::from_secs(5),
        201,
        || schedule(&commands),
    )
    .await;
    // Once back, every request succeeds: no stale pooled connection fails a later one.
    for attempt in 0..20 {
        let response = schedule(&commands).send().await.unwrap();
        assert_eq!(response.status(), 201, "command {attempt} after recovery");
    }
    eventually("the query-service", Duration::from_secs(5), 200, || {
        queries.request(Method::GET, "/readyz", None)
    })
    .await;
    let metrics = commands.get_text("/metrics", None).await;
    assert!(
        metrics.contains("meetings_database_available 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meetings_database_breaker_opened_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn while_nats_is_down_the_gateway_and_projector_say_so_fast_and_resume_losing_nothing() {
    let mut nats = OwnNats::start().await;
    let stack = Stack::start(nats.url(), false).await;
    let (ws_url, _realtime) = stack.start_realtime().await;
    let gateway = TestClient::new(ws_url.replace("ws://", "http://").replace("/v1/ws", ""));
    let (_, token, _) = stack.user("Ada").await;
    let mut socket = ws::authed(&ws_url, &token).await;
    ws::subscribe(&mut socket, "user:me", None).await;
    let schedule = |title: &str| {
        stack
            .commands
            .request(Method::POST, "/v1/meetings", Some(&token))
            .json(&meeting_body(title, &[]))
    };
    let before: Value = schedule("Before")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ws::next(&mut socket).await["position"], before["position"]);

    nats.stop();
    eventually("the gateway notices", Duration::from_secs(5), 503, || {
        gateway.request(Method::GET, "/readyz", None)
    })
    .await;
    let upgrade = || {
        gateway
            .request(Method::GET, "/v1/ws", None)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    let mut during = Vec::new();
    for attempt in 0..10 {
        assert_fails_fast(&format!("websocket {attempt}"), upgrade()).await;
        assert_fails_fast(
            &format!("readiness of the projector {attempt}"),
            stack
                .projector_health()
                .request(Method::GET, "/readyz", None),
        )
        .await;
        // Commands do not need NATS: the relay publishes them once it is back.
        let response = schedule(&format!("During {attempt}")).send().await.unwrap();
        assert_eq!(
            response.status(),
            201,
            "command {attempt} during the outage"
        );
        during.push(response.json::<Value>().await.unwrap());
    }

    nats.start_again().await;
    // The open socket hears every event of the outage, in order, once the stream is back.
    for scheduled in &during {
        let frame = ws::next(&mut socket).await;
        assert_eq!(frame["position"], scheduled["position"], "{frame}");
    }
    eventually("a new websocket", Duration::from_secs(10), 101, upgrade).await;
    let last = during.last().unwrap();
    let (status, meeting) = stack
        .query(
            &format!("/v1/meetings/{}", last["id"].as_str().unwrap()),
            &token,
            last["position"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, 200, "the projector caught up: {meeting}");
    eventually("the projector", Duration::from_secs(10), 200, || {
        stack
            .projector_health()
            .request(Method::GET, "/readyz", None)
    })
    .await;
}
