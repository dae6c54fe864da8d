//! Placeholder binary: refuses to run rather than pretending to serve.

fn main() -> std::process::ExitCode {
    eprintln!(
        "realtime is not built yet (issue #{}); the command-service is the part that runs today",
        realtime::TRACKING_ISSUE
    );
    std::process::ExitCode::from(2)
}
