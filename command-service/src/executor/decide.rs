//! The decision loop of one command, as a state machine ([`Step`]): decide on the freshest
//! state this process has, commit on the sequence it was decided on, and decide again when
//! that state turns out stale.
//!
//! Without `If-Match` a concurrency conflict re-runs the command against the fresh state (the
//! decision is re-made, so nothing is overwritten); with `If-Match` the client asked for a
//! specific version and gets 412 instead. After a few lost races the answer is 409.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use domain::DomainError;
use platform::http::ApiError;
use platform::store::{
    encode_event, snapshot, AggregateState, Commit, CommitOutcome, EventMetadata, EventStore,
    NewEvent, StoreError,
};
use uuid::Uuid;

use super::cache::AggregateCache;
use super::idempotency::Idempotency;
use super::metrics::{CommandMetrics, Outcome};
use super::request::CommandRequest;
use super::response::CommandResponse;

/// How many decisions a command gets before answering 409: the cache's guess, if any, counts
/// as one, and so does every race lost to another writer.
pub(super) const MAX_DECISIONS: usize = 8;

/// How far the state a decision is made on can be trusted.
#[derive(Debug, Clone, Copy)]
enum Basis {
    /// A cache entry, used without reading the store: another replica may have appended
    /// since. A commit decided on it is safe (it conflicts on the sequence if the entry is
    /// stale); any other answer is made again on the state the store holds.
    Guess,
    /// Just loaded from the store, or the empty state of an id this request generated
    /// (nobody else has it; should it exist after all, the commit conflicts).
    Known,
}

/// What the commands come to on one state.
enum Decision<A: Aggregate> {
    /// `If-Match` named this version, not the state's.
    Stale { expected: i64 },
    /// The aggregate refused a command; nothing is written.
    Refused(DomainError),
    /// The commands change nothing.
    Unchanged,
    /// The events to append; they are already applied to the state.
    Changed(Vec<A::Event>),
}

/// Where the loop of one command stands. Answers that are errors (a refusal, 412, 409) leave
/// the loop as `Err` from the step that reaches them.
enum Step<A: Aggregate> {
    /// Decide on this state.
    Decide(AggregateState<A>, Basis),
    /// Bring the aggregate up to date from the store, then decide on it.
    Load,
    /// Append these events on the sequence of the state they were decided on.
    Commit(AggregateState<A>, Vec<A::Event>),
    /// Another writer appended first: back off, then load and decide again.
    Retry,
    /// The answer.
    Done(Answer),
}

/// How a command ended well: with the outcome of its commit (or of the unchanged state), or
/// with the answer recorded for an earlier copy of it.
pub enum Answer {
    Committed(CommitOutcome),
    Replayed(Response),
}

/// One command on its way through the loop.
pub(super) struct Run<'a, A: Aggregate> {
    pub(super) store: &'a dyn EventStore,
    pub(super) upcasters: &'a [Box<dyn EventUpcaster>],
    pub(super) cache: &'a AggregateCache,
    pub(super) metrics: &'a CommandMetrics,
    /// Set once the commands' events are appended (`committed`, not `unchanged`).
    pub(super) appended: AtomicBool,
    pub(super) services: &'a A::Services,
    pub(super) request: CommandRequest<'a, A>,
    pub(super) idempotency: Idempotency,
}

impl<A> Run<'_, A>
where
    A: Aggregate<Error = DomainError> + Clone + 'static,
    A::Command: Clone,
{
    /// Runs the loop to its answer.
    pub(super) async fn answer(self) -> Result<Response, ApiError> {
        let answer = self.outcome().await?;
        Ok(match answer {
            Answer::Committed(outcome) => self.success(outcome),
            Answer::Replayed(response) => response,
        })
    }

    /// Runs the loop to its end, and counts how it ended.
    pub(super) async fn outcome(&self) -> Result<Answer, ApiError> {
        let answer = self.steps().await;
        let outcome = match &answer {
            Ok(Answer::Replayed(_)) => Outcome::Replayed,
            Ok(Answer::Committed(_)) if self.appended.load(Ordering::Relaxed) => Outcome::Committed,
            Ok(Answer::Committed(_)) => Outcome::Unchanged,
            Err(error) => Outcome::of_error(error),
        };
        self.metrics
            .count(A::TYPE, self.request.fingerprint.0, outcome);
        answer
    }

    /// The steps of the loop, from the first decision to the answer.
    async fn steps(&self) -> Result<Answer, ApiError> {
        let mut decisions = 0;
        let mut step = self.start();
        loop {
            step = match step {
                Step::Decide(state, basis) => {
                    decisions += 1;
                    self.decide(state, basis).await?
                }
                Step::Load if decisions == MAX_DECISIONS => {
                    return Err(ApiError::Conflict(
                        "the resource is being changed by others right now; retry".into(),
                    ))
                }
                Step::Load => {
                    let id = self.request.aggregate_id;
                    let state = self.cache.load(self.store, self.upcasters, id).await?;
                    Step::Decide(state, Basis::Known)
                }
                Step::Commit(state, events) => self.commit(state, events).await?,
                Step::Retry => {
                    let attempt = decisions - 1;
                    tracing::debug!(attempt, "lost a race on the aggregate, deciding again");
                    // Jittered backoff spreads the contenders out instead of re-colliding.
                    let jitter = rand::random::<u64>() % (2 + 2 * attempt as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    Step::Load
                }
                Step::Done(answer) => return Ok(answer),
            };
        }
    }

    /// Reads the store only when it has to: a new id starts from the empty state, a cached
    /// aggregate from its entry; anything else is loaded.
    fn start(&self) -> Step<A> {
        if self.request.fresh_id {
            return Step::Decide(AggregateState::default(), Basis::Known);
        }
        match self.cache.get::<A>(self.request.aggregate_id) {
            Some(state) => Step::Decide(state, Basis::Guess),
            None => Step::Load,
        }
    }

    async fn decide(
        &self,
        mut state: AggregateState<A>,
        basis: Basis,
    ) -> Result<Step<A>, ApiError> {
        let decision = self.decision(&mut state).await;
        Ok(match (decision, basis) {
            (Decision::Changed(events), _) => Step::Commit(state, events),
            // Only a commit is ever answered from a guess: the rest is verified first.
            (_, Basis::Guess) => Step::Load,
            (Decision::Stale { expected }, Basis::Known) => {
                // A retry whose first copy succeeded moved the version itself.
                match self.idempotency.recorded(self.store).await? {
                    Some(replayed) => Step::Done(Answer::Replayed(replayed)),
                    None => {
                        return Err(ApiError::PreconditionFailed(format!(
                            "If-Match \"{expected}\" is stale: the current version is \"{}\"",
                            state.version
                        )))
                    }
                }
            }
            (Decision::Refused(error), Basis::Known) => return Err(error.into()),
            // Nothing changed: answer with the current version, append nothing.
            (Decision::Unchanged, Basis::Known) => {
                let outcome = self.current_outcome(state.version).await?;
                Step::Done(Answer::Committed(outcome))
            }
        })
    }

    /// Runs the commands on `state` as one atomic decision.
    async fn decision(&self, state: &mut AggregateState<A>) -> Decision<A> {
        if let Some(expected) = self.request.meta.if_match {
            if state.version != expected {
                return Decision::Stale { expected };
            }
        }
        match decide_commands(state, self.request.commands.iter().cloned(), self.services).await {
            Err(error) => Decision::Refused(error),
            Ok(events) if events.is_empty() => Decision::Unchanged,
            Ok(events) => Decision::Changed(events),
        }
    }

    async fn commit(
        &self,
        mut state: AggregateState<A>,
        events: Vec<A::Event>,
    ) -> Result<Step<A>, ApiError> {
        let before = state.version;
        let commit = Commit {
            aggregate_type: A::TYPE,
            aggregate_id: self.request.aggregate_id,
            expected_sequence: state.version,
            prev_hash: state.last_hash.take(),
            events: new_events(&self.request, &events)?,
            side_effects: self.request.side_effects.clone(),
            idempotency: self.idempotency.record(),
        };
        let error = match self.metrics.timed_append(self.store.commit(commit)).await {
            Ok(outcome) => {
                self.appended.store(true, Ordering::Relaxed);
                // The state after the commit (the events are applied already), so the
                // aggregate's next command needs no read at all.
                state.version = outcome.version;
                state.last_hash = Some(outcome.last_hash.clone());
                snapshot::after_commit(self.store, self.request.aggregate_id, before, &state).await;
                self.cache.put(self.request.aggregate_id, state);
                return Ok(Step::Done(Answer::Committed(outcome)));
            }
            Err(error) => error,
        };
        // Each of these may mean that this very request's twin (same key) won, e.g. a twin
        // registering the same email: then the twin's answer is this request's too.
        let twin_may_have_won = matches!(
            error,
            StoreError::Concurrency | StoreError::Duplicate(_) | StoreError::IdempotencyKeyTaken
        );
        if twin_may_have_won {
            if let Some(replayed) = self.idempotency.recorded(self.store).await? {
                return Ok(Step::Done(Answer::Replayed(replayed)));
            }
        }
        match error {
            StoreError::Concurrency => match self.request.meta.if_match {
                Some(expected) => Err(ApiError::PreconditionFailed(format!(
                    "version {expected} was superseded while the command ran"
                ))),
                None => Ok(Step::Retry),
            },
            // The twin holding the key has not committed its record yet.
            StoreError::IdempotencyKeyTaken => {
                Err(ApiError::Conflict("the idempotency key is in use".into()))
            }
            other => Err(other.into()),
        }
    }

    /// The position of the aggregate's event at `version`, for a command that changed nothing.
    async fn current_outcome(&self, version: i64) -> Result<CommitOutcome, ApiError> {
        let id = self.request.aggregate_id;
        let events = self.store.load_page(A::TYPE, id, version - 1, 1).await?;
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

    fn success(&self, outcome: CommitOutcome) -> Response {
        CommandResponse {
            status: self.request.success,
            outcome,
            location: self.request.location.clone(),
            message_id: self.request.message_id,
        }
        .into_response()
    }
}

/// Runs `commands` on `state` as one decision: the events they record, already applied to
/// `state` (later commands see the earlier ones' events), or the first refusal.
pub(super) async fn decide_commands<A: Aggregate>(
    state: &mut AggregateState<A>,
    commands: impl IntoIterator<Item = A::Command>,
    services: &A::Services,
) -> Result<Vec<A::Event>, A::Error> {
    let sink = EventSink::<A>::default();
    for command in commands {
        // The sink applies each event to the aggregate, so later commands see it.
        state.aggregate.handle(command, services, &sink).await?;
    }
    Ok(sink.collect().await)
}

/// The events as appended, with the request's audit metadata.
pub(super) fn new_events<A: Aggregate>(
    request: &CommandRequest<'_, A>,
    events: &[A::Event],
) -> Result<Vec<NewEvent>, StoreError> {
    let meta = request.meta;
    let recorded_at = Utc::now();
    events
        .iter()
        .map(|event| {
            let (event_type, event_version, payload) = encode_event(event)?;
            Ok(NewEvent {
                event_type,
                event_version,
                payload,
                metadata: EventMetadata {
                    event_id: Uuid::now_v7(),
                    actor_id: request.actor_id,
                    request_id: meta.request_id.to_string(),
                    correlation_id: meta.request_id.correlation_id().to_string(),
                    causation_id: meta.request_id.to_string(),
                    traceparent: Some(meta.request_id.traceparent().to_string()),
                },
                recorded_at,
            })
        })
        .collect()
}
