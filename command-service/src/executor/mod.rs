//! Runs commands against aggregates: load, decide, append — with optimistic concurrency,
//! `If-Match`, `Idempotency-Key` and audit metadata.
//!
//! One job a module: what a handler asks for (`request`), how it is answered (`response`),
//! the aggregates this process knows (`cache`), one command at a time per aggregate
//! (`turns`), `Idempotency-Key` records and replays (`idempotency`), the decision loop
//! (`decide`), and the rare command that creates a second aggregate in the same transaction
//! (`together`); what they count (`metrics`). This module ties them together.

mod cache;
mod decide;
mod idempotency;
pub mod metrics;
mod request;
mod response;
mod together;
mod turns;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::Response;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use domain::DomainError;
use platform::http::ApiError;
use platform::store::{AggregateState, EventStore};
use uuid::Uuid;

pub use idempotency::IDEMPOTENT_REPLAYED;
pub use request::{CommandMeta, CommandRequest, IDEMPOTENCY_KEY};
pub use response::{CommandBody, CommandResponse};

use crate::limits::{LimitSettings, Limits};
use cache::AggregateCache;
pub use decide::Answer;
use decide::Run;
use idempotency::Idempotency;
use metrics::{CommandMetrics, Outcome};
use turns::Turns;

/// Shared dependencies of the executor.
#[derive(Clone)]
pub struct Executor {
    pub store: Arc<dyn EventStore>,
    pub upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    cache: AggregateCache,
    turns: Turns,
    limits: Arc<Limits>,
    metrics: CommandMetrics,
}

impl Executor {
    pub fn new(store: Arc<dyn EventStore>, upcasters: Arc<Vec<Box<dyn EventUpcaster>>>) -> Self {
        Self {
            store,
            upcasters,
            cache: AggregateCache::default(),
            turns: Turns::default(),
            limits: Arc::new(Limits::new(&LimitSettings::default())),
            metrics: CommandMetrics::default(),
        }
    }

    /// The same executor, counting commands and timing appends in `metrics` (once per
    /// process: `meetings_commands_total`, `meetings_event_store_append_seconds`).
    pub fn with_metrics(self, metrics: &platform::metrics::Metrics) -> Self {
        self.metrics.register(metrics);
        self
    }

    /// The same executor, counting each user's commands in `limits`.
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = limits;
        self
    }

    /// Loads and rebuilds an aggregate: the cached state (or the aggregate before its first
    /// event) plus the events after it.
    pub async fn load<A: Aggregate + Clone + 'static>(
        &self,
        id: Uuid,
    ) -> Result<AggregateState<A>, ApiError> {
        Ok(self.cache.load(&*self.store, &self.upcasters, id).await?)
    }

    /// The answer recorded for `request`'s `Idempotency-Key` by an earlier copy of it, if any
    /// (422 when the key was used for another request): for handlers that must not redo
    /// their own checks on a retry.
    pub async fn replayed<A: Aggregate>(
        &self,
        request: &CommandRequest<'_, A>,
    ) -> Result<Option<Response>, ApiError> {
        Idempotency::of(request).recorded(&*self.store).await
    }

    /// The recorded answer when `request` is a retry; else charges its caller for a new
    /// command (a replay costs nothing).
    async fn admit<A: Aggregate>(
        &self,
        request: &CommandRequest<'_, A>,
        idempotency: &Idempotency,
    ) -> Result<Option<Response>, ApiError> {
        if let Some(replayed) = idempotency.recorded(&*self.store).await? {
            return Ok(Some(replayed));
        }
        if let (Some(actor), false) = (request.actor_id, request.charged) {
            self.limits.command(actor)?;
        }
        Ok(None)
    }

    /// Runs the commands as one atomic decision and answers like `docs/api.md` says.
    pub async fn execute<A>(
        &self,
        services: &A::Services,
        request: CommandRequest<'_, A>,
    ) -> Result<Response, ApiError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
        A::Command: Clone,
    {
        let run = match self.prepare(services, request).await? {
            Ok(run) => run,
            Err(replayed) => return Ok(replayed),
        };
        let _turn = self.turn(&run.request).await;
        run.answer().await
    }

    /// [`Executor::execute`] for a caller that answers itself (an import of many meetings):
    /// the commit's outcome instead of the HTTP answer.
    pub async fn execute_for_outcome<A>(
        &self,
        services: &A::Services,
        request: CommandRequest<'_, A>,
    ) -> Result<Answer, ApiError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
        A::Command: Clone,
    {
        let run = match self.prepare(services, request).await? {
            Ok(run) => run,
            Err(replayed) => return Ok(Answer::Replayed(replayed)),
        };
        let _turn = self.turn(&run.request).await;
        run.outcome().await
    }

    /// The run of `request`, or the recorded answer when it is a retry.
    async fn prepare<'a, A>(
        &'a self,
        services: &'a A::Services,
        request: CommandRequest<'a, A>,
    ) -> Result<Result<Run<'a, A>, Response>, ApiError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
        A::Command: Clone,
    {
        let idempotency = Idempotency::of(&request);
        let count = |outcome| self.metrics.count(A::TYPE, request.fingerprint.0, outcome);
        match self.admit(&request, &idempotency).await {
            Ok(None) => {}
            Ok(Some(replayed)) => {
                count(Outcome::Replayed);
                return Ok(Err(replayed));
            }
            Err(error) => {
                count(Outcome::of_error(&error));
                return Err(error);
            }
        }
        Ok(Ok(Run {
            store: &*self.store,
            upcasters: &self.upcasters,
            cache: &self.cache,
            metrics: &self.metrics,
            appended: Default::default(),
            services,
            request,
            idempotency,
        }))
    }

    /// The aggregate's turn in this process; none for an id this request generated (nobody
    /// else can be writing it).
    async fn turn<A: Aggregate>(
        &self,
        request: &CommandRequest<'_, A>,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match request.fresh_id {
            true => None,
            false => Some(self.turns.take(request.aggregate_id).await),
        }
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
