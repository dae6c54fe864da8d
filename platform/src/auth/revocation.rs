//! Revoked sessions, known to every service at once (docs/adr/0009-sessions.md).
//!
//! An access token is self-contained, so without this a demoted admin, a deactivated user or a
//! logged-out session would keep its powers until the token expires. Two things revoke:
//!
//! - a **user's version**: `accounts.session_version` rises when the user is deactivated,
//!   changes password or changes role; tokens carry the version they were issued at (`ver`),
//!   and one below the user's current version is refused;
//! - a **session**: logging out (or presenting a spent refresh token) revokes a refresh
//!   family; access tokens carry their family (`sid`), and one of a revoked family is refused.
//!
//! Each process keeps what was revoked within [`REVOCATION_WINDOW`] (older revocations only
//! concern tokens that have expired anyway) in memory, so the check is a hash-map lookup. The
//! command side changes the tables and sends `NOTIFY meetings_sessions` in the same
//! transaction; [`listen`] applies those notifications as they arrive (milliseconds after the
//! commit) and reloads the whole window whenever it (re)connects, so a notification lost while
//! disconnected is not a revocation lost.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::Claims;

/// The PostgreSQL notification channel revocations travel on.
pub const CHANNEL: &str = "meetings_sessions";

/// How long a revocation is remembered: the longest an access token may live
/// ([`MAX_ACCESS_TOKEN_TTL`]) plus the clock leeway.
pub const REVOCATION_WINDOW: Duration = Duration::from_secs(3600 + 60);

/// The longest access-token lifetime a service accepts as a setting: revocations are only
/// remembered this long.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// One revocation, as notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// Tokens of `user_id` issued below `version` are void.
    User { user_id: Uuid, version: i32 },
    /// Tokens of the refresh family `session_id` are void.
    Session { user_id: Uuid, session_id: Uuid },
}

/// Why a well-signed token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    #[error("the session was revoked (the account was deactivated, or its password or role changed); sign in again")]
    UserChanged,
    #[error("the session has ended (logged out); sign in again")]
    SessionEnded,
}

#[derive(Default)]
struct Known {
    /// Per user: the lowest token version still valid, and when it was set.
    users: HashMap<Uuid, (i32, DateTime<Utc>)>,
    /// Revoked refresh families and when.
    sessions: HashMap<Uuid, DateTime<Utc>>,
}

/// What this process knows was revoked.
pub struct Revocations {
    known: RwLock<Known>,
    /// Bumped on every change, so open websockets re-check their token.
    generation: watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            known: RwLock::new(Known::default()),
            generation: watch::Sender::new(0),
        }
    }
}

impl Revocations {
    /// Whether `claims` (already verified) still stand.
    pub fn check(&self, claims: &Claims) -> Result<(), Revoked> {
        let known = self.known.read().expect("BUG: revocations poisoned");
        if let Some((version, _)) = known.users.get(&claims.sub) {
            if claims.ver < *version {
                return Err(Revoked::UserChanged);
            }
        }
        if let Some(session) = claims.sid {
            if known.sessions.contains_key(&session) {
                return Err(Revoked::SessionEnded);
            }
        }
        Ok(())
    }

    /// Records a revocation (idempotent; a user's version only rises).
    pub fn apply(&self, revocation: Revocation) {
        self.apply_at(revocation, Utc::now());
        self.generation.send_modify(|g| *g += 1);
    }

    fn apply_at(&self, revocation: Revocation, at: DateTime<Utc>) {
        let mut known = self.known.write().expect("BUG: revocations poisoned");
        match revocation {
            Revocation::User { user_id, version } => {
                let entry = known.users.entry(user_id).or_insert((version, at));
                if version >= entry.0 {
                    *entry = (version, at);
                }
            }
            Revocation::Session { session_id, .. } => {
                known.sessions.insert(session_id, at);
            }
        }
    }

    /// Replaces what is known by what the database says was revoked within the window.
    fn replace(&self, revocations: Vec<(Revocation, DateTime<Utc>)>) {
        let fresh = Revocations::default();
        for (revocation, at) in revocations {
            fresh.apply_at(revocation, at);
        }
        let fresh = fresh.known.into_inner().expect("BUG: revocations poisoned");
        *self.known.write().expect("BUG: revocations poisoned") = fresh;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Forgets revocations older than the window: their tokens have expired.
    fn prune(&self) {
        let horizon = Utc::now() - window();
        let mut known = self.known.write().expect("BUG: revocations poisoned");
        known.users.retain(|_, (_, at)| *at > horizon);
        known.sessions.retain(|_, at| *at > horizon);
    }

    /// Changes whenever a revocation arrives: open connections wait on it and re-check.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Number of remembered revocations (metrics, tests).
    pub fn len(&self) -> usize {
        let known = self.known.read().expect("BUG: revocations poisoned");
        known.users.len() + known.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn window() -> chrono::Duration {
    chrono::Duration::from_std(REVOCATION_WINDOW).expect("BUG: window fits")
}

/// Sends `revocation` to every service when `executor`'s transaction commits.
pub async fn notify<'e, E>(executor: E, revocation: &Revocation) -> sqlx::Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let payload = serde_json::to_string(revocation).expect("BUG: revocation serializes");
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}

/// Restores the revocations within the window from the SQLite event file of embedded mode:
/// there, commits tell this process's revocations themselves (no `NOTIFY`), and this covers
/// what was revoked before a restart.
pub async fn restore_from_sqlite(
    file: &crate::db::sqlite::SqliteFile,
    revocations: &Revocations,
) -> sqlx::Result<()> {
    use crate::db::sqlite::{from_micros, micros};
    let since = micros(Utc::now() - window());
    let users: Vec<(Uuid, i32, i64)> = sqlx::query_as(
        "SELECT user_id, session_version, sessions_revoked_at FROM accounts \
         WHERE sessions_revoked_at > ?",
    )
    .bind(since)
    .fetch_all(&file.reader)
    .await?;
    let sessions: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        "SELECT family_id, min(user_id), min(revoked_at) FROM refresh_tokens \
         WHERE revoked_at > ? GROUP BY family_id",
    )
    .bind(since)
    .fetch_all(&file.reader)
    .await?;
    let users = users
        .into_iter()
        .map(|(user_id, version, at)| (Revocation::User { user_id, version }, from_micros(at)));
    let sessions = sessions.into_iter().map(|(session_id, user_id, at)| {
        (
            Revocation::Session {
                user_id,
                session_id,
            },
            from_micros(at),
        )
    });
    revocations.replace(users.chain(sessions).collect());
    Ok(())
}

/// Every revocation within the window, as the tables hold them.
async fn load(pool: &PgPool) -> sqlx::Result<Vec<(Revocation, DateTime<Utc>)>> {
    let seconds = REVOCATION_WINDOW.as_secs_f64();
    let users: Vec<(Uuid, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT user_id, session_version, sessions_revoked_at FROM accounts \
         WHERE sessions_revoked_at > now() - make_interval(secs => $1)",
    )
    .bind(seconds)
    .fetch_all(pool)
    .await?;
    let sessions: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT DISTINCT ON (family_id) family_id, user_id, revoked_at FROM refresh_tokens \
         WHERE revoked_at > now() - make_interval(secs => $1) ORDER BY family_id, revoked_at",
    )
    .bind(seconds)
    .fetch_all(pool)
    .await?;
    let users = users
        .into_iter()
        .map(|(user_id, version, at)| (Revocation::User { user_id, version }, at));
    let sessions = sessions.into_iter().map(|(session_id, user_id, at)| {
        (
            Revocation::Session {
                user_id,
                session_id,
            },
            at,
        )
    });
    Ok(users.chain(sessions).collect())
}

/// Keeps `revocations` up to date from the database until `shutdown`: listens first, then
/// loads the window (so nothing committed in between is missed), then applies notifications.
/// On any error it reconnects and reloads after `retry`.
pub async fn listen(
    pool: PgPool,
    revocations: std::sync::Arc<Revocations>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let retry = Duration::from_millis(500);
    loop {
        let term = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            revocations.replace(load(&pool).await?);
            let mut prune = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    notification = listener.try_recv() => {
                        // `None`: the connection was lost; notifications may have been too.
                        let Some(notification) = notification? else {
                            return Ok::<(), sqlx::Error>(());
                        };
                        match serde_json::from_str::<Revocation>(notification.payload()) {
                            Ok(revocation) => revocations.apply(revocation),
                            Err(error) => tracing::error!(%error, "undecodable revocation"),
                        }
                    }
                    _ = prune.tick() => revocations.prune(),
                }
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            result = term => {
                if let Err(error) = result {
                    tracing::warn!(%error, "revocation listener interrupted; reloading");
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Role;

    fn claims(user: Uuid, ver: i32, sid: Option<Uuid>) -> Claims {
        Claims {
            iss: "meetings".into(),
            aud: "meetings".into(),
            sub: user,
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: Uuid::nil(),
            role: Role::Member,
            ver,
            sid,
        }
    }

    #[test]
    fn a_token_below_the_users_version_is_revoked_and_one_at_it_is_not() {
        let revocations = Revocations::default();
        let user = Uuid::now_v7();
        assert_eq!(revocations.check(&claims(user, 0, None)), Ok(()));
        revocations.apply(Revocation::User {
            user_id: user,
            version: 2,
        });
        assert_eq!(
            revocations.check(&claims(user, 1, None)),
            Err(Revoked::UserChanged)
        );
        assert_eq!(revocations.check(&claims(user, 2, None)), Ok(()));
        // An older notification arriving late does not lower the version.
        revocations.apply(Revocation::User {
            user_id: user,
            version: 1,
        });
        assert_eq!(
            revocations.check(&claims(user, 1, None)),
            Err(Revoked::UserChanged)
        );
        assert_eq!(revocations.check(&claims(Uuid::now_v7(), 0, None)), Ok(()));
    }

    #[test]
    fn a_token_of_an_ended_session_is_revoked_and_others_of_the_user_are_not() {
        let revocations = Revocations::default();
        let (user, ended, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut watch = revocations.watch();
        revocations.apply(Revocation::Session {
            user_id: user,
            session_id: ended,
        });
        assert!(watch.has_changed().unwrap());
        watch.mark_unchanged();
        assert_eq!(
            revocations.check(&claims(user, 0, Some(ended))),
            Err(Revoked::SessionEnded)
        );
        assert_eq!(revocations.check(&claims(user, 0, Some(other))), Ok(()));
    }

    #[test]
    fn revocations_older_than_the_window_are_forgotten() {
        let revocations = Revocations::default();
        let user = Uuid::now_v7();
        let old = Utc::now() - window() - chrono::Duration::seconds(1);
        revocations.replace(vec![(
            Revocation::User {
                user_id: user,
                version: 3,
            },
            old,
        )]);
        assert_eq!(revocations.len(), 1);
        revocations.prune();
        assert!(revocations.is_empty());
    }

    #[test]
    fn notifications_round_trip() {
        let revocation = Revocation::Session {
            user_id: Uuid::nil(),
            session_id: Uuid::max(),
        };
        let json = serde_json::to_string(&revocation).unwrap();
        assert!(json.contains(r#""kind":"session""#), "{json}");
        assert_eq!(
            serde_json::from_str::<Revocation>(&json).unwrap(),
            revocation
        );
    }
}
