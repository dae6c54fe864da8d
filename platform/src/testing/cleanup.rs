//! Clean-up that `Drop` impls of test resources run outside the test's runtime.

use std::future::Future;

/// Runs `cleanup` to completion on a thread and runtime of its own, and waits for it.
///
/// `Drop` runs inside the test's runtime, which may be single-threaded: blocking it on a
/// future that needs that runtime would never finish, so the clean-up gets a fresh one.
pub fn run_detached<F, Fut>(cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cleanup runtime");
        runtime.block_on(cleanup());
    });
    let _ = thread.join();
}
