//! Placeholder binary: refuses to run rather than pretending to serve.

fn main() -> std::process::ExitCode {
    eprintln!(
        "query-service is not built yet (issue #{}); the command-service is the part that runs today",
        query_service::TRACKING_ISSUE
    );
    std::process::ExitCode::from(2)
}
