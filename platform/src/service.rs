//! Start-up and lifetime shared by every binary: open the database (and insist it is
//! migrated), bind the listener, then serve HTTP beside the service's background tasks until
//! a shutdown signal — or until one of those tasks ends by itself, which stops the process
//! with the task named (a relay or projector that died must not leave a half-working
//! service answering health checks).
//!
//! HTTP is served by [`crate::http::connection`] within [`HttpLimits`]: timeouts against slow
//! clients and a cap on open connections.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bus::StreamName;
use crate::config::{DatabaseSettings, HttpLimits, LogSettings, NatsSettings};

/// The whole `main` of a service binary, so all of them start and stop the same way:
/// settings from flags and `MEETINGS_*` variables (or `--print-config`: print them, secrets
/// redacted, and exit), logging, then `build` (the same call tests make) served until SIGTERM
/// or Ctrl-C.
pub fn main<S: clap::Parser>(
    log: impl FnOnce(&S) -> &LogSettings,
    build: impl AsyncFnOnce(&S) -> anyhow::Result<Server>,
) -> anyhow::Result<()> {
    let settings = match crate::config::startup::parse_from::<S, _, _>(std::env::args_os()) {
        Ok(crate::config::startup::Startup::Run(settings)) => settings,
        Ok(crate::config::startup::Startup::Print(config)) => {
            print!("{config}");
            return Ok(());
        }
        Err(error) => error.exit(),
    };
    crate::telemetry::init(log(&settings).log_format);
    tokio::runtime::Runtime::new()?.block_on(async {
        build(&settings)
            .await?
            .run_until(crate::shutdown::signal())
            .await
    })
}

/// Opens the pool of `database` (no migration check: the CLI's `migrate` and `serve` use it).
pub async fn connect(database: &DatabaseSettings) -> anyhow::Result<PgPool> {
    crate::db::connect(database.postgres_url()?, database.max_connections).await
}

/// Opens the pool and refuses a database whose schema is behind this binary: services never
/// migrate by themselves (operators run `meetings migrate`; `meetings serve` does it for them).
pub async fn connect_migrated(database: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let pool = connect(database).await?;
    if !crate::db::migrations_applied(&pool).await? {
        anyhow::bail!("the database is not migrated: run `meetings migrate` first");
    }
    Ok(pool)
}

/// Connects to the NATS that `nats` names, for a service that cannot run without it, and
/// checks the stream name.
pub async fn connect_nats(
    nats: &NatsSettings,
    client_name: &str,
) -> anyhow::Result<(async_nats::Client, StreamName)> {
    let url = nats
        .nats_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("MEETINGS_NATS_URL (or --nats-url) is required"))?;
    let stream = StreamName::new(&nats.stream)?;
    Ok((crate::bus::connect(url, client_name).await?, stream))
}

/// Binds `listen`, naming the setting when it fails.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let error =
        |e: std::io::Error| anyhow::anyhow!("cannot listen on {listen} (MEETINGS_LISTEN): {e}");
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(listen).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

/// Connections the kernel completes before the server accepts them. Tokio's default (1,024)
/// overflows under a burst of a few thousand connects (a slowloris wave, a reconnect storm
/// after a deploy): Linux then drops the handshake's last ACK, the client believes it is
/// connected, and the server sees the connection seconds later. The kernel caps the value at
/// `net.core.somaxconn` (4,096 by default).
pub const LISTEN_BACKLOG: u32 = 4_096;

type Task = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// A bound HTTP server and the background tasks that live exactly as long as it.
pub struct Server {
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tasks: Vec<(&'static str, Task)>,
}

impl Server {
    /// `name` appears in the "listening" log line. Serves within the default [`HttpLimits`].
    pub fn new(name: &'static str, listener: TcpListener, router: Router) -> Self {
        Self {
            name,
            listener,
            router,
            limits: HttpLimits::default(),
            tasks: Vec::new(),
        }
    }

    /// Serves within `limits` (the service's `MEETINGS_HTTP_*` settings) instead.
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs `task` beside the server. It gets a token that is cancelled at shutdown and must
    /// then return; returning earlier (with or without an error) stops the whole server.
    pub fn with_task<F, Fut>(mut self, name: &'static str, task: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks
            .push((name, Box::new(move |stop| task(stop).boxed())));
        self
    }

    /// Keeps `jwt`'s revocations up to date from `pool` while the server runs, so tokens of a
    /// deactivated, demoted or logged-out user are refused here too (`auth::revocation`).
    pub fn with_revocations(self, pool: sqlx::PgPool, jwt: &crate::auth::JwtKeys) -> Self {
        let revocations = jwt.revocations().clone();
        self.with_task("session revocations", move |stop| async move {
            crate::auth::revocation::listen(pool, revocations, stop.cancelled_owned()).await;
            Ok(())
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("BUG: a bound listener has an address")
    }

    /// Serves until `shutdown` completes (then finishes in-flight requests and stops the
    /// tasks), or until a task ends by itself (then the error says which and why).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr(), "{} listening", self.name);
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (name, task) in self.tasks {
            let future = task(stop.clone());
            tasks.spawn(async move { (name, future.await) });
        }
        let server = crate::http::connection::serve(self.listener, self.router, self.limits, {
            let stop = stop.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    () = stop.cancelled() => {}
                }
            }
        });
        let mut server = std::pin::pin!(server);
        let outcome = tokio::select! {
            () = &mut server => Ok(()),
            Some(ended) = tasks.join_next() => {
                stop.cancel();
                server.await;
                Err(match ended {
                    Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped by itself"),
                    Ok((name, Err(error))) => error.context(format!("{name} failed")),
                    Err(error) => anyhow::anyhow!("a background task panicked: {error}"),
                })
            }
        };
        stop.cancel();
        while let Some(ended) = tasks.join_next().await {
            if let Ok((name, Err(error))) = ended {
                tracing::warn!(
                    task = name,
                    error = format!("{error:#}"),
                    "task failed while stopping"
                );
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server() -> Server {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        Server::new("test", listener, Router::new())
    }

    #[tokio::test]
    async fn a_task_that_ends_by_itself_stops_the_server_and_is_named() {
        let error = server()
            .await
            .with_task("relay", |_| async { anyhow::bail!("lost the stream") })
            .run_until(std::future::pending())
            .await
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("relay failed") && text.contains("lost the stream"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn shutdown_cancels_the_tasks_and_waits_for_them() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let outcome = server()
            .await
            .with_task("worker", move |stop| async move {
                stop.cancelled().await;
                done_tx.send(()).ok();
                Ok(())
            })
            .run_until(async {})
            .await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(
            done_rx.await.is_ok(),
            "the task was not awaited before returning"
        );
    }

    #[tokio::test]
    async fn binding_a_taken_address_names_the_setting() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let error = bind(taken.local_addr().unwrap()).await.unwrap_err();
        assert!(error.to_string().contains("MEETINGS_LISTEN"), "{error}");
    }
}
