//! Read-your-writes on demand (docs/architecture.md, guarantee 6): how far the read models are, and the
//! `X-Min-Position` middleware that waits for them.
//!
//! The projector commits its checkpoint `projection_checkpoints(projection = 'read_models')` and,
//! in the same transaction, `SELECT pg_notify('meetings_projected', '<position>')`. One
//! [`ProjectionWatch`] per process LISTENs on that channel and publishes the highest position
//! seen into a `tokio::sync::watch`, so a waiting request wakes up on the notification itself,
//! never by polling. After every (re)connect the checkpoint row is read again *after* LISTEN is
//! in place, so a notification sent while the connection was down cannot be missed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform::auth::{AuthUser, JwtKeys};
use platform::http::ApiError;
use platform::metrics::Metrics;
use platform::store::Position;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::repository::ReadModels;

/// The NOTIFY channel the projector signals on; the payload is the new checkpoint position.
pub const CHANNEL: &str = platform::projection::NOTIFY_CHANNEL;

/// Request header asking to see at least this position (docs/api.md "Common").
pub static X_MIN_POSITION: HeaderName = HeaderName::from_static("x-min-position");

/// Pause before reconnecting after the listener connection failed, so a database outage does
/// not turn into a connection storm. Waiting requests are unaffected: they time out on their own.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The highest position the read models are known to include, kept current by one background
/// listener task. Cheap to clone; the task stops when the last clone is dropped.
#[derive(Clone)]
pub struct ProjectionWatch {
    receiver: watch::Receiver<Option<Position>>,
    /// The listener (PostgreSQL); `None` when the projector runs in this process and
    /// publishes its checkpoints itself (embedded mode).
    _task: Option<Arc<AbortOnDrop>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a wait for a position ended without reaching it.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The read models did not reach the position within the allowed time.
    TimedOut,
}

impl ProjectionWatch {
    /// Starts the listener task on a connection of its own (taken from `pool`'s options).
    pub fn start(pool: PgPool) -> Self {
        let (sender, receiver) = watch::channel(None);
        let task = tokio::spawn(listen_forever(pool, sender));
        Self {
            receiver,
            _task: Some(Arc::new(AbortOnDrop(task))),
        }
    }

    /// Follows the checkpoints an in-process projector publishes on `receiver` (embedded
    /// mode: no notification channel between processes).
    pub fn following(receiver: watch::Receiver<Option<Position>>) -> Self {
        Self {
            receiver,
            _task: None,
        }
    }

    /// The highest applied position seen so far (`None` before the first checkpoint).
    pub fn current(&self) -> Option<Position> {
        *self.receiver.borrow()
    }

    /// Resolves once the read models include `position`, or fails after `timeout`.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<(), WaitError> {
        let mut receiver = self.receiver.clone();
        let reached = async move {
            receiver
                .wait_for(|seen| seen.is_some_and(|seen| seen >= position))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(())) => Ok(()),
            // The sender lives as long as the task, which lives as long as `self`; treat a
            // closed channel like a timeout rather than panicking.
            Ok(Err(_)) | Err(_) => Err(WaitError::TimedOut),
        }
    }
}

async fn listen_forever(pool: PgPool, sender: watch::Sender<Option<Position>>) {
    loop {
        match listen_once(&pool, &sender).await {
            Ok(()) => tracing::warn!("projection listener connection lost; reconnecting"),
            Err(error) => {
                tracing::warn!(error = %error, "projection listener failed; reconnecting")
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// One connection's life: LISTEN, then read the checkpoint (so nothing committed in between
/// is missed), then follow the notifications until the connection drops.
async fn listen_once(
    pool: &PgPool,
    sender: &watch::Sender<Option<Position>>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    if let Some(position) = platform::projection::checkpoint(pool).await? {
        publish(sender, position);
    }
    loop {
        match listener.try_recv().await? {
            Some(notification) => match notification.payload().parse::<Position>() {
                Ok(position) => publish(sender, position),
                Err(_) => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring a {CHANNEL} notification that is not a position"
                ),
            },
            // The connection dropped: notifications may have been missed. Return so that the
            // caller reconnects and reads the checkpoint again, instead of letting the listener
            // reconnect silently on the next call.
            None => return Ok(()),
        }
    }
}

/// Positions only move forward: a late or duplicate notification never lowers the mark.
fn publish(sender: &watch::Sender<Option<Position>>, position: Position) {
    sender.send_if_modified(|seen| {
        if seen.is_none_or(|seen| seen < position) {
            *seen = Some(position);
            true
        } else {
            false
        }
    });
}

/// Outcome label of `meetings_min_position_waits`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    /// `reached` or `timed_out`.
    pub outcome: &'static str,
}

/// What the `X-Min-Position` middleware needs.
#[derive(Clone)]
pub struct MinPositionState {
    pub watch: ProjectionWatch,
    /// Asked whether a position not yet projected was ever written.
    pub read_models: Arc<dyn ReadModels>,
    /// Upper bound of one request's wait (`MEETINGS_MIN_POSITION_WAIT`, default 2 s).
    pub max_wait: Duration,
    /// The caller is authenticated before waiting, so anonymous requests cannot hold
    /// connections open for the whole wait.
    pub jwt: Arc<JwtKeys>,
    /// Waits by outcome: a rising `timed_out` count means the projector lags behind.
    pub waits: Family<WaitLabels, Counter>,
}

impl MinPositionState {
    pub fn new(
        watch: ProjectionWatch,
        read_models: Arc<dyn ReadModels>,
        max_wait: Duration,
        jwt: Arc<JwtKeys>,
        metrics: &Metrics,
    ) -> Self {
        let waits = Family::<WaitLabels, Counter>::default();
        metrics.register(|registry| {
            registry.register(
                "min_position_waits",
                "Queries that waited for X-Min-Position, by outcome",
                waits.clone(),
            );
        });
        Self {
            watch,
            read_models,
            max_wait,
            jwt,
            waits,
        }
    }
}

impl FromRef<MinPositionState> for Arc<JwtKeys> {
    fn from_ref(state: &MinPositionState) -> Self {
        state.jwt.clone()
    }
}

/// Middleware of every query route: with `X-Min-Position`, wait (bounded) until the read models
/// include that position. The token is checked first (401 without waiting); a malformed
/// position is 400, one past the newest stored event 422; a wait that runs out is 503 with
/// `Retry-After: 1`. The wait happens before
/// the handler runs, so the handler's reads see the projected state.
pub async fn min_position(
    State(state): State<MinPositionState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(&X_MIN_POSITION) else {
        return next.run(request).await;
    };
    let position = value.to_str().ok().map(|v| v.trim().parse::<Position>());
    // Who asks comes first, as in the handlers: without a valid token the answer is 401,
    // whatever else is wrong with the request.
    let (mut parts, body) = request.into_parts();
    if let Err(rejection) = AuthUser::from_request_parts(&mut parts, &state).await {
        return rejection.into_response();
    }
    let request = Request::from_parts(parts, body);
    let Some(Ok(position)) = position else {
        return ApiError::BadRequest(
            "X-Min-Position must be a position as returned by a command (32 hexadecimal digits)"
                .into(),
        )
        .into_response();
    };
    if state.watch.current().is_none_or(|seen| seen < position) {
        match state.read_models.written(position).await {
            Ok(true) => {}
            Ok(false) => {
                return ApiError::invalid(
                    "X-Min-Position",
                    "is beyond the newest event: pass a position returned by this API",
                )
                .into_response()
            }
            Err(error) => return ApiError::from(error).into_response(),
        }
    }
    let outcome = state.watch.wait_for(position, state.max_wait).await;
    state
        .waits
        .get_or_create(&WaitLabels {
            outcome: if outcome.is_ok() {
                "reached"
            } else {
                "timed_out"
            },
        })
        .inc();
    match outcome {
        Ok(()) => next.run(request).await,
        Err(WaitError::TimedOut) => ApiError::unavailable(format!(
            "the read models have not reached position {position} yet; retry shortly"
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(n: i64) -> Position {
        Position {
            transaction_id: 1,
            id: n,
        }
    }

    #[test]
    fn the_published_position_never_moves_backwards() {
        let (sender, receiver) = watch::channel(None);
        publish(&sender, position(5));
        publish(&sender, position(3));
        assert_eq!(*receiver.borrow(), Some(position(5)));
        publish(&sender, position(7));
        assert_eq!(*receiver.borrow(), Some(position(7)));
    }
}
