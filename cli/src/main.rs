//! `meetings`: the operator CLI — `serve` (everything in one process), `migrate`, and user
//! administration. The audit commands (`meetings events …`) arrive with the audit issue.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use command_service::sessions::PgSessionStore;
use command_service::{AppState, Application, AuthSettings};
use platform::auth::JwtKeys;
use platform::config::{
    DatabaseSettings, JwtSettings, LogSettings, NatsSettings, Secret, MIN_JWT_SECRET_BYTES,
};
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore};
use utoipa::OpenApi;

/// glibc malloc fragments and contends under many tokio tasks; mimalloc measured ~15 % less
/// CPU for the same load (BENCHMARKS.md, pipeline-lag).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "meetings",
    version,
    about = "meetings: event-sourced meeting scheduling"
)]
struct Cli {
    #[command(flatten)]
    log: LogSettings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole system in one process on one port: command API, query API, projector,
    /// and (with MEETINGS_NATS_URL) the relay to NATS.
    Serve(Box<ServeArgs>),
    /// Read-model maintenance.
    Projections {
        #[command(flatten)]
        database: DatabaseSettings,
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Apply database migrations (idempotent).
    Migrate {
        #[command(flatten)]
        database: DatabaseSettings,
    },
    /// User administration.
    Users {
        #[command(flatten)]
        database: DatabaseSettings,
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    jwt: JwtSettings,
    #[command(flatten)]
    auth: AuthSettings,
    #[command(flatten)]
    nats: NatsSettings,
    /// Browser origins allowed to open websockets (comma-separated).
    #[arg(
        long = "allowed-origins",
        env = "MEETINGS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Longest wait of a query with X-Min-Position.
    #[arg(long = "min-position-wait", env = "MEETINGS_MIN_POSITION_WAIT", default_value = "2s", value_parser = platform::config::parse_duration)]
    min_position_wait: std::time::Duration,
    /// Address to bind.
    #[arg(
        long = "listen",
        env = "MEETINGS_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Where `serve` keeps generated state (the JWT key when none is configured).
    #[arg(long = "data-dir", env = "MEETINGS_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ProjectionsCommand {
    /// Empty the read models and rebuild them from the event store, in global order.
    /// Refuses while a projector of the database is active (stop it first); queries see
    /// partial data while it runs.
    Rebuild,
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Make a registered user an administrator.
    Promote { email: String },
    /// Make an administrator a regular member again.
    Demote { email: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    platform::telemetry::init(cli.log.log_format);
    match cli.command {
        Command::Migrate { database } => {
            let pool = connect(&database).await?;
            platform::db::migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Users { database, command } => {
            let pool = connect(&database).await?;
            let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool));
            let (email, role) = match command {
                UsersCommand::Promote { email } => (email, domain::Role::Admin),
                UsersCommand::Demote { email } => (email, domain::Role::Member),
            };
            let id = command_service::admin::set_role(store, &email, role).await?;
            println!("{email} ({id}) is now {role}");
        }
        Command::Serve(args) => serve(*args).await?,
        Command::Projections {
            database,
            command: ProjectionsCommand::Rebuild,
        } => {
            let pool = connect(&database).await?;
            let store = PgEventStore::new(pool.clone());
            let applied = projector::rebuild(&store, &pool).await?;
            println!("read models rebuilt from {applied} events");
        }
    }
    Ok(())
}

async fn connect(database: &DatabaseSettings) -> anyhow::Result<sqlx::PgPool> {
    platform::db::connect(database.postgres_url()?, database.max_connections).await
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let secret = match args.jwt.secret() {
        Ok(secret) => secret,
        Err(_) if args.jwt.jwt_secret.is_none() && args.jwt.jwt_secret_file.is_none() => {
            generated_secret(&args.data_dir)?
        }
        Err(error) => return Err(error),
    };
    let pool = connect(&args.database).await?;
    // One-command start: serve brings its own schema up to date.
    platform::db::migrate(&pool).await?;
    let jwt = Arc::new(JwtKeys::new(&secret, &args.jwt.issuer, &args.jwt.audience));
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let metrics = Metrics::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    // Events reach the read models and websockets through NATS when configured, else
    // straight from the store.
    let nats_client = match &args.nats.nats_url {
        Some(url) => Some(platform::bus::connect(url, "meetings").await?),
        None => None,
    };
    let stream = platform::bus::StreamName::new(&args.nats.stream)?;
    let gateway = realtime::shared(
        pool.clone(),
        jwt.clone(),
        nats_client.clone().map(|client| (client, &stream)),
        args.allowed_origins.clone(),
        realtime::connection::Limits::default(),
    );
    match &nats_client {
        Some(client) => {
            tasks.spawn({
                let (js, stream, hub) = (
                    async_nats::jetstream::new(client.clone()),
                    stream.clone(),
                    gateway.hub.clone(),
                );
                let stop = stop.clone();
                async move {
                    realtime::consume(js, stream, hub, stop.cancelled_owned()).await;
                    Ok(())
                }
            });
        }
        None => {
            tasks.spawn({
                let (store, hub, stop) = (store.clone(), gateway.hub.clone(), stop.clone());
                async move {
                    realtime::follow_store(store, hub, stop.cancelled_owned()).await;
                    Ok(())
                }
            });
        }
    }
    tasks.spawn({
        let (presence, stop) = (gateway.presence.clone(), stop.clone());
        async move {
            presence.run(stop.cancelled_owned()).await;
            Ok(())
        }
    });
    match &args.nats.nats_url {
        Some(url) => {
            let relay = command_service::start_relay(url, &args.nats.stream, pool.clone())
                .await?
                .with_metrics(&metrics);
            let stop_relay = stop.clone();
            tasks.spawn(async move {
                relay.run(stop_relay.cancelled_owned()).await;
                Ok(())
            });
            let client = platform::bus::connect(url, "meetings-projector").await?;
            let projector = projector::new_projector(
                pool.clone(),
                async_nats::jetstream::new(client),
                platform::bus::StreamName::new(&args.nats.stream)?,
                &metrics,
            );
            tasks.spawn(projector.run(stop.clone().cancelled_owned()));
        }
        None => {
            let follower =
                projector::follower::StoreFollower::new(store.clone(), pool.clone(), &metrics);
            tasks.spawn(follower.run(stop.clone().cancelled_owned()));
        }
    }

    tasks.spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move {
            command_service::purge_idempotency_keys(store, stop.cancelled_owned()).await;
            Ok(())
        }
    });
    let command_state = AppState::new(
        store,
        Arc::new(PgSessionStore::new(pool.clone())),
        jwt.clone(),
        args.auth,
    );
    let query_state = query_service::AppState::new(pool, jwt, args.min_position_wait);
    let mut checks = command_service::readiness_checks(&command_state);
    checks.extend(query_service::readiness_checks(&query_state));
    let mut openapi = command_service::openapi::ApiDoc::openapi();
    openapi.merge(query_service::openapi::ApiDoc::openapi());
    let router = command_service::api_router(command_state)
        .merge(query_service::api_router(query_state, &metrics))
        .merge(realtime::api_router(gateway))
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi) }
            }),
        )
        .merge(platform::http::health::router(checks, metrics.clone()));
    let router = platform::http::finish_router(router, metrics);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (MEETINGS_LISTEN): {e}", args.listen))?;
    let application = Application::from_parts(listener, router);
    println!(
        "meetings is listening on http://{}",
        application.local_addr()
    );
    let served = tokio::select! {
        served = application.run_until(platform::shutdown::signal()) => served.map_err(Into::into),
        Some(ended) = tasks.join_next() => {
            // A background component stopped by itself: report which and why, then stop.
            Err(match ended {
                Ok(Ok(())) => anyhow::anyhow!("a background component stopped"),
                Ok(Err(error)) => error.context("a background component failed"),
                Err(error) => anyhow::anyhow!("a background component panicked: {error}"),
            })
        }
    };
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    served
}

/// Reads `<data-dir>/jwt-secret`, creating it (owner-only) with a random key on first start.
fn generated_secret(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join("jwt-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().as_bytes().to_vec();
        anyhow::ensure!(
            key.len() >= MIN_JWT_SECRET_BYTES,
            "{} holds a key shorter than {MIN_JWT_SECRET_BYTES} bytes",
            path.display()
        );
        return Ok(Secret::new(key));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
    let key: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write_private(&path, &key)?;
    tracing::info!(path = %path.display(), "generated a JWT signing key");
    Ok(Secret::new(key))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents)?;
    Ok(())
}
