use super::*;

/// Variables no test sets, so only the command line and defaults apply.
#[derive(clap::Parser, Debug)]
struct Example {
    /// Address to listen on, such as `127.0.0.1:8081`.
    #[arg(
        long = "listen",
        env = "MEETINGS_STARTUP_TEST_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    listen: std::net::SocketAddr,
    /// `postgres://user:password@host:port/database`.
    #[arg(long = "database-url", env = "MEETINGS_STARTUP_TEST_DATABASE_URL")]
    database_url: Option<String>,
    /// HS256 key.
    #[arg(
        long = "jwt-secret",
        env = "MEETINGS_STARTUP_TEST_JWT_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
    /// File holding the key.
    #[arg(
        long = "jwt-secret-file",
        env = "MEETINGS_STARTUP_TEST_JWT_SECRET_FILE"
    )]
    secret_file: Option<std::path::PathBuf>,
}

fn parse(args: &[&str]) -> Result<Startup<Example>, clap::Error> {
    parse_from::<Example, _, _>(std::iter::once("example").chain(args.iter().copied()))
}

#[test]
fn print_config_shows_every_setting_with_its_source_and_no_secret() {
    let Ok(Startup::Print(text)) = parse(&[
        "--print-config",
        "--database-url",
        "postgres://app:hunter2@db:5432/meetings?sslmode=require&password=hunter2",
        "--jwt-secret",
        "a-very-secret-signing-key-of-32-bytes",
        "--jwt-secret-file",
        "/run/secrets/jwt",
    ]) else {
        panic!("--print-config prints");
    };
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("a-very-secret"), "{text}");
    assert!(text.contains(
        "MEETINGS_STARTUP_TEST_DATABASE_URL=postgres://app:[redacted]@db:5432/meetings?sslmode=require&password=[redacted]  # command line"
    ), "{text}");
    assert!(
        text.contains("MEETINGS_STARTUP_TEST_JWT_SECRET=[redacted]  # command line"),
        "{text}"
    );
    assert!(
        text.contains("MEETINGS_STARTUP_TEST_JWT_SECRET_FILE=/run/secrets/jwt  # command line"),
        "{text}"
    );
    assert!(
        text.contains("MEETINGS_STARTUP_TEST_LISTEN=127.0.0.1:8081  # default"),
        "{text}"
    );
}

#[test]
fn without_print_config_the_settings_are_parsed() {
    let Ok(Startup::Run(example)) = parse(&["--listen", "0.0.0.0:9000"]) else {
        panic!("parses");
    };
    assert_eq!(example.listen.port(), 9000);
    assert!(example.database_url.is_none() && example.secret.is_none());
}

#[test]
fn a_bad_value_names_the_setting_and_the_form_it_must_take() {
    let Err(error) = parse(&["--listen", "localhost"]) else {
        panic!("refused");
    };
    let text = error.to_string();
    assert!(
        text.contains("--listen (MEETINGS_STARTUP_TEST_LISTEN)"),
        "{text}"
    );
    assert!(text.contains("`localhost`"), "{text}");
    assert!(text.contains("invalid socket address syntax"), "{text}");
    assert!(
        text.contains("expected: Address to listen on, such as `127.0.0.1:8081`"),
        "{text}"
    );
    assert_eq!(error.exit_code(), 2);
}

#[test]
fn urls_lose_their_passwords_and_keep_the_rest() {
    assert_eq!(
        redact_url("nats://relay:pw@nats-1:4222,nats://relay:pw@nats-2:4222"),
        "nats://relay:[redacted]@nats-1:4222,nats://relay:[redacted]@nats-2:4222"
    );
    assert_eq!(
        redact_url("postgres://user@host/db"),
        "postgres://user@host/db"
    );
    assert_eq!(
        redact_url("sqlite://./data/meetings.db"),
        "sqlite://./data/meetings.db"
    );
    assert_eq!(redact_url("0.0.0.0:8080"), "0.0.0.0:8080");
}
