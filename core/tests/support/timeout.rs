//! The timeout guard of the tests that could hang: a hang fails the test within seconds
//! instead of stalling CI.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `test` on its own thread and fails if it does not finish within `seconds` (the hung
/// thread is leaked); a panic in `test` is the test's panic.
pub fn within<T: Send + 'static>(seconds: u64, test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    let runner = thread::spawn(move || {
        let result = test();
        let _ = done.send(());
        result
    });
    match finished.recv_timeout(Duration::from_secs(seconds)) {
        // Finished, or panicked (the sender dropped): join says which.
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: not finished within {seconds} s"),
    }
}
