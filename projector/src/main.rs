//! Placeholder binary: refuses to run rather than pretending to serve.

fn main() -> std::process::ExitCode {
    eprintln!(
        "projector is not built yet (issue #{}); the command-service is the part that runs today",
        projector::TRACKING_ISSUE
    );
    std::process::ExitCode::from(2)
}
