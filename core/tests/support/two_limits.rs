//! What the suites of shared admission across several limits share: a tracker on a store and
//! a manual clock, and the store's totals per window spec.

#![allow(dead_code)]

use quota_core::{ManualClock, MemoryStore, QuotaTracker, Store, SyncPolicy, TrackerConfig};

/// A tracker of `config` on `store` and `clock`, trying once per flush (some tests fail one on
/// purpose).
pub fn tracker(
    config: TrackerConfig,
    store: impl Store + 'static,
    clock: &ManualClock,
) -> QuotaTracker {
    QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store)
        .sync_policy(SyncPolicy {
            flush_timeout_ms: 0,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap()
}

/// Each stored window of `spec` ("minute", "hour", "day@Asia/Kolkata"): (start, total), in
/// order.
pub fn windows(store: &MemoryStore, spec: &str) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = store
        .state()
        .unwrap()
        .windows()
        .filter(|w| w.spec.key() == spec)
        .map(|w| (w.start_ms, w.total))
        .collect();
    all.sort_unstable();
    all
}

/// The store's total of each window of `spec`, summed.
pub fn stored(store: &MemoryStore, spec: &str) -> u64 {
    windows(store, spec).iter().map(|w| w.1).sum()
}

/// The store's totals of the minutes and of the hours.
pub fn both(store: &MemoryStore) -> (u64, u64) {
    (stored(store, "minute"), stored(store, "hour"))
}

/// What `tracker` counts in each limit of service `api`, in config order.
pub fn used(tracker: &QuotaTracker) -> Vec<u64> {
    let limits = tracker.usage_limits("api").unwrap();
    limits.iter().map(|u| u.used).collect()
}
