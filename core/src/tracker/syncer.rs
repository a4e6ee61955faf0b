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
        // An async caller never syncs in place: the syncer gets to it (stuck, later).
        #[cfg(not(target_arch = "wasm32"))]
        if self.syncer.wake(critical, now, self.persistence.as_ref()) || crate::caller::is_async() {
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
    use crate::persistence::Persistence;
    use crate::persistence::SaveReason;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
        /// When the thread's look under way began (tracker ms; 0: it sleeps). A look longer
        /// than an interval (an observer that blocks, a store that hangs) lets calls sync
        /// themselves again, as without the thread (their sync coalesces while the thread
        /// holds the save lock: no wait, no I/O).
        looking_since_ms: AtomicU64,
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
        /// The thread ended.
        ended: bool,
    }

    impl Syncer {
        /// Wakes the thread, if it runs, for a due sync (`critical`: a forced one) found at
        /// `now`; `false` if the caller must sync itself (no thread, or one stuck in a look
        /// longer than an interval). Cheap while a wake is pending.
        pub(in crate::tracker) fn wake(
            &self,
            critical: bool,
            now: u64,
            persistence: Option<&Persistence>,
        ) -> bool {
            let shared = &self.shared;
            if !shared.running.load(Ordering::Relaxed) {
                return false;
            }
            let since = shared.looking_since_ms.load(Ordering::Relaxed);
            let stuck_after = persistence.map_or(0, |p| p.policy.interval_ms.max(LEAST_SLEEP_MS));
            if since != 0 && now.saturating_sub(since) > stuck_after {
                return false;
            }
            if !critical && shared.woken.swap(true, Ordering::Relaxed) {
                return true;
            }
            let mut state = lock_std(&shared.state);
            if state.ended {
                // The thread ended (its tracker left its `Arc`): the caller syncs.
                return false;
            }
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
        /// reduced-rate mode) are delivered on that thread. While one of its looks lasts
        /// longer than an interval (an observer that blocks, a store that hangs), calls sync
        /// themselves again, as without it (coalescing while it holds the store). The thread
        /// holds the tracker only while it syncs, and ends when the tracker drops (or is
        /// taken out of its `Arc`: calls then sync themselves, and this may start it again).
        /// If the last `Arc` drops while the thread syncs, the tracker's final flush runs on
        /// the thread when that sync ends: a process about to exit calls
        /// [`flush`](Self::flush) first. Native only.
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
            lock_std(&shared.state).ended = false;
            let weak = Arc::downgrade(self);
            let thread_shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("quota-syncer".into())
                .spawn(move || run_syncer(&weak, &thread_shared));
            match spawned {
                Ok(_) => Ok(true),
                Err(error) => {
                    // Calls that woke the thread that never started: they sync themselves
                    // from now on, and the one a wake left due is due still.
                    lock_std(&shared.state).ended = true;
                    shared.running.store(false, Ordering::SeqCst);
                    shared.woken.store(false, Ordering::SeqCst);
                    if let Some(persistence) = &self.persistence {
                        persistence.sync_soon();
                    }
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
            let now = self.now();
            shared.looking_since_ms.store(now.max(1), Ordering::Relaxed);
            for position in prefetch {
                self.prefetch_lease(position);
            }
            let Some(persistence) = &self.persistence else {
                return Duration::from_secs(60);
            };
            let reason = match critical {
                true => Some(SaveReason::Critical),
                false => persistence.due(now).then_some(SaveReason::Interval),
            };
            if let Some(reason) = reason {
                if self.save(reason, now).is_none() {
                    // Coalesced into a sync in flight (a `flush` elsewhere): it stays due until
                    // that one ends. Calls must not wake this thread for it meanwhile (those
                    // that did during this look are forgotten; a Critical one is not).
                    shared.woken.store(true, Ordering::Relaxed);
                    let mut state = lock_std(&shared.state);
                    state.woken = state.critical || !state.prefetch.is_empty();
                    drop(state);
                    shared.looking_since_ms.store(0, Ordering::Relaxed);
                    return Duration::from_millis(LEAST_SLEEP_MS);
                }
            }
            shared.looking_since_ms.store(0, Ordering::Relaxed);
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
                    // Dropped, or taken out of its `Arc` (it may live on): calls sync
                    // themselves from now on, and `sync_in_background` may start a thread
                    // again.
                    let mut state = lock_std(&shared.state);
                    state.ended = true;
                    shared.running.store(false, Ordering::SeqCst);
                    shared.woken.store(false, Ordering::SeqCst);
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
