//! The tracker's clock in the JS module: `Date.now()`, or the time a lean call read in JS.

use crate::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The tracker's clock: `Date.now()`, except while a lean call runs, which reads `Date.now()`
/// in JavaScript (cheaper there than a call out of wasm) and passes it in.
#[derive(Clone)]
pub(super) struct JsClock(Arc<AtomicU64>);

impl JsClock {
    /// No time passed in: read `Date.now()`.
    const UNSET: u64 = u64::MAX;

    /// Runs `body` with the clock reading `now_ms` (`Date.now()` if `None`).
    pub(super) fn at<T>(&self, now_ms: Option<u64>, body: impl FnOnce() -> T) -> T {
        let Some(now_ms) = now_ms else {
            return body();
        };
        self.0.store(now_ms.min(Self::UNSET - 1), Ordering::Relaxed);
        let result = body();
        self.0.store(Self::UNSET, Ordering::Relaxed);
        result
    }

    /// `Date.now()` as JS passed it in: `as` saturates, so a negative or NaN time reads as 0,
    /// as `SystemClock` reads it.
    pub(super) fn js_time(now_ms: f64) -> Option<u64> {
        Some(now_ms as u64)
    }
}

impl Default for JsClock {
    fn default() -> Self {
        JsClock(Arc::new(AtomicU64::new(Self::UNSET)))
    }
}

impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            Self::UNSET => js_sys::Date::now() as u64,
            now_ms => now_ms,
        }
    }
}
