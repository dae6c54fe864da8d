//! Reading a binary's settings at start: `--print-config` (the effective configuration, secrets
//! redacted) and errors that name the setting as the operator wrote it — the `MEETINGS_*`
//! variable when the bad value came from the environment, with the form it must take.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

const PRINT_CONFIG: &str = "print-config";

/// What a binary does after reading its arguments.
pub enum Startup<S> {
    Run(S),
    /// `--print-config` was given: this text is the configuration; print it and exit 0.
    Print(String),
}

/// Parses `args` into `S` (plus `--print-config`). A bad value is an error naming the
/// variable it came from (or the flag) and, from the setting's help, the form it must take.
pub fn parse_from<S, I, T>(args: I) -> Result<Startup<S>, clap::Error>
where
    S: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = S::command().arg(
        Arg::new(PRINT_CONFIG)
            .long(PRINT_CONFIG)
            .action(ArgAction::SetTrue)
            .help("Print the effective configuration (secrets redacted) and exit"),
    );
    let matches = command
        .clone()
        .try_get_matches_from(&args)
        .map_err(|error| name_the_setting(error, &command, &args))?;
    let settings =
        S::from_arg_matches(&matches).map_err(|error| name_the_setting(error, &command, &args))?;
    if matches.get_flag(PRINT_CONFIG) {
        return Ok(Startup::Print(render(&command, &matches)));
    }
    Ok(Startup::Run(settings))
}

/// Every setting with a variable: `NAME=value  # source`, secrets and URL passwords redacted.
fn render(command: &Command, matches: &ArgMatches) -> String {
    let mut lines = Vec::new();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::CommandLine) => "command line",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let value = if values.is_empty() {
            String::new()
        } else if is_secret(env, arg) {
            "[redacted]".to_string()
        } else {
            values
                .iter()
                .map(|v| redact_url(v))
                .collect::<Vec<_>>()
                .join(",")
        };
        lines.push(format!("{env}={value}  # {source}"));
    }
    lines.sort();
    lines.join("\n") + "\n"
}

/// A secret's value itself (not a file naming it): hidden values, and anything named like one.
fn is_secret(env: &str, arg: &Arg) -> bool {
    if env.ends_with("_FILE") || env.ends_with("_FILES") {
        return false;
    }
    arg.is_hide_env_values_set() || ["SECRET", "PASSWORD"].iter().any(|word| env.contains(word))
}

/// `scheme://user:password@host…?password=…` with the passwords replaced, for every URL of a
/// comma-separated list.
pub fn redact_url(value: &str) -> String {
    value
        .split(',')
        .map(|part| {
            let Some((scheme, rest)) = part.split_once("://") else {
                return part.to_string();
            };
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    format!("{user}:[redacted]@{host}")
                }
                _ => authority.to_string(),
            };
            let tail = match tail.split_once('?') {
                Some((path, query)) => {
                    let query: Vec<String> = query
                        .split('&')
                        .map(|pair| match pair.split_once('=') {
                            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                                format!("{key}=[redacted]")
                            }
                            _ => pair.to_string(),
                        })
                        .collect();
                    format!("{path}?{}", query.join("&"))
                }
                None => tail.to_string(),
            };
            format!("{scheme}://{authority}{tail}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Rewrites clap's "invalid value for '--flag'" so it names the variable when the value came
/// from the environment, and adds the setting's help (which states its form).
fn name_the_setting(error: clap::Error, command: &Command, args: &[OsString]) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let long = flag
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let Some(arg) = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
    else {
        return error;
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    let reason = std::error::Error::source(&error)
        .map(|source| source.to_string())
        .unwrap_or_else(|| "not an accepted value".to_string());
    let env = arg.get_env().and_then(|e| e.to_str());
    let on_command_line = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    let from_env = !on_command_line && env.is_some_and(|env| std::env::var_os(env).is_some());
    let setting = match env {
        Some(env) if from_env => env.to_string(),
        Some(env) => format!("--{long} ({env})"),
        None => format!("--{long}"),
    };
    let shown = if env.is_some_and(|env| is_secret(env, arg)) {
        "[redacted]".to_string()
    } else {
        redact_url(&value)
    };
    let expected = arg
        .get_help()
        .map(|help| format!("\n  expected: {help}"))
        .unwrap_or_default();
    let mut command = command.clone();
    command.error(
        ErrorKind::ValueValidation,
        format!("{setting} has an invalid value `{shown}`: {reason}{expected}"),
    )
}

#[cfg(test)]
mod tests;
