//! What one connection may cost: the tuning of connections, the flood limit, and the
//! capacity errors that end a connection when it exceeds them.

use std::time::Duration;

use tokio::time::Instant;

/// Tuning of connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub auth_timeout: Duration,
    /// Messages buffered for a connection before it counts as too slow.
    pub queue: usize,
    pub ping_interval: Duration,
    /// Closed when nothing (not even a pong) arrived for this long.
    pub idle_timeout: Duration,
    /// Client messages per second allowed on average, and the burst above it.
    pub messages_per_second: f64,
    pub burst: f64,
    /// A resume that would replay more than this answers `reset` instead.
    pub max_replay: usize,
    /// How long a `user:me` resume waits for the read models to catch up.
    pub replay_wait: Duration,
    /// How often an instance tells the others whom it has present.
    pub presence_heartbeat: Duration,
    /// A remote instance's presence is dropped when not refreshed for this long.
    pub presence_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(5),
            queue: 1024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            messages_per_second: 20.0,
            burst: 100.0,
            max_replay: 10_000,
            replay_wait: Duration::from_secs(2),
            presence_heartbeat: Duration::from_secs(5),
            presence_expiry: Duration::from_secs(15),
        }
    }
}

/// A limit the client went over; the connection is closed (`close::Close` maps it to a
/// code). The text is the close frame's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// A frame or message over `MAX_FRAME` (64 KiB), refused by the socket itself.
    #[error("frame too big (limit 64 KiB)")]
    MessageTooLarge,
    /// The connection's queue overflowed ([`Limits::queue`]): the client must resume.
    #[error("too slow: resume with `since`")]
    SlowConsumer,
    /// More messages than [`Limits::messages_per_second`] and [`Limits::burst`] allow.
    #[error("flooding")]
    Flooding,
}

impl CapacityError {
    /// A read error that means the client sent more than the frame limit: tungstenite's
    /// `Error::Capacity`, which axum boxes into `axum::Error`.
    pub fn from_transport(error: &axum::Error) -> Option<Self> {
        use std::error::Error as _;
        use tokio_tungstenite::tungstenite::Error as Transport;
        match error.source()?.downcast_ref::<Transport>()? {
            Transport::Capacity(_) => Some(CapacityError::MessageTooLarge),
            _ => None,
        }
    }
}

/// Token bucket against flooding: [`Limits::burst`] messages at once, refilled at
/// [`Limits::messages_per_second`].
pub(super) struct FloodLimit {
    tokens: f64,
    refilled: Instant,
    per_second: f64,
    burst: f64,
}

impl FloodLimit {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            tokens: limits.burst,
            refilled: Instant::now(),
            per_second: limits.messages_per_second,
            burst: limits.burst,
        }
    }

    /// Spends one token for a client message.
    pub(super) fn take(&mut self) -> Result<(), CapacityError> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens < 1.0 {
            return Err(CapacityError::Flooding);
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_size_limit_read_error_is_a_capacity_error() {
        use tokio_tungstenite::tungstenite::error::{CapacityError as Limit, Error};
        let too_long = Error::Capacity(Limit::MessageTooLong {
            size: 70 * 1024,
            max_size: 64 * 1024,
        });
        assert_eq!(
            CapacityError::from_transport(&axum::Error::new(too_long)),
            Some(CapacityError::MessageTooLarge)
        );
        let closed = axum::Error::new(Error::ConnectionClosed);
        assert_eq!(CapacityError::from_transport(&closed), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_the_rate_refills_it() {
        let limits = Limits {
            messages_per_second: 10.0,
            burst: 3.0,
            ..Limits::default()
        };
        let mut flood = FloodLimit::new(&limits);
        for _ in 0..3 {
            assert_eq!(flood.take(), Ok(()));
        }
        assert_eq!(flood.take(), Err(CapacityError::Flooding));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(flood.take(), Ok(()));
        assert_eq!(flood.take(), Err(CapacityError::Flooding));
        // Waiting long does not bank more than the burst.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(flood.take(), Ok(()));
        }
        assert_eq!(flood.take(), Err(CapacityError::Flooding));
    }
}
