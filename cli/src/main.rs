//! `meetings`: the operator CLI — `serve` (everything in one process), `migrate`, user
//! administration, and the audit commands (`meetings events …`, in [`events`]).

mod events;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use meetings::serve::ServeArgs;
use platform::config::{DatabaseSettings, LogSettings};
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
        /// Where an embedded installation keeps its files (without MEETINGS_DATABASE_URL).
        #[arg(long = "data-dir", env = "MEETINGS_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
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
    if matches!(
        cli.command,
        Command::Events { .. } | Command::Projections { .. }
    ) {
        platform::without_huge_pages();
    }
    match cli.command {
        Command::Events {
            database,
            data_dir,
            command,
        } => events::run(database, &data_dir, command).await,
        Command::Projections {
            database,
            command: ProjectionsCommand::Rebuild,
        } => {
            // The alias has no --data-dir: an embedded installation is the default ./data
            // (or MEETINGS_DATABASE_URL=sqlite://…).
            events::run(
                database,
                Path::new("./data"),
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
        Command::Serve(args) => meetings::serve::serve(*args).await?,
        Command::Events { .. } | Command::Projections { .. } => {
            unreachable!("BUG: handled in main")
        }
    }
    Ok(())
}

#[cfg(test)]
mod settings_tests;
