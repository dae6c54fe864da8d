//! Password hashing with argon2id at OWASP's recommended cost (19 MiB, t=2, p=1).
//!
//! Hashing is deliberately expensive: it runs on the blocking pool, and a semaphore bounds how
//! many run at once so a burst of logins cannot exhaust memory or starve the async workers.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use platform::http::ApiError;
use tokio::sync::Semaphore;

/// Longest wait for a hashing slot before answering 503.
const PERMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Anonymous work (registration) takes one of these before a hashing slot, so at most
    /// one anonymous hash runs or waits at a time and logins always find the other slots.
    anonymous: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the account does not exist so
    /// that a login for an unknown email takes as long as one with a wrong password.
    dummy_hash: Arc<str>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("BUG: OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("BUG: argon2 hashing with valid parameters cannot fail")
        .to_string()
}

fn verify_now(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        // The parameters come from the stored hash, so old hashes keep verifying after a
        // cost increase.
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(error) => {
            tracing::error!(%error, "stored password hash is not a PHC string");
            false
        }
    }
}

impl Passwords {
    pub fn new() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let random: [u8; 16] = rand::random();
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            anonymous: Arc::new(Semaphore::new(1)),
            dummy_hash: hash_now(&hex_string(&random)).into(),
        }
    }

    /// Waits a bounded time for a hashing slot: under a flood of logins, callers get 503
    /// with `Retry-After` instead of an ever-growing queue.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        Self::wait_for(&self.permits).await
    }

    async fn wait_for(permits: &Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(PERMIT_WAIT, permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(ApiError::Internal(closed.into())),
            Err(_) => Err(ApiError::unavailable(
                "too many password checks in progress, retry shortly",
            )),
        }
    }

    /// Hashes a new password (PHC string with a random salt).
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self.permit().await?;
        tokio::task::spawn_blocking(move || hash_now(&password))
            .await
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// [`Passwords::hash`] for a caller nobody authenticated (registration): behind the
    /// one anonymous slot, so a flood of registrations queues there, answered 503 after the
    /// bounded wait, and never takes the slots logins need.
    pub async fn hash_anonymous(&self, password: String) -> Result<String, ApiError> {
        let _anonymous = Self::wait_for(&self.anonymous).await?;
        self.hash(password).await
    }

    /// Verifies against the stored hash, or against the dummy hash when there is none.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let _permit = self.permit().await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = tokio::task::spawn_blocking(move || verify_now(&password, &hash))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(known && matches)
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_cost_and_verify() {
        let passwords = Passwords::new();
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(passwords
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!passwords.verify("wrong".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let passwords = Passwords::new();
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
    }
}
