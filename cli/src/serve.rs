//! `meetings serve`: the whole system in one process, on PostgreSQL (and NATS when
//! configured) or, with no configuration, embedded on SQLite files ([`crate::embedded`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use command_service::sessions::PgSessionStore;
use command_service::{AppState, AuthSettings};
use platform::auth::JwtKeys;
use platform::bus::EventSource;
use platform::config::{DatabaseLocation, DatabaseSettings, HttpLimits, JwtSettings, NatsSettings};
use platform::metrics::Metrics;
use platform::service::Server;
use platform::store::{EventStore, PgEventStore};
use utoipa::OpenApi;

use crate::{embedded, web};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub limits: command_service::LimitSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
    #[command(flatten)]
    pub query: query_service::QueryArgs,
    #[command(flatten)]
    pub gateway: realtime::GatewayArgs,
    #[command(flatten)]
    pub http: HttpLimits,
    #[command(flatten)]
    pub audit: audit::anchor::AuditSettings,
    /// Address to bind, `host:port` such as `127.0.0.1:8080`.
    #[arg(
        long = "listen",
        env = "MEETINGS_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Where `serve` keeps generated state (the JWT key when none is configured).
    #[arg(long = "data-dir", env = "MEETINGS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
        DatabaseLocation::Sqlite(file) => embedded::serve(&args, jwt, &file).await,
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
    let router = api(&command_state, query_state, &gateway, &metrics);
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

/// The whole API of one process, whatever its storage: commands, queries, `/v1/ws`, the
/// OpenAPI document, and health with both sides' readiness checks.
pub(crate) fn api(
    commands: &AppState,
    queries: query_service::AppState,
    gateway: &Arc<realtime::Shared>,
    metrics: &Metrics,
) -> axum::Router {
    let mut checks = command_service::readiness_checks(commands);
    checks.extend(query_service::readiness_checks(&queries));
    let mut openapi = command_service::openapi::ApiDoc::openapi();
    openapi.merge(query_service::openapi::ApiDoc::openapi());
    command_service::api_router(commands.clone())
        .merge(query_service::api_router(queries, metrics))
        .merge(realtime::api_router(gateway.clone()))
        .merge(platform::openapi::router(openapi))
        .merge(platform::http::health::router(checks, metrics.clone()))
}
