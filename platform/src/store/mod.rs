//! The write-side store: the event log plus the command-side rows that must commit atomically
//! with it (accounts, idempotency records).
//!
//! Handlers only see the [`EventStore`] trait, so the PostgreSQL backend and the SQLite
//! backend of embedded mode are interchangeable. Why we do not use postgres-es' repository is
//! recorded in `docs/adr/0001-own-event-store.md`: commands need the global position of what
//! they appended, the hash chain, and side effects in the same transaction.

mod codec;
mod position;
pub mod postgres;
pub mod snapshot;
pub mod sqlite;
pub mod tail;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use codec::{
    apply_stored, canonical_json, chain, decode_event, decode_events, encode_event, event_hash,
    AggregateState, Chained, HashInput,
};
pub use position::Position;
pub use postgres::PgEventStore;
pub use snapshot::{load_aggregate, load_aggregate_until, Snapshot};
pub use sqlite::SqliteEventStore;

/// Audit metadata written with every event (docs/architecture.md, guarantee 8). `recorded_at` is a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// UUIDv7 of the event; also the NATS `Nats-Msg-Id` later, so republishing deduplicates.
    pub event_id: Uuid,
    /// Who caused it; `None` for anonymous registration, nil UUID for the operator CLI.
    pub actor_id: Option<Uuid>,
    pub request_id: String,
    pub correlation_id: String,
    /// What caused this event: the request id of a command; an event id for reactions.
    pub causation_id: String,
    /// The W3C trace context of the request that caused it. Absent in events recorded before
    /// it was kept (and so outside their hashes: an absent field is not written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl EventMetadata {
    /// Logs one line for `event` at a stage of its way (published, projected, delivered) with
    /// the ids that tie it to the request that caused it, so a grep on the correlation id
    /// finds the action in every service.
    pub fn log_stage(&self, stage: &'static str, event_type: &str, position: Position) {
        tracing::info!(
            stage,
            event_type,
            %position,
            event_id = %self.event_id,
            request_id = self.request_id.as_str(),
            correlation_id = self.correlation_id.as_str(),
            causation_id = self.causation_id.as_str(),
            traceparent = self.traceparent.as_deref().unwrap_or(""),
            "event {stage}"
        );
    }
}

/// An event ready to append, already serialized.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
    pub position: Position,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

/// Command-side rows changed in the same transaction as the events.
#[derive(Clone, PartialEq)]
pub enum SideEffect {
    /// Claims the normalized email; fails the commit with [`StoreError::Duplicate`] if taken.
    CreateAccount {
        user_id: Uuid,
        email_key: String,
        password_hash: String,
    },
    SetPassword {
        user_id: Uuid,
        password_hash: String,
    },
    /// Disables login and revokes every refresh token of the user.
    DeactivateAccount { user_id: Uuid },
    /// Voids the user's access tokens (a role change): they must refresh to get new ones.
    RevokeAccess { user_id: Uuid },
}

impl fmt::Debug for SideEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Password hashes stay out of logs.
        match self {
            SideEffect::CreateAccount { user_id, .. } => write!(f, "CreateAccount({user_id})"),
            SideEffect::SetPassword { user_id, .. } => write!(f, "SetPassword({user_id})"),
            SideEffect::DeactivateAccount { user_id } => write!(f, "DeactivateAccount({user_id})"),
            SideEffect::RevokeAccess { user_id } => write!(f, "RevokeAccess({user_id})"),
        }
    }
}

/// The result of a command as the client saw it, kept for `Idempotency-Key` replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentResponse {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub body: serde_json::Value,
    pub etag: Option<String>,
    pub location: Option<String>,
}

/// Identifies the idempotency record written with a commit. The response is completed from the
/// commit's outcome (version and position are only known after the append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key: the user id, or `anonymous` for registration.
    pub principal: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub location: Option<String>,
    /// What the response body names besides the aggregate (the new chat message's id).
    pub message_id: Option<Uuid>,
}

/// One atomic append.
#[derive(Debug, Clone)]
pub struct Commit {
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    /// Sequence the events were decided on (0 for a new aggregate).
    pub expected_sequence: i64,
    /// Hash of the event at `expected_sequence`, to chain the new events.
    pub prev_hash: Option<Vec<u8>>,
    pub events: Vec<NewEvent>,
    pub side_effects: Vec<SideEffect>,
    pub idempotency: Option<IdempotencyKey>,
}

/// What a successful commit produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    pub aggregate_id: Uuid,
    /// Sequence of the last event, the aggregate's new version.
    pub version: i64,
    /// Global position of the last event.
    pub position: Position,
    /// Hash of the last event: what the aggregate's next commit chains onto.
    #[serde(skip)]
    pub last_hash: Vec<u8>,
}

/// A registered account, as login needs it.
#[derive(Clone)]
pub struct Account {
    pub user_id: Uuid,
    pub password_hash: String,
    pub active: bool,
    /// Access tokens are issued at this version (see `auth::revocation`).
    pub session_version: i32,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("user_id", &self.user_id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the aggregate first.
    #[error("the aggregate was changed concurrently")]
    Concurrency,
    /// A unique claim is taken; the string names what (e.g. `email`).
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    /// The idempotency key was used concurrently by another request; read and replay it.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// A stored event cannot be read back (unknown type, corrupt payload).
    #[error("corrupt event {aggregate_type}/{aggregate_id}#{sequence}: {reason}")]
    Corrupt {
        aggregate_type: String,
        aggregate_id: Uuid,
        sequence: i64,
        reason: String,
    },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The write-side store.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The events of one aggregate after `after_sequence`, in sequence order (0: all of
    /// them; more: to bring a cached state up to date).
    async fn load_after(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_sequence: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every event of one aggregate, in sequence order. Unbounded: for audits and tests;
    /// services load through [`load_aggregate`] or [`EventStore::load_page`].
    async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.load_after(aggregate_type, aggregate_id, 0).await
    }

    /// At most `limit` events of one aggregate after `after_sequence`, in sequence order.
    async fn load_page(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_sequence: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// At most `limit` events of one aggregate recorded after the global position `since`,
    /// in sequence order (a websocket resume).
    async fn load_since(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        since: Position,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The aggregate's newest snapshot, if any.
    async fn snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<Snapshot>, StoreError>;

    /// Stores `snapshot` unless a newer one of the aggregate is stored already.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// Appends atomically, with side effects and idempotency record, or not at all.
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError>;

    /// Appends to several aggregates in one transaction, all or nothing (a series split into
    /// two). Each commit is checked against its own expected sequence; the outcomes come in
    /// the commits' order, the last one holding the highest position.
    async fn commit_together(&self, commits: Vec<Commit>)
        -> Result<Vec<CommitOutcome>, StoreError>;

    /// Events after `after` in global order, never past a still-running transaction
    /// (docs/architecture.md, guarantee 3). Used by the relay, the audit CLI and tests.
    async fn read_all(
        &self,
        after: Option<Position>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The stored response of an idempotency key, if any (kept at least 24 h).
    async fn idempotent_response(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotentResponse>, StoreError>;

    /// Deletes idempotency records older than `retention`; returns how many.
    async fn purge_idempotency_keys(
        &self,
        retention: std::time::Duration,
    ) -> Result<u64, StoreError>;

    async fn account_by_email(&self, email_key: &str) -> Result<Option<Account>, StoreError>;

    async fn account(&self, user_id: Uuid) -> Result<Option<Account>, StoreError>;

    /// The ids among `ids` that are not active registered users.
    async fn missing_users(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError>;

    /// Whether the store is reachable and migrated.
    async fn ready(&self) -> Result<(), String>;
}
