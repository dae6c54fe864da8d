//! Typed settings shared by every binary.
//!
//! Each setting is a flag with a `MEETINGS_*` environment variable of the same name (docs/api.md,
//! "Running"); flags win over the environment. Bad configuration fails at start with a message
//! that names the setting.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub mod startup;

/// Where the event store and read models live.
#[derive(Args, Clone, Debug)]
pub struct DatabaseSettings {
    /// `postgres://…`; for `meetings serve` also `sqlite://<file>.db` (embedded mode, the
    /// default: `meetings.db` under `--data-dir`).
    #[arg(long = "database-url", env = "MEETINGS_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Upper bound of pooled database connections of this process.
    #[arg(
        long = "database-max-connections",
        env = "MEETINGS_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// The PostgreSQL URL, or an error that names the setting.
    pub fn postgres_url(&self) -> anyhow::Result<&str> {
        match self.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(url)
            }
            Some(url) if url.starts_with("sqlite:") => anyhow::bail!(
                "MEETINGS_DATABASE_URL: sqlite: URLs are for `meetings serve` (embedded mode); \
                 this command needs a postgres:// URL"
            ),
            Some(_) => anyhow::bail!("MEETINGS_DATABASE_URL must start with postgres://"),
            None => anyhow::bail!("MEETINGS_DATABASE_URL (or --database-url) is required"),
        }
    }
}

/// Where `meetings serve` keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A PostgreSQL server (the distributed backends).
    Postgres(String),
    /// The SQLite event log of embedded mode (`meetings.db`); the read models live beside it
    /// (`meetings-read-models.db`).
    Sqlite(PathBuf),
}

/// The event log's file name in a data directory.
pub const SQLITE_FILE: &str = "meetings.db";

impl DatabaseSettings {
    /// For `meetings serve`: the PostgreSQL of a `postgres://` URL; the SQLite file of a
    /// `sqlite://<path>.db` URL (`sqlite:<path>` too; a path without `.db` is a directory
    /// holding `meetings.db`); without a URL, `meetings.db` under `data_dir` (docs/api.md:
    /// `sqlite://./data/meetings.db`).
    pub fn location(&self, data_dir: &std::path::Path) -> anyhow::Result<DatabaseLocation> {
        match self.database_url.as_deref() {
            None => Ok(DatabaseLocation::Sqlite(data_dir.join(SQLITE_FILE))),
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .unwrap_or_default();
                anyhow::ensure!(
                    !path.is_empty() && !path.contains('?'),
                    "MEETINGS_DATABASE_URL: expected sqlite://<file>.db, such as \
                     sqlite://./data/meetings.db"
                );
                let path = PathBuf::from(path);
                Ok(DatabaseLocation::Sqlite(
                    if path.extension().is_some_and(|e| e == "db") {
                        path
                    } else {
                        path.join(SQLITE_FILE)
                    },
                ))
            }
            Some(_) => Ok(DatabaseLocation::Postgres(self.postgres_url()?.to_owned())),
        }
    }
}

/// How access tokens are signed and checked. Shared by every service.
#[derive(Args, Clone, Debug)]
pub struct JwtSettings {
    /// HS256 key (its UTF-8 bytes, at least 32 bytes). Prefer the file variant in production.
    #[arg(
        long = "jwt-secret",
        env = "MEETINGS_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// File holding the HS256 key (Docker/Kubernetes secrets); surrounding whitespace is ignored.
    #[arg(long = "jwt-secret-file", env = "MEETINGS_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// `iss` claim written and required.
    #[arg(
        long = "jwt-issuer",
        env = "MEETINGS_JWT_ISSUER",
        default_value = "meetings"
    )]
    pub issuer: String,

    /// `aud` claim written and required.
    #[arg(
        long = "jwt-audience",
        env = "MEETINGS_JWT_AUDIENCE",
        default_value = "meetings"
    )]
    pub audience: String,

    /// Ed25519 private key (PEM, PKCS#8) this service signs access tokens with: the
    /// command-service's (and `meetings serve`'s) current key.
    #[arg(long = "jwt-private-key-file", env = "MEETINGS_JWT_PRIVATE_KEY_FILE")]
    pub private_key_file: Option<PathBuf>,

    /// The key signed with before the current one (PEM, private or public): its tokens stay
    /// valid until they expire, so a rotation logs nobody out.
    #[arg(long = "jwt-previous-key-file", env = "MEETINGS_JWT_PREVIOUS_KEY_FILE")]
    pub previous_key_file: Option<PathBuf>,

    /// Ed25519 public keys (PEM files, comma-separated; current and previous) whose tokens
    /// this service accepts: what the query-service and the gateway are given.
    #[arg(
        long = "jwt-public-key-files",
        env = "MEETINGS_JWT_PUBLIC_KEY_FILES",
        value_delimiter = ','
    )]
    pub public_key_files: Vec<PathBuf>,
}

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

/// Minimum HS256 key length: the key must be at least as long as the hash output.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl JwtSettings {
    /// Whether an HS256 secret is configured (the legacy key).
    pub fn has_secret(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_secret_file.is_some()
    }

    /// Reads the key from the environment value or the file; exactly one must be given.
    pub fn secret(&self) -> anyhow::Result<Secret> {
        let bytes = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set only one of MEETINGS_JWT_SECRET and MEETINGS_JWT_SECRET_FILE")
            }
            (Some(value), None) => value.as_bytes().to_vec(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("MEETINGS_JWT_SECRET_FILE {}: {e}", path.display())
                })?;
                text.trim().as_bytes().to_vec()
            }
            (None, None) => {
                anyhow::bail!("MEETINGS_JWT_SECRET or MEETINGS_JWT_SECRET_FILE is required")
            }
        };
        if bytes.len() < MIN_JWT_SECRET_BYTES {
            anyhow::bail!(
                "MEETINGS_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (got {})",
                bytes.len()
            );
        }
        Ok(Secret(bytes))
    }
}

/// Where events are fanned out (read side). Unset: no relay runs in this process.
#[derive(Args, Clone)]
pub struct NatsSettings {
    /// `nats://host:port`, with the service's NATS user when the server asks for one:
    /// `nats://relay:<password>@host:port` (see `nats.conf`).
    #[arg(long = "nats-url", env = "MEETINGS_NATS_URL")]
    pub nats_url: Option<String>,

    /// JetStream stream; its subjects are `<name lower-cased>.<aggregate_type>.<aggregate_id>`.
    #[arg(long = "stream", env = "MEETINGS_STREAM", default_value = "EVENTS")]
    pub stream: String,
}

/// Without the password the URL may carry.
impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field(
                "nats_url",
                &self
                    .nats_url
                    .as_deref()
                    .map(|url| crate::bus::options(url).0),
            )
            .field("stream", &self.stream)
            .finish()
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Logging settings.
#[derive(Args, Clone, Debug)]
pub struct LogSettings {
    /// `json` or `text`; default `json` when stdout is not a terminal.
    #[arg(long = "log-format", env = "MEETINGS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How long and how many HTTP clients may hold this process (docs/architecture.md, guarantee
/// 11): slow or idle clients are cut off, and a cap on open connections keeps a flood of them
/// from exhausting memory and file descriptors. (Argument ids carry `http_`: `max_connections`
/// alone is taken by [`DatabaseSettings`].)
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest wait for a complete request head (request line and headers): from a
    /// connection's start, and from the first byte of each later request on it. Stops
    /// clients that trickle headers (slowloris).
    #[arg(
        id = "http_header_timeout",
        long = "http-header-timeout",
        env = "MEETINGS_HTTP_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub header_timeout: Duration,

    /// Longest a request may take from its head to its response, reading its body included:
    /// 408 when the body was still arriving, else 503. A websocket is not bounded once
    /// upgraded.
    #[arg(
        id = "http_request_timeout",
        long = "http-request-timeout",
        env = "MEETINGS_HTTP_REQUEST_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub request_timeout: Duration,

    /// Longest a keep-alive connection may wait for its next request before it is closed.
    #[arg(
        id = "http_idle_timeout",
        long = "http-idle-timeout",
        env = "MEETINGS_HTTP_IDLE_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub idle_timeout: Duration,

    /// Most open connections of this process, websockets included; further clients wait in
    /// the listen backlog until one closes.
    #[arg(
        id = "http_max_connections",
        long = "http-max-connections",
        env = "MEETINGS_HTTP_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// The one duration syntax of every setting and flag: `500ms`, `900s`, `15m`, `2h`, `30d`,
/// combinations such as `1h 30m` (humantime's syntax), or a bare number of seconds (`900`).
/// Zero is refused: every duration here is a timeout, a lifetime or an interval.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{text}` is too large a number of seconds"))?
    } else {
        humantime::parse_duration(text).map_err(|error| {
            format!("`{text}` is not a duration such as 500ms, 900s, 15m, 2h or 30d ({error})")
        })?
    };
    if duration.is_zero() {
        return Err(format!("`{text}`: a duration must be positive"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_milliseconds_units_and_bare_seconds() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("0ms").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn http_limits_default_to_what_the_flags_default_to() {
        use clap::{CommandFactory, FromArgMatches};

        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            http: HttpLimits,
        }
        // The defaults alone: a developer's MEETINGS_HTTP_* variables must not leak in.
        let mut command = Flags::command();
        for id in [
            "http_header_timeout",
            "http_request_timeout",
            "http_idle_timeout",
            "http_max_connections",
        ] {
            command = command.mut_arg(id, |arg| arg.env(None::<&str>));
        }
        let matches = command.clone().try_get_matches_from(["flags"]).unwrap();
        let parsed = HttpLimits::from_arg_matches(&matches).unwrap();
        assert_eq!(parsed, HttpLimits::default());
        let zero = ["flags", "--http-max-connections", "0"];
        assert!(command.try_get_matches_from(zero).is_err());
    }

    #[test]
    fn short_jwt_secrets_are_refused_with_the_setting_named() {
        let settings = JwtSettings {
            jwt_secret: Some("too short".into()),
            jwt_secret_file: None,
            issuer: "meetings".into(),
            audience: "meetings".into(),
            private_key_file: None,
            previous_key_file: None,
            public_key_files: vec![],
        };
        let error = settings.secret().unwrap_err().to_string();
        assert!(error.contains("MEETINGS_JWT_SECRET"), "{error}");
    }

    #[test]
    fn secrets_do_not_print_themselves() {
        let secret = Secret::new("x".repeat(40));
        assert!(!format!("{secret:?}").contains("xxx"));
        let nats = NatsSettings {
            nats_url: Some("nats://relay:hunter2@nats:4222".into()),
            stream: "EVENTS".into(),
        };
        let printed = format!("{nats:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("nats://nats:4222"),
            "{printed}"
        );
    }

    #[test]
    fn services_need_postgres_and_serve_also_takes_a_sqlite_directory() {
        let url = |url: Option<&str>| DatabaseSettings {
            database_url: url.map(str::to_owned),
            max_connections: 4,
        };
        let data = std::path::Path::new("./data");
        assert!(url(Some("sqlite://./here")).postgres_url().is_err());
        assert_eq!(
            url(Some("postgres://localhost/x")).postgres_url().unwrap(),
            "postgres://localhost/x"
        );
        assert_eq!(
            url(None).location(data).unwrap(),
            DatabaseLocation::Sqlite("./data/meetings.db".into())
        );
        for given in [
            "sqlite://./here/meetings.db",
            "sqlite:./here/meetings.db",
            "sqlite://./here",
        ] {
            assert_eq!(
                url(Some(given)).location(data).unwrap(),
                DatabaseLocation::Sqlite("./here/meetings.db".into())
            );
        }
        assert_eq!(
            url(Some("sqlite:///var/lib/m/events.db"))
                .location(data)
                .unwrap(),
            DatabaseLocation::Sqlite("/var/lib/m/events.db".into())
        );
        assert_eq!(
            url(Some("postgres://localhost/x")).location(data).unwrap(),
            DatabaseLocation::Postgres("postgres://localhost/x".into())
        );
        for bad in ["sqlite://", "sqlite:./x?mode=ro", "mysql://x"] {
            let error = url(Some(bad)).location(data).unwrap_err().to_string();
            assert!(error.contains("MEETINGS_DATABASE_URL"), "{bad}: {error}");
        }
    }
}
