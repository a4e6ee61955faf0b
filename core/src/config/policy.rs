//! How a tracker syncs with its store, and when it drops to reduced rate: configuration the
//! config file and the builder set, which `persistence` follows.

use crate::error::QuotaError;
use crate::text::Float;

/// When the tracker saves, and when it drops to reduced rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPolicy {
    /// Save when this long has passed since the last successful save (default 60 000 ms).
    pub interval_ms: u64,
    /// Save at once when a service enters Critical (default true).
    pub force_on_critical: bool,
    /// Reduced-rate mode while the store fails.
    pub reduced_rate: ReducedRatePolicy,
    /// How long [`flush`](crate::QuotaTracker::flush) and a native `Drop` keep trying while
    /// the store fails (any error but `Reentrant`) before they give up and leave what is
    /// unresolved in [`StoreStats::unresolved_calls`](crate::StoreStats::unresolved_calls) (default 3 000 ms; 0: one try; at most a
    /// day). The deadline is checked between tries: a try under way runs to its end, bounded
    /// by the store's own timeouts. On wasm `flush` tries once: a page must not block.
    pub flush_timeout_ms: u64,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            interval_ms: 60_000,
            force_on_critical: true,
            reduced_rate: ReducedRatePolicy::default(),
            flush_timeout_ms: 3_000,
        }
    }
}

/// After `enter_after_failures` consecutive failed saves, `can_call` and `try_record` allow a
/// service only while `used < floor(limit x fraction)`; after `leave_after_successes`
/// consecutive successful saves, normal again.
#[derive(Debug, Clone, PartialEq)]
pub struct ReducedRatePolicy {
    /// Consecutive failures that start reduced-rate mode (default 3).
    pub enter_after_failures: u32,
    /// Consecutive successes that end it (default 5).
    pub leave_after_successes: u32,
    /// The fraction of each limit still allowed (default 0.25).
    pub fraction: f64,
}

impl Default for ReducedRatePolicy {
    fn default() -> Self {
        ReducedRatePolicy {
            enter_after_failures: 3,
            leave_after_successes: 5,
            fraction: 0.25,
        }
    }
}

impl SyncPolicy {
    pub(crate) fn validate(&self) -> Result<(), QuotaError> {
        let rate = &self.reduced_rate;
        let invalid = |field, value: &dyn std::fmt::Display, reason: &str| {
            Err(QuotaError::invalid_config(None, field, value, reason))
        };
        if rate.enter_after_failures == 0 {
            return invalid("enter_after_failures", &0, "must be at least 1");
        }
        if rate.leave_after_successes == 0 {
            return invalid("leave_after_successes", &0, "must be at least 1");
        }
        if !(rate.fraction > 0.0 && rate.fraction <= 1.0) {
            return invalid("fraction", &Float(rate.fraction), "must be in (0, 1]");
        }
        Ok(())
    }
}
