//! Write-behind sync of the tracker's counts to a [`Store`], and reduced-rate mode.
//!
//! Saves are triggered by the calls themselves (there is no background thread, and none on
//! wasm), after the service locks are released: when `interval_ms` has passed since the last
//! successful save, or at once when a call enters Critical. The save lock is held across the
//! store I/O so at most one save is in flight; a call that finds it taken does not wait (the
//! save *coalesces*). It is always taken before any service lock, never after.
//!
//! [`flush`](crate::QuotaTracker::flush) is the one call that waits: for a save in flight (so
//! for as long as the store's own I/O takes) and for its own retries while the store fails
//! ([`SyncPolicy::flush_timeout_ms`]); never for an observer, since observers run only after
//! the save lock is released. A store that panics is a failed save.

use crate::error::QuotaError;
use crate::locks::{AtomicBool, AtomicU64, Mutex, Ordering};
use crate::observers::{quietly, Outbox, Registry};
use crate::store::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseRequest, Store, StoreError, SyncBatch,
};
use crate::text::Float;
use std::panic::{catch_unwind, AssertUnwindSafe};
mod ledger;
pub(crate) use ledger::Ledger;

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
    /// unresolved in [`StoreStats::unresolved_calls`] (default 3 000 ms; 0: one try; at most a
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
    /// Operations the store has not answered yet (a reply lost, the store down), queued and
    /// resent until it does: batches, held and refused admissions, leases, give-backs, sent or
    /// still waiting. Read when [`stats`](crate::QuotaTracker::stats) is called. Non-zero after
    /// [`flush`](crate::QuotaTracker::flush) returns means it gave up on them (see
    /// [`SyncPolicy::flush_timeout_ms`]).
    pub unresolved_ops: u64,
    /// The calls those operations carry (recorded calls that may not be stored, refused calls
    /// that may be stored, leased blocks that may be granted, calls to give back). Calls
    /// recorded since the last sync and not sent yet are not among them: they go with the
    /// next sync.
    pub unresolved_calls: u64,
    /// Calls given back (unused leased calls, calls the store applied although the caller was
    /// told they were refused, a lease whose reply was lost) that the store did not take off:
    /// mostly because a raise reached their window after they were counted (its floor may
    /// include them: see [`GiveBack::raise_count`](crate::GiveBack::raise_count)), or because
    /// the total was already lower. An over-count only. A block in hand that this tracker
    /// drops after its own raise is not among them.
    pub forfeited_calls: u64,
}

/// What happened with the store, delivered to
/// [`on_store_event`](crate::QuotaTracker::on_store_event) subscribers (and to those of the
/// builder's [`on_store_event`](crate::QuotaTrackerBuilder::on_store_event), which also hear
/// about the first read).
// Non-exhaustive: the store may gain events, and a new one must not break a downstream `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// The first read of the store, when the tracker was built, failed: the tracker counts
    /// from zero, retries after a short back-off, and adds the stored totals at its first
    /// good sync. A wrong URL, port or password shows here first; see
    /// [`require_store`](crate::QuotaTrackerBuilder::require_store) to fail the build instead
    /// (the event still reaches the builder's observers, then `build` returns the error). A
    /// store that keeps data moves corrupt data aside on this read, so with `require_store` the
    /// next start finds no data and builds from zero: the error names where the data went.
    ReadFailed {
        /// When (the tracker clock), ms since the Unix epoch.
        at_ms: u64,
        /// The store's error.
        error: String,
    },
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

/// One line for a log: `the first read of the store failed: ...` (the tracker then counts
/// from zero, or with `require_store` the build fails), `reduced rate on after 3
/// failed syncs in a row: ...`, `reduced rate off after 5 good syncs in a row`.
impl std::fmt::Display for StoreEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreEvent::ReadFailed { error, .. } => {
                write!(f, "the first read of the store failed: {error}")
            }
            StoreEvent::ReducedRateEntered {
                consecutive_failures,
                error,
                ..
            } => write!(
                f,
                "reduced rate on after {consecutive_failures} failed syncs in a row: {error}"
            ),
            StoreEvent::ReducedRateLeft {
                consecutive_successes,
                ..
            } => write!(
                f,
                "reduced rate off after {consecutive_successes} good syncs in a row"
            ),
        }
    }
}

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveReason {
    /// The first sync, at build: reads the stored totals (a failure is a failed load).
    Load,
    /// `interval_ms` passed (or the back-off after a failure).
    Interval,
    /// A service entered Critical.
    Critical,
    /// `flush()`: waits for a sync in flight, always syncs.
    Flush,
}

/// The longest back-off between attempts while the store fails.
const MAX_BACKOFF_MS: u64 = 30_000;
/// The first back-off after a failure; it doubles with every failure in a row.
const FIRST_BACKOFF_MS: u64 = 100;

/// The tracker's persistence state; see the module docs for the locking rules.
pub(crate) struct Persistence {
    store: Box<dyn Store>,
    pub(crate) policy: SyncPolicy,
    /// This tracker in the store's eyes.
    pub(crate) instance: InstanceId,
    /// The next interval sync is due at this time (ms).
    due_ms: AtomicU64,
    reduced: AtomicBool,
    /// The last sync failed (the back-off applies).
    failing: AtomicBool,
    /// Set by a forced sync that coalesced, so the sync in flight runs once more.
    rerun: AtomicBool,
    /// Held across store I/O: at most one sync in flight.
    saver: Mutex<SaverState>,
    /// Operation numbers (a leaf lock: nothing else is taken while it is held).
    seqs: Mutex<Seqs>,
    /// Syncs started so far (a flush that waited for the lock sees whether one started after
    /// it was called).
    syncs_started: AtomicU64,
    /// Held only to update the stats (and to queue the event the update causes, so events
    /// are queued in the order the state changed).
    stats: Mutex<StoreStats>,
    /// Reduced-rate events waiting for delivery.
    pub(crate) events: Outbox<StoreEvent>,
}

/// What the save lock guards: operations to send or resend, each as it is (the store applies
/// an `(instance, seq)` once), until the store answers.
#[derive(Default)]
struct SaverState {
    /// A batch sent whose reply never came: resent as it is before anything else.
    outstanding: Option<SyncBatch>,
    /// A batch cut but never sent (an operation queued before it failed): sent after the
    /// queued operations, as a fresh cut would be (its floors may count held calls, which must
    /// reach the store first), and no new batch is cut meanwhile.
    unsent: Option<SyncBatch>,
    /// Calls to give back (unused leased calls, admissions applied but refused to the caller).
    give_backs: Vec<GiveBack>,
    /// `Exact` admissions whose answer was lost.
    admits: Vec<HeldAdmit>,
    /// Leases whose answer was lost.
    leases: Vec<LeaseRequest>,
}

impl SaverState {
    /// (operations, calls) whose outcome is unknown.
    fn unresolved(&self) -> (u64, u64) {
        let batches = self.outstanding.iter().chain(&self.unsent);
        let mut ops = batches.count() as u64;
        let mut calls = self
            .outstanding
            .iter()
            .chain(&self.unsent)
            .flat_map(|b| &b.deltas)
            .fold(0u64, |sum, d| sum.saturating_add(d.calls));
        // Only shared admission queues operations (the JS module has none).
        if cfg!(feature = "shared-admission") {
            ops += (self.give_backs.len() + self.admits.len() + self.leases.len()) as u64;
            calls = self
                .give_backs
                .iter()
                .map(|b| b.unused)
                .chain(self.admits.iter().map(|a| a.request.count))
                .chain(self.leases.iter().map(|l| l.block))
                .fold(calls, u64::saturating_add);
        }
        (ops, calls)
    }
}

/// An `Exact` admission whose answer was lost, kept until the store answers it.
#[derive(Debug, Clone)]
pub(crate) struct HeldAdmit {
    pub(crate) request: AdmitRequest,
    /// Whether the caller was told it was admitted (a `record_call`, counted in the view);
    /// otherwise it was told refused, and calls the store applied anyway are given back.
    pub(crate) counted: bool,
}

/// What a sync learned late, for the tracker to settle under the service's lock.
pub(crate) enum Late<'a> {
    /// An admission the caller was told was refused: the window's raise count when the store
    /// applied it, if it did.
    Admit {
        request: &'a AdmitRequest,
        admitted: Option<u64>,
    },
    /// A lease whose answer was lost: what it granted, and the window's raise count then.
    Lease {
        request: &'a LeaseRequest,
        granted: u64,
        raise_count: u64,
    },
}

/// What the tracker does with a late answer: calls to give back, if any.
pub(crate) enum Settled {
    Nothing,
    GiveBack(GiveBack),
}

/// What a cut hands the save lock: the batch, and the operations queued under the service
/// locks (give-backs, held admissions, leases whose answer was lost).
pub(crate) struct Cut {
    pub(crate) batch: SyncBatch,
    pub(crate) give_backs: Vec<GiveBack>,
    pub(crate) admits: Vec<HeldAdmit>,
    pub(crate) leases: Vec<LeaseRequest>,
}

/// The tracker's side of a save.
struct Calls<'c> {
    cut: &'c mut dyn FnMut(InstanceId) -> Cut,
    apply: &'c mut dyn FnMut(&SyncBatch, &[u64]),
    settle: &'c mut dyn FnMut(Late<'_>) -> Settled,
}

/// This instance's operation numbers: one rising sequence for every operation that changes
/// the store, and those not answered yet; the least of them is the `done_below` each new
/// operation carries, below which the store may forget.
#[derive(Default)]
struct Seqs {
    last: u64,
    /// A few at a time (one per operation in flight): a vector, not a B-tree (whose code
    /// would weigh on the JS module).
    pending: Vec<u64>,
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
    fn send(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
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
    pub(crate) fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.due_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn is_reduced(&self) -> bool {
        self.reduced.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.stats.lock().clone()
    }

    /// Syncs under the save lock: first a batch whose reply was lost, as it is, then a new
    /// one that `cut` makes (it takes the service locks: saver, then services, is the crate's
    /// lock order) from what was recorded since; `apply` takes in each reply. Returns `None`
    /// when the sync coalesced into one already in flight.
    ///
    /// A forced sync that finds the lock taken sets `rerun` and returns; the holder looks at
    /// `rerun` after each sync and once more after letting go of the lock (retrying the lock
    /// if it is set), so a forced sync is never dropped between the holder's last look and its
    /// release (the lost wake-up, as in the observers' drain).
    #[allow(clippy::too_many_arguments)] // the tracker's side of a save, passed as closures
    pub(crate) fn save(
        &self,
        reason: SaveReason,
        now_ms: u64,
        registry: &Registry<StoreEvent>,
        mut cut: impl FnMut(InstanceId) -> Cut,
        mut apply: impl FnMut(&SyncBatch, &[u64]),
        mut settle: impl FnMut(Late<'_>) -> Settled,
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
            let mut calls = Calls {
                cut: &mut cut,
                apply: &mut apply,
                settle: &mut settle,
            };
            let outcome = self.save_locked(&mut saver, reason, now_ms, registry, &mut calls);
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

    fn save_locked(
        &self,
        saver: &mut SaverState,
        reason: SaveReason,
        now_ms: u64,
        registry: &Registry<StoreEvent>,
        calls: &mut Calls<'_>,
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
            outcome.result = self.sync_once(saver, calls);
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

    /// Resends a batch whose reply was lost, then cuts a new one; sends every operation whose
    /// outcome is unknown (admissions and leases whose answer was lost, give-backs), then the
    /// batch. Each stays queued, as it is, until the store answers it.
    fn sync_once(&self, saver: &mut SaverState, calls: &mut Calls<'_>) -> Result<(), StoreError> {
        if let Some(batch) = saver.outstanding.take() {
            match self.send(&batch) {
                Ok(totals) => {
                    self.answered(batch.seq);
                    (calls.apply)(&batch, &totals);
                }
                Err(error) => {
                    saver.outstanding = Some(batch);
                    return Err(error);
                }
            }
        }
        // A batch cut before but never sent goes after the operations queued before it, then
        // a new cut takes what was recorded and queued since (a flush must carry it all).
        if let Some(batch) = saver.unsent.take() {
            self.send_after_queued(saver, calls, batch)?;
        }
        let cut = (calls.cut)(self.instance);
        // Only shared admission queues operations (the JS module has none).
        if cfg!(feature = "shared-admission") {
            saver.give_backs.extend(cut.give_backs);
            saver.admits.extend(cut.admits);
            saver.leases.extend(cut.leases);
        }
        self.send_after_queued(saver, calls, cut.batch)
    }

    /// Sends the queued operations, then `batch`: kept *unsent* if an operation failed, or
    /// *outstanding* if its own reply was lost.
    fn send_after_queued(
        &self,
        saver: &mut SaverState,
        calls: &mut Calls<'_>,
        batch: SyncBatch,
    ) -> Result<(), StoreError> {
        if let Err(error) = self.resolve(saver, calls) {
            if batch.changes() {
                saver.unsent = Some(batch);
            }
            return Err(error);
        }
        match self.send(&batch) {
            Ok(totals) => {
                if batch.changes() {
                    self.answered(batch.seq);
                }
                (calls.apply)(&batch, &totals);
                Ok(())
            }
            Err(error) => {
                // Its deltas are cut: only this exact batch may carry them (exactly once).
                if batch.changes() {
                    saver.outstanding = Some(batch);
                }
                Err(error)
            }
        }
    }

    /// Sends the queued operations, first to last; stops at the first failure (all stay
    /// queued from there). A late answer is settled by the tracker, which may give calls back.
    fn resolve(&self, saver: &mut SaverState, calls: &mut Calls<'_>) -> Result<(), StoreError> {
        let mut forfeited = 0u64;
        let settled = |settled: Settled, saver: &mut SaverState| {
            if let Settled::GiveBack(back) = settled {
                saver.give_backs.push(back);
            }
        };
        let mut result = Ok(());
        // Without shared admission (the JS module) nothing is ever queued here: the compiler
        // drops all of it.
        let shared = cfg!(feature = "shared-admission");
        while let Some(held) = saver.admits.first().filter(|_| shared) {
            match guarded(|| self.store.admit(&held.request)) {
                Ok(reply) => {
                    let held = saver.admits.remove(0);
                    self.answered(held.request.seq);
                    if !held.counted {
                        let admitted = match reply {
                            AdmitReply::Admitted { raise_count, .. } => Some(raise_count),
                            AdmitReply::Denied { .. } => None,
                        };
                        let late = Late::Admit {
                            request: &held.request,
                            admitted,
                        };
                        settled((calls.settle)(late), saver);
                    }
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        while shared && result.is_ok() && !saver.leases.is_empty() {
            match guarded(|| self.store.lease(&saver.leases[0])) {
                Ok(reply) => {
                    let request = saver.leases.remove(0);
                    self.answered(request.seq);
                    let late = Late::Lease {
                        request: &request,
                        granted: reply.granted,
                        raise_count: reply.raise_count,
                    };
                    settled((calls.settle)(late), saver);
                }
                Err(error) => result = Err(error),
            }
        }
        while shared && result.is_ok() && !saver.give_backs.is_empty() {
            match guarded(|| self.store.give_back(&saver.give_backs[0])) {
                Ok(taken) => {
                    let back = saver.give_backs.remove(0);
                    self.answered(back.seq);
                    // Less taken off: the window was raised since (the store forfeited them).
                    forfeited = forfeited.saturating_add(back.unused.saturating_sub(taken));
                }
                Err(error) => result = Err(error),
            }
        }
        if forfeited > 0 {
            self.stats.lock().forfeited_calls += forfeited;
            quietly(|| {
                log::warn!(
                    "quota: {forfeited} calls to give back stay counted: their window was \
                     raised after they were counted (the floor may include them)"
                )
            });
        }
        result
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
