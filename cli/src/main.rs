//! `meetings`: the operator CLI — `serve` (everything in one process), `migrate`, user
//! administration, and the audit commands (`meetings events …`, in [`events`]).

mod embedded;
mod events;
mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use command_service::sessions::PgSessionStore;
use command_service::{AppState, AuthSettings};
use platform::auth::JwtKeys;
use platform::bus::EventSource;
use platform::config::{
    DatabaseLocation, DatabaseSettings, HttpLimits, JwtSettings, LogSettings, NatsSettings,
};
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::{EventStore, PgEventStore};
use utoipa::OpenApi;

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
    /// Audit the event log: an aggregate's history, its state at any point, exports,
    /// tamper checks (`verify`), and rebuilding the read models while the system runs
    /// (`replay`). Exit codes: 0 ok, 1 a problem found, 2 usage or connection error.
    Events {
        #[command(flatten)]
        database: DatabaseSettings,
        #[command(subcommand)]
        command: events::EventsCommand,
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
    limits: command_service::LimitSettings,
    #[command(flatten)]
    nats: NatsSettings,
    #[command(flatten)]
    query: query_service::QueryArgs,
    #[command(flatten)]
    gateway: realtime::GatewayArgs,
    #[command(flatten)]
    http: HttpLimits,
    #[command(flatten)]
    audit: audit::anchor::AuditSettings,
    /// Address to bind, `host:port` such as `127.0.0.1:8080`.
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
    /// Rebuild the read models from the event store while the system runs: the same as
    /// `meetings events replay --all`.
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
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    platform::telemetry::init(cli.log.log_format);
    match cli.command {
        Command::Events { database, command } => events::run(database, command).await,
        Command::Projections {
            database,
            command: ProjectionsCommand::Rebuild,
        } => {
            events::run(
                database,
                events::EventsCommand::Replay {
                    projection: None,
                    all: true,
                },
            )
            .await
        }
        command => match run(command).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error:?}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate { database } => {
            let pool = platform::service::connect(&database).await?;
            platform::db::migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Users { database, command } => {
            let pool = platform::service::connect(&database).await?;
            let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool));
            let (email, role) = match command {
                UsersCommand::Promote { email } => (email, domain::Role::Admin),
                UsersCommand::Demote { email } => (email, domain::Role::Member),
            };
            let id = command_service::admin::set_role(store, &email, role).await?;
            println!("{email} ({id}) is now {role}");
        }
        Command::Serve(args) => serve(*args).await?,
        Command::Events { .. } | Command::Projections { .. } => {
            unreachable!("BUG: handled in main")
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.query.check(&args.http)?;
    let anchor_signer = args.audit.signer()?;
    let configured = args.jwt.private_key_file.is_some()
        || args.jwt.has_secret()
        || !args.jwt.public_key_files.is_empty();
    let jwt = if configured {
        JwtKeys::from_settings(&args.jwt)?
    } else {
        JwtKeys::ed25519(
            &generated_key(&args.data_dir)?,
            &[],
            &args.jwt.issuer,
            &args.jwt.audience,
        )?
    };
    anyhow::ensure!(
        jwt.can_sign(),
        "meetings serve signs tokens: give MEETINGS_JWT_PRIVATE_KEY_FILE"
    );
    let jwt = Arc::new(jwt);
    match args.database.location(&args.data_dir)? {
        DatabaseLocation::Sqlite(file) => embedded::serve(args, jwt, &file).await,
        DatabaseLocation::Postgres(_) => serve_postgres(args, jwt, anchor_signer).await,
    }
}

/// `meetings serve` on PostgreSQL (and NATS when configured).
async fn serve_postgres(
    args: ServeArgs,
    jwt: Arc<JwtKeys>,
    anchor_signer: Option<Arc<audit::anchor::AnchorSigner>>,
) -> anyhow::Result<()> {
    let pool = platform::service::connect(&args.database).await?;
    // One-command start: serve brings its own schema up to date.
    platform::db::migrate(&pool).await?;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let metrics = Metrics::new();
    metrics.observe_pool(&pool);
    let stream = platform::bus::StreamName::new(&args.nats.stream)?;

    // Events reach the read models and websockets through NATS when configured, else
    // straight from the store.
    let (relay, projection_source, gateway_source, presence_bus) = match &args.nats.nats_url {
        Some(url) => {
            let relay = command_service::start_relay(url, &args.nats.stream, pool.clone())
                .await?
                .with_metrics(&metrics);
            // Separate connections: the projector's pulls never queue behind websocket traffic.
            let projector_client = platform::bus::connect(url, "meetings-projector").await?;
            let client = platform::bus::connect(url, "meetings").await?;
            metrics.observe_nats("meetings-projector", &projector_client);
            metrics.observe_nats("meetings", &client);
            (
                Some(relay),
                EventSource::Stream(async_nats::jetstream::new(projector_client), stream.clone()),
                EventSource::Stream(async_nats::jetstream::new(client.clone()), stream.clone()),
                Some(client),
            )
        }
        None => (
            None,
            EventSource::Store(store.clone()),
            EventSource::Store(store.clone()),
            None,
        ),
    };
    let gateway = realtime::shared(
        pool.clone(),
        jwt.clone(),
        presence_bus.map(|client| (client, &stream)),
        args.gateway.allowed_origins.clone(),
        realtime::connection::Limits::default(),
    );
    gateway.metrics.register(&metrics);

    let command_state = AppState::new(
        store.clone(),
        Arc::new(PgSessionStore::new(pool.clone())),
        jwt.clone(),
        args.auth,
    )
    .with_limits(&args.limits)
    .with_metrics(&metrics);
    let query_state = query_service::AppState::from_args(pool.clone(), jwt.clone(), &args.query);
    let mut checks = command_service::readiness_checks(&command_state);
    checks.extend(query_service::readiness_checks(&query_state));
    let mut openapi = command_service::openapi::ApiDoc::openapi();
    openapi.merge(query_service::openapi::ApiDoc::openapi());
    let router = command_service::api_router(command_state.clone())
        .merge(query_service::api_router(query_state, &metrics))
        .merge(realtime::api_router(gateway.clone()))
        .merge(platform::openapi::router(openapi))
        .merge(platform::http::health::router(checks, metrics.clone()));
    let breaker = platform::breaker::DatabaseBreaker::new(pool.clone());
    let router = platform::breaker::protect(router, &breaker, &metrics);
    // The browser client, outside the breaker: it loads (and says the API is down) even
    // while the database is unreachable.
    let router = router.merge(web::router());
    let router = platform::http::finish_router(router, metrics.clone());

    let server = Server::new(
        "meetings",
        platform::service::bind(args.listen).await?,
        router,
    )
    .with_limits(args.http.clone())
    .with_revocations(pool.clone(), &jwt);
    let server = audit::anchor::with_task(server, pool.clone(), store.clone(), anchor_signer);
    let server = command_service::with_tasks(server, &command_state, relay);
    let server = realtime::with_tasks(server, &gateway, gateway_source);
    let server = projector::with_task(server, pool, projection_source, &metrics);
    println!("meetings is listening on http://{}", server.local_addr());
    server.run_until(platform::shutdown::signal()).await
}

/// Reads `<data-dir>/jwt-ed25519.pem`, creating it (owner-only) with a new Ed25519 key on
/// first start.
fn generated_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("jwt-ed25519.pem");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text);
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
    let key = platform::auth::keys::generate_ed25519_pem();
    write_private(&path, &key)?;
    tracing::info!(path = %path.display(), "generated an Ed25519 token signing key");
    Ok(key)
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

#[cfg(test)]
mod settings_tests;
