//! `meetings events …`: the audit commands. Tables for people, `--json` for scripts, progress
//! bars on a terminal, and exit codes scripts can trust: 0 ok, 1 a problem found (tampering,
//! an unknown aggregate, an event that cannot be applied), 2 usage or connection error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod embedded;
mod progress;

use progress::{progress_bar, unsized_progress_bar};

use audit::export::{Filter, Format, Source};
use audit::{Kind, Point};
use clap::Subcommand;
use platform::config::{DatabaseLocation, DatabaseSettings};
use platform::db::sqlite::SqliteFile;
use platform::store::{EventStore, PgEventStore, Position};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// An aggregate's timeline: position, time, actor, event type and a one-line summary of
    /// every event; `--json` prints one JSON object per event with its full payload,
    /// metadata and hashes (the entries of GET /v1/admin/history/…).
    #[command(
        after_help = "Example:\n  meetings events history meeting 0193a6f2-7c1e-7d3a-9f1e-2b4c6d8e0f12\n  meetings events history user 0193a6f2-… --json | jq .summary"
    )]
    History {
        /// `meeting` or `user`.
        aggregate_type: Kind,
        id: Uuid,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// An aggregate as it was at a point, rebuilt from its events by the domain's own code
    /// (with today's upcasters); or, with `--diff A B`, what changed between two points.
    /// A point is an RFC 3339 time (events recorded at or before it) or a global position.
    #[command(
        after_help = "Example:\n  meetings events state meeting 0193a6f2-… --at 2026-12-01T09:00:00Z\n  meetings events state meeting 0193a6f2-… --diff 2026-12-01T09:00:00Z 2026-12-02T09:00:00Z"
    )]
    State {
        aggregate_type: Kind,
        id: Uuid,
        /// The point in time or position.
        #[arg(long, required_unless_present = "diff", conflicts_with = "diff")]
        at: Option<Point>,
        /// Two points: show the fields that differ from the first to the second.
        #[arg(long, num_args = 2, value_names = ["A", "B"])]
        diff: Option<Vec<Point>>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The log in global order as JSON lines or CSV, streamed with constant memory. Only
    /// committed events below any still-running transaction are exported, so exporting again
    /// `--from` the last position continues exactly after it.
    #[command(
        after_help = "Example:\n  meetings events export --format jsonl --output events.jsonl\n  meetings events export --from 2026-12-01T00:00:00Z --aggregate-type meeting --format csv"
    )]
    Export {
        /// At or after this time or position.
        #[arg(long)]
        from: Option<Point>,
        /// At or before this time or position.
        #[arg(long)]
        to: Option<Point>,
        /// Only `meeting` or only `user` events.
        #[arg(long)]
        aggregate_type: Option<Kind>,
        /// Only events caused by this user (the nil UUID: the operator CLI).
        #[arg(long)]
        actor: Option<Uuid>,
        /// `jsonl` or `csv`.
        #[arg(long, default_value = "jsonl")]
        format: Format,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Checks that nobody altered the log: recomputes every event's hash and its link to its
    /// predecessor, and the running hash and count at every global anchor (which shows a
    /// deleted aggregate or a cut-off tail). Exits 1 with each problem's position.
    #[command(
        after_help = "Example:\n  meetings events verify\n  meetings events verify --from 000000000000a1b20000000000004e21   # a verified anchor of an earlier run"
    )]
    Verify {
        /// Resume after this anchor (printed by an earlier run as verified).
        #[arg(long)]
        from: Option<Position>,
        /// The public key (PEM) of MEETINGS_AUDIT_KEY_FILE: every anchor must carry its
        /// signature, so anchors rewritten by someone without the key are found too.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The report as JSON (every finding with its position and kind).
        #[arg(long)]
        json: bool,
    },
    /// Moves an embedded installation (SQLite, the default `sqlite://./data/meetings.db`) to
    /// PostgreSQL: the event log with every hash (each recomputed and compared on the way),
    /// accounts, sessions and calendar feeds in one transaction, then the read models rebuilt
    /// there and the copy verified. Stop `meetings serve` first; the target must hold no
    /// events. Then start with MEETINGS_DATABASE_URL set to the target.
    #[command(
        after_help = "Example:\n  meetings events copy --to postgres://meetings@db.internal/meetings\n  MEETINGS_DATABASE_URL=postgres://meetings@db.internal/meetings meetings serve"
    )]
    Copy {
        /// The PostgreSQL database to move to (`postgres://…`).
        #[arg(long)]
        to: String,
    },
    /// Rebuilds the read models from the log while the services keep running: builds them
    /// beside the live ones, catches up, swaps them in atomically (the projector pauses for
    /// the swap only) and lets the projector continue from there. Embedded mode is one
    /// process: stop `meetings serve` first; the rebuild is then one SQLite transaction.
    #[command(after_help = "Example:\n  meetings events replay --all")]
    Replay {
        /// The projection to rebuild (`read_models`, the only one today).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        projection: Option<String>,
        /// Every projection.
        #[arg(long)]
        all: bool,
    },
}

/// An error with the exit code it deserves.
struct Failure(u8, anyhow::Error);

impl Failure {
    fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure(2, error.into())
    }
    fn problem(error: impl Into<anyhow::Error>) -> Self {
        Failure(1, error.into())
    }
}

/// A store error is a connection error (2) when the database is unreachable, else a problem
/// with the data (1).
fn store_failure(error: platform::store::StoreError) -> Failure {
    match error {
        platform::store::StoreError::Unavailable(_) => Failure(2, error.into()),
        other => Failure(1, other.into()),
    }
}

fn database_failure(error: sqlx::Error) -> Failure {
    if platform::db::is_transient(&error) {
        Failure(2, error.into())
    } else {
        Failure(1, error.into())
    }
}

pub async fn run(database: DatabaseSettings, data_dir: &Path, command: EventsCommand) -> ExitCode {
    let result = async {
        match (
            database.location(data_dir).map_err(Failure::usage)?,
            command,
        ) {
            (DatabaseLocation::Sqlite(file), EventsCommand::Copy { to }) => {
                embedded::copy(&file, &to).await
            }
            (DatabaseLocation::Postgres(_), EventsCommand::Copy { .. }) => {
                Err(Failure::usage(anyhow::anyhow!(
                    "copy moves an embedded installation: leave MEETINGS_DATABASE_URL unset (or \
                     sqlite://…) and give the PostgreSQL database with --to"
                )))
            }
            (DatabaseLocation::Sqlite(file), EventsCommand::Replay { projection, .. }) => {
                known_projection(projection.as_deref())?;
                embedded::installed(&file)?;
                embedded::replay(&file).await
            }
            (DatabaseLocation::Sqlite(file), command) => {
                embedded::installed(&file)?;
                let file = platform::db::sqlite::SqliteFile::open_events(&file)
                    .await
                    .map_err(Failure::usage)?;
                let store = Arc::new(platform::store::SqliteEventStore::new(file.clone()));
                execute(store, Storage::Embedded(file), command).await
            }
            (DatabaseLocation::Postgres(_), command) => {
                let pool = platform::service::connect_migrated(&database)
                    .await
                    .map_err(Failure::usage)?;
                execute(
                    Arc::new(PgEventStore::new(pool.clone())),
                    Storage::Postgres(&pool),
                    command,
                )
                .await
            }
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(Failure(code, error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// Refuses a `--projection` nobody projects.
fn known_projection(projection: Option<&str>) -> Result<(), Failure> {
    match projection {
        Some(name) if !projector::replay::PROJECTIONS.contains(&name) => {
            Err(Failure::usage(anyhow::anyhow!(
                "unknown projection '{name}' (known: {})",
                projector::replay::PROJECTIONS.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// Where the log is, beside its store.
enum Storage<'a> {
    Postgres(&'a PgPool),
    /// The events file of embedded mode (its anchors are there too).
    Embedded(SqliteFile),
}

async fn execute(
    store: Arc<dyn EventStore>,
    storage: Storage<'_>,
    command: EventsCommand,
) -> Result<ExitCode, Failure> {
    let pool = match &storage {
        Storage::Postgres(pool) => Some(*pool),
        Storage::Embedded(_) => None,
    };
    let upcasters = domain::upcasters::upcasters();
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock<'_>, text: &str| -> Result<(), Failure> {
        writeln!(out, "{text}").map_err(Failure::usage)
    };
    match command {
        EventsCommand::History {
            aggregate_type,
            id,
            json,
        } => {
            let mut after = 0;
            let mut first = true;
            loop {
                let page = audit::history::page(
                    store.as_ref(),
                    aggregate_type,
                    id,
                    after,
                    audit::history::MAX_PAGE,
                    &upcasters,
                )
                .await
                .map_err(store_failure)?;
                if first && page.events.is_empty() {
                    return Err(Failure::problem(anyhow::anyhow!(
                        "{aggregate_type} {id} has no events"
                    )));
                }
                if json {
                    for entry in &page.events {
                        print(&mut out, &serde_json::to_string(entry).expect("BUG: JSON"))?;
                    }
                } else {
                    let actors = match pool {
                        Some(pool) => actor_names(pool, &page.events).await,
                        // Embedded: the ids stand for themselves.
                        None => Default::default(),
                    };
                    if first {
                        print(
                            &mut out,
                            &format!(
                                "{:>5}  {:<27}  {:<32}  {:<24}  {:<22}  SUMMARY",
                                "SEQ", "RECORDED (UTC)", "POSITION", "ACTOR", "EVENT"
                            ),
                        )?;
                    }
                    for entry in &page.events {
                        let actor = match entry.actor_id {
                            None => "-".to_string(),
                            Some(id) if id.is_nil() => "operator".to_string(),
                            Some(id) => actors.get(&id).cloned().unwrap_or_else(|| id.to_string()),
                        };
                        print(
                            &mut out,
                            &format!(
                                "{:>5}  {:<27}  {}  {:<24}  {:<22}  {}",
                                entry.sequence,
                                entry
                                    .recorded_at
                                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                                entry.position,
                                actor,
                                entry.event_type,
                                entry.summary
                            ),
                        )?;
                    }
                }
                first = false;
                match page.next_after_sequence {
                    Some(next) => after = next,
                    None => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::State {
            aggregate_type,
            id,
            at,
            diff,
            json,
        } => {
            let state = |point: Point| {
                let store = store.clone();
                let upcasters = &upcasters;
                async move {
                    audit::state::state_at(store.as_ref(), aggregate_type, id, point, upcasters)
                        .await
                        .map_err(store_failure)
                }
            };
            if let Some(points) = diff {
                let (a, b) = (state(points[0]).await?, state(points[1]).await?);
                let changes = audit::state::diff(&a.state, &b.state);
                if json {
                    let document = serde_json::json!({"from": a, "to": b, "changes": changes});
                    print(
                        &mut out,
                        &serde_json::to_string_pretty(&document).expect("BUG"),
                    )?;
                } else {
                    print(
                        &mut out,
                        &format!(
                            "{aggregate_type} {id}: version {} at {} → version {} at {}",
                            a.version, a.at, b.version, b.at
                        ),
                    )?;
                    if changes.is_empty() {
                        print(&mut out, "no differences")?;
                    }
                    for change in changes {
                        let show = |v: &Option<serde_json::Value>| {
                            v.as_ref().map_or("(absent)".to_string(), |v| v.to_string())
                        };
                        print(
                            &mut out,
                            &format!(
                                "{}: {} → {}",
                                change.path,
                                show(&change.before),
                                show(&change.after)
                            ),
                        )?;
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let at = at.expect("BUG: clap requires --at without --diff");
            let state = state(at).await?;
            if state.version == 0 {
                return Err(Failure::problem(anyhow::anyhow!(
                    "{aggregate_type} {id} had no events at {at}"
                )));
            }
            if json {
                print(
                    &mut out,
                    &serde_json::to_string_pretty(&state).expect("BUG"),
                )?;
            } else {
                print(
                    &mut out,
                    &format!(
                        "{aggregate_type} {id} at {at}: version {}, last event at position {} recorded {}",
                        state.version,
                        state.position.map(|p| p.to_string()).unwrap_or_default(),
                        state
                            .recorded_at
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                )?;
                print(
                    &mut out,
                    &serde_json::to_string_pretty(&state.state).expect("BUG"),
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Export {
            from,
            to,
            aggregate_type,
            actor,
            format,
            output,
        } => {
            drop(out);
            let filter = Filter {
                from,
                to,
                kind: aggregate_type,
                actor,
            };
            let (source, bar) = match pool {
                Some(pool) => (Source::Postgres(pool), progress_bar(pool, "exported").await),
                None => (
                    Source::Store(store.as_ref()),
                    unsized_progress_bar("exported"),
                ),
            };
            let report = |n: u64| bar.set_position(n);
            let count = match output {
                Some(path) => {
                    let file = tokio::fs::File::create(&path).await.map_err(|e| {
                        Failure::usage(anyhow::anyhow!("cannot create {}: {e}", path.display()))
                    })?;
                    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
                    audit::export::export_from(source, &filter, format, &mut writer, &report).await
                }
                None => {
                    let mut writer =
                        tokio::io::BufWriter::with_capacity(1 << 20, tokio::io::stdout());
                    audit::export::export_from(source, &filter, format, &mut writer, &report).await
                }
            }
            .map_err(copy_failure)?;
            bar.finish_and_clear();
            eprintln!("exported {count} events");
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Verify {
            from,
            public_key,
            json,
        } => {
            let signed_by = match public_key {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Failure::usage(anyhow::anyhow!("cannot read {}: {e}", path.display()))
                    })?;
                    let key = audit::anchor::AnchorVerifier::from_pem(&text)
                        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
                    Some(Arc::new(key))
                }
                None => None,
            };
            let options = audit::verify::Options { from, signed_by };
            let bar = match &storage {
                Storage::Postgres(pool) => progress_bar(pool, "verified").await,
                Storage::Embedded(_) => unsized_progress_bar("verified"),
            };
            let report = match &storage {
                Storage::Postgres(pool) => {
                    audit::verify::verify(pool, options, &|n| bar.set_position(n)).await
                }
                Storage::Embedded(file) => {
                    let mut anchors = audit::anchor::SqliteAnchors(file.clone());
                    let progress = |n| bar.set_position(n);
                    audit::verify::verify_store(store.as_ref(), &mut anchors, options, &progress)
                        .await
                }
            }
            .map_err(|error| match error {
                audit::verify::VerifyError::NoSuchAnchor(_) => Failure::usage(error),
                audit::verify::VerifyError::Database(e) => database_failure(e),
                audit::verify::VerifyError::Store(e) => store_failure(e),
                other => Failure::problem(other),
            })?;
            bar.finish_and_clear();
            if json {
                print(
                    &mut out,
                    &serde_json::to_string_pretty(&report).expect("BUG"),
                )?;
            } else {
                if !report.problems.is_empty() {
                    print(
                        &mut out,
                        &format!(
                            "{:<32}  {:<22}  {:<8}  {:<36}  {:>5}  DETAIL",
                            "POSITION", "PROBLEM", "TYPE", "AGGREGATE", "SEQ"
                        ),
                    )?;
                }
                for problem in &report.problems {
                    let kind = serde_json::to_value(problem.kind).expect("BUG");
                    print(
                        &mut out,
                        &format!(
                            "{}  {:<22}  {:<8}  {:<36}  {:>5}  {}",
                            problem.position,
                            kind.as_str().unwrap_or_default(),
                            problem.aggregate_type.as_deref().unwrap_or("-"),
                            problem
                                .aggregate_id
                                .map_or("-".to_string(), |id| id.to_string()),
                            problem.sequence.map_or("-".to_string(), |s| s.to_string()),
                            problem.detail
                        ),
                    )?;
                }
                if report.problem_count as usize > report.problems.len() {
                    print(
                        &mut out,
                        &format!(
                            "… and {} more",
                            report.problem_count as usize - report.problems.len()
                        ),
                    )?;
                }
                let verified = report
                    .verified_anchor
                    .map_or("no anchor yet".to_string(), |p| {
                        format!("verified through the anchor at {p}")
                    });
                print(
                    &mut out,
                    &format!(
                        "{} events, {} anchors checked; {}; {} problem(s)",
                        report.events, report.anchors, verified, report.problem_count
                    ),
                )?;
            }
            Ok(if report.problem_count == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        EventsCommand::Copy { .. } => unreachable!("BUG: copy is run before connecting"),
        EventsCommand::Replay { projection, all: _ } => {
            known_projection(projection.as_deref())?;
            let pool = pool.expect("BUG: embedded mode replays before connecting");
            let bar = progress_bar(pool, "applied").await;
            let outcome = projector::replay::replay(pool, store.clone(), &|phase, n| {
                bar.set_message(format!("{phase:?}").to_lowercase());
                bar.set_position(n);
            })
            .await
            .map_err(Failure::problem)?;
            bar.finish_and_clear();
            print(
                &mut out,
                &format!(
                    "read models rebuilt from {} events (checkpoint {}); the projection paused {} ms for the swap",
                    outcome.events,
                    outcome.position.map(|p| p.to_string()).unwrap_or_else(|| "none".into()),
                    outcome.paused.as_millis()
                ),
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn copy_failure(error: audit::copy::CopyError) -> Failure {
    match error {
        audit::copy::CopyError::Database(e) => database_failure(e),
        other => Failure::problem(other),
    }
}

/// Emails of the actors on a page of history, for the table (ids stay in `--json`).
async fn actor_names(
    pool: &PgPool,
    entries: &[audit::history::Entry],
) -> std::collections::HashMap<Uuid, String> {
    let ids: Vec<Uuid> = entries.iter().filter_map(|e| e.actor_id).collect();
    sqlx::query_as::<_, (Uuid, String)>("SELECT id, email FROM rm_users WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(pool)
        .await
        .map(|rows| rows.into_iter().collect())
        .unwrap_or_default()
}
