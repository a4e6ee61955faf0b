//! Write-behind sync of the tracker's counts to a [`Store`], and reduced-rate mode.
//!
//! Saves are triggered by the calls themselves (there is no background thread, and none on
//! wasm), after the service locks are released: when `interval_ms` has passed since the last
//! successful save, or at once when a call enters Critical. The save lock is held across the
//! store I/O so at most one save is in flight; a call that finds it taken does not wait (the
//! save *coalesces*). It is always taken before any service lock, never after.
//!
//! [`flush`](crate::QuotaTracker::flush) is the one call that waits, and only for a save in
//! flight (so for as long as the store's own I/O takes): never for an observer, since
//! observers run only after the save lock is released. A store that panics is a failed save.

use crate::error::QuotaError;
use crate::observers::{quietly, Outbox, Registry};
use crate::store::{PersistedState, Store, StoreError};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// When the tracker saves, and when it drops to reduced rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPolicy {
    /// Save when this long has passed since the last successful save (default 60 000 ms).
    pub interval_ms: u64,
    /// Save at once when a service enters Critical (default true).
    pub force_on_critical: bool,
    /// Reduced-rate mode while the store fails.
    pub reduced_rate: ReducedRatePolicy,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            interval_ms: 60_000,
            force_on_critical: true,
            reduced_rate: ReducedRatePolicy::default(),
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
            return invalid("fraction", &rate.fraction, "must be in (0, 1]");
        }
        Ok(())
    }
}

/// Counters of the tracker's store activity, from [`stats`](crate::QuotaTracker::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Loads attempted (one when the tracker was built with a store).
    pub loads: u64,
    /// Loads that failed or found corrupt data (the tracker then started fresh).
    pub load_failures: u64,
    /// Successful saves.
    pub saves: u64,
    /// Failed saves.
    pub save_failures: u64,
    /// Saves started at once because a service entered Critical.
    pub forced_saves: u64,
    /// Save triggers that found a save already in flight and folded into it.
    pub coalesced_saves: u64,
    /// The most recent load or save error, if any.
    pub last_error: Option<String>,
    /// Failed saves since the last success.
    pub consecutive_failures: u32,
    /// Successful saves since the last failure.
    pub consecutive_successes: u32,
    /// Whether reduced-rate mode is on.
    pub reduced_rate: bool,
}

/// Reduced-rate mode starting or ending, delivered to
/// [`on_store_event`](crate::QuotaTracker::on_store_event) subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The store failed `consecutive_failures` times in a row: calls are reduced.
    ReducedRateEntered {
        /// When (the tracker clock), ms since the Unix epoch.
        at_ms: u64,
        /// Failed saves in a row.
        consecutive_failures: u32,
        /// The last error.
        error: String,
    },
    /// The store succeeded `consecutive_successes` times in a row: normal rate again.
    ReducedRateLeft {
        /// When (the tracker clock), ms since the Unix epoch.
        at_ms: u64,
        /// Successful saves in a row.
        consecutive_successes: u32,
    },
}

/// Why a save runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveReason {
    /// `interval_ms` passed: skipped when nothing changed (unless probing in reduced rate).
    Interval,
    /// A service entered Critical.
    Critical,
    /// `flush()`: waits for a save in flight, always writes.
    Flush,
}

/// The tracker's persistence state; see the module docs for the locking rules.
pub(crate) struct Persistence {
    store: Box<dyn Store>,
    pub(crate) policy: SyncPolicy,
    /// The next interval save is due at this time (ms).
    due_ms: AtomicU64,
    reduced: AtomicBool,
    /// Set by a forced save that coalesced, so the save in flight runs once more.
    rerun: AtomicBool,
    /// Held across store I/O: at most one save in flight.
    saver: Mutex<SaverState>,
    /// Held only to update the stats (and to queue the event the update causes, so events
    /// are queued in the order the state changed).
    stats: Mutex<StoreStats>,
    /// Reduced-rate events waiting for delivery.
    pub(crate) events: Outbox<StoreEvent>,
}

/// What the save lock guards.
struct SaverState {
    /// Per-service versions at the last successful save.
    saved_versions: Vec<u64>,
    /// Whether the saved counts were taken in (false after a load that failed at build).
    restored: bool,
}

/// What one save attempt produced.
pub(crate) struct SaveOutcome {
    pub(crate) result: Result<(), StoreError>,
}

impl Persistence {
    pub(crate) fn new(
        store: Box<dyn Store>,
        policy: SyncPolicy,
        now_ms: u64,
        saved_versions: Vec<u64>,
        restored: bool,
    ) -> Self {
        Persistence {
            due_ms: AtomicU64::new(now_ms.saturating_add(policy.interval_ms)),
            store,
            policy,
            reduced: AtomicBool::new(false),
            rerun: AtomicBool::new(false),
            saver: Mutex::new(SaverState {
                saved_versions,
                restored,
            }),
            stats: Mutex::new(StoreStats::default()),
            events: Outbox::new(),
        }
    }

    /// Loads through the store; a panicking store is a failed load.
    pub(crate) fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        guarded(|| self.store.load())
    }

    /// Saves through the store; a panicking store is a failed save.
    pub(crate) fn write(&self, state: &PersistedState) -> Result<(), StoreError> {
        guarded(|| self.store.save(state))
    }

    /// Sets what the saver knows before the first save: the versions the store holds, and
    /// whether the stored counts were taken in.
    pub(crate) fn reset_saver(&self, saved_versions: Vec<u64>, restored: bool) {
        let mut saver = self.saver.lock();
        saver.saved_versions = saved_versions;
        saver.restored = restored;
    }

    /// Whether a call at `now_ms` should try to save (the hot path: one atomic load).
    pub(crate) fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.due_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn is_reduced(&self) -> bool {
        self.reduced.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.stats.lock().clone()
    }

    pub(crate) fn record_load(&self, error: Option<&StoreError>) {
        let mut stats = self.stats.lock();
        stats.loads += 1;
        if let Some(error) = error {
            stats.load_failures += 1;
            stats.last_error = Some(error.to_string());
        }
    }

    /// Saves under the save lock. `restore` first takes in the stored counts if the load at
    /// build failed; `snapshot` gives the state and per-service versions to write (it takes
    /// the service locks: saver, then services, is the crate's lock order); `write` does the
    /// I/O. Returns `None` when the save coalesced into one already in flight.
    ///
    /// A forced save that finds the lock taken sets `rerun` and returns; the holder looks at
    /// `rerun` after each write and once more after letting go of the lock (retrying the lock
    /// if it is set), so a forced save is never dropped between the holder's last look and its
    /// release (the lost wake-up, as in the observers' drain).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn save<S>(
        &self,
        reason: SaveReason,
        now_ms: u64,
        registry: &Registry<StoreEvent>,
        mut restore: impl FnMut() -> Result<(), StoreError>,
        mut snapshot: impl FnMut() -> (S, Vec<u64>),
        mut write: impl FnMut(&S) -> Result<(), StoreError>,
    ) -> Option<SaveOutcome> {
        let mut first: Option<SaveOutcome> = None;
        let mut reason = reason;
        loop {
            // Raised before trying the lock: if the lock is taken, its holder is sure to look
            // at `rerun` after it (this thread's counts are in memory already).
            if reason == SaveReason::Critical {
                self.rerun.store(true, Ordering::SeqCst);
            }
            let saver = match reason {
                SaveReason::Flush => Some(self.saver.lock()),
                SaveReason::Interval | SaveReason::Critical => self.saver.try_lock(),
            };
            let Some(mut saver) = saver else {
                if first.is_none() {
                    self.stats.lock().coalesced_saves += 1;
                }
                return first;
            };
            let outcome = self.save_locked(
                &mut saver,
                reason,
                now_ms,
                registry,
                &mut restore,
                &mut snapshot,
                &mut write,
            );
            drop(saver);
            let failed = outcome.result.is_err();
            first.get_or_insert(outcome);
            // A forced save that coalesced after the last look: run it unless another
            // thread holds the lock now (that thread then sees `rerun`).
            if failed || !self.rerun.load(Ordering::SeqCst) {
                return first;
            }
            reason = SaveReason::Critical;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn save_locked<S>(
        &self,
        saver: &mut SaverState,
        reason: SaveReason,
        now_ms: u64,
        registry: &Registry<StoreEvent>,
        restore: &mut impl FnMut() -> Result<(), StoreError>,
        snapshot: &mut impl FnMut() -> (S, Vec<u64>),
        write: &mut impl FnMut(&S) -> Result<(), StoreError>,
    ) -> SaveOutcome {
        let mut outcome = SaveOutcome { result: Ok(()) };
        if !saver.restored {
            let loaded = restore();
            self.record_load(loaded.as_ref().err());
            match loaded {
                Ok(()) | Err(StoreError::Corrupt(_)) => saver.restored = true,
                Err(error) => {
                    // Writing now would overwrite counts we could not read: count it as a
                    // failed save and try again on the next trigger.
                    outcome.result = Err(error);
                    self.account(reason, now_ms, &outcome.result, registry);
                    return outcome;
                }
            }
        }
        // One pass, plus one more each time a forced save coalesced into this one meanwhile.
        let mut pass = 0;
        loop {
            self.rerun.store(false, Ordering::SeqCst);
            let (state, versions) = snapshot();
            let clean = versions == saver.saved_versions;
            if pass == 0 && reason == SaveReason::Interval && clean && !self.is_reduced() {
                self.due_ms.store(
                    now_ms.saturating_add(self.policy.interval_ms),
                    Ordering::Relaxed,
                );
                break;
            }
            if pass > 0 && clean {
                break;
            }
            outcome.result = write(&state);
            if outcome.result.is_ok() {
                saver.saved_versions = versions;
                self.due_ms.store(
                    now_ms.saturating_add(self.policy.interval_ms),
                    Ordering::Relaxed,
                );
            }
            self.account(reason, now_ms, &outcome.result, registry);
            if outcome.result.is_err() || !self.rerun.load(Ordering::SeqCst) {
                break;
            }
            pass += 1;
        }
        outcome
    }

    /// Updates the stats and reduced-rate mode after one write.
    fn account(
        &self,
        reason: SaveReason,
        now_ms: u64,
        result: &Result<(), StoreError>,
        registry: &Registry<StoreEvent>,
    ) {
        let policy = &self.policy.reduced_rate;
        let mut stats = self.stats.lock();
        if reason == SaveReason::Critical {
            stats.forced_saves += 1;
        }
        match result {
            Ok(()) => {
                stats.saves += 1;
                stats.consecutive_failures = 0;
                stats.consecutive_successes = stats.consecutive_successes.saturating_add(1);
                if stats.reduced_rate && stats.consecutive_successes >= policy.leave_after_successes
                {
                    stats.reduced_rate = false;
                    self.reduced.store(false, Ordering::Relaxed);
                    let event = StoreEvent::ReducedRateLeft {
                        at_ms: now_ms,
                        consecutive_successes: stats.consecutive_successes,
                    };
                    self.events.push(event, registry.epoch());
                }
            }
            Err(error) => {
                stats.save_failures += 1;
                stats.last_error = Some(error.to_string());
                stats.consecutive_successes = 0;
                stats.consecutive_failures = stats.consecutive_failures.saturating_add(1);
                if !stats.reduced_rate && stats.consecutive_failures >= policy.enter_after_failures
                {
                    stats.reduced_rate = true;
                    self.reduced.store(true, Ordering::Relaxed);
                    let event = StoreEvent::ReducedRateEntered {
                        at_ms: now_ms,
                        consecutive_failures: stats.consecutive_failures,
                        error: error.to_string(),
                    };
                    self.events.push(event, registry.epoch());
                }
            }
        }
    }
}

/// Runs a store call, turning a panic into [`StoreError::Panicked`].
fn guarded<T>(call: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".to_owned());
            // The payload's own `Drop` may panic: leak it instead.
            std::mem::forget(payload);
            quietly(|| log::error!("quota: the store panicked: {message}"));
            Err(StoreError::Panicked(message))
        }
    }
}
