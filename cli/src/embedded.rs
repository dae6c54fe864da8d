//! `meetings serve` in embedded mode: the whole system in one process on SQLite files, with
//! nothing else installed. The same handlers, fold and domain as the distributed mode; only
//! the stores behind the seams differ (docs/adr/0012-embedded-sqlite.md):
//!
//! - `meetings.db` (WAL, `synchronous=FULL`): the event log, accounts, sessions, idempotency
//!   records, calendar feed tokens — what cannot be rebuilt;
//! - `meetings-read-models.db` beside it (WAL, `synchronous=NORMAL`): the read models,
//!   rebuilt from the log if lost; the projector follows the log in this process and publishes its checkpoints to
//!   the query side (`X-Min-Position`) on a channel instead of PostgreSQL's `NOTIFY`.
//!
//! A lock file (`meetings.db.lock`) keeps a second process from serving the same files: the
//! single writer of each file is what makes the log's ids a global order without skips.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use command_service::sessions::SqliteSessionStore;
use command_service::AppState;
use platform::auth::JwtKeys;
use platform::bus::EventSource;
use platform::db::sqlite::SqliteFile;
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::{EventStore, Position, SqliteEventStore};
use projector::sources::sqlite::SqliteFollower;
use query_service::repository::SqliteReadModels;
use query_service::watch::ProjectionWatch;
use realtime::connection::changes::SqliteChangeLog;
use tokio::sync::watch;

use crate::serve::ServeArgs;

/// The read models' file beside the event log `meetings.db`: `meetings-read-models.db`.
pub fn read_models_file(events: &Path) -> PathBuf {
    let stem = events
        .file_stem()
        .map_or("meetings".into(), |s| s.to_string_lossy());
    events.with_file_name(format!("{stem}-read-models.db"))
}

/// Takes the event log's lock, or explains who holds it.
pub fn lock(events: &Path) -> anyhow::Result<File> {
    if let Some(directory) = events.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", directory.display()))?;
    }
    let path = PathBuf::from(format!("{}.lock", events.display()));
    let file = File::create(&path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by another `meetings serve` (one process per database)",
            events.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
}

/// The embedded system, built and bound, not yet serving.
pub struct Embedded {
    pub server: Server,
    /// The event log, for what is read or appended beside the server (tests, benchmarks).
    pub store: Arc<dyn EventStore>,
    pub events: SqliteFile,
    pub read_models: SqliteFile,
    /// The projector's checkpoints as it publishes them.
    pub checkpoints: watch::Receiver<Option<Position>>,
    /// Held while the files are served: a second process refuses to start on them.
    pub lock: File,
}

/// `meetings serve` on the SQLite file `file` (and its read models beside it).
pub async fn serve(args: &ServeArgs, jwt: Arc<JwtKeys>, file: &Path) -> anyhow::Result<()> {
    let Embedded { server, lock, .. } = build(args, jwt, file).await?;
    println!("meetings is listening on http://{}", server.local_addr());
    let served = server.run_until(platform::shutdown::signal()).await;
    drop(lock);
    served
}

/// Opens (creating and migrating) the files, binds `args.listen` and composes the system.
pub async fn build(args: &ServeArgs, jwt: Arc<JwtKeys>, file: &Path) -> anyhow::Result<Embedded> {
    anyhow::ensure!(
        args.nats.nats_url.is_none(),
        "MEETINGS_NATS_URL needs a PostgreSQL MEETINGS_DATABASE_URL: embedded mode (SQLite) \
         runs in one process, without NATS"
    );
    let lock = lock(file)?;
    // Each file has one writer; MEETINGS_DATABASE_MAX_CONNECTIONS sizes each one's readers.
    let readers = args.database.max_connections;
    let events = SqliteFile::open_events_with_readers(file, readers).await?;
    let read_models =
        SqliteFile::open_read_models_with_readers(&read_models_file(file), readers).await?;
    tracing::info!(file = %file.display(), "embedded mode: SQLite, no NATS");
    let revocations = jwt.revocations().clone();
    platform::auth::revocation::restore_from_sqlite(&events, &revocations).await?;
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::new(events.clone()).with_revocations(revocations.clone()));
    let metrics = Metrics::new();
    metrics.observe_pool(&events.reader);

    let follower = SqliteFollower::new(store.clone(), read_models.clone(), &metrics);
    let checkpoints = follower.checkpoints();
    let watch = ProjectionWatch::following(follower.checkpoints());
    let gateway = realtime::shared_with(
        store.clone(),
        Arc::new(SqliteChangeLog(read_models.clone())),
        jwt.clone(),
        None,
        args.gateway.allowed_origins.clone(),
        realtime::connection::Limits::default(),
    );
    gateway.metrics.register(&metrics);
    let command_state = AppState::new(
        store.clone(),
        Arc::new(SqliteSessionStore::new(events.clone()).with_revocations(revocations)),
        jwt.clone(),
        args.auth.clone(),
    )
    .with_limits(&args.limits)
    .with_metrics(&metrics);
    let query_state = query_service::AppState::new(
        Arc::new(SqliteReadModels::new(events.clone(), read_models.clone())),
        store.clone(),
        watch,
        jwt.clone(),
        &args.query,
    );
    let router = crate::serve::api(&command_state, query_state, &gateway, &metrics)
        .merge(crate::web::router());
    let router = platform::http::finish_router(router, metrics.clone());

    let server = Server::new(
        "meetings",
        platform::service::bind(args.listen).await?,
        router,
    )
    .with_limits(args.http.clone());
    let server = audit::anchor::with_embedded_task(
        server,
        events.clone(),
        store.clone(),
        args.audit.signer()?,
    );
    let server = command_service::with_tasks(server, &command_state, None);
    let server = realtime::with_tasks(server, &gateway, EventSource::Store(store.clone()));
    let server = server.with_task("projector", move |stop| async move {
        if follower.run(stop.clone().cancelled_owned()).await.is_err() {
            // Logged and recorded for readiness by the run loop; keep serving.
            stop.cancelled().await;
        }
        Ok(())
    });
    Ok(Embedded {
        server,
        store,
        events,
        read_models,
        checkpoints,
        lock,
    })
}
