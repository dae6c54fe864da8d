//! Metrics of the executor: every command by aggregate type, route and outcome, and the time
//! of each append to the event store.

use std::future::Future;
use std::time::Instant;

use axum::http::StatusCode;
use platform::http::ApiError;
use platform::metrics::{seconds_histogram, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// `user` or `meeting`.
    pub aggregate: &'static str,
    /// The route template the command came in on (`/v1/meetings/{id}/cancel`): bounded, and
    /// names the command for whoever reads the API.
    pub command: &'static str,
    /// [`Outcome::label`].
    pub outcome: &'static str,
}

/// How one command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its events were appended.
    Committed,
    /// It changed nothing (nothing appended).
    Unchanged,
    /// A retry answered with what its `Idempotency-Key`'s first request got.
    Replayed,
    /// The domain or the request refused it (4xx other than below).
    Refused,
    /// `If-Match` named an older version (412).
    Stale,
    /// Lost too many races, or its idempotency key is in use (409).
    Conflict,
    /// Over a per-caller limit (429).
    Throttled,
    /// The store or something else failed (5xx).
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Unchanged => "unchanged",
            Outcome::Replayed => "replayed",
            Outcome::Refused => "refused",
            Outcome::Stale => "stale",
            Outcome::Conflict => "conflict",
            Outcome::Throttled => "throttled",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome a command answered with `error` had.
    pub fn of_error(error: &ApiError) -> Self {
        match error.status() {
            StatusCode::PRECONDITION_FAILED => Outcome::Stale,
            StatusCode::CONFLICT => Outcome::Conflict,
            StatusCode::TOO_MANY_REQUESTS => Outcome::Throttled,
            status if status.is_server_error() => Outcome::Failed,
            _ => Outcome::Refused,
        }
    }
}

/// Counters and timings of the executor; unregistered (counting into nothing) until
/// [`CommandMetrics::register`].
#[derive(Clone)]
pub struct CommandMetrics {
    pub commands: Family<CommandLabels, Counter>,
    /// One append (one transaction: events, side effects, idempotency record), whether it
    /// committed or conflicted.
    pub append_seconds: Histogram,
}

impl Default for CommandMetrics {
    fn default() -> Self {
        Self {
            commands: Family::default(),
            append_seconds: seconds_histogram(),
        }
    }
}

impl CommandMetrics {
    /// Adds these metrics to the process registry (once per process).
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(|registry| {
            registry.register(
                "commands",
                "Commands answered, by aggregate type, route template and outcome (committed, \
                 unchanged, replayed, refused, stale, conflict, throttled, failed)",
                self.commands.clone(),
            );
            registry.register(
                "event_store_append_seconds",
                "Time of one append to the event store (events, side effects and idempotency \
                 record in one transaction), conflicts included",
                self.append_seconds.clone(),
            );
        });
    }

    /// Counts one command.
    pub fn count(&self, aggregate: &'static str, command: &'static str, outcome: Outcome) {
        self.commands
            .get_or_create(&CommandLabels {
                aggregate,
                command,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Runs `append` (a commit to the event store) and records how long it took.
    pub async fn timed_append<F: Future>(&self, append: F) -> F::Output {
        let started = Instant::now();
        let outcome = append.await;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_apart_by_status() {
        let cases = [
            (ApiError::PreconditionFailed("x".into()), Outcome::Stale),
            (ApiError::Conflict("x".into()), Outcome::Conflict),
            (
                ApiError::TooManyRequests {
                    detail: "x".into(),
                    retry_after: 1,
                },
                Outcome::Throttled,
            ),
            (ApiError::unavailable("x"), Outcome::Failed),
            (ApiError::Internal(anyhow::anyhow!("x")), Outcome::Failed),
            (ApiError::NotFound("x".into()), Outcome::Refused),
            (ApiError::Forbidden("x".into()), Outcome::Refused),
            (
                ApiError::Validation {
                    detail: "x".into(),
                    errors: vec![],
                },
                Outcome::Refused,
            ),
        ];
        for (error, outcome) in cases {
            assert_eq!(Outcome::of_error(&error), outcome, "{error:?}");
        }
    }

    #[tokio::test]
    async fn commands_and_appends_appear_in_the_registry() {
        let metrics = Metrics::new();
        let commands = CommandMetrics::default();
        commands.register(&metrics);
        commands.count("meeting", "/v1/meetings/{id}/cancel", Outcome::Committed);
        commands.timed_append(async {}).await;
        let text = metrics.encode();
        assert!(
            text.contains(
                "meetings_commands_total{aggregate=\"meeting\",command=\"/v1/meetings/{id}/cancel\",outcome=\"committed\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("meetings_event_store_append_seconds_count 1"),
            "{text}"
        );
    }
}
