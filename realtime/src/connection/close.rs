//! How a connection ends: the close codes of `docs/api.md` and the reason behind each.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};

use super::limits::CapacityError;

pub const BAD_AUTH: u16 = 4401;
pub const AUTH_TIMEOUT: u16 = 4408;
pub const TOO_SLOW: u16 = 4429;
pub const TOO_BIG: u16 = 1009;
pub const GOING_AWAY: u16 = 1001;

/// Why the server closes a connection. The text is the close frame's reason, [`Close::code`]
/// its code.
#[derive(Debug, thiserror::Error)]
pub enum Close {
    #[error("authenticate within 5 s")]
    AuthTimeout,
    #[error("bad or missing token")]
    BadToken,
    /// The first message was something else than `auth`.
    #[error("the first message must be auth")]
    NotAuth,
    /// The token expired and no fresh one came in an `auth` message.
    #[error("the token expired: send a fresh one in an auth message before it does")]
    Expired,
    /// The user was deactivated, changed password or role, or the session logged out.
    #[error("the session was revoked")]
    Revoked,
    /// Nothing, not even a pong, arrived within the idle timeout.
    #[error("idle")]
    Idle,
    /// The instance is stopping (SIGTERM): reconnect, with `since`, to another one.
    #[error("the server is shutting down: reconnect with `since`")]
    ShuttingDown,
    #[error(transparent)]
    Capacity(#[from] CapacityError),
}

impl Close {
    pub fn code(&self) -> u16 {
        match self {
            Close::AuthTimeout => AUTH_TIMEOUT,
            Close::BadToken | Close::NotAuth | Close::Expired | Close::Revoked => BAD_AUTH,
            Close::Idle | Close::ShuttingDown => GOING_AWAY,
            Close::Capacity(CapacityError::MessageTooLarge) => TOO_BIG,
            Close::Capacity(CapacityError::SlowConsumer | CapacityError::Flooding) => TOO_SLOW,
        }
    }

    /// The close frame to send.
    pub fn frame(&self) -> Message {
        Message::Close(Some(CloseFrame {
            code: self.code(),
            reason: Utf8Bytes::from(self.to_string()),
        }))
    }
}

/// How a connection's loop (or its handshake) ended.
#[derive(Debug)]
pub(super) enum Ending {
    /// The client closed or the socket failed: there is no one left to tell anything.
    Disconnected,
    /// The server closes with a code.
    Close(Close),
}

impl From<Close> for Ending {
    fn from(close: Close) -> Self {
        Ending::Close(close)
    }
}

impl From<CapacityError> for Ending {
    fn from(error: CapacityError) -> Self {
        Ending::Close(error.into())
    }
}

/// A failed socket write means the client is gone, so `?` on a send ends the connection.
impl From<axum::Error> for Ending {
    fn from(_: axum::Error) -> Self {
        Ending::Disconnected
    }
}

impl Ending {
    /// A failed socket read: over a size limit (close with 1009), else the client is gone.
    pub(super) fn from_read(error: &axum::Error) -> Self {
        CapacityError::from_transport(error).map_or(Ending::Disconnected, Ending::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_closes_with_its_code() {
        let codes = [
            (Close::AuthTimeout, 4408),
            (Close::BadToken, 4401),
            (Close::NotAuth, 4401),
            (Close::Expired, 4401),
            (Close::Revoked, 4401),
            (Close::Idle, 1001),
            (Close::ShuttingDown, 1001),
            (CapacityError::MessageTooLarge.into(), 1009),
            (CapacityError::SlowConsumer.into(), 4429),
            (CapacityError::Flooding.into(), 4429),
        ];
        for (close, code) in codes {
            assert_eq!(close.code(), code, "{close:?}");
        }
        match Close::from(CapacityError::SlowConsumer).frame() {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, TOO_SLOW);
                assert_eq!(frame.reason.as_str(), "too slow: resume with `since`");
            }
            other => panic!("not a close frame: {other:?}"),
        }
    }
}
