//! `meetings events copy`: moving an embedded installation to PostgreSQL
//! ([`meetings::copy`]), with its progress and report.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use indicatif::ProgressBar;
use sqlx::PgPool;

use super::Failure;

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

/// Commands that need PostgreSQL (`pool`): on an embedded installation, what to do instead.
pub(super) fn postgres<'p>(pool: Option<&'p PgPool>, what: &str) -> Result<&'p PgPool, Failure> {
    pool.ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "`meetings events {what}` runs on PostgreSQL; move an embedded installation there \
             with `meetings events copy --to postgres://…` (history, state and verify work \
             on both)"
        ))
    })
}
