//! The README's configuration table is the operators' contract: every variable it lists must
//! be read by `meetings serve` and by exactly the service binaries it names, and the values
//! must arrive typed the same way in both (one `clap` group per service, flattened into both).

use std::collections::BTreeSet;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::{Cli, Command};

const README: &str = include_str!("../../README.md");

const SERVICES: [&str; 4] = ["command-service", "query-service", "realtime", "projector"];

/// The `MEETINGS_*` variables a clap command (and its subcommands) reads.
fn variables(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    for sub in command.get_subcommands() {
        names.extend(variables(sub));
    }
    names
}

fn service_variables(service: &str) -> BTreeSet<String> {
    variables(&match service {
        "command-service" => command_service::Settings::command(),
        "query-service" => query_service::Settings::command(),
        "realtime" => realtime::Settings::command(),
        "projector" => projector::Settings::command(),
        other => panic!("README names an unknown reader `{other}`"),
    })
}

/// Rows of the README's configuration table: (variables of the row, who reads them).
fn readme_rows() -> Vec<(Vec<String>, Vec<String>)> {
    let table = README
        .split_once("| variable | meaning | default | read by |")
        .expect("the README has the configuration table")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let names = cells[0]
                .split('`')
                .filter(|part| part.starts_with("MEETINGS_"))
                .map(str::to_string)
                .collect();
            let readers = cells
                .last()
                .expect("a row has cells")
                .split(',')
                .map(|reader| reader.trim().to_string())
                .collect();
            (names, readers)
        })
        .collect()
}

#[test]
fn every_readme_setting_reaches_serve_and_the_services_it_names() {
    let serve = variables(&Cli::command());
    let rows = readme_rows();
    assert!(rows.len() >= 15, "the table was not found whole: {rows:?}");
    let mut documented = BTreeSet::new();
    for (names, readers) in rows {
        assert!(!names.is_empty(), "a row without a variable: {readers:?}");
        for name in names {
            documented.insert(name.clone());
            let (expected_services, in_serve): (Vec<&str>, bool) = match readers
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["all"] => (SERVICES.to_vec(), true),
                ["tests"] | ["none yet"] => (vec![], false),
                listed => (
                    listed.iter().copied().filter(|r| *r != "serve").collect(),
                    listed.contains(&"serve"),
                ),
            };
            assert_eq!(
                serve.contains(&name),
                in_serve,
                "`meetings serve` and {name}"
            );
            for service in SERVICES {
                assert_eq!(
                    service_variables(service).contains(&name),
                    expected_services.contains(&service),
                    "{service} and {name} (README says: {readers:?})"
                );
            }
        }
    }
    // And nothing is read that the table does not document.
    let mut read = serve;
    for service in SERVICES {
        read.extend(service_variables(service));
    }
    let undocumented: Vec<_> = read.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "read but not in the README: {undocumented:?}"
    );
}

#[test]
fn the_environment_parses_into_serve_args_as_into_each_service() {
    // The only test of this binary that touches the environment: no other test races it.
    let settings = [
        (
            "MEETINGS_DATABASE_URL",
            "postgres://u@db.internal:5432/meetings",
        ),
        ("MEETINGS_DATABASE_MAX_CONNECTIONS", "7"),
        ("MEETINGS_LISTEN", "127.0.0.1:9999"),
        ("MEETINGS_LOG_FORMAT", "text"),
        (
            "MEETINGS_JWT_SECRET",
            "an-hs256-key-of-at-least-thirty-two-bytes",
        ),
        ("MEETINGS_JWT_ISSUER", "issuer-x"),
        ("MEETINGS_JWT_AUDIENCE", "audience-y"),
        ("MEETINGS_ACCESS_TOKEN_TTL", "90s"),
        ("MEETINGS_REFRESH_TOKEN_TTL", "7d"),
        ("MEETINGS_NATS_URL", "nats://bus.internal:4222"),
        ("MEETINGS_STREAM", "TENANT_A"),
        ("MEETINGS_MIN_POSITION_WAIT", "500ms"),
        ("MEETINGS_READ_BATCH", "9"),
        (
            "MEETINGS_ALLOWED_ORIGINS",
            "https://a.example,https://b.example",
        ),
        ("MEETINGS_DATA_DIR", "/var/lib/meetings"),
        ("MEETINGS_HTTP_HEADER_TIMEOUT", "3s"),
        ("MEETINGS_HTTP_REQUEST_TIMEOUT", "45s"),
        ("MEETINGS_HTTP_IDLE_TIMEOUT", "2m"),
        ("MEETINGS_HTTP_MAX_CONNECTIONS", "123"),
    ];
    for (name, value) in settings {
        std::env::set_var(name, value);
    }
    std::env::remove_var("MEETINGS_JWT_SECRET_FILE");

    let cli = Cli::try_parse_from(["meetings", "serve"]).expect("serve parses the environment");
    let Command::Serve(serve) = cli.command else {
        panic!("not serve")
    };
    let command = command_service::Settings::try_parse_from(["command-service"]).unwrap();
    let query = query_service::Settings::try_parse_from(["query-service"]).unwrap();
    let realtime = realtime::Settings::try_parse_from(["realtime"]).unwrap();
    let projector = projector::Settings::try_parse_from(["projector"]).unwrap();

    assert_eq!(cli.log.log_format, Some(platform::config::LogFormat::Text));
    assert_eq!(serve.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(serve.data_dir.to_str(), Some("/var/lib/meetings"));
    assert_eq!(serve.query.min_position_wait, Duration::from_millis(500));
    assert_eq!(serve.query.read_batch, 9);
    assert_eq!(serve.auth.access_token_ttl, Duration::from_secs(90));
    assert_eq!(
        serve.auth.refresh_token_ttl,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(
        serve.gateway.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    // The same values reach each service binary.
    for database in [
        &serve.database,
        &command.database,
        &query.database,
        &realtime.database,
        &projector.database,
    ] {
        assert_eq!(
            database.database_url.as_deref(),
            Some("postgres://u@db.internal:5432/meetings")
        );
        assert_eq!(database.max_connections, 7);
    }
    for jwt in [&serve.jwt, &command.jwt, &query.jwt, &realtime.jwt] {
        assert_eq!(jwt.issuer, "issuer-x");
        assert_eq!(jwt.audience, "audience-y");
        assert!(jwt.secret().is_ok());
    }
    for nats in [&serve.nats, &command.nats, &realtime.nats, &projector.nats] {
        assert_eq!(nats.nats_url.as_deref(), Some("nats://bus.internal:4222"));
        assert_eq!(nats.stream, "TENANT_A");
    }
    for listen in [
        command.listen,
        query.listen,
        realtime.listen,
        projector.listen,
    ] {
        assert_eq!(listen.to_string(), "127.0.0.1:9999");
    }
    assert_eq!(command.auth.access_token_ttl, serve.auth.access_token_ttl);
    assert_eq!(command.auth.refresh_token_ttl, serve.auth.refresh_token_ttl);
    assert_eq!(query.query.min_position_wait, serve.query.min_position_wait);
    assert_eq!(query.query.read_batch, serve.query.read_batch);
    assert_eq!(
        realtime.gateway.allowed_origins,
        serve.gateway.allowed_origins
    );
    assert_eq!(
        serve.http,
        platform::config::HttpLimits {
            header_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(45),
            idle_timeout: Duration::from_secs(120),
            max_connections: 123,
        }
    );
    for http in [&command.http, &query.http, &realtime.http, &projector.http] {
        assert_eq!(http, &serve.http);
    }
    for log in [&command.log, &query.log, &realtime.log, &projector.log] {
        assert_eq!(log.log_format, cli.log.log_format);
    }
}
