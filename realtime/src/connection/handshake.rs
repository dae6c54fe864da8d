//! The first exchange of a connection: the client's `auth` message, within the time limit,
//! answered with `ready`.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use platform::auth::JwtKeys;
use uuid::Uuid;

use super::close::{Close, Ending};
use super::limits::CapacityError;
use crate::protocol::{ClientMessage, ServerMessage};

/// Authenticates the client and tells it so; returns who it is.
pub(super) async fn accept(
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
    jwt: &JwtKeys,
    timeout: Duration,
) -> Result<Uuid, Ending> {
    let user_id = authenticate(stream, jwt, timeout).await?;
    sink.send(ServerMessage::Ready { user_id }.to_message())
        .await?;
    Ok(user_id)
}

/// The user of a valid `auth` message, the first one and within `timeout`.
async fn authenticate(
    stream: &mut SplitStream<WebSocket>,
    jwt: &JwtKeys,
    timeout: Duration,
) -> Result<Uuid, Close> {
    let first = tokio::time::timeout(timeout, stream.next())
        .await
        .map_err(|_| Close::AuthTimeout)?;
    match first {
        Some(Ok(Message::Text(text))) => verify(&text, jwt).ok_or(Close::BadToken),
        Some(Err(error)) => {
            Err(CapacityError::from_transport(&error).map_or(Close::NotAuth, Close::from))
        }
        _ => Err(Close::NotAuth),
    }
}

fn verify(text: &str, jwt: &JwtKeys) -> Option<Uuid> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Auth { token }) => jwt.verify(&token).ok().map(|claims| claims.sub),
        _ => None,
    }
}
