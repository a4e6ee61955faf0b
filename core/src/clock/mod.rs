//! Where the tracker gets the time from.

mod system;

pub use system::SystemClock;

use crate::locks::{Arc, AtomicU64, Ordering};

/// A source of the current time, in milliseconds since the Unix epoch (UTC).
///
/// The tracker reads it once per operation, outside its locks. Inject a [`ManualClock`] in tests
/// so they never sleep or race the wall clock.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> u64;
}

/// A clock that only moves when told to. Clones share one time.
///
/// ```
/// use quota_core::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let shared = clock.clone();
/// shared.advance(500);
/// assert_eq!(clock.now_ms(), 1_500);
/// clock.set(42);
/// assert_eq!(shared.now_ms(), 42);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock to `ms` (backwards too).
    pub fn set(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`, saturating at `u64::MAX`.
    pub fn advance(&self, ms: u64) {
        // fetch_update never fails here: the closure always returns Some.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}
