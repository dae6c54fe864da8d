//! One websocket connection, from upgrade to close: the handshake, then a loop that writes
//! the hub's queue to the socket and hands the client's messages to its session.
//!
//! - [`handshake`]: `auth` first and in time, answered by `ready`.
//! - [`session`]: the connection's subscriptions and what each client message does.
//! - [`replay`]: what a resume with `since` missed.
//! - [`limits`]: tuning, the flood limit, and the capacity errors that close a connection.
//! - [`close`]: the close codes and why a connection ends.
//! - [`metrics`]: open connections and why they ended.
//! - [`shared`]: what all connections of a gateway share.

pub mod changes;
pub mod close;
mod handshake;
mod limits;
pub mod metrics;
mod replay;
mod session;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::close::Ending;
use self::limits::FloodLimit;
pub use self::limits::{CapacityError, Limits};
use self::session::Session;
use self::shared::Shared;
use crate::hub::Outbound;
use crate::protocol::Refusal;

/// Queued messages written to the socket with one flush at most.
const MAX_BATCH: usize = 64;

/// How long a closing connection waits for the client's own close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one upgraded socket until it closes.
pub async fn serve(socket: WebSocket, shared: Arc<Shared>) {
    let metrics = shared.metrics.clone();
    let _open = metrics.opened();
    let _counted = shared::CountedSocket::new(&shared.sockets);
    let (mut sink, mut stream) = socket.split();
    let limits = &shared.limits;
    let accepted =
        handshake::accept(&mut sink, &mut stream, &shared.jwt, limits.auth_timeout).await;
    let ending = match accepted {
        Ok(claims) => {
            let (ping_interval, idle_timeout) = (limits.ping_interval, limits.idle_timeout);
            let flood = FloodLimit::new(limits);
            let (session, inbox) = Session::open(shared, claims);
            let mut connection = Connection {
                sink: &mut sink,
                inbox,
                session,
                flood,
                last_heard: Instant::now(),
                idle_timeout,
            };
            connection.run(&mut stream, ping_interval).await
        }
        Err(ending) => ending,
    };
    metrics.ended(&ending);
    finish(sink, stream, ending).await;
}

/// An authenticated connection's loop state.
struct Connection<'a> {
    sink: &'a mut SplitSink<WebSocket, Message>,
    /// What the hub queued for this connection.
    inbox: mpsc::Receiver<Outbound>,
    session: Session,
    flood: FloodLimit,
    /// When the client last sent anything (a pong included).
    last_heard: Instant,
    idle_timeout: Duration,
}

impl Connection<'_> {
    /// Runs until the client leaves or a limit closes the connection; then leaves every
    /// channel.
    async fn run(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        ping_interval: Duration,
    ) -> Ending {
        let too_slow = self.session.too_slow();
        let shutdown = self.session.shutdown();
        let mut revocations = self.session.revocations();
        let mut ping = tokio::time::interval(ping_interval);
        ping.tick().await;
        let ending = loop {
            let step = tokio::select! {
                () = shutdown.cancelled() => Err(close::Close::ShuttingDown.into()),
                () = too_slow.cancelled() => Err(CapacityError::SlowConsumer.into()),
                // Read every turn: a renewal moves it.
                () = tokio::time::sleep_until(self.session.expires_at()) => {
                    Err(close::Close::Expired.into())
                }
                Ok(()) = revocations.changed() => self.check_revocation(),
                Some(first) = self.inbox.recv() => self.forward(first).await,
                incoming = stream.next() => self.receive(incoming).await,
                _ = ping.tick() => self.keep_alive().await,
            };
            if let Err(ending) = step {
                break ending;
            }
        };
        self.session.leave_all();
        ending
    }

    /// Writes `first` and whatever else is already queued, up to [`MAX_BATCH`] frames, with
    /// one flush (one socket write): a fan-out queues the meeting and the `user:me` frame of
    /// an event together.
    async fn forward(&mut self, first: Outbound) -> Result<(), Ending> {
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(outbound) = next.take() {
            if let Some(message) = self.session.outbound(outbound) {
                self.sink.feed(message).await?;
                fed += 1;
            }
            if fed < MAX_BATCH {
                next = self.inbox.try_recv().ok();
            }
        }
        if fed > 0 {
            self.sink.flush().await?;
        }
        Ok(())
    }

    /// Handles one read from the client.
    async fn receive(
        &mut self,
        incoming: Option<Result<Message, axum::Error>>,
    ) -> Result<(), Ending> {
        self.last_heard = Instant::now();
        match incoming {
            None | Some(Ok(Message::Close(_))) => Err(Ending::Disconnected),
            Some(Err(error)) => Err(Ending::from_read(&error)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Ok(Message::Binary(_))) => {
                Ok(self.sink.send(Refusal::Binary.to_message(None)).await?)
            }
            Some(Ok(Message::Text(text))) => {
                self.flood.take()?;
                for reply in self.session.handle(&text).await {
                    self.sink.send(reply).await?;
                }
                Ok(())
            }
        }
    }

    /// Closes the connection (4401) when its token was just revoked.
    fn check_revocation(&self) -> Result<(), Ending> {
        if self.session.revoked() {
            return Err(close::Close::Revoked.into());
        }
        Ok(())
    }

    /// Pings the client, or closes the connection when it has been silent too long.
    async fn keep_alive(&mut self) -> Result<(), Ending> {
        if self.last_heard.elapsed() > self.idle_timeout {
            return Err(close::Close::Idle.into());
        }
        Ok(self.sink.send(Message::Ping(bytes::Bytes::new())).await?)
    }
}

/// Sends the close frame, if the server closes, and waits briefly for the client's: the
/// socket is then not reset under unread data, and the client gets to read the code.
async fn finish(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    ending: Ending,
) {
    if let Ending::Close(close) = ending {
        if sink.send(close.frame()).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    let _ = sink.close().await;
}
