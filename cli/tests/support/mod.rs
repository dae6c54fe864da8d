//! Running the `meetings` binary of this package against a database.

use std::process::Command;

/// `meetings <args>` with `MEETINGS_DATABASE_URL=<database_url>`: its exit code, standard
/// output and standard error.
pub fn meetings(database_url: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meetings"))
        .args(args)
        .env("MEETINGS_DATABASE_URL", database_url)
        .env("MEETINGS_LOG_FORMAT", "text")
        .output()
        .expect("run meetings");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}
