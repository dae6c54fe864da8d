//! `Idempotency-Key`: the record a commit writes with its events, and the replay of that
//! record when the same request comes again (a retry, or a twin that raced it).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use cqrs_es::Aggregate;
use platform::http::ApiError;
use platform::store::{canonical_json, EventStore, IdempotencyKey, IdempotentResponse};
use sha2::{Digest, Sha256};

use super::request::CommandRequest;
use super::response::answer;

pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The idempotency key of one command request, if it has one.
pub(super) struct Idempotency(Option<IdempotencyKey>);

impl Idempotency {
    /// The key the request's commit records: scoped to the actor, and with a hash of the
    /// request so that a key reused for another request is told apart from a retry.
    pub(super) fn of<A: Aggregate>(request: &CommandRequest<'_, A>) -> Self {
        Self(request.meta.idempotency_key.as_ref().map(|key| {
            IdempotencyKey {
                principal: request
                    .actor_id
                    .map_or_else(|| "anonymous".to_string(), |id| id.to_string()),
                key: key.clone(),
                request_hash: fingerprint_hash(&request.fingerprint),
                status: request.success.as_u16(),
                location: request.location.clone(),
                message_id: request.message_id,
            }
        }))
    }

    /// What the commit records, if the request has a key.
    pub(super) fn record(&self) -> Option<IdempotencyKey> {
        self.0.clone()
    }

    /// The response recorded under this request's key by an earlier copy of it, answered
    /// again. 422 when the key was recorded for a different request.
    pub(super) async fn recorded(
        &self,
        store: &dyn EventStore,
    ) -> Result<Option<Response>, ApiError> {
        let Some(key) = &self.0 else {
            return Ok(None);
        };
        match store.idempotent_response(&key.principal, &key.key).await? {
            Some(stored) if stored.request_hash != key.request_hash => Err(ApiError::invalid(
                "Idempotency-Key",
                "this key was already used for a different request",
            )),
            Some(stored) => Ok(Some(replay(stored))),
            None => Ok(None),
        }
    }
}

/// A recorded response as answered the first time, marked `Idempotent-Replayed: true`.
fn replay(stored: IdempotentResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = answer(status, stored.body, stored.etag, stored.location);
    response.headers_mut().insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    response
}

fn fingerprint_hash((route, body): &(&'static str, serde_json::Value)) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(canonical_json(body).as_bytes());
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_route_and_body_but_not_key_order() {
        let a = fingerprint_hash(&("r", serde_json::json!({"a": 1, "b": 2})));
        let b = fingerprint_hash(&("r", serde_json::json!({"b": 2, "a": 1})));
        let c = fingerprint_hash(&("r2", serde_json::json!({"a": 1, "b": 2})));
        let d = fingerprint_hash(&("r", serde_json::json!({"a": 1, "b": 3})));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
