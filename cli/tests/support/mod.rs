//! Running the `meetings` binary of this package against a database.

#![allow(dead_code)] // each test binary uses a different part

use std::process::Command;

/// `meetings <args>` with `MEETINGS_DATABASE_URL=<database_url>`: its exit code, standard
/// output and standard error.
pub fn meetings(database_url: &str, args: &[&str]) -> (i32, String, String) {
    run(args, &[("MEETINGS_DATABASE_URL", database_url)])
}

/// `meetings <args>` with the variables `env` (and no other `MEETINGS_*` of the caller's):
/// its exit code, standard output and standard error.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meetings"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("MEETINGS_")) {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .env("MEETINGS_LOG_FORMAT", "text")
        .output()
        .expect("run meetings");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The problems of a `verify --json` report as (kind, position).
pub fn problems(report: &serde_json::Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["position"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
