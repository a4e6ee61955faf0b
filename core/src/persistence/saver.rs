//! The save loop: at most one sync in flight (the save lock), forced syncs that coalesce into
//! it, operation numbers, the stats and reduced-rate mode after each write.

use super::resend::SaverState;
use super::{Cut, Late, Settled};
use super::{SaveReason, StoreEvent, StoreStats, SyncPolicy};
use crate::locks::{AtomicBool, AtomicU64, Mutex, Ordering};
use crate::observers::{quietly, Outbox, Registry};
use crate::store::{InstanceId, Store, StoreError, SyncBatch};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The longest back-off between attempts while the store fails.
const MAX_BACKOFF_MS: u64 = 30_000;
/// The first back-off after a failure; it doubles with every failure in a row.
const FIRST_BACKOFF_MS: u64 = 100;

/// The tracker's persistence state; see the module docs for the locking rules.
pub(crate) struct Persistence {
    pub(super) store: Box<dyn Store>,
    pub(crate) policy: SyncPolicy,
    /// This tracker in the store's eyes.
    pub(crate) instance: InstanceId,
    /// The next interval sync is due at this time (ms).
    pub(super) due_ms: AtomicU64,
    pub(super) reduced: AtomicBool,
    /// The last sync failed (the back-off applies).
    pub(super) failing: AtomicBool,
    /// Set by a forced sync that coalesced, so the sync in flight runs once more.
    pub(super) rerun: AtomicBool,
    /// Held across store I/O: at most one sync in flight.
    pub(super) saver: Mutex<SaverState>,
    /// Operation numbers (a leaf lock: nothing else is taken while it is held).
    pub(super) seqs: Mutex<Seqs>,
    /// Syncs started so far (a flush that waited for the lock sees whether one started after
    /// it was called).
    pub(super) syncs_started: AtomicU64,
    /// Held only to update the stats (and to queue the event the update causes, so events
    /// are queued in the order the state changed).
    pub(super) stats: Mutex<StoreStats>,
    /// Reduced-rate events waiting for delivery.
    pub(crate) events: Outbox<StoreEvent>,
}

/// The tracker's side of a save: what the save loop asks of the services, each under their
/// locks (taken after the save lock: the crate's lock order). A trait rather than closures, so
/// that the walk from the save loop into the services is one named interface.
pub(crate) trait Books {
    /// A new batch under every service's lock: what each recorded since the last cut, and the
    /// operations queued under the services' locks.
    fn cut(&self, instance: InstanceId) -> Cut;
    /// Takes in a reply: acknowledges the batch's cut and raises the view to the totals.
    fn take_totals(&self, batch: &SyncBatch, totals: &[u64]);
    /// Settles a late answer; calls to give back, if any.
    fn settle(&self, late: Late<'_>) -> Settled;
}

/// This instance's operation numbers: one rising sequence for every operation that changes
/// the store, and those not answered yet; the least of them is the `done_below` each new
/// operation carries, below which the store may forget.
#[derive(Default)]
pub(super) struct Seqs {
    pub(super) last: u64,
    /// A few at a time (one per operation in flight): a vector, not a B-tree (whose code
    /// would weigh on the JS module).
    pub(super) pending: Vec<u64>,
}

/// What one save produced.
pub(crate) struct SaveOutcome {
    /// The first sync's result.
    pub(crate) result: Result<(), StoreError>,
    /// Syncs that succeeded and failed (the load not counted): a save runs more than one when
    /// forced syncs coalesced into it.
    pub(crate) synced: u64,
    pub(crate) failed: u64,
}

impl Persistence {
    pub(crate) fn new(store: Box<dyn Store>, policy: SyncPolicy, now_ms: u64) -> Self {
        Persistence {
            due_ms: AtomicU64::new(now_ms.saturating_add(policy.interval_ms)),
            store,
            policy,
            instance: InstanceId::random(),
            reduced: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            rerun: AtomicBool::new(false),
            saver: Mutex::new(SaverState::default()),
            seqs: Mutex::new(Seqs::default()),
            syncs_started: AtomicU64::new(0),
            stats: Mutex::new(StoreStats::default()),
            events: Outbox::new(),
        }
    }

    /// A new operation number, pending until [`answered`](Self::answered), and the
    /// `done_below` to send with it.
    pub(crate) fn issue(&self) -> (u64, u64) {
        let mut seqs = self.seqs.lock();
        seqs.last += 1;
        let seq = seqs.last;
        seqs.pending.push(seq);
        let done_below = seqs.pending.iter().copied().min().unwrap_or(seq);
        (seq, done_below)
    }

    /// The store answered operation `seq` (or it was never sent): it is never resent, and
    /// later operations let the store forget it.
    pub(crate) fn answered(&self, seq: u64) {
        let mut seqs = self.seqs.lock();
        if let Some(at) = seqs.pending.iter().position(|&pending| pending == seq) {
            seqs.pending.swap_remove(at);
        }
    }

    /// Any other store call (shared admission), a panic turned into an error.
    pub(crate) fn call<T>(
        &self,
        call: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        guarded(|| call(&*self.store))
    }

    /// Syncs through the store; a panicking store is a failed sync.
    pub(super) fn send(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let totals = guarded(|| self.store.sync(batch))?;
        if totals.len() == batch.read.len() {
            Ok(totals)
        } else {
            Err(StoreError::Io(format!(
                "the store answered {} totals for {} windows",
                totals.len(),
                batch.read.len()
            )))
        }
    }

    /// Makes the next call sync: a window moved, and the store may hold other instances'
    /// calls in the new one.
    pub(crate) fn sync_soon(&self) {
        self.due_ms.store(0, Ordering::Relaxed);
    }

    /// A shared-admission call failed: the store counts as failing until a sync succeeds, and
    /// the next sync waits the first back-off.
    pub(crate) fn back_off(&self, now_ms: u64) {
        // Already failing: the back-off the last failed sync set stands (shortening it to the
        // first back-off on every failed call would hammer a store that is down).
        if !self.failing.swap(true, Ordering::Relaxed) {
            let next = now_ms.saturating_add(FIRST_BACKOFF_MS);
            self.due_ms.fetch_min(next, Ordering::Relaxed);
        }
    }

    /// Whether the store failed and its back-off has not passed yet (shared admission does
    /// not ask it meanwhile).
    pub(crate) fn backing_off(&self, now_ms: u64) -> bool {
        self.failing.load(Ordering::Relaxed) && !self.due(now_ms)
    }

    /// Whether a call at `now_ms` should try to sync (the hot path: one atomic load).
    /// When the next sync is due (ms; 0: at once).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn due_at_ms(&self) -> u64 {
        self.due_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.due_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn is_reduced(&self) -> bool {
        self.reduced.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.stats.lock().clone()
    }

    /// Calls to give back that will never reach the store (a build without shared admission,
    /// whose syncs send no give-backs): counted as forfeited.
    pub(crate) fn forfeit(&self, calls: u64) {
        if calls > 0 {
            self.stats.lock().forfeited_calls += calls;
        }
    }

    /// Syncs under the save lock: first a batch whose reply was lost, as it is, then a new
    /// one that `books.cut` makes (it takes the service locks: saver, then services, is the crate's
    /// lock order) from what was recorded since; `books.take_totals` takes in each reply. Returns `None`
    /// when the sync coalesced into one already in flight.
    ///
    /// A forced sync that finds the lock taken sets `rerun` and returns; the holder looks at
    /// `rerun` after each sync and once more after letting go of the lock (retrying the lock
    /// if it is set), so a forced sync is never dropped between the holder's last look and its
    /// release (the lost wake-up, as in the observers' drain).
    pub(crate) fn save(
        &self,
        reason: SaveReason,
        now_ms: u64,
        registry: &Registry<StoreEvent>,
        books: &dyn Books,
        out_of_time: &dyn Fn() -> bool,
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
                SaveReason::Load => Some(self.saver.lock()),
                SaveReason::Flush => match self.saver.try_lock() {
                    Some(saver) => Some(saver),
                    None => {
                        let before = self.syncs_started.load(Ordering::SeqCst);
                        let saver = self.saver.lock();
                        if self.syncs_started.load(Ordering::SeqCst) != before && out_of_time() {
                            // A sync started after this flush was called (so it cut this
                            // thread's calls) and ended while this one waited, and this one's
                            // time is up: that sync's outcome is this one's (flushes lined up
                            // behind a slow store would otherwise each add a store call).
                            let (ops, _) = saver.unresolved();
                            let result = match ops {
                                0 => Ok(()),
                                ops => Err(StoreError::Io(format!(
                                    "{ops} store operations still unresolved after the last sync"
                                ))),
                            };
                            return Some(SaveOutcome {
                                result,
                                synced: 0,
                                failed: 0,
                            });
                        }
                        Some(saver)
                    }
                },
                SaveReason::Interval | SaveReason::Critical => self.saver.try_lock(),
            };
            let Some(mut saver) = saver else {
                if first.is_none() {
                    self.stats.lock().coalesced_saves += 1;
                }
                return first;
            };
            let outcome = self.save_locked(&mut saver, reason, now_ms, registry, books);
            drop(saver);
            let failed = outcome.result.is_err();
            match &mut first {
                Some(first) => {
                    first.synced += outcome.synced;
                    first.failed += outcome.failed;
                }
                None => first = Some(outcome),
            }
            // A forced sync that coalesced after the last look: run it unless another
            // thread holds the lock now (that thread then sees `rerun`).
            if failed || !self.rerun.load(Ordering::SeqCst) {
                return first;
            }
            reason = SaveReason::Critical;
        }
    }

    pub(super) fn save_locked(
        &self,
        saver: &mut SaverState,
        reason: SaveReason,
        now_ms: u64,
        registry: &Registry<StoreEvent>,
        books: &dyn Books,
    ) -> SaveOutcome {
        let mut outcome = SaveOutcome {
            result: Ok(()),
            synced: 0,
            failed: 0,
        };
        // One pass, plus one more each time a forced sync coalesced into this one meanwhile.
        loop {
            self.rerun.store(false, Ordering::SeqCst);
            self.syncs_started.fetch_add(1, Ordering::SeqCst);
            outcome.result = self.sync_once(saver, books);
            self.account(reason, now_ms, &outcome.result, registry);
            let (ops, unresolved) = saver.unresolved();
            {
                let mut stats = self.stats.lock();
                stats.unresolved_ops = ops;
                stats.unresolved_calls = unresolved;
            }
            match (&outcome.result, reason) {
                (_, SaveReason::Load) => {}
                (Ok(()), _) => outcome.synced += 1,
                (Err(_), _) => outcome.failed += 1,
            }
            if outcome.result.is_err() || !self.rerun.load(Ordering::SeqCst) {
                break;
            }
        }
        outcome
    }

    /// Updates the stats and reduced-rate mode after one write.
    pub(super) fn account(
        &self,
        reason: SaveReason,
        now_ms: u64,
        result: &Result<(), StoreError>,
        registry: &Registry<StoreEvent>,
    ) {
        let policy = &self.policy.reduced_rate;
        let mut stats = self.stats.lock();
        self.failing.store(result.is_err(), Ordering::Relaxed);
        if reason == SaveReason::Load {
            stats.loads += 1;
            if let Err(error) = result {
                stats.load_failures += 1;
                stats.last_error = Some(error.to_string());
                let event = StoreEvent::ReadFailed {
                    at_ms: now_ms,
                    error: error.to_string(),
                };
                self.events.push(event, registry.epoch());
                // Read again soon: until then the view lacks the other instances' calls.
                self.due_ms
                    .store(now_ms.saturating_add(FIRST_BACKOFF_MS), Ordering::Relaxed);
            }
            return;
        }
        if reason == SaveReason::Critical {
            stats.forced_saves += 1;
        }
        // Next interval sync: after the interval, or, while the store fails, after a back-off
        // that doubles up to a cap, so a failing store costs the calls almost nothing.
        let wait = match result {
            Ok(()) => self.policy.interval_ms,
            Err(_) => {
                let shift = stats.consecutive_failures.min(16);
                (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
            }
        };
        self.due_ms
            .store(now_ms.saturating_add(wait), Ordering::Relaxed);
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
pub(crate) fn guarded<T>(call: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
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
