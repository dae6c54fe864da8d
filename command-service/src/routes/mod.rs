//! HTTP routes of the command side, one module per resource.

pub mod auth;
pub mod import;
pub mod meetings;
pub mod series;
pub mod users;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::Router;
use cqrs_es::Aggregate;
use platform::auth::AuthUser;
use serde::Serialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::executor::{CommandMeta, CommandRequest};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(meetings::router())
        .merge(series::router())
        .merge(import::router())
}

/// The headers every command accepts (docs/api.md "Common"), read by
/// [`crate::executor::CommandMeta`]; documented with `params(CommandHeaders)`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// Only apply the command to this version of the aggregate: `"<version>"`, the `ETag` of
    /// a command answer (a strong ETag; weak ones and `*` are 400). 412 when the version is
    /// no longer the current one.
    #[param(rename = "If-Match", value_type = String, required = false, pattern = r#"^"\+?[0-9]{1,18}"$"#, example = r#""3""#)]
    pub if_match: Option<String>,
    /// Makes a retry safe: the same request again with the same key (1–128 visible ASCII
    /// characters, surrounding quotes ignored) is answered as the first time, with
    /// `Idempotent-Replayed: true`, for at least 24 hours. The same key on another request is
    /// 422; on a request still running, 409. Keys are per caller.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, pattern = r#"^"*[!#-~](?:[!-~]{0,126}[!#-~])?"*$"#, example = "3f0c9d2e-retry-1")]
    pub idempotency_key: Option<String>,
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

/// Commands of the authenticated caller on the existing aggregate `id`, answered 200; the
/// request's methods change that.
pub fn by_caller<'a, A: Aggregate>(
    caller: &AuthUser,
    meta: &'a CommandMeta,
    id: Uuid,
    fingerprint: (&'static str, serde_json::Value),
    commands: Vec<A::Command>,
) -> CommandRequest<'a, A> {
    CommandRequest::new(id, Some(caller.user_id), meta, fingerprint, commands)
}

/// The client's address, for per-source login throttling.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The TCP peer, or what `X-Forwarded-For` says when the peer is a trusted proxy
/// ([`crate::limits::Limits::client`]).
impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok());
        Ok(ClientAddr(state.limits.client(peer, forwarded_for)))
    }
}

impl ClientAddr {
    /// Throttling key: the IPv4 address, or the /64 prefix of an IPv6 address (one
    /// subscriber usually holds a whole /64, so single addresses would be free to rotate).
    pub fn key(&self) -> String {
        match self.0 {
            None => "unknown".to_string(),
            Some(IpAddr::V4(ip)) => ip.to_string(),
            Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = ip.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_bit_prefix() {
        let a = ClientAddr(Some("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = ClientAddr(Some("2001:db8:1:2:bbbb::9".parse().unwrap()));
        let other = ClientAddr(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), other.key());
        assert_eq!(
            ClientAddr(Some("::ffff:10.0.0.1".parse().unwrap())).key(),
            "10.0.0.1"
        );
        assert_eq!(
            ClientAddr(Some("10.0.0.1".parse().unwrap())).key(),
            "10.0.0.1"
        );
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
