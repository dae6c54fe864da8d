//! Metrics of the gateway's connections: how many are open, and why each one ended.

use platform::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::close::{Close, Ending};
use super::limits::CapacityError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    /// The close code the server sent (`4429`), or `none` when the client closed or the
    /// socket failed.
    pub code: &'static str,
    /// Why: `disconnected` (the client closed or went away), `auth_timeout`, `bad_token`,
    /// `not_auth`, `expired`, `revoked`, `idle`, `shutting_down`, `message_too_large`,
    /// `slow_consumer`, `flooding`.
    pub reason: &'static str,
}

/// Connection metrics of one gateway; unregistered (counting into nothing) until
/// [`ConnectionMetrics::register`].
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub closed: Family<ClosedLabels, Counter>,
}

impl ConnectionMetrics {
    /// Adds these metrics to the process registry (once per process).
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(|registry| {
            registry.register(
                "realtime_connections",
                "Open websocket connections, authenticated or not",
                self.open.clone(),
            );
            registry.register(
                "realtime_connections_closed",
                "Websocket connections ended, by the close code the server sent (none: the client closed or the socket failed) and reason",
                self.closed.clone(),
            );
        });
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub(super) fn opened(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }

    /// Counts how a connection ended.
    pub(super) fn ended(&self, ending: &Ending) {
        self.closed.get_or_create(&labels(ending)).inc();
    }
}

/// One open connection in [`ConnectionMetrics::open`]; leaves it when dropped, however the
/// connection's task ends.
pub(super) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn labels(ending: &Ending) -> ClosedLabels {
    let close = match ending {
        Ending::Disconnected => {
            return ClosedLabels {
                code: "none",
                reason: "disconnected",
            }
        }
        Ending::Close(close) => close,
    };
    let reason = match close {
        Close::AuthTimeout => "auth_timeout",
        Close::BadToken => "bad_token",
        Close::NotAuth => "not_auth",
        Close::Expired => "expired",
        Close::Revoked => "revoked",
        Close::Idle => "idle",
        Close::ShuttingDown => "shutting_down",
        Close::Capacity(CapacityError::MessageTooLarge) => "message_too_large",
        Close::Capacity(CapacityError::SlowConsumer) => "slow_consumer",
        Close::Capacity(CapacityError::Flooding) => "flooding",
    };
    let code = match close.code() {
        super::close::BAD_AUTH => "4401",
        super::close::AUTH_TIMEOUT => "4408",
        super::close::TOO_SLOW => "4429",
        super::close::TOO_BIG => "1009",
        super::close::GOING_AWAY => "1001",
        _ => "other",
    };
    ClosedLabels { code, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_open_and_closed_by_code_and_reason() {
        let registry = Metrics::new();
        let metrics = ConnectionMetrics::default();
        metrics.register(&registry);
        let first = metrics.opened();
        let second = metrics.opened();
        drop(first);
        metrics.ended(&Ending::Close(CapacityError::SlowConsumer.into()));
        metrics.ended(&Ending::Disconnected);
        let text = registry.encode();
        assert!(text.contains("meetings_realtime_connections 1\n"), "{text}");
        assert!(
            text.contains(
                "meetings_realtime_connections_closed_total{code=\"4429\",reason=\"slow_consumer\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "meetings_realtime_connections_closed_total{code=\"none\",reason=\"disconnected\"} 1"
            ),
            "{text}"
        );
        drop(second);
        assert!(registry
            .encode()
            .contains("meetings_realtime_connections 0\n"));
    }

    #[test]
    fn every_close_has_its_code_as_label() {
        let closes = [
            Close::AuthTimeout,
            Close::BadToken,
            Close::NotAuth,
            Close::Expired,
            Close::Revoked,
            Close::Idle,
            Close::ShuttingDown,
            CapacityError::MessageTooLarge.into(),
            CapacityError::SlowConsumer.into(),
            CapacityError::Flooding.into(),
        ];
        for close in closes {
            let code = close.code().to_string();
            let labels = labels(&Ending::Close(close));
            assert_eq!(labels.code, code);
        }
    }
}
