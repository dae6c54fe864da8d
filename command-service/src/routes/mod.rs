//! HTTP routes of the command side, one module per resource.

pub mod auth;
pub mod meetings;
pub mod users;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::Router;
use serde::Serialize;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(meetings::router())
}

/// Identifies a request for `Idempotency-Key`: the route template, its path parameters and
/// its body. A key reused with a different fingerprint is refused.
pub fn fingerprint(
    route: &'static str,
    path: impl Serialize,
    body: impl Serialize,
) -> (&'static str, serde_json::Value) {
    (
        route,
        serde_json::json!({
            "path": serde_json::to_value(path).unwrap_or_default(),
            "body": serde_json::to_value(body).unwrap_or_default(),
        }),
    )
}

/// The client's address, for per-source login throttling.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

impl ClientAddr {
    pub fn key(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

/// `Option<Option<T>>` for PATCH bodies: absent = keep, `null` = clear, value = set.
pub mod patch {
    use serde::{Deserialize, Deserializer};

    pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}
