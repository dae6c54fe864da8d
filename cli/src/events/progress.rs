//! Progress bars of the long commands, on standard error when it is a terminal (hidden
//! otherwise, so scripts and pipes get clean output).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgPool;

/// A progress bar on standard error when it is a terminal (hidden otherwise), sized by the
/// planner's estimate of the log's length.
pub(super) async fn progress_bar(pool: &PgPool, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let estimate: i64 = sqlx::query_scalar(
        "SELECT GREATEST(reltuples::bigint, 0) FROM pg_class WHERE oid = 'events'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(0);
    let bar = ProgressBar::with_draw_target(
        (estimate > 0).then_some(estimate as u64),
        ProgressDrawTarget::stderr(),
    );
    let template = format!(
        "{{msg}} {{bar:40}} {{human_pos}}/~{{human_len}} events {verb} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// A progress bar on standard error when it is a terminal, for a log of unknown length.
pub(super) fn unsized_progress_bar(verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{{human_pos}} events {verb} ({{per_sec}})"))
    {
        bar.set_style(style);
    }
    bar
}
