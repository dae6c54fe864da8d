//! `meetings`: the operator CLI — `serve` (everything in one process), `migrate`, and user
//! administration. The audit commands (`meetings events …`) arrive with the audit issue.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use command_service::sessions::PgSessionStore;
use command_service::{AppState, Application, AuthSettings};
use platform::auth::JwtKeys;
use platform::config::{DatabaseSettings, JwtSettings, LogSettings, Secret, MIN_JWT_SECRET_BYTES};
use platform::metrics::Metrics;
use platform::store::{EventStore, PgEventStore};

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
    /// Run the system in one process on one port (today: the command API).
    Serve(ServeArgs),
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
        Command::Serve(args) => serve(args).await?,
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
    let state = AppState::new(
        Arc::new(PgEventStore::new(pool.clone())),
        Arc::new(PgSessionStore::new(pool)),
        jwt,
        args.auth,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (MEETINGS_LISTEN): {e}", args.listen))?;
    let application =
        Application::from_parts(listener, command_service::router(state, Metrics::new()));
    println!(
        "meetings is listening on http://{}",
        application.local_addr()
    );
    application.run_until(platform::shutdown::signal()).await?;
    Ok(())
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
