//! One run's counting, from one reset to the next: the [`Counter`] and the dashboard's own
//! counters (issued, denied, calls, level changes), and in locked mode the tracker's syncs.

use super::{check_config, SYNC_INTERVAL_MS};
use crate::clock::SimClock;
use crate::locks::lock;
use crate::model::{Cause, HoldCounts, ServiceView, Unit};
use crate::persist::{
    DashboardStorage, SavedCounters, SavedService, Synced, CRITICAL_WRITE_GAP_MS, WRITE_INTERVAL_MS,
};
use crate::settings::CallMode;
use quota_core::sim::{Counter, Mode, Op, RacyCounts, RacyState};
use quota_core::{
    Clock, Level, QuotaError, QuotaTracker, Reconfigured, StoreEvent, StoreStats, SyncPolicy,
    TrackerConfig, Transition,
};
use std::cell::{Cell, Ref, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use web_time::Instant;

/// Store events kept until the next frame reads them; older ones are dropped.
const MAX_PENDING_STORE_EVENTS: usize = 100;

use crate::model::binding;

/// The counter and its counters from one reset to the next. In locked mode a config change
/// ([`reconfigure`](Self::reconfigure)) goes on in the same run.
pub(super) struct Run {
    /// The config in force (changed by [`reconfigure`](Self::reconfigure)).
    config: RefCell<TrackerConfig>,
    counter: Counter,
    /// What the tracker's saves share with the engine; `Some` exactly in locked mode.
    saving: Option<Saving>,
    /// Units issued per service (config order): the workers' attempts, counted after each call
    /// completed.
    issued: RefCell<Vec<u64>>,
    /// Units of those that `try_record` refused, per service (config order).
    denied: RefCell<Vec<u64>>,
    /// Token services' holds, per service (config order; all 0 for services counted in calls).
    holds: RefCell<Vec<HoldCounts>>,
    /// Calls issued (each of one or more units).
    calls: Cell<u64>,
    /// Level changes not yet shown, with their cause. Shared with the tracker's observer, which
    /// must be `Send + Sync`.
    changes: Arc<Mutex<Vec<(Transition, Cause)>>>,
    /// The worker (from 1) whose call is in progress; 0 while none is (a read rolled a window).
    actor: Arc<AtomicUsize>,
    /// Units recorded before this page (restored counters), per service; added to the tracker's
    /// `total_recorded`, which counts from this tracker's build.
    recorded_before: RefCell<Vec<u64>>,
}

/// The locked-mode extras: where the tracker's store writes, and what it reports back.
struct Saving {
    storage: DashboardStorage,
    /// The store as the tracker's successful syncs left it, not yet written.
    synced: Synced,
    /// When the store and counters were last written to `localStorage` (real time).
    written_at: Cell<Option<Instant>>,
    /// Set by the tracker's observer when a service entered Critical: write soon.
    entered_critical: Arc<AtomicBool>,
    /// Reduced-rate mode starting and ending, not yet shown.
    events: Arc<Mutex<Vec<StoreEvent>>>,
}

impl Run {
    /// A run of `config` in `mode`. In locked mode the tracker reads the stored totals from
    /// `storage` and syncs to it; `saved` are the counters of the sync it continues from (if
    /// any).
    pub(super) fn new(
        config: TrackerConfig,
        mode: Mode,
        clock: &SimClock,
        storage: &DashboardStorage,
        saved: Option<&SavedCounters>,
    ) -> Result<Run, QuotaError> {
        check_config(&config)?;
        let changes: Arc<Mutex<Vec<(Transition, Cause)>>> = Arc::default();
        let actor = Arc::new(AtomicUsize::new(0));
        let (counter, saving) = match mode {
            Mode::Locked => {
                let (tracker, saving) = locked_tracker(&config, clock, storage)?;
                let (changes, actor) = (Arc::clone(&changes), Arc::clone(&actor));
                let entered_critical = Arc::clone(&saving.entered_critical);
                tracker.on_transition(move |transition| {
                    if transition.from < Level::Critical && transition.to >= Level::Critical {
                        entered_critical.store(true, Ordering::Relaxed);
                    }
                    let cause = Cause::of(transition, actor.load(Ordering::Relaxed));
                    lock(&changes).push((transition.clone(), cause));
                });
                (Counter::Locked(Box::new(tracker)), Some(saving))
            }
            Mode::Racy => (
                Counter::Racy(RacyCounts::new(config.clone(), clock.now_ms())?),
                None,
            ),
        };
        let restored = |f: fn(&SavedService) -> u64| -> Vec<u64> {
            config
                .services
                .iter()
                .map(|s| saved.and_then(|c| c.service(&s.name)).map_or(0, f))
                .collect()
        };
        // A token service's holds are not saved (the `.wasm`'s size budget): what it recorded
        // counts as settled, and its issued as denied + settled, so its identity holds.
        let mut issued = restored(|s| s.issued);
        let denied = restored(|s| s.denied);
        let recorded_before = restored(|s| s.recorded);
        let mut holds = vec![HoldCounts::default(); config.services.len()];
        for (index, service) in config.services.iter().enumerate() {
            if Unit::of(&service.name) == Unit::Tokens {
                holds[index].settled = recorded_before[index];
                issued[index] = denied[index] + recorded_before[index];
            }
        }
        Ok(Run {
            issued: RefCell::new(issued),
            denied: RefCell::new(denied),
            recorded_before: RefCell::new(recorded_before),
            holds: RefCell::new(holds),
            calls: Cell::new(saved.map_or(0, |c| c.calls)),
            config: RefCell::new(config),
            counter,
            saving,
            changes,
            actor,
        })
    }

    /// The config this run counts now.
    pub(super) fn config(&self) -> Ref<'_, TrackerConfig> {
        self.config.borrow()
    }

    /// Locked mode: applies `config` to the running tracker
    /// ([`QuotaTracker::reconfigure`]): a service in both configs keeps its counts here and
    /// its window's count in the tracker (unless its window changed), an added one starts at
    /// 0, a removed one is dropped. Level changes it makes are the config's (cause
    /// [`Cause::Config`]). `None` in racy mode, which cannot change its config.
    ///
    /// Errors: the tracker's; nothing changed.
    pub(super) fn reconfigure(
        &self,
        config: TrackerConfig,
    ) -> Option<Result<Reconfigured, QuotaError>> {
        let tracker = self.counter.tracker()?;
        self.actor.store(Cause::CONFIG_ACTOR, Ordering::Relaxed);
        let result = tracker.reconfigure(config.clone());
        self.actor.store(0, Ordering::Relaxed);
        if result.is_ok() {
            let old = self.config.replace(config);
            let new = self.config.borrow();
            // Each per-service count, moved to the service's place in the new config.
            let carry = |counts: &RefCell<Vec<u64>>| {
                let mut counts = counts.borrow_mut();
                let kept: Vec<u64> = new
                    .services
                    .iter()
                    .map(|service| {
                        old.services
                            .iter()
                            .position(|s| s.name == service.name)
                            .map_or(0, |index| counts[index])
                    })
                    .collect();
                *counts = kept;
            };
            carry(&self.issued);
            carry(&self.denied);
            carry(&self.recorded_before);
            let mut holds = self.holds.borrow_mut();
            let kept = new
                .services
                .iter()
                .map(|service| {
                    old.services
                        .iter()
                        .position(|s| s.name == service.name)
                        .map_or_else(HoldCounts::default, |index| holds[index])
                })
                .collect();
            *holds = kept;
        }
        Some(result)
    }

    /// The counter the workers record to.
    pub(super) fn counter(&self) -> &Counter {
        &self.counter
    }

    /// Calls issued since the reset.
    pub(super) fn calls(&self) -> u64 {
        self.calls.get()
    }

    /// Adds to the counts of service `name`, if still configured (a reconfigure may have
    /// removed it while a hold was in flight): `issued` and `denied` units, and `holds`, field
    /// by field, less `settled` estimates no longer in flight; a new call when `call`. Then
    /// writes, if a sync is due (call it right after a tracker call).
    pub(super) fn count_tokens(
        &self,
        name: &str,
        call: bool,
        issued: u64,
        denied: u64,
        holds: HoldCounts,
        settled: u64,
    ) {
        let Some(index) = self.position(name) else {
            return;
        };
        self.issued.borrow_mut()[index] += issued;
        self.denied.borrow_mut()[index] += denied;
        {
            let counts = &mut self.holds.borrow_mut()[index];
            counts.added += holds.added;
            counts.settled += holds.settled;
            counts.given_back += holds.given_back;
            counts.in_flight = (counts.in_flight + holds.in_flight).saturating_sub(settled);
            counts.kept += holds.kept;
            counts.past_window += holds.past_window;
        }
        self.calls.set(self.calls.get() + u64::from(call));
        self.write_if_due();
    }

    /// The place of service `name` in the config now.
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.config
            .borrow()
            .services
            .iter()
            .position(|s| s.name == name)
    }

    fn count_issued(&self, ops: &[Op]) {
        let mut issued = self.issued.borrow_mut();
        for op in ops {
            issued[op.service] += op.count;
        }
        self.calls.set(self.calls.get() + ops.len() as u64);
    }

    /// Records `ops` for `worker` (from 1) at once, each op one call of the counter with
    /// nothing in between (so even racy mode loses nothing here). In locked mode `call_mode`
    /// picks [`QuotaTracker::try_record`] (a refusal is counted as denied) or
    /// [`QuotaTracker::record_call`]; racy mode always records.
    pub(super) fn record_now(&self, worker: usize, ops: &[Op], now_ms: u64, call_mode: CallMode) {
        self.actor.store(worker, Ordering::Relaxed);
        // A worker's stream names services by their index in the config it was made for; the
        // workers restart whenever the config changes.
        let config = self.config.borrow();
        for op in ops {
            let name = &config.services[op.service].name;
            let result = match (self.counter.tracker(), call_mode) {
                (Some(tracker), CallMode::Try) => tracker.try_record(name, op.count),
                _ => self.counter.record(name, op.count, now_ms, || {}),
            };
            match result {
                // The racy counts have no observers: their changes come back here. The
                // tracker's reach its observer (with the actor) before the call returns.
                Ok(recorded) if self.counter.mode() == Mode::Racy => {
                    self.note_changes(recorded.transitions(), worker);
                }
                Ok(_) => {}
                Err(QuotaError::Denied { .. }) => {
                    self.denied.borrow_mut()[op.service] += op.count;
                }
                Err(error) => {
                    let mode = self.counter.mode();
                    leptos::logging::warn!("{mode} record refused: {error}");
                }
            }
            self.count_issued(std::slice::from_ref(op));
            self.write_if_due();
        }
        self.actor.store(0, Ordering::Relaxed);
    }

    /// DEMONSTRATION ONLY: records `ops` for `worker` in `copy`, a copy of the racy state the
    /// caller loaded earlier and writes back afterwards, and counts them as issued (and, for a
    /// token service, settled: a racy client holds nothing, its estimate is what it counts).
    pub(super) fn record_in_copy(
        &self,
        copy: &mut RacyState,
        worker: usize,
        ops: &[Op],
        now_ms: u64,
    ) {
        let config = self.config.borrow();
        for op in ops {
            match copy.record(&config.services[op.service].name, op.count, now_ms) {
                Ok(recorded) => self.note_changes(recorded.transitions(), worker),
                Err(error) => leptos::logging::warn!("racy record refused: {error}"),
            }
            if Unit::of(&config.services[op.service].name) == Unit::Tokens {
                self.holds.borrow_mut()[op.service].settled += op.count;
            }
        }
        self.count_issued(ops);
    }

    /// The worker (from 1) whose tracker call is in progress (0: none), for the level
    /// changes its observer sees.
    pub(super) fn set_actor(&self, worker: usize) {
        self.actor.store(worker, Ordering::Relaxed);
    }

    fn note_changes<'a>(&self, transitions: impl Iterator<Item = &'a Transition>, worker: usize) {
        lock(&self.changes).extend(transitions.map(|t| (t.clone(), Cause::of(t, worker))));
    }

    /// After a tracker call: writes the tracker's store and the dashboard's counters (with the
    /// config and the sync's simulated time) if the tracker synced since the last look and a
    /// write is due: [`WRITE_INTERVAL_MS`] after the last one, or [`CRITICAL_WRITE_GAP_MS`]
    /// after it when a service has just entered Critical. Runs right after each tracker call,
    /// so nothing changed since that sync: the counters now are the ones that go with it.
    fn write_if_due(&self) {
        let Some(saving) = &self.saving else {
            return;
        };
        if !saving.synced.take() {
            return;
        }
        let since_ms = saving
            .written_at
            .get()
            .map_or(f64::INFINITY, |at| at.elapsed().as_secs_f64() * 1_000.0);
        let due = since_ms >= WRITE_INTERVAL_MS
            || (since_ms >= CRITICAL_WRITE_GAP_MS
                && saving.entered_critical.load(Ordering::Relaxed));
        if due {
            self.write();
        }
    }

    /// Writes the tracker's store (as its syncs left it) and the counters now, which must be
    /// those of its latest sync.
    fn write(&self) {
        let (Some(tracker), Some(saving)) = (self.counter.tracker(), &self.saving) else {
            return;
        };
        saving.entered_critical.store(false, Ordering::Relaxed);
        saving.written_at.set(Some(Instant::now()));
        saving
            .storage
            .write(&saving.synced, |synced_at_ms, clock_ms| {
                let snapshot = tracker.snapshot();
                let issued = self.issued.borrow();
                let denied = self.denied.borrow();
                let recorded_before = self.recorded_before.borrow();
                let services = snapshot
                    .services()
                    .iter()
                    .enumerate()
                    .map(|(index, usage)| SavedService {
                        name: usage.name.to_string(),
                        issued: issued[index],
                        denied: denied[index],
                        // As the counters table shows it (see `HoldCounts::past_window`).
                        recorded: recorded_before[index]
                            + usage.total_recorded
                            + self.holds.borrow()[index].past_window,
                    })
                    .collect();
                SavedCounters {
                    version: SavedCounters::VERSION,
                    synced_at_ms,
                    clock_ms,
                    config: self.config.borrow().services.clone(),
                    calls: self.calls.get(),
                    services,
                }
            });
    }

    /// Syncs the tracker now and, if that succeeded, writes the store and the counters at once;
    /// nothing to do in racy mode.
    pub(super) fn flush(&self) {
        if let Some(tracker) = self.counter.tracker() {
            match tracker.flush() {
                Ok(()) => self.write(),
                Err(error) => leptos::logging::warn!("dashboard: sync failed: {error}"),
            }
        }
    }

    /// Every service as counted at `now_ms`, with the units issued to it, the units denied,
    /// and the units recorded before this page.
    pub(super) fn services(&self, now_ms: u64) -> Vec<ServiceView> {
        let snapshot = self.counter.snapshot(now_ms);
        let issued = self.issued.borrow();
        let denied = self.denied.borrow();
        let recorded_before = self.recorded_before.borrow();
        let holds = self.holds.borrow();
        snapshot
            .services()
            .iter()
            .enumerate()
            .map(|(index, usage)| {
                let mut usage = usage.clone();
                usage.total_recorded += recorded_before[index] + holds[index].past_window;
                let limits = self.limits_of(index);
                let unit = Unit::of(&usage.name);
                ServiceView {
                    binding: binding(&limits),
                    limits,
                    usage,
                    issued: issued[index],
                    denied: denied[index],
                    unit,
                    holds: holds[index],
                }
            })
            .collect()
    }

    /// Every limit's usage of the service at `index` (config order), from the tracker; empty
    /// for a service of one limit and in racy mode (its counts keep the service's own limit
    /// only).
    fn limits_of(&self, index: usize) -> Vec<quota_core::ServiceUsage<'static>> {
        let config = self.config.borrow();
        let service = &config.services[index];
        match self.counter.tracker() {
            Some(tracker) if !service.more_limits.is_empty() => tracker
                .usage_limits(&service.name)
                .map(|limits| limits.into_iter().map(|u| u.into_owned()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The level changes since the last call, oldest first.
    pub(super) fn take_changes(&self) -> Vec<(Transition, Cause)> {
        std::mem::take(&mut *lock(&self.changes))
    }

    /// Reduced-rate mode starting and ending since the last call; none in racy mode.
    pub(super) fn take_store_events(&self) -> Vec<StoreEvent> {
        self.saving
            .as_ref()
            .map(|saving| std::mem::take(&mut *lock(&saving.events)))
            .unwrap_or_default()
    }

    /// The tracker's store counters; `None` in racy mode (no store).
    pub(super) fn stats(&self) -> Option<StoreStats> {
        self.counter.tracker().map(QuotaTracker::stats)
    }
}

/// A tracker of `config` on `clock` that reads the stored totals from and syncs to `storage`
/// every [`SYNC_INTERVAL_MS`] of simulated time, and what its syncs share with the engine.
fn locked_tracker(
    config: &TrackerConfig,
    clock: &SimClock,
    storage: &DashboardStorage,
) -> Result<(QuotaTracker, Saving), QuotaError> {
    let (store, synced) = storage.store();
    let tracker = QuotaTracker::builder(config.clone())
        .clock(clock.clone())
        .store(store)
        .sync_policy(SyncPolicy {
            interval_ms: SYNC_INTERVAL_MS,
            ..SyncPolicy::default()
        })
        .build()?;
    let events: Arc<Mutex<Vec<StoreEvent>>> = Arc::default();
    let pending = Arc::clone(&events);
    tracker.on_store_event(move |event| {
        let mut pending = lock(&pending);
        if pending.len() < MAX_PENDING_STORE_EVENTS {
            pending.push(event.clone());
        }
    });
    let saving = Saving {
        storage: storage.clone(),
        synced,
        written_at: Cell::new(None),
        entered_critical: Arc::default(),
        events,
    };
    Ok((tracker, saving))
}
