//! The first exchange of a connection: the client's `auth` message, within the time limit,
//! answered with `ready`.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use platform::auth::{Claims, JwtKeys};

use super::close::{Close, Ending};
use super::limits::CapacityError;
use crate::protocol::{ClientMessage, ServerMessage};

/// Authenticates the client and tells it so; returns its token's claims.
pub(super) async fn accept(
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
    jwt: &JwtKeys,
    timeout: Duration,
) -> Result<Claims, Ending> {
    let claims = authenticate(stream, jwt, timeout).await?;
    sink.send(
        ServerMessage::Ready {
            user_id: claims.sub,
        }
        .to_message(),
    )
    .await?;
    Ok(claims)
}

/// The claims of a valid, unrevoked token in an `auth` message, the first one and within
/// `timeout`.
async fn authenticate(
    stream: &mut SplitStream<WebSocket>,
    jwt: &JwtKeys,
    timeout: Duration,
) -> Result<Claims, Close> {
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

fn verify(text: &str, jwt: &JwtKeys) -> Option<Claims> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Auth { token }) => jwt.authenticate(&token).ok(),
        _ => None,
    }
}
