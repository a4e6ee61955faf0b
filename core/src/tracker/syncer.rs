//! Where a due sync runs: on the call that found it due (the default), or, once
//! [`QuotaTracker::sync_in_background`] started one (native only), on a thread of the
//! tracker's own that the call only wakes, so no call ever waits for a write-behind sync it
//! did not ask for.

use super::QuotaTracker;
use crate::persistence::SaveReason;

impl QuotaTracker {
    /// Whether `sync_in_background` started the tracker's syncer (never on wasm32).
    pub(super) fn syncs_in_background(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return self.syncer.runs();
        #[cfg(target_arch = "wasm32")]
        false
    }

    /// A sync is due (`critical`: a call entered Critical): run it here, or wake the
    /// background syncer.
    #[cold]
    #[inline(never)]
    pub(super) fn sync_now(&self, critical: bool, now: u64) {
        #[cfg(not(target_arch = "wasm32"))]
        if self.syncer.wake(critical) {
            return;
        }
        let reason = match critical {
            true => SaveReason::Critical,
            false => SaveReason::Interval,
        };
        self.save(reason, now);
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) use background::Syncer;

#[cfg(not(target_arch = "wasm32"))]
mod background {
    use super::super::QuotaTracker;
    use crate::locks::lock_std;
    use crate::observers::quietly;
    use crate::persistence::SaveReason;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Condvar, Mutex, Weak};
    use std::time::Duration;

    /// The least the syncer sleeps between two looks: a sync that stays due (one in flight
    /// on another thread, a `flush`) must not make it spin.
    const LEAST_SLEEP_MS: u64 = 10;

    /// A tracker's background syncer, if one was started.
    #[derive(Default)]
    pub(in crate::tracker) struct Syncer {
        shared: Arc<Shared>,
    }

    #[derive(Default)]
    struct Shared {
        /// The thread runs: calls wake it instead of syncing.
        running: AtomicBool,
        /// A wake is pending (calls that find a sync due wake it once, not each).
        woken: AtomicBool,
        state: Mutex<State>,
        wake: Condvar,
    }

    #[derive(Default)]
    struct State {
        woken: bool,
        /// `Leased` services whose next block to lease ahead (their positions).
        prefetch: Vec<usize>,
        /// A call entered Critical: sync at once, as a forced sync.
        critical: bool,
        /// The tracker dropped.
        closed: bool,
    }

    impl Syncer {
        /// Wakes the thread, if it runs, for a due sync (`critical`: a forced one); `false`
        /// if it does not run (the caller syncs). Cheap while a wake is pending.
        pub(in crate::tracker) fn wake(&self, critical: bool) -> bool {
            let shared = &self.shared;
            if !shared.running.load(Ordering::Relaxed) {
                return false;
            }
            if !critical && shared.woken.swap(true, Ordering::Relaxed) {
                return true;
            }
            let mut state = lock_std(&shared.state);
            state.woken = true;
            state.critical |= critical;
            drop(state);
            shared.wake.notify_one();
            true
        }
    }

    impl Syncer {
        /// Whether the thread runs.
        pub(in crate::tracker) fn runs(&self) -> bool {
            self.shared.running.load(Ordering::Relaxed)
        }

        /// Asks the thread to lease the next block of the `Leased` service at `position`.
        pub(in crate::tracker) fn prefetch(&self, position: usize) {
            let mut state = lock_std(&self.shared.state);
            state.prefetch.push(position);
            state.woken = true;
            drop(state);
            self.shared.wake.notify_one();
        }
    }

    impl Drop for Syncer {
        fn drop(&mut self) {
            lock_std(&self.shared.state).closed = true;
            self.shared.wake.notify_one();
        }
    }

    impl QuotaTracker {
        /// Starts a thread that runs this tracker's syncs with its store: every
        /// `SyncPolicy::interval_ms`, and at once when a call enters Critical (with
        /// `force_on_critical`). From then on no call syncs (a call that finds a sync due
        /// only wakes the thread), so no caller, and no async task on an executor, waits for
        /// a write-behind sync it did not ask for; and a tracker that stops counting still
        /// sends what it counted, and reads what other instances counted, every interval.
        /// [`flush`](Self::flush), shared admission (`Exact`, `Leased`) and `reconfigure`
        /// still use the store on the caller's thread, and dropping the tracker flushes on
        /// the thread that drops it.
        ///
        /// Transitions and store events that a sync causes (a read that raised a count,
        /// reduced-rate mode) are delivered on that thread. The thread holds the tracker
        /// only while it syncs, and ends when the tracker drops. Native only.
        ///
        /// Returns `Ok(false)` without a store, or if the thread runs already; an error if
        /// the thread cannot be started.
        ///
        /// ```
        /// use quota_core::{MemoryStore, Period, QuotaTracker, ServiceConfig, SyncPolicy,
        ///     TrackerConfig};
        /// use std::sync::Arc;
        /// use std::time::Duration;
        ///
        /// let store = MemoryStore::new();
        /// let policy = SyncPolicy { interval_ms: 50, ..SyncPolicy::default() };
        /// let config = TrackerConfig::new([ServiceConfig::new("api", 100, Period::Hour)]);
        /// let tracker = Arc::new(
        ///     QuotaTracker::builder(config.clone()).store(store.clone()).sync_policy(policy).build()?,
        /// );
        /// assert!(tracker.sync_in_background().expect("a thread"));
        /// tracker.record_call("api", 7)?;
        /// // No more calls: the thread sends the 7 within an interval all the same.
        /// std::thread::sleep(Duration::from_millis(300));
        /// let other = QuotaTracker::builder(config).store(store).build()?;
        /// assert_eq!(other.usage("api")?.used, 7);
        /// # Ok::<(), quota_core::QuotaError>(())
        /// ```
        pub fn sync_in_background(self: &Arc<Self>) -> std::io::Result<bool> {
            if self.persistence.is_none() || self.syncer.shared.running.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let shared = Arc::clone(&self.syncer.shared);
            if shared.running.swap(true, Ordering::SeqCst) {
                return Ok(false);
            }
            let weak = Arc::downgrade(self);
            let thread_shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("quota-syncer".into())
                .spawn(move || run_syncer(&weak, &thread_shared));
            match spawned {
                Ok(_) => Ok(true),
                Err(error) => {
                    shared.running.store(false, Ordering::SeqCst);
                    Err(error)
                }
            }
        }

        /// One look of the syncer: the sync that is due, if one is; how long to sleep after.
        fn sync_in_turn(&self, shared: &Shared) -> Duration {
            let (critical, prefetch) = {
                let mut state = lock_std(&shared.state);
                state.woken = false;
                (
                    std::mem::take(&mut state.critical),
                    std::mem::take(&mut state.prefetch),
                )
            };
            shared.woken.store(false, Ordering::Relaxed);
            for position in prefetch {
                self.prefetch_lease(position);
            }
            let Some(persistence) = &self.persistence else {
                return Duration::from_secs(60);
            };
            let now = self.now();
            if critical {
                self.save(SaveReason::Critical, now);
            } else if persistence.due(now) {
                self.save(SaveReason::Interval, now);
            }
            let wait = persistence.due_at_ms().saturating_sub(self.now());
            let most = persistence.policy.interval_ms.max(LEAST_SLEEP_MS);
            Duration::from_millis(wait.clamp(LEAST_SLEEP_MS, most))
        }
    }

    /// The syncer thread: syncs in turn while the tracker lives, holding it only while it
    /// syncs (so the tracker can drop while it sleeps).
    fn run_syncer(tracker: &Weak<QuotaTracker>, shared: &Shared) {
        loop {
            let sleep = {
                let Some(tracker) = tracker.upgrade() else {
                    return;
                };
                // A sync catches its store's panics and its observers'; whatever else
                // panics, the thread syncs again at the next look.
                match catch_unwind(AssertUnwindSafe(|| tracker.sync_in_turn(shared))) {
                    Ok(sleep) => sleep,
                    Err(payload) => {
                        std::mem::forget(payload);
                        quietly(|| log::error!("quota: a background sync panicked"));
                        Duration::from_secs(1)
                    }
                }
            };
            let state = lock_std(&shared.state);
            if state.closed {
                return;
            }
            if !state.woken {
                let (state, _) = shared
                    .wake
                    .wait_timeout(state, sleep)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if state.closed {
                    return;
                }
            }
        }
    }
}
