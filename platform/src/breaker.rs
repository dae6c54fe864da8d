//! A circuit breaker for PostgreSQL: while the database is unreachable, requests answer 503
//! with `Retry-After` at once instead of each waiting out the pool's acquire timeout (sqlx
//! retries a refused connection until then), and the service recovers by itself when the
//! database returns — no restart.
//!
//! The breaker *suspects* the database when a request fails as if it were down, or when a
//! request has waited [`SUSPECT_AFTER`] (a request stuck in the pool is how an outage first
//! shows in a service that has no connection to lose). One probe at a time then opens a fresh
//! connection (not from the pool, which may be saturated by healthy load) and runs
//! `SELECT 1`. Only a probe that cannot reach the server opens the breaker — a server that
//! answers, even with an error, is up — so a slow query or a serialization failure costs one
//! probe, not an outage. Opening answers 503 to the requests still waiting as well as to new
//! ones. While open, the probe retries with exponential backoff and jitter (100 ms doubling to
//! 2 s) and closes the breaker on its first success. On both transitions the pool's idle
//! connections are handed back through sqlx's ping-on-release, so those that died with the
//! server are dropped instead of failing the next requests one by one.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::{Connection, PgPool};

use crate::http::ApiError;

/// Marks a response that failed because the database looked unavailable (set by
/// [`ApiError`]'s response for database and store errors).
#[derive(Clone, Copy, Debug)]
pub struct DatabaseFailed;

/// How long a probe may take to connect and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A request waiting this long makes the breaker probe (at most every [`PROBE_SPACING`]).
pub const SUSPECT_AFTER: Duration = Duration::from_millis(40);
/// Probes for slow requests while the breaker is closed are at least this far apart, however
/// many requests are slow (long `X-Min-Position` waits, password hashing). A probe then is one
/// `SELECT 1` on the probe's own kept connection.
const PROBE_SPACING: Duration = Duration::from_millis(100);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// The breaker of one service's pool. Cheap to clone.
#[derive(Clone)]
pub struct DatabaseBreaker(Arc<Inner>);

struct Inner {
    pool: PgPool,
    /// `true` while open; requests in flight watch it.
    open: tokio::sync::watch::Sender<bool>,
    probing: AtomicBool,
    last_probe: Mutex<Option<Instant>>,
    /// The probe's own connection, kept between probes while the server answers.
    connection: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    /// 1 while the database answers, 0 while the breaker is open.
    available: Gauge<i64, AtomicI64>,
    opened: Counter,
}

impl DatabaseBreaker {
    pub fn new(pool: PgPool) -> Self {
        let available = Gauge::<i64, AtomicI64>::default();
        available.set(1);
        Self(Arc::new(Inner {
            pool,
            open: tokio::sync::watch::Sender::new(false),
            probing: AtomicBool::new(false),
            last_probe: Mutex::new(None),
            connection: tokio::sync::Mutex::new(None),
            available,
            opened: Counter::default(),
        }))
    }

    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(|registry| {
            registry.register(
                "database_available",
                "1 while PostgreSQL answers; 0 while requests are refused with 503 until it returns",
                self.0.available.clone(),
            );
            registry.register(
                "database_breaker_opened",
                "Times PostgreSQL was found unreachable and requests started failing fast",
                self.0.opened.clone(),
            );
        });
    }

    /// Whether requests that need the database are refused right now.
    pub fn is_open(&self) -> bool {
        *self.0.open.borrow()
    }

    /// The database may be down: probe it, unless a probe is running or due. A request that
    /// failed (`failed`) is probed for at once; slow requests, while the breaker is closed,
    /// at most every [`PROBE_SPACING`] — a suspicion right after a probe waits for the next
    /// one, it is never dropped (that would leave a request waiting on the pool).
    pub fn suspect(&self, failed: bool) {
        if self.0.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let wait = match *self.0.last_probe.lock().expect("BUG: poisoned") {
            Some(at) if !failed && !self.is_open() => PROBE_SPACING.saturating_sub(at.elapsed()),
            _ => Duration::ZERO,
        };
        let inner = self.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let mut delay = FIRST_RETRY;
            loop {
                *inner.last_probe.lock().expect("BUG: poisoned") = Some(Instant::now());
                if inner.reachable().await {
                    if inner.open.send_replace(false) {
                        recycle_idle(&inner.pool);
                        tracing::info!("PostgreSQL answers again: serving requests");
                    }
                    inner.available.set(1);
                    break;
                }
                if !inner.open.send_replace(true) {
                    inner.opened.inc();
                    inner.available.set(0);
                    recycle_idle(&inner.pool);
                    tracing::warn!("PostgreSQL is unreachable: answering 503 until it returns");
                }
                tokio::time::sleep(crate::leader::jittered(delay)).await;
                delay = (delay * 2).min(LONGEST_RETRY);
            }
            inner.probing.store(false, Ordering::Release);
        });
    }

    /// Resolves when the breaker opens.
    async fn opened(&self) {
        let mut open = self.0.open.subscribe();
        // The sender lives in `self`: the channel cannot close while this waits.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Inner {
    /// Whether the server can be reached: `SELECT 1` on the kept connection, else on a fresh
    /// one (not from the pool), within [`PROBE_TIMEOUT`]. A server that answers with an error
    /// (too many clients, say) is up.
    async fn reachable(&self) -> bool {
        let mut kept = self.connection.lock().await;
        if let Some(connection) = kept.as_mut() {
            let ping = sqlx::query("SELECT 1").execute(&mut *connection);
            if matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Ok(_))) {
                return true;
            }
            *kept = None;
        }
        let options = self.pool.connect_options();
        let attempt = async {
            let mut connection = sqlx::PgConnection::connect_with(&*options).await?;
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            Ok::<_, sqlx::Error>(connection)
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => {
                *kept = Some(connection);
                true
            }
            // 57P0x: shutting down, starting up, cannot connect now.
            Ok(Err(sqlx::Error::Database(error))) => {
                !error.code().is_some_and(|code| code.starts_with("57P0"))
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }
}

/// Takes every idle connection and lets it go again: sqlx pings a connection on release and
/// closes it when the ping fails.
fn recycle_idle(pool: &PgPool) {
    let idle: Vec<_> = std::iter::from_fn(|| pool.try_acquire())
        .take(pool.num_idle())
        .collect();
    drop(idle);
}

/// Paths answered without the database (liveness, metrics): never refused by the breaker.
fn needs_no_database(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

/// `router` behind `breaker` (registered in `metrics`): apply before
/// [`crate::http::finish_router`], so that its refusals carry a request id and are counted.
pub fn protect<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    breaker: &DatabaseBreaker,
    metrics: &crate::metrics::Metrics,
) -> axum::Router<S> {
    breaker.register(metrics);
    router.layer(axum::middleware::from_fn_with_state(breaker.clone(), guard))
}

/// Middleware: refuses at once while the breaker is open, and answers 503 to a request still
/// waiting when it opens; suspects the database when a request is slow or says it failed.
pub async fn guard(
    State(breaker): State<DatabaseBreaker>,
    request: Request,
    next: Next,
) -> Response {
    if needs_no_database(request.uri().path()) {
        return next.run(request).await;
    }
    if breaker.is_open() {
        return ApiError::database_unavailable().into_response();
    }
    let handler = next.run(request);
    tokio::pin!(handler);
    let slow = tokio::time::sleep(SUSPECT_AFTER);
    tokio::pin!(slow);
    let mut suspected = false;
    let response = loop {
        tokio::select! {
            response = &mut handler => break response,
            () = &mut slow, if !suspected => {
                suspected = true;
                breaker.suspect(false);
            }
            // Only a probe that could not reach the server opens it: whatever this request
            // waits for cannot come.
            () = breaker.opened(), if suspected => {
                return ApiError::database_unavailable().into_response();
            }
        }
    };
    if response.extensions().get::<DatabaseFailed>().is_some() {
        breaker.suspect(true);
    }
    response
}
