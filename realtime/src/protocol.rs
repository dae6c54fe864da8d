//! The websocket message protocol of `docs/api.md` ("Realtime"): JSON text frames, the
//! channels they address, and the `error` frames a refused message gets.

use axum::extract::ws::{Message, Utf8Bytes};
use platform::bus::EventEnvelope;
use platform::store::Position;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a client may send.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Auth {
        token: String,
    },
    Subscribe {
        channel: String,
        #[serde(default)]
        since: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping {},
}

/// What the server sends (besides pre-serialized events, see [`event_frame`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Ready {
        user_id: Uuid,
    },
    Subscribed {
        channel: &'a str,
        position: Position,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        code: &'a str,
        message: String,
    },
    Reset {
        channel: &'a str,
    },
    Pong,
    Presence {
        channel: &'a str,
        users: Vec<Uuid>,
    },
    Join {
        channel: &'a str,
        user_id: Uuid,
    },
    Leave {
        channel: &'a str,
        user_id: Uuid,
    },
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("BUG: server messages serialize")
    }

    /// The message as a websocket text frame.
    pub fn to_message(&self) -> Message {
        Message::Text(Utf8Bytes::from(self.to_text()))
    }
}

/// Why a client's message was refused: answered with an `error` frame, the connection stays
/// open. The text is the frame's `message`, [`Refusal::code`] its `code`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("send JSON text frames")]
    Binary,
    /// A renewal (`auth` on an open socket) with a token that is invalid, revoked or another
    /// user's: the socket keeps its current token, until that expires.
    #[error("the new token is refused ({0}); the current one stays in force until it expires")]
    Reauth(String),
    #[error("channels are `user:me` and `meeting:<id>`")]
    UnknownChannel,
    #[error("`since` is not a position")]
    BadSince,
    /// Also the answer for a meeting that does not exist, so as not to reveal which do.
    #[error("not a member of this meeting")]
    NotMember,
    /// The user was removed from a meeting they are subscribed to.
    #[error("you are no longer a member of this meeting")]
    Revoked,
    /// Membership could not be checked (the event store failed).
    #[error("try again shortly")]
    Unavailable,
}

impl Refusal {
    /// The frame's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_)
            | Refusal::Binary
            | Refusal::UnknownChannel
            | Refusal::BadSince => "bad_request",
            Refusal::Reauth(_) => "unauthorized",
            Refusal::NotMember | Refusal::Revoked => "forbidden",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// The `error` frame, about `channel` when the refusal concerns one.
    pub fn to_message(&self, channel: Option<&str>) -> Message {
        ServerMessage::Error {
            channel,
            code: self.code(),
            message: self.to_string(),
        }
        .to_message()
    }
}

/// A channel as addressed by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `user:me`: everything that changes the user's agenda.
    User(Uuid),
    /// `meeting:<id>`: the meeting's events, chat included, for its members.
    Meeting(Uuid),
}

impl Channel {
    /// Parses a client's channel name for the authenticated `user`.
    pub fn parse(name: &str, user: Uuid) -> Option<Self> {
        if name == "user:me" {
            return Some(Channel::User(user));
        }
        name.strip_prefix("meeting:")
            .and_then(|id| id.parse().ok())
            .map(Channel::Meeting)
    }

    /// The name the client used (each user sees their own channel as `user:me`).
    pub fn name(&self) -> String {
        match self {
            Channel::User(_) => "user:me".to_string(),
            Channel::Meeting(id) => format!("meeting:{id}"),
        }
    }
}

/// `{"type":"event","channel",…}`, serialized once and shared by every subscriber.
pub fn event_frame(channel: &str, event: &EventEnvelope) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        event_type: &'a str,
        aggregate_type: &'a str,
        aggregate_id: Uuid,
        sequence: i64,
        recorded_at: chrono::DateTime<chrono::Utc>,
        data: &'a serde_json::Value,
    }
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a str,
        position: Position,
        event: Body<'a>,
    }
    serde_json::to_string(&Frame {
        kind: "event",
        channel,
        position: event.position,
        event: Body {
            event_type: &event.event_type,
            aggregate_type: &event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            recorded_at: event.recorded_at,
            data: &event.data,
        },
    })
    .expect("BUG: event frames serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_unknown_shapes_do_not() {
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"auth","token":"t"}"#).unwrap(),
            ClientMessage::Auth { token: "t".into() }
        );
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe","channel":"user:me"}"#)
                .unwrap(),
            ClientMessage::Subscribe {
                channel: "user:me".into(),
                since: None
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"ping","x":1}"#).is_err());
    }

    #[test]
    fn refusals_become_error_frames_with_their_code() {
        let frame = |refusal: Refusal, channel| match refusal.to_message(channel) {
            Message::Text(text) => serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            other => panic!("not a text frame: {other:?}"),
        };
        assert_eq!(
            frame(Refusal::NotMember, Some("meeting:x")),
            serde_json::json!({
                "type": "error", "channel": "meeting:x", "code": "forbidden",
                "message": "not a member of this meeting"
            })
        );
        assert_eq!(
            frame(Refusal::Binary, None),
            serde_json::json!({
                "type": "error", "code": "bad_request", "message": "send JSON text frames"
            })
        );
        let malformed = serde_json::from_str::<ClientMessage>("{not json").unwrap_err();
        assert_eq!(frame(malformed.into(), None)["code"], "bad_request");
        assert_eq!(Refusal::Unavailable.code(), "unavailable");
    }

    #[test]
    fn channels_parse_for_the_caller() {
        let me = Uuid::now_v7();
        let meeting = Uuid::now_v7();
        assert_eq!(Channel::parse("user:me", me), Some(Channel::User(me)));
        assert_eq!(
            Channel::parse(&format!("meeting:{meeting}"), me),
            Some(Channel::Meeting(meeting))
        );
        assert_eq!(Channel::parse("user:someone-else", me), None);
        assert_eq!(Channel::parse("meeting:not-a-uuid", me), None);
        assert_eq!(
            Channel::Meeting(meeting).name(),
            format!("meeting:{meeting}")
        );
    }
}
