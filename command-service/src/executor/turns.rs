//! Commands on one aggregate take turns within this process.

use std::sync::Arc;

use uuid::Uuid;

/// Commands on one aggregate take turns within this process: they would only conflict on its
/// sequence and retry (a wasted, refused insert each time), and a retry that reads the store
/// loses the race again and again to newcomers deciding on the cache. One stripe of locks per
/// process; aggregates share a stripe only by hash, which costs a short wait, never a
/// wrong answer. Other replicas still conflict on the sequence, as before.
#[derive(Clone)]
pub(super) struct Turns(Arc<[tokio::sync::Mutex<()>]>);

impl Turns {
    const STRIPES: usize = 1024;

    /// Waits for the aggregate's turn; it lasts as long as the guard.
    pub(super) async fn take(&self, id: Uuid) -> tokio::sync::MutexGuard<'_, ()> {
        // v4 and v7 ids both end in random bits.
        self.0[(id.as_u128() % Self::STRIPES as u128) as usize]
            .lock()
            .await
    }
}

impl Default for Turns {
    fn default() -> Self {
        Self(
            (0..Self::STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }
}
