//! Limits per caller, so that no one client can take the command side from the others:
//! a token bucket of commands per user, quotas (meetings per organizer per day, chat
//! messages per meeting per minute) and registrations per client address per hour. Each
//! refusal is 429 with `Retry-After` (the seconds until the bucket has a token again).
//!
//! The buckets live in this process's memory (`governor`), keyed by user, meeting or client
//! address: with several command-service replicas behind a balancer each one counts on its
//! own, so the effective limits are that many times higher. Keys of callers that have been
//! quiet long enough to have a full bucket again are dropped by [`Limits::forget_idle`], so
//! memory follows the active callers, not everyone ever seen.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use governor::clock::QuantaInstant;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};
use ipnet::IpNet;
use platform::http::ApiError;
use uuid::Uuid;

/// The limits' settings (README "Configuration").
#[derive(Args, Clone, Debug)]
pub struct LimitSettings {
    /// Commands per second each user may send on average.
    #[arg(long = "command-rate", env = "MEETINGS_COMMAND_RATE", default_value_t = DEFAULT_COMMAND_RATE)]
    pub command_rate: NonZeroU32,
    /// Commands a user may send at once after a quiet spell.
    #[arg(long = "command-burst", env = "MEETINGS_COMMAND_BURST", default_value_t = DEFAULT_COMMAND_BURST)]
    pub command_burst: NonZeroU32,
    /// Meetings one organizer may schedule per day (a rolling window).
    #[arg(long = "meetings-per-day", env = "MEETINGS_MEETINGS_PER_DAY", default_value_t = DEFAULT_MEETINGS_PER_DAY)]
    pub meetings_per_day: NonZeroU32,
    /// Chat messages one meeting may receive per minute, from all its members together.
    #[arg(long = "chat-per-minute", env = "MEETINGS_CHAT_PER_MINUTE", default_value_t = DEFAULT_CHAT_PER_MINUTE)]
    pub chat_per_minute: NonZeroU32,
    /// Registrations per client address (IPv6: per /64) per hour.
    #[arg(long = "registrations-per-hour", env = "MEETINGS_REGISTRATIONS_PER_HOUR", default_value_t = DEFAULT_REGISTRATIONS_PER_HOUR)]
    pub registrations_per_hour: NonZeroU32,
    /// Reverse proxies (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For`
    /// is believed. Empty (the default): the client is the TCP peer, and the header is
    /// ignored, since anybody can send it.
    #[arg(long = "trusted-proxies", env = "MEETINGS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<IpNet>,
}

/// A CIDR block (`10.0.0.0/8`) or a single address (`192.0.2.7`, `::1`).
fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is neither an IP address nor a CIDR block like 10.0.0.0/8"))
}

const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("BUG: a default limit is zero"),
    }
}

pub const DEFAULT_COMMAND_RATE: NonZeroU32 = nonzero(20);
pub const DEFAULT_COMMAND_BURST: NonZeroU32 = nonzero(100);
pub const DEFAULT_MEETINGS_PER_DAY: NonZeroU32 = nonzero(1_000);
pub const DEFAULT_CHAT_PER_MINUTE: NonZeroU32 = nonzero(300);
pub const DEFAULT_REGISTRATIONS_PER_HOUR: NonZeroU32 = nonzero(30);

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            command_rate: DEFAULT_COMMAND_RATE,
            command_burst: DEFAULT_COMMAND_BURST,
            meetings_per_day: DEFAULT_MEETINGS_PER_DAY,
            chat_per_minute: DEFAULT_CHAT_PER_MINUTE,
            registrations_per_hour: DEFAULT_REGISTRATIONS_PER_HOUR,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `n` per `period`, refilled evenly, all `n` available at once.
fn spread(n: NonZeroU32, period: Duration) -> Quota {
    Quota::with_period(period / n.get())
        .expect("BUG: a positive period")
        .allow_burst(n)
}

/// The buckets of one process.
pub struct Limits {
    commands: DefaultKeyedRateLimiter<Uuid>,
    command_burst: NonZeroU32,
    meetings: DefaultKeyedRateLimiter<Uuid>,
    chat: DefaultKeyedRateLimiter<Uuid>,
    registrations: DefaultKeyedRateLimiter<String>,
    trusted_proxies: Vec<IpNet>,
    /// Users with an import running: one at a time each.
    imports: Arc<Mutex<HashSet<Uuid>>>,
}

/// A running import of one user; ends when dropped.
#[derive(Debug)]
pub struct ImportTurn {
    imports: Arc<Mutex<HashSet<Uuid>>>,
    user: Uuid,
}

impl Drop for ImportTurn {
    fn drop(&mut self) {
        self.imports
            .lock()
            .expect("BUG: imports lock poisoned")
            .remove(&self.user);
    }
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        let per_second =
            Quota::per_second(settings.command_rate).allow_burst(settings.command_burst);
        Self {
            commands: RateLimiter::keyed(per_second),
            meetings: RateLimiter::keyed(spread(
                settings.meetings_per_day,
                Duration::from_secs(86_400),
            )),
            chat: RateLimiter::keyed(spread(settings.chat_per_minute, Duration::from_secs(60))),
            command_burst: settings.command_burst,
            registrations: RateLimiter::keyed(spread(
                settings.registrations_per_hour,
                Duration::from_secs(3_600),
            )),
            trusted_proxies: settings.trusted_proxies.clone(),
            imports: Arc::default(),
        }
    }

    /// One command of `user`.
    pub fn command(&self, user: Uuid) -> Result<(), ApiError> {
        take(&self.commands, &user, "too many commands: slow down")
    }

    /// An import of `meetings` meetings by `user`: one at a time per user, and one command
    /// for every ten meetings, taken at once (at most a whole burst).
    pub fn import(&self, user: Uuid, meetings: usize) -> Result<ImportTurn, ApiError> {
        if !self
            .imports
            .lock()
            .expect("BUG: imports lock poisoned")
            .insert(user)
        {
            return Err(ApiError::TooManyRequests {
                detail: "an import of yours is still running".into(),
                retry_after: 1,
            });
        }
        // From here on, dropping the turn ends the import, refused or not.
        let turn = ImportTurn {
            imports: self.imports.clone(),
            user,
        };
        let cost = u32::try_from(meetings.div_ceil(10).max(1)).unwrap_or(u32::MAX);
        let cost = NonZeroU32::new(cost.min(self.command_burst.get())).unwrap_or(nonzero(1));
        match self.commands.check_key_n(&user, cost) {
            Ok(Ok(())) => Ok(turn),
            Ok(Err(not_until)) => Err(refusal(&not_until, "too many commands: slow down")),
            Err(_) => unreachable!("BUG: the cost is capped at the burst"),
        }
    }

    /// One more meeting scheduled by `organizer`.
    pub fn schedule(&self, organizer: Uuid) -> Result<(), ApiError> {
        take(
            &self.meetings,
            &organizer,
            "you have scheduled the most meetings allowed per day",
        )
    }

    /// One chat message in `meeting`.
    pub fn chat(&self, meeting: Uuid) -> Result<(), ApiError> {
        take(
            &self.chat,
            &meeting,
            "this meeting's chat receives too many messages: slow down",
        )
    }

    /// One registration from the client keyed `source` ([`crate::routes::ClientAddr::key`]).
    pub fn register(&self, source: &str) -> Result<(), ApiError> {
        take(
            &self.registrations,
            &source.to_owned(),
            "too many registrations from this address",
        )
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy itself (the
    /// left part of the header is whatever the client claimed).
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        let peer = peer?;
        if !trusted(&peer) {
            return Some(peer);
        }
        let mut client = peer;
        for hop in forwarded_for.unwrap_or_default().rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                // A hop we cannot read: stop at the last address we could trust.
                Err(_) => break,
            }
        }
        Some(client)
    }

    /// Drops the buckets of callers that are full again (as if never seen).
    pub fn forget_idle(&self) {
        self.commands.retain_recent();
        self.meetings.retain_recent();
        self.chat.retain_recent();
        self.registrations.retain_recent();
        for limiter in [&self.commands, &self.meetings, &self.chat] {
            limiter.shrink_to_fit();
        }
        self.registrations.shrink_to_fit();
    }

    /// How many callers are tracked, all buckets together.
    pub fn tracked(&self) -> usize {
        self.commands.len() + self.meetings.len() + self.chat.len() + self.registrations.len()
    }
}

fn take<K>(limiter: &DefaultKeyedRateLimiter<K>, key: &K, detail: &str) -> Result<(), ApiError>
where
    K: std::hash::Hash + Eq + Clone,
{
    limiter
        .check_key(key)
        .map_err(|not_until| refusal(&not_until, detail))
}

/// 429 with the wait until the bucket has what was asked.
fn refusal(not_until: &NotUntil<QuantaInstant>, detail: &str) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::TooManyRequests {
        detail: detail.to_owned(),
        // Whole seconds, rounded up: retrying at the announced time succeeds.
        retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            command_rate: nonzero(1),
            command_burst: nonzero(3),
            meetings_per_day: nonzero(2),
            chat_per_minute: nonzero(2),
            registrations_per_hour: nonzero(1),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        }
    }

    fn retry_after(error: ApiError) -> u64 {
        match error {
            ApiError::TooManyRequests { retry_after, .. } => retry_after,
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn a_user_gets_the_burst_then_waits_and_others_are_not_affected() {
        let limits = Limits::new(&settings());
        let (ann, ben) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for _ in 0..3 {
            limits.command(ann).unwrap();
        }
        assert_eq!(retry_after(limits.command(ann).unwrap_err()), 1);
        limits.command(ben).unwrap();
    }

    #[test]
    fn one_import_at_a_time_per_user_paying_a_command_per_ten_meetings() {
        let limits = Limits::new(&settings());
        let (ann, ben) = (Uuid::from_u128(1), Uuid::from_u128(2));
        // Twenty meetings cost two of Ann's three commands.
        let turn = limits.import(ann, 20).unwrap();
        assert_eq!(retry_after(limits.import(ann, 1).unwrap_err()), 1);
        limits.import(ben, 5).unwrap();
        drop(turn);
        // A thousand meetings cost at most a whole burst; Ann has one command left.
        let wait = retry_after(limits.import(ann, 1_000).unwrap_err());
        assert!((2..=3).contains(&wait), "{wait}");
        let _turn = limits.import(ann, 3).unwrap();
        assert!(limits.command(ann).is_err());
    }

    #[test]
    fn quotas_count_per_organizer_per_meeting_and_per_address() {
        let limits = Limits::new(&settings());
        let ann = Uuid::from_u128(1);
        limits.schedule(ann).unwrap();
        limits.schedule(ann).unwrap();
        // Two a day: the next one in half a day.
        let wait = retry_after(limits.schedule(ann).unwrap_err());
        assert!((43_000..=43_200).contains(&wait), "{wait}");
        let meeting = Uuid::from_u128(7);
        limits.chat(meeting).unwrap();
        limits.chat(meeting).unwrap();
        assert!(retry_after(limits.chat(meeting).unwrap_err()) <= 30);
        limits.chat(Uuid::from_u128(8)).unwrap();
        limits.register("192.0.2.1").unwrap();
        assert!(limits.register("192.0.2.1").is_err());
        limits.register("192.0.2.2").unwrap();
        assert_eq!(
            limits.tracked(),
            5,
            "one organizer, two meetings, two addresses"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        assert_eq!(
            parse_network(" 192.0.2.7 ").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_network("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("proxy.local")
            .unwrap_err()
            .contains("proxy.local"));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let limits = Limits::new(&settings());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A client cannot pick its own address by sending the header.
        assert_eq!(
            limits.client(Some(ip("203.0.113.9")), Some("198.51.100.1")),
            Some(ip("203.0.113.9"))
        );
        // Behind our proxy: the address the proxy saw, not what the client prepended.
        assert_eq!(
            limits.client(Some(ip("10.1.2.3")), Some("6.6.6.6, 198.51.100.1")),
            Some(ip("198.51.100.1"))
        );
        // Two proxies of ours in a row.
        assert_eq!(
            limits.client(Some(ip("::1")), Some("198.51.100.1, 10.9.9.9")),
            Some(ip("198.51.100.1"))
        );
        // A trusted proxy without the header, or with garbage, is the client itself.
        assert_eq!(
            limits.client(Some(ip("10.1.2.3")), None),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            limits.client(Some(ip("10.1.2.3")), Some("not-an-ip")),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            Limits::new(&LimitSettings::default()).client(Some(ip("10.1.2.3")), Some("1.1.1.1")),
            Some(ip("10.1.2.3"))
        );
    }
}
