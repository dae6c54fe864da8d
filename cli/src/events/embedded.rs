//! Commands on an embedded installation that take its lock: `meetings events copy` (moving
//! it to PostgreSQL, [`meetings::copy`]) and `meetings events replay`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use super::Failure;
use indicatif::ProgressBar;

/// `meetings events copy`: the copy, then `verify` on the target.
pub(super) async fn copy(source: &Path, target: &str) -> Result<ExitCode, Failure> {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    let copied = meetings::copy::to_postgres(source, target, &|n| {
        bar.set_message(format!("{n} events copied"))
    })
    .await
    .map_err(|e| Failure(e.exit_code(), e.into()))?;
    bar.finish_and_clear();
    println!(
        "copied {} events of {} aggregates, {} accounts, {} sessions, {} calendar feeds; read \
         models rebuilt from {} events",
        copied.events,
        copied.aggregates,
        copied.accounts,
        copied.refresh_tokens,
        copied.calendar_feeds,
        copied.projected
    );
    let pool = sqlx::PgPool::connect(target)
        .await
        .map_err(Failure::usage)?;
    let report = audit::verify::verify(&pool, audit::verify::Options::default(), &|_| {})
        .await
        .map_err(Failure::problem)?;
    println!(
        "verified on the target: {} events, {} problem(s)",
        report.events, report.problem_count
    );
    if report.problem_count > 0 || report.events != copied.events {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a data directory without an embedded installation (a typo must not create one).
pub(super) fn installed(file: &Path) -> Result<(), Failure> {
    if file.exists() {
        return Ok(());
    }
    Err(Failure::usage(anyhow::anyhow!(
        "no embedded installation at {} (and no MEETINGS_DATABASE_URL)",
        file.display()
    )))
}

/// `meetings events replay` in embedded mode: with `meetings serve` stopped (its lock is
/// taken here), every read model rebuilt from the log in one transaction.
pub(super) async fn replay(file: &Path) -> Result<ExitCode, Failure> {
    let lock = meetings::embedded::lock(file).map_err(|e| {
        Failure::usage(e.context(
            "embedded mode runs in one process: stop `meetings serve`, replay, start it again",
        ))
    })?;
    let events = platform::db::sqlite::SqliteFile::open_events(file)
        .await
        .map_err(Failure::usage)?;
    let read_models = platform::db::sqlite::SqliteFile::open_read_models(
        &meetings::embedded::read_models_file(file),
    )
    .await
    .map_err(Failure::usage)?;
    let store = platform::store::SqliteEventStore::new(events);
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("rebuilding the read models");
    let applied = projector::sources::sqlite::replay(&store, &read_models)
        .await
        .map_err(Failure::problem)?;
    bar.finish_and_clear();
    let (checkpoint, _) = projector::sources::sqlite::status(&read_models)
        .await
        .map_err(Failure::problem)?;
    drop(lock);
    println!(
        "read models rebuilt from {applied} events (checkpoint {})",
        checkpoint.map_or_else(|| "none".to_string(), |p| p.to_string())
    );
    Ok(ExitCode::SUCCESS)
}
