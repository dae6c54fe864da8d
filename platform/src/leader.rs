//! Work that runs in terms: one replica at a time holds a PostgreSQL advisory lock
//! ([`try_lead`]), and every background loop restarts its work after a pause ([`run_terms`]).
//!
//! The relay and the projector each take a lock so that exactly one of their replicas is
//! active; the realtime stream consumer has no lock but restarts the same way.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};

/// Pause before a new term after a failure, and between a standby's attempts to lead:
/// long enough not to hammer a database or bus that is down, short enough that a standby
/// takes over within a second.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Takes the session advisory lock named `key` on a connection of its own and answers that
/// connection, or `None` while another session holds the lock. The connection is detached
/// from the pool: dropping it (a crash, a killed task) closes the session and frees the lock,
/// and whoever holds it can prove leadership by working through it.
pub async fn try_lead(pool: &PgPool, key: &str) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut connection = pool.acquire().await?.detach();
    let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(key)
        .fetch_one(&mut connection)
        .await?;
    if acquired {
        Ok(Some(connection))
    } else {
        connection.close().await.ok();
        Ok(None)
    }
}

/// `delay` ± 25 %, so that replicas retrying the same dependency do not do it in lockstep.
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random::<f64>() * 0.5 + 0.75)
}

/// Runs `term` again and again, with `pause` (± 25 %) between two terms, until `shutdown` (then
/// `None`) or until a term answers [`ControlFlow::Break`] (then its value). A term answers
/// `Continue` when it ended and may be retried: it lost its connection, or another replica
/// leads. `shutdown` also interrupts a running term or pause.
pub async fn run_terms<B, Term>(
    shutdown: impl Future<Output = ()>,
    pause: Duration,
    mut term: impl FnMut() -> Term,
) -> Option<B>
where
    Term: Future<Output = ControlFlow<B>>,
{
    tokio::pin!(shutdown);
    loop {
        let flow = tokio::select! {
            () = &mut shutdown => return None,
            flow = term() => flow,
        };
        if let ControlFlow::Break(value) = flow {
            return Some(value);
        }
        tokio::select! {
            () = &mut shutdown => return None,
            () = tokio::time::sleep(jittered(pause)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter_either_way() {
        for _ in 0..1_000 {
            let d = jittered(Duration::from_millis(400));
            assert!(
                d >= Duration::from_millis(300) && d <= Duration::from_millis(500),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn terms_repeat_after_the_pause_until_one_breaks() {
        let pause = Duration::from_millis(5);
        let started = std::time::Instant::now();
        let mut terms = 0;
        let ended = run_terms(std::future::pending(), pause, || {
            terms += 1;
            let flow = if terms == 3 {
                ControlFlow::Break(terms)
            } else {
                ControlFlow::Continue(())
            };
            async move { flow }
        })
        .await;
        assert_eq!(ended, Some(3));
        // Two pauses between three terms, each jittered down by at most a quarter.
        assert!(
            started.elapsed() >= pause * 2 * 3 / 4,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_running_term() {
        let ended: Option<()> = run_terms(
            tokio::time::sleep(Duration::from_millis(5)),
            RETRY_DELAY,
            std::future::pending,
        )
        .await;
        assert_eq!(ended, None);
    }
}
