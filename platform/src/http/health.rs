//! `/healthz` (alive), `/readyz` (dependencies reachable, migrations applied), `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::Metrics;

/// A readiness check: `Ok` when the dependency it names is usable.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

#[derive(Clone)]
struct HealthState {
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
    metrics: Metrics,
}

/// Routes for health, readiness and metrics; merge into the service's router.
pub fn router<S>(checks: Vec<Arc<dyn ReadinessCheck>>, metrics: Metrics) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(HealthState {
            checks: Arc::new(checks),
            metrics,
        })
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let mut ready = true;
    let mut results = serde_json::Map::new();
    for check in state.checks.iter() {
        let outcome = check.check().await;
        ready &= outcome.is_ok();
        // The reason (SQL error text, the event that stopped a projection) is for the
        // operator's logs, not for whoever can reach the port.
        if let Err(reason) = &outcome {
            tracing::warn!(check = check.name(), %reason, "not ready");
        }
        results.insert(
            check.name().to_string(),
            json!(if outcome.is_ok() { "ok" } else { "failing" }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (
        status,
        Json(json!({"status": if ready {"ready"} else {"not ready"}, "checks": results})),
    )
        .into_response();
    if !ready {
        // Like every 503 here: when to ask again.
        response.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from(super::RETRY_AFTER_SECONDS),
        );
    }
    response
}

async fn metrics_text(State(state): State<HealthState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Readiness of the PostgreSQL pool: reachable and every migration applied.
pub struct PostgresReady(pub sqlx::PgPool);

#[async_trait::async_trait]
impl ReadinessCheck for PostgresReady {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self) -> Result<(), String> {
        crate::db::ready(&self.0).await
    }
}

/// Readiness of the NATS connection: connected now (the client reconnects by itself, with
/// backoff, while the server is away).
pub struct NatsReady(pub async_nats::Client);

#[async_trait::async_trait]
impl ReadinessCheck for NatsReady {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(format!("not connected ({state})")),
        }
    }
}
