//! A command on an existing aggregate that starts a new one (a series split into two): both
//! decided on the existing aggregate's current state and appended in one transaction, so
//! nobody ever sees one without the other.
//!
//! Simpler than the single-aggregate loop (`decide`): a split is rare, so it always decides on
//! state loaded from the store, and it never answers "unchanged".

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use domain::DomainError;
use platform::http::ApiError;
use platform::store::{AggregateState, Commit, StoreError};
use uuid::Uuid;

use super::decide::{decide_commands, new_events, MAX_DECISIONS};
use super::idempotency::{Idempotency, IDEMPOTENT_REPLAYED};
use super::metrics::Outcome;
use super::request::CommandRequest;
use super::response::CommandResponse;
use super::Executor;

impl Executor {
    /// Runs `request`'s commands on its aggregate together with the commands creating
    /// `new_id`, which `new_commands` derives from the existing aggregate's state (before
    /// `request`'s commands). Answered with the new aggregate's outcome (its `Location`, the
    /// transaction's last position).
    pub async fn execute_with_new<A>(
        &self,
        services: &A::Services,
        request: CommandRequest<'_, A>,
        new_id: Uuid,
        new_commands: impl Fn(&A) -> Result<Vec<A::Command>, DomainError>,
    ) -> Result<Response, ApiError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
        A::Command: Clone,
    {
        let command = request.fingerprint.0;
        let answer = self
            .split_off(services, request, new_id, new_commands)
            .await;
        let outcome = match &answer {
            // It never answers "unchanged": a success appended, unless it is a replay.
            Ok(response) if response.headers().contains_key(&IDEMPOTENT_REPLAYED) => {
                Outcome::Replayed
            }
            Ok(_) => Outcome::Committed,
            Err(error) => Outcome::of_error(error),
        };
        self.metrics.count(A::TYPE, command, outcome);
        answer
    }

    /// [`Executor::execute_with_new`] without counting it.
    async fn split_off<A>(
        &self,
        services: &A::Services,
        request: CommandRequest<'_, A>,
        new_id: Uuid,
        new_commands: impl Fn(&A) -> Result<Vec<A::Command>, DomainError>,
    ) -> Result<Response, ApiError>
    where
        A: Aggregate<Error = DomainError> + Clone + 'static,
        A::Command: Clone,
    {
        let idempotency = Idempotency::of(&request);
        if let Some(replayed) = self.admit(&request, &idempotency).await? {
            return Ok(replayed);
        }
        let _turn = self.turns.take(request.aggregate_id).await;
        for attempt in 0..MAX_DECISIONS {
            let mut state: AggregateState<A> = self.load(request.aggregate_id).await?;
            if let Some(expected) = request.meta.if_match {
                if state.version != expected {
                    if let Some(replayed) = idempotency.recorded(&*self.store).await? {
                        return Ok(replayed);
                    }
                    return Err(ApiError::PreconditionFailed(format!(
                        "If-Match \"{expected}\" is stale: the current version is \"{}\"",
                        state.version
                    )));
                }
            }
            let creating = new_commands(&state.aggregate)?;
            let events =
                decide_commands(&mut state, request.commands.iter().cloned(), services).await?;
            let mut created = AggregateState::<A>::default();
            let created_events = decide_commands(&mut created, creating, services).await?;
            if events.is_empty() || created_events.is_empty() {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "BUG: a command creating an aggregate recorded nothing"
                )));
            }
            let commits = vec![
                Commit {
                    aggregate_type: A::TYPE,
                    aggregate_id: request.aggregate_id,
                    expected_sequence: state.version,
                    prev_hash: state.last_hash.take(),
                    events: new_events(&request, &events)?,
                    side_effects: vec![],
                    idempotency: None,
                },
                Commit {
                    aggregate_type: A::TYPE,
                    aggregate_id: new_id,
                    expected_sequence: 0,
                    prev_hash: None,
                    events: new_events(&request, &created_events)?,
                    side_effects: request.side_effects.clone(),
                    idempotency: idempotency.record(),
                },
            ];
            let error = match self
                .metrics
                .timed_append(self.store.commit_together(commits))
                .await
            {
                Ok(outcomes) => {
                    for (mut state, outcome) in [state, created].into_iter().zip(&outcomes) {
                        state.version = outcome.version;
                        state.last_hash = Some(outcome.last_hash.clone());
                        self.cache.put(outcome.aggregate_id, state);
                    }
                    let outcome = outcomes.last().cloned().expect("BUG: two commits");
                    return Ok(CommandResponse {
                        status: request.success,
                        outcome,
                        location: request.location.clone(),
                        message_id: None,
                    }
                    .into_response());
                }
                Err(error) => error,
            };
            if matches!(
                error,
                StoreError::Concurrency
                    | StoreError::Duplicate(_)
                    | StoreError::IdempotencyKeyTaken
            ) {
                if let Some(replayed) = idempotency.recorded(&*self.store).await? {
                    return Ok(replayed);
                }
            }
            match error {
                StoreError::Concurrency if request.meta.if_match.is_some() => {
                    return Err(ApiError::PreconditionFailed(
                        "the version was superseded while the command ran".into(),
                    ))
                }
                StoreError::Concurrency => {
                    let jitter = rand::random::<u64>() % (2 + 2 * attempt as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                StoreError::IdempotencyKeyTaken => {
                    return Err(ApiError::Conflict("the idempotency key is in use".into()))
                }
                other => return Err(other.into()),
            }
        }
        Err(ApiError::Conflict(
            "the resource is being changed by others right now; retry".into(),
        ))
    }
}
