//! The service binaries' configuration as an operator meets it: `--print-config` shows what a
//! process would run with, secrets redacted, and a bad variable is refused at start by name.

use std::process::Command;

use e2e::processes::binary;

/// `name` with only the given `MEETINGS_*` variables.
fn service(name: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary(name));
    for (key, _) in std::env::vars() {
        if key.starts_with("MEETINGS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command
}

#[test]
fn print_config_shows_the_effective_settings_of_every_service_without_secrets() {
    let env = [
        (
            "MEETINGS_DATABASE_URL",
            "postgres://app:db-password@db:5432/meetings",
        ),
        ("MEETINGS_NATS_URL", "nats://relay:nats-password@nats:4222"),
        (
            "MEETINGS_JWT_SECRET",
            "a-signing-key-that-is-32-bytes-long!",
        ),
        ("MEETINGS_LISTEN", "0.0.0.0:9999"),
    ];
    for name in ["command-service", "query-service", "projector", "realtime"] {
        let output = service(name, &env).arg("--print-config").output().unwrap();
        assert!(output.status.success(), "{name}");
        let text = String::from_utf8(output.stdout).unwrap();
        for secret in ["db-password", "nats-password", "a-signing-key"] {
            assert!(!text.contains(secret), "{name} printed a secret:\n{text}");
        }
        assert!(
            text.contains(
                "MEETINGS_DATABASE_URL=postgres://app:[redacted]@db:5432/meetings  # environment"
            ),
            "{name}:\n{text}"
        );
        assert!(
            text.contains("MEETINGS_LISTEN=0.0.0.0:9999  # environment"),
            "{name}:\n{text}"
        );
        assert!(
            text.contains("MEETINGS_HTTP_IDLE_TIMEOUT=60s  # default"),
            "{name}:\n{text}"
        );
    }
}

#[test]
fn a_bad_variable_is_refused_at_start_by_its_name_with_the_expected_form() {
    for (name, variable, value, form) in [
        (
            "command-service",
            "MEETINGS_LISTEN",
            "localhost",
            "such as `0.0.0.0:8081`",
        ),
        (
            "query-service",
            "MEETINGS_MIN_POSITION_WAIT",
            "soon",
            "500ms",
        ),
        ("realtime", "MEETINGS_HTTP_IDLE_TIMEOUT", "a minute", "30d"),
        ("projector", "MEETINGS_LOG_FORMAT", "xml", "json"),
    ] {
        let output = service(name, &[(variable, value)]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name} {variable}");
        let text = String::from_utf8(output.stderr).unwrap();
        assert!(
            text.contains(&format!("{variable} has an invalid value `{value}`")),
            "{name}:\n{text}"
        );
        assert!(
            text.contains(form),
            "{name} {variable}: the form is missing:\n{text}"
        );
    }
}
