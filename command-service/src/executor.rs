//! Runs commands against aggregates: load, decide, append — with optimistic concurrency,
//! `If-Match`, `Idempotency-Key` and audit metadata.
//!
//! Without `If-Match` a concurrency conflict re-runs the command against the fresh state (the
//! decision is re-made, so nothing is overwritten); with `If-Match` the client asked for a
//! specific version and gets 412 instead. After a few lost races the answer is 409.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use domain::DomainError;
use platform::http::{ApiError, RequestId};
use platform::store::{
    apply_stored, encode_event, AggregateState, Commit, CommitOutcome, EventMetadata, EventStore,
    IdempotencyKey, IdempotentResponse, NewEvent, SideEffect, StoreError,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How often a command is re-decided after losing a race before answering 409.
const MAX_ATTEMPTS: usize = 8;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Per-request inputs of a command that come from headers.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub request_id: RequestId,
    /// `If-Match: "<version>"`.
    pub if_match: Option<i64>,
    pub idempotency_key: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let request_id = RequestId::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let if_match = match parts.headers.get(IF_MATCH) {
            None => None,
            Some(value) => Some(parse_if_match(value).ok_or_else(|| {
                ApiError::BadRequest(
                    "If-Match must be a strong ETag of a version, e.g. \"3\"".into(),
                )
            })?),
        };
        let idempotency_key = match parts.headers.get(&IDEMPOTENCY_KEY) {
            None => None,
            Some(value) => {
                let key = value
                    .to_str()
                    .ok()
                    .map(|k| k.trim().trim_matches('"'))
                    .filter(|k| platform::http::request_id::is_sane(k))
                    .ok_or_else(|| {
                        ApiError::BadRequest(
                            "Idempotency-Key must be 1–128 visible ASCII characters".into(),
                        )
                    })?;
                Some(key.to_string())
            }
        };
        Ok(Self {
            request_id,
            if_match,
            idempotency_key,
        })
    }
}

fn parse_if_match(value: &HeaderValue) -> Option<i64> {
    let text = value.to_str().ok()?.trim();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    inner.parse().ok().filter(|v: &i64| *v >= 0)
}

/// The outcome of a command, as answered to the client.
#[derive(Debug, Clone)]
pub struct CommandResponse {
    pub status: StatusCode,
    pub outcome: CommitOutcome,
    pub location: Option<String>,
}

/// Body of every command response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommandBody {
    /// Id of the aggregate the command changed.
    pub id: Uuid,
    /// The aggregate's version after the command; also the `ETag`.
    pub version: i64,
    /// Global position of the command's last event, for `X-Min-Position` on queries.
    pub position: String,
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let etag = HeaderValue::from_str(&format!("\"{}\"", self.outcome.version))
            .expect("BUG: a number is a valid header");
        let mut response = if self.status == StatusCode::NO_CONTENT {
            StatusCode::NO_CONTENT.into_response()
        } else {
            (
                self.status,
                Json(CommandBody {
                    id: self.outcome.aggregate_id,
                    version: self.outcome.version,
                    position: self.outcome.position.to_string(),
                }),
            )
                .into_response()
        };
        response.headers_mut().insert(ETAG, etag);
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(LOCATION, location);
        }
        response
    }
}

fn replay(stored: IdempotentResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, Json(stored.body)).into_response()
    };
    let headers = response.headers_mut();
    if let Some(etag) = stored.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(ETAG, etag);
    }
    if let Some(location) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(LOCATION, location);
    }
    headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    response
}

/// What a handler asks the executor to do.
pub struct CommandRequest<'a, A: Aggregate> {
    pub aggregate_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub meta: &'a CommandMeta,
    /// Route template and the request body, hashed to tell a retry from a different request
    /// reusing an idempotency key.
    pub fingerprint: (&'static str, serde_json::Value),
    pub commands: Vec<A::Command>,
    pub side_effects: Vec<SideEffect>,
    pub success: StatusCode,
    pub location: Option<String>,
    /// The id was generated by this request, so the aggregate cannot have events yet: the
    /// first attempt skips loading them. Should the id exist after all, the append conflicts
    /// and the retry loads and decides properly.
    pub fresh_id: bool,
}

/// Aggregates this process recently loaded or changed, as of their last known event, so that
/// a command neither re-reads its aggregate's whole history (every chat message and response
/// would otherwise re-read and re-apply its meeting's) nor reads anything at all when no
/// other replica wrote since. An entry is only a guess: a command decided on it commits with
/// the entry's sequence, and if another writer appended in between the commit conflicts and
/// the command is decided again on a freshly loaded state ([`Executor::execute`]). A stale
/// entry costs a round trip, never a wrong decision. Bounded; when full, an arbitrary entry
/// makes room.
#[derive(Clone, Default)]
pub struct AggregateCache {
    entries: Arc<std::sync::Mutex<HashMap<CacheKey, CachedState>>>,
}

/// (aggregate type, id).
type CacheKey = (&'static str, Uuid);
/// An `AggregateState<A>` of the aggregate type in the key.
type CachedState = Arc<dyn Any + Send + Sync>;

impl AggregateCache {
    const CAPACITY: usize = 10_000;

    fn get<A: Aggregate + Clone + 'static>(&self, id: Uuid) -> Option<AggregateState<A>> {
        let entries = self.entries.lock().expect("BUG: cache lock poisoned");
        let entry = entries.get(&(A::TYPE, id))?.clone();
        drop(entries);
        entry
            .downcast::<AggregateState<A>>()
            .ok()
            .map(|state| (*state).clone())
    }

    /// Keeps `state` unless the entry is already at a later version (a slower request
    /// finishing after a faster one must not move the entry back).
    fn put<A: Aggregate + Clone + 'static>(&self, id: Uuid, state: AggregateState<A>) {
        let mut entries = self.entries.lock().expect("BUG: cache lock poisoned");
        let newer = entries
            .get(&(A::TYPE, id))
            .and_then(|entry| entry.downcast_ref::<AggregateState<A>>())
            .is_some_and(|cached| cached.version > state.version);
        if newer {
            return;
        }
        if entries.len() >= Self::CAPACITY && !entries.contains_key(&(A::TYPE, id)) {
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert((A::TYPE, id), Arc::new(state));
    }
}

/// Shared dependencies of the executor.
#[derive(Clone)]
pub struct Executor {
    pub store: Arc<dyn EventStore>,
    pub upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    cache: AggregateCache,
    turns: Turns,
}

/// Commands on one aggregate take turns within this process: they would only conflict on its
/// sequence and retry (a wasted, refused insert each time), and a retry that reads the store
/// loses the race again and again to newcomers deciding on the cache. One stripe of locks per
/// process; aggregates share a stripe only by hash, which costs a short wait, never a
/// wrong answer. Other replicas still conflict on the sequence, as before.
#[derive(Clone)]
struct Turns(Arc<[tokio::sync::Mutex<()>]>);

impl Turns {
    const STRIPES: usize = 1024;

    fn of(&self, id: Uuid) -> &tokio::sync::Mutex<()> {
        // v4 and v7 ids both end in random bits.
        &self.0[(id.as_u128() % Self::STRIPES as u128) as usize]
    }
}

impl Default for Turns {
    fn default() -> Self {
        Self(
            (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }
}

impl Executor {
    pub fn new(store: Arc<dyn EventStore>, upcasters: Arc<Vec<Box<dyn EventUpcaster>>>) -> Self {
        Self {
            store,
            upcasters,
            cache: AggregateCache::default(),
            turns: Turns::default(),
        }
    }

    /// Loads and rebuilds an aggregate: the cached state (or the aggregate before its first
    /// event) plus the events after it.
    pub async fn load<A: Aggregate + Clone + 'static>(
        &self,
        id: Uuid,
    ) -> Result<AggregateState<A>, ApiError> {
        let mut state = self.cache.get::<A>(id).unwrap_or_default();
        let events = self
            .store
            .load_after(A::TYPE, id, state.version)
            .await
            .map_err(store_error)?;
        // Unchanged, the state is either in the cache already or has no events to cache.
        let changed = !events.is_empty();
        apply_stored(&mut state, events, &self.upcasters).map_err(store_error)?;
        if changed {
            self.cache.put(id, state.clone());
        }
        Ok(state)
    }

    /// Runs the commands as one atomic decision and answers like API.md says.
    pub async fn execute<A>(
        &self,
        services: &A::Services,
        request: CommandRequest<'_, A>,
    ) -> Result<Response, ApiError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
        A::Command: Clone,
    {
        let idempotency = match &request.meta.idempotency_key {
            Some(key) => {
                let principal = request
                    .actor_id
                    .map_or_else(|| "anonymous".to_string(), |id| id.to_string());
                let request_hash = fingerprint_hash(&request.fingerprint);
                if let Some(stored) = self
                    .store
                    .idempotent_response(&principal, key)
                    .await
                    .map_err(store_error)?
                {
                    return replay_checked(stored, &request_hash);
                }
                Some(IdempotencyKey {
                    principal,
                    key: key.clone(),
                    request_hash,
                    status: request.success.as_u16(),
                    location: request.location.clone(),
                })
            }
            None => None,
        };

        // A new aggregate's id was made by this request: nobody else can be writing it.
        let _turn = if request.fresh_id {
            None
        } else {
            Some(self.turns.of(request.aggregate_id).lock().await)
        };
        for attempt in 0..MAX_ATTEMPTS {
            // The first attempt decides on the cached state, if there is one, without reading
            // the store: should another writer have appended since, the commit conflicts on
            // the sequence and the next attempt loads. So only a successful commit is ever
            // answered from an unverified state; a refusal, a no-op or a stale `If-Match` is
            // decided again on a state just loaded.
            let cached = if attempt == 0 && !request.fresh_id {
                self.cache.get::<A>(request.aggregate_id)
            } else {
                None
            };
            let verified = cached.is_none();
            let mut state = match cached {
                Some(state) => state,
                None if request.fresh_id && attempt == 0 => AggregateState::default(),
                None => self.load::<A>(request.aggregate_id).await?,
            };
            if let Some(expected) = request.meta.if_match {
                if state.version != expected {
                    if !verified {
                        continue;
                    }
                    // A retry whose first copy succeeded moved the version itself.
                    if let Some(replayed) = self.replay_if_recorded(&idempotency).await? {
                        return Ok(replayed);
                    }
                    return Err(stale(expected, state.version));
                }
            }
            let sink = EventSink::<A>::default();
            let mut refused = None;
            for command in request.commands.iter().cloned() {
                if let Err(error) = state.aggregate.handle(command, services, &sink).await {
                    refused = Some(error);
                    break;
                }
            }
            if let Some(error) = refused {
                if !verified {
                    continue;
                }
                return Err(error.into());
            }
            let events = sink.collect().await;
            if events.is_empty() && !verified {
                continue;
            }
            if events.is_empty() {
                // Nothing changed: answer with the current version, append nothing.
                let outcome = self
                    .current_outcome::<A>(request.aggregate_id, state.version)
                    .await?;
                return Ok(CommandResponse {
                    status: request.success,
                    outcome,
                    location: request.location.clone(),
                }
                .into_response());
            }
            let recorded_at = Utc::now();
            let mut new_events = Vec::with_capacity(events.len());
            for event in &events {
                let (event_type, event_version, payload) =
                    encode_event(event).map_err(store_error)?;
                new_events.push(NewEvent {
                    event_type,
                    event_version,
                    payload,
                    metadata: EventMetadata {
                        event_id: Uuid::now_v7(),
                        actor_id: request.actor_id,
                        request_id: request.meta.request_id.to_string(),
                        correlation_id: request.meta.request_id.correlation_id().to_string(),
                        causation_id: request.meta.request_id.to_string(),
                    },
                    recorded_at,
                });
            }
            let commit = Commit {
                aggregate_type: A::TYPE,
                aggregate_id: request.aggregate_id,
                expected_sequence: state.version,
                prev_hash: state.last_hash.take(),
                events: new_events,
                side_effects: request.side_effects.clone(),
                idempotency: idempotency.clone(),
            };
            match self.store.commit(commit).await {
                Ok(outcome) => {
                    // The state after the commit, so the aggregate's next command needs no
                    // read at all.
                    for event in events {
                        state.aggregate.apply(event);
                    }
                    state.version = outcome.version;
                    state.last_hash = Some(outcome.last_hash.clone());
                    self.cache.put(request.aggregate_id, state);
                    return Ok(CommandResponse {
                        status: request.success,
                        outcome,
                        location: request.location.clone(),
                    }
                    .into_response());
                }
                Err(StoreError::Concurrency) => {
                    // The winner may have been this very request's twin (same key).
                    if let Some(replayed) = self.replay_if_recorded(&idempotency).await? {
                        return Ok(replayed);
                    }
                    if let Some(expected) = request.meta.if_match {
                        return Err(ApiError::PreconditionFailed(format!(
                            "version {expected} was superseded while the command ran"
                        )));
                    }
                    tracing::debug!(attempt, "lost a race on the aggregate, deciding again");
                    // Jittered backoff spreads the contenders out instead of re-colliding.
                    let jitter = rand::random::<u64>() % (2 + 2 * attempt as u64);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                    continue;
                }
                // A twin registering the same email with the same key won the unique claim.
                Err(StoreError::Duplicate(what)) => {
                    if let Some(replayed) = self.replay_if_recorded(&idempotency).await? {
                        return Ok(replayed);
                    }
                    return Err(store_error(StoreError::Duplicate(what)));
                }
                Err(StoreError::IdempotencyKeyTaken) => {
                    let key = idempotency.as_ref().expect("BUG: only with a key");
                    let stored = self
                        .store
                        .idempotent_response(&key.principal, &key.key)
                        .await
                        .map_err(store_error)?
                        .ok_or_else(|| {
                            ApiError::Conflict("the idempotency key is in use".into())
                        })?;
                    return replay_checked(stored, &key.request_hash);
                }
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(ApiError::Conflict(
            "the resource is being changed by others right now; retry".into(),
        ))
    }

    /// The recorded response of this request's idempotency key, if a twin already stored one.
    async fn replay_if_recorded(
        &self,
        idempotency: &Option<IdempotencyKey>,
    ) -> Result<Option<Response>, ApiError> {
        let Some(key) = idempotency else {
            return Ok(None);
        };
        match self
            .store
            .idempotent_response(&key.principal, &key.key)
            .await
            .map_err(store_error)?
        {
            Some(stored) => replay_checked(stored, &key.request_hash).map(Some),
            None => Ok(None),
        }
    }

    async fn current_outcome<A: Aggregate>(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<CommitOutcome, ApiError> {
        let events = self.store.load(A::TYPE, id).await.map_err(store_error)?;
        let last = events
            .iter()
            .find(|e| e.sequence == version)
            .ok_or_else(|| ApiError::Conflict("the resource changed; retry".into()))?;
        Ok(CommitOutcome {
            aggregate_id: id,
            version,
            position: last.position,
            last_hash: last.hash.clone(),
        })
    }
}

fn replay_checked(stored: IdempotentResponse, request_hash: &[u8]) -> Result<Response, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "this key was already used for a different request",
        ));
    }
    Ok(replay(stored))
}

fn stale(expected: i64, actual: i64) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "If-Match \"{expected}\" is stale: the current version is \"{actual}\""
    ))
}

fn fingerprint_hash((route, body): &(&'static str, serde_json::Value)) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(platform::store::canonical_json(body).as_bytes());
    hasher.finalize().to_vec()
}

/// Store failures as HTTP errors: unavailability is 503, uniqueness 409, the rest 500.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "database unavailable");
            ApiError::Unavailable {
                detail: "the database is unavailable, retry shortly".into(),
                retry_after: 2,
            }
        }
        StoreError::Duplicate(what) => ApiError::Conflict(format!("{what} is already registered")),
        StoreError::Concurrency => {
            ApiError::Conflict("the resource was changed concurrently; retry".into())
        }
        other => ApiError::Internal(other.into()),
    }
}

/// Lets handlers take the executor straight from the state.
impl<S> FromRequestParts<S> for Executor
where
    Executor: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Executor::from_ref(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_strong_etags_of_versions() {
        assert_eq!(parse_if_match(&HeaderValue::from_static("\"3\"")), Some(3));
        assert_eq!(
            parse_if_match(&HeaderValue::from_static(" \"0\" ")),
            Some(0)
        );
        assert_eq!(parse_if_match(&HeaderValue::from_static("3")), None);
        assert_eq!(parse_if_match(&HeaderValue::from_static("W/\"3\"")), None);
        assert_eq!(parse_if_match(&HeaderValue::from_static("\"-1\"")), None);
        assert_eq!(parse_if_match(&HeaderValue::from_static("*")), None);
    }

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
