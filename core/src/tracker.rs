//! The tracker: per-service counters behind per-service locks.

use crate::clock::{Clock, SystemClock};
use crate::error::QuotaError;
use crate::level::Level;
use crate::observers::{quietly, Outbox, Registry, StoreEventSubscription, TransitionSubscription};
use crate::persistence::{Persistence, SaveReason, StoreEvent, StoreStats, SyncPolicy};
use crate::service::{ServiceConfig, TrackerConfig};
use crate::step::{Change, Left, Refusal, Request, ServiceRules, ServiceState, Step};
use crate::store::{PersistedService, PersistedState, PersistedWindow, Store, StoreError};
use crate::sync::{thread_local, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::usage::{Recorded, ServiceUsage, Snapshot, Transition};
use crossbeam_utils::CachePadded;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

mod handle;
pub use handle::{Service, ServiceId};

/// Counts calls per service against their quotas. `Send + Sync`: share it with an `Arc`.
///
/// Every operation on a service is one acquisition of that service's lock, which covers the
/// whole read-modify-write (window roll-over, check, count, level change), so concurrent calls
/// never lose updates. Observers, logging and everything slow run after the lock is released.
/// See ARCHITECTURE.md for the design.
///
/// ```
/// use quota_core::{Level, ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
///
/// let clock = ManualClock::new(1_700_000_000_000);
/// let config = TrackerConfig::new([ServiceConfig::new("search", 10, Period::Minute)]);
/// let tracker = QuotaTracker::new_with_clock(config, clock.clone()).unwrap();
///
/// let recorded = tracker.record_call("search", 8).unwrap();
/// assert_eq!(recorded.usage.remaining, 2);
/// assert_eq!(recorded.transition().unwrap().to, Level::Critical);
/// assert!(!tracker.can_call("search").unwrap());
/// assert!(tracker.try_record("search", 1).is_err());
///
/// clock.advance(60_000); // the next minute: a fresh window
/// assert_eq!(tracker.usage("search").unwrap().used, 0);
/// ```
pub struct QuotaTracker {
    services: Box<[ServiceSlot]>,
    /// Names to positions, for lookups among many services.
    index: FxHashMap<Arc<str>, usize>,
    clock: Box<dyn Clock>,
    /// The clock's latest good reading, to within a second: used when the clock panics.
    last_good_ms: AtomicU64,
    observers: Registry<Transition>,
    store_observers: Registry<StoreEvent>,
    persistence: Option<Persistence>,
}

/// Builds a [`QuotaTracker`] with a clock, a store and a sync policy.
///
/// ```
/// use quota_core::{ManualClock, MemoryStore, QuotaTracker, SyncPolicy, TrackerConfig};
///
/// let store = MemoryStore::new();
/// let clock = ManualClock::new(1_718_000_000_000);
/// let build = || {
///     QuotaTracker::builder(TrackerConfig::defaults())
///         .clock(clock.clone())
///         .store(store.clone())
///         .sync_policy(SyncPolicy { interval_ms: 1_000, ..SyncPolicy::default() })
///         .build()
/// };
/// let tracker = build()?;
/// tracker.record_call("sendgrid", 7)?;
/// tracker.flush().unwrap();
/// // A new tracker on the same store continues where the last one was.
/// assert_eq!(build()?.usage("sendgrid")?.used, 7);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[must_use]
pub struct QuotaTrackerBuilder {
    config: TrackerConfig,
    clock: Box<dyn Clock>,
    store: Option<Box<dyn Store>>,
    policy: SyncPolicy,
}

impl QuotaTrackerBuilder {
    /// Reads time from `clock` (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Restores counts from `store` on build and saves to it as [`SyncPolicy`] says.
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Restores from and saves to an already boxed store.
    pub fn boxed_store(mut self, store: Box<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// When to save and when to reduce the rate (default: [`SyncPolicy::default`]).
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The tracker. Fails only on invalid config or policy: a store that fails to load, or
    /// holds corrupt data, is reported in [`QuotaTracker::stats`] and the tracker starts fresh.
    pub fn build(self) -> Result<QuotaTracker, QuotaError> {
        self.config.validate()?;
        self.policy.validate()?;
        let mut tracker =
            QuotaTracker::assemble(self.config, self.clock, self.policy.reduced_rate.fraction);
        if let Some(store) = self.store {
            let now = tracker.now();
            let persistence = Persistence::new(store, self.policy, now, Vec::new(), true);
            let loaded = persistence.load();
            if let Ok(Some(saved)) = &loaded {
                tracker.merge_saved(saved, now, true);
            }
            // What was just restored is what the store holds: not dirty.
            let versions = tracker.read_all(now, true).1;
            // Retry a load that failed for now (not one that found corrupt data) before the
            // first save, so a passing outage never overwrites the saved counts.
            let restored =
                !matches!(&loaded, Err(error) if !matches!(error, StoreError::Corrupt(_)));
            persistence.reset_saver(versions, restored);
            persistence.record_load(loaded.as_ref().err());
            if let Err(error) = &loaded {
                quietly(|| log::warn!("quota: could not restore counts, starting fresh: {error}"));
            }
            tracker.persistence = Some(persistence);
        }
        Ok(tracker)
    }
}

/// Up to this many services, names are looked up by comparing them in order.
const LINEAR_LOOKUP_MAX: usize = 8;

/// One service: its fixed config and rules, its guarded state, its queued transitions.
struct ServiceSlot {
    /// Shared with every transition of the service (cloning it copies no text).
    name: Arc<str>,
    config: ServiceConfig,
    rules: ServiceRules,
    /// Padded to its own cache line so threads on different services do not contend.
    state: CachePadded<Mutex<SlotState>>,
    /// Transitions waiting for the observers, queued under `state`'s lock.
    outbox: Outbox<Transition>,
}

/// What a service's lock guards.
struct SlotState {
    service: ServiceState,
    /// Bumped by every change; tells the saver what changed since the last save.
    version: u64,
}

// Not `const`-initialized: loom's `thread_local!` (used under `cfg(loom)`) does not take it.
thread_local! {
    /// The trackers (by address) whose save is running on this thread, so that a store that
    /// calls `flush` on its own tracker gets an error instead of waiting for itself.
    #[allow(clippy::missing_const_for_thread_local)]
    static SAVING: RefCell<Vec<usize>> = RefCell::new(Vec::new());
}

/// Marks a tracker's save as running on this thread until dropped (unwinding included).
struct SavingGuard(usize);

impl SavingGuard {
    fn enter(tracker: &QuotaTracker) -> Self {
        let address = tracker as *const QuotaTracker as usize;
        SAVING.with(|saving| saving.borrow_mut().push(address));
        SavingGuard(address)
    }

    fn is_saving(tracker: &QuotaTracker) -> bool {
        let address = tracker as *const QuotaTracker as usize;
        SAVING.with(|saving| saving.borrow().contains(&address))
    }
}

impl Drop for SavingGuard {
    fn drop(&mut self) {
        SAVING.with(|saving| {
            let mut saving = saving.borrow_mut();
            if let Some(position) = saving.iter().rposition(|&a| a == self.0) {
                saving.remove(position);
            }
        });
    }
}

fn describe_transition(t: &Transition) -> String {
    format!("transition {} {} -> {}", t.service, t.from, t.to)
}

fn describe_store_event(event: &StoreEvent) -> String {
    format!("{event:?}")
}

impl QuotaTracker {
    /// A tracker of `config`'s services on the system clock.
    pub fn new(config: TrackerConfig) -> Result<Self, QuotaError> {
        Self::new_with_clock(config, SystemClock)
    }

    /// A tracker of [`TrackerConfig::defaults`] on the system clock.
    pub fn with_defaults() -> Self {
        match Self::new(TrackerConfig::defaults()) {
            Ok(tracker) => tracker,
            Err(error) => unreachable!("the default config is valid: {error}"),
        }
    }

    /// A tracker of `config`'s services reading time from `clock`.
    pub fn new_with_clock(
        config: TrackerConfig,
        clock: impl Clock + 'static,
    ) -> Result<Self, QuotaError> {
        Self::builder(config).clock(clock).build()
    }

    /// A builder, for a tracker with a store or a custom sync policy.
    pub fn builder(config: TrackerConfig) -> QuotaTrackerBuilder {
        QuotaTrackerBuilder {
            config,
            clock: Box::new(SystemClock),
            store: None,
            policy: SyncPolicy::default(),
        }
    }

    /// The tracker of a validated config, without persistence.
    fn assemble(config: TrackerConfig, clock: Box<dyn Clock>, reduced_fraction: f64) -> Self {
        let mut tracker = QuotaTracker {
            services: Box::new([]),
            index: FxHashMap::default(),
            clock,
            // Until the clock gave a reading, a panicking clock falls back to the system's.
            last_good_ms: AtomicU64::new(SystemClock.now_ms()),
            observers: Registry::new(),
            store_observers: Registry::new(),
            persistence: None,
        };
        let now = tracker.now();
        tracker.services = config
            .services
            .into_iter()
            .map(|config| ServiceSlot {
                name: Arc::from(config.name.as_str()),
                rules: ServiceRules::new(&config, reduced_fraction),
                state: CachePadded::new(Mutex::new(SlotState {
                    service: ServiceState::new(config.period, now),
                    version: 0,
                })),
                outbox: Outbox::new(),
                config,
            })
            .collect();
        tracker.index = tracker
            .services
            .iter()
            .enumerate()
            .map(|(i, slot)| (Arc::clone(&slot.name), i))
            .collect();
        tracker
    }

    /// Records `count` calls to `service` as one atomic read-modify-write and returns the
    /// usage right after. It always records: `used` may pass the limit (`remaining` saturates).
    /// Allocates nothing unless the level changes.
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for 0 or a count
    /// that would overflow the counter. On error nothing was recorded.
    pub fn record_call(&self, service: &str, count: u64) -> Result<Recorded<'_>, QuotaError> {
        self.update(self.position(service)?, Request::Record(count))
    }

    /// Records `count` calls only if they are allowed: the service is below Critical, has
    /// calls remaining, `used + count <= limit`, and in reduced-rate mode `used` is below the
    /// reduced allowance. Check and record are one atomic step, so two threads can never both
    /// take the last calls.
    ///
    /// Errors: [`QuotaError::Denied`] when not allowed (nothing recorded), and the errors of
    /// [`record_call`](Self::record_call).
    pub fn try_record(&self, service: &str, count: u64) -> Result<Recorded<'_>, QuotaError> {
        self.update(
            self.position(service)?,
            Request::TryRecord {
                count,
                reduced_rate: self.is_reduced_rate(),
            },
        )
    }

    /// Whether a call to `service` is allowed now: calls remain, the level is below Critical,
    /// and in reduced-rate mode `used` is below the reduced allowance.
    pub fn can_call(&self, service: &str) -> Result<bool, QuotaError> {
        Ok(self.can_call_at(self.position(service)?))
    }

    /// The calls held back as a reserve: `floor(limit x reserve_fraction)`.
    pub fn reserve_allocation(&self, service: &str) -> Result<u64, QuotaError> {
        Ok(self.services[self.position(service)?].rules.reserve)
    }

    /// `service`'s usage now.
    pub fn usage(&self, service: &str) -> Result<ServiceUsage<'_>, QuotaError> {
        Ok(self.usage_at(self.position(service)?))
    }

    /// A handle on `service`, to record without looking the name up every time.
    ///
    /// ```
    /// use quota_core::QuotaTracker;
    /// let tracker = QuotaTracker::with_defaults();
    /// let finnhub = tracker.service("finnhub")?;
    /// finnhub.record(3)?;
    /// assert_eq!(finnhub.usage().used, 3);
    /// // Keep the id; get the handle back later.
    /// let id = finnhub.id();
    /// assert_eq!(tracker.service_by_id(id).unwrap().name(), "finnhub");
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    ///
    /// Errors: [`QuotaError::UnknownService`].
    pub fn service(&self, service: &str) -> Result<Service<'_>, QuotaError> {
        Ok(Service::new(self, self.position(service)?))
    }

    /// The handle of the service `id` names; `None` if this tracker has no such service (an
    /// id from a tracker with fewer services).
    pub fn service_by_id(&self, id: ServiceId) -> Option<Service<'_>> {
        (id.index() < self.services.len()).then(|| Service::new(self, id.index()))
    }

    /// Every service's usage at one instant, in config order.
    ///
    /// Takes every service's lock, always in config order (the one lock order of the crate),
    /// so no recording is half-seen.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let (states, _) = self.read_all(now, true);
        Snapshot {
            services: self
                .services
                .iter()
                .zip(&states)
                .map(|(slot, state)| slot.usage(state).into_owned())
                .collect(),
            at_ms: now,
        }
    }

    /// Calls `observer` once for every level change, outside every tracker lock.
    ///
    /// The guarantee: each transition reaches every observer that was subscribed when the
    /// transition happened (and is still subscribed when it is delivered), exactly once, per
    /// service in the order the transitions happened. It runs on the thread of some call of
    /// this tracker — the call that caused it, or another call that was delivering that
    /// service's transitions at the time (no call ever waits for another thread's observer) —
    /// and before that call returns. The caller always learns its own transition from the
    /// returned [`Recorded`]. A panicking observer is caught and logged; the call still
    /// returns its result and the other observers still run. An observer may call back into
    /// the tracker (record, snapshot, flush, subscribe); transitions it causes are delivered
    /// after it returns.
    pub fn on_transition(
        &self,
        observer: impl Fn(&Transition) + Send + Sync + 'static,
    ) -> TransitionSubscription {
        TransitionSubscription::new(self.observers.subscribe(Arc::new(observer)))
    }

    /// Removes a subscription; `false` if it was not subscribed. Transitions that happen
    /// after this returns never reach the observer; a delivery already running on another
    /// thread may still be inside it (or call it once more for a transition it had started).
    pub fn unsubscribe(&self, id: TransitionSubscription) -> bool {
        self.observers.unsubscribe(id.get())
    }

    /// Calls `observer` when reduced-rate mode starts or ends, in the order the mode changed,
    /// with the same guarantees as [`on_transition`](Self::on_transition).
    pub fn on_store_event(
        &self,
        observer: impl Fn(&StoreEvent) + Send + Sync + 'static,
    ) -> StoreEventSubscription {
        StoreEventSubscription::new(self.store_observers.subscribe(Arc::new(observer)))
    }

    /// Removes a subscription made with [`on_store_event`](Self::on_store_event).
    pub fn unsubscribe_store_events(&self, id: StoreEventSubscription) -> bool {
        self.store_observers.unsubscribe(id.get())
    }

    /// Saves every count to the store now. `Ok(())` without a store. A failed flush counts
    /// like any failed save.
    ///
    /// The one call of the tracker that may wait: for a save in flight on another thread
    /// (as long as the store's own I/O takes, bounded by the store's timeouts), never for an
    /// observer. Called from inside this tracker's own save (a store that calls back), it
    /// returns [`StoreError::Reentrant`] instead of waiting for itself.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self.save(SaveReason::Flush, self.now()) {
            Some(result) => result,
            None => Ok(()),
        }
    }

    /// Whether reduced-rate mode is on (the store failed too often in a row).
    pub fn is_reduced_rate(&self) -> bool {
        self.persistence
            .as_ref()
            .is_some_and(Persistence::is_reduced)
    }

    /// Counters of the store activity; all zero without a store.
    pub fn stats(&self) -> StoreStats {
        self.persistence
            .as_ref()
            .map(Persistence::stats)
            .unwrap_or_default()
    }

    /// The configuration this tracker was built with.
    pub fn config(&self) -> TrackerConfig {
        TrackerConfig::new(self.services.iter().map(|slot| slot.config.clone()))
    }

    /// The tracker clock's time now, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now()
    }

    /// Reads the clock. A clock that panics is reported and its last good reading (to
    /// within a second) is used instead.
    fn now(&self) -> u64 {
        match catch_unwind(AssertUnwindSafe(|| self.clock.now_ms())) {
            Ok(now) => {
                // Written about once a second, so threads do not contend on it.
                if now.abs_diff(self.last_good_ms.load(Ordering::Relaxed)) >= 1_000 {
                    self.last_good_ms.store(now, Ordering::Relaxed);
                }
                now
            }
            Err(payload) => {
                std::mem::forget(payload);
                quietly(|| log::error!("quota: the clock panicked; using its last good reading"));
                self.last_good_ms.load(Ordering::Relaxed)
            }
        }
    }

    fn position(&self, service: &str) -> Result<usize, QuotaError> {
        // A few names compare faster than they hash; many are found through the map.
        let found = if self.services.len() <= LINEAR_LOOKUP_MAX {
            self.services.iter().position(|slot| *slot.name == *service)
        } else {
            self.index.get(service).copied()
        };
        found.ok_or_else(|| QuotaError::UnknownService(service.to_owned()))
    }

    /// One step of one service under its lock (the only lock taken), then, if `deliver`, the
    /// transitions delivered after the lock is released.
    fn step_at(&self, position: usize, now: u64, request: Request, deliver: bool) -> StepResult {
        let slot = &self.services[position];
        let (step, state, reset, recorded) = {
            let mut guard = slot.state.lock();
            let step = slot.rules.step(&mut guard.service, now, request);
            if step.changed {
                guard.version += 1;
            }
            let (reset, recorded) = self.queue_transitions(slot, &step);
            (step, guard.service, reset, recorded)
        };
        // Inside this tracker's own save (a store that records), observers wait for the
        // save to end: it delivers every service's queue once its lock is released.
        if deliver && (reset.is_some() || recorded.is_some()) && !SavingGuard::is_saving(self) {
            slot.outbox.pump(&self.observers, describe_transition);
        }
        StepResult {
            step,
            state,
            reset,
            recorded,
        }
    }

    /// Builds the step's transitions and queues them for the observers; call it under the
    /// service's lock (which orders them).
    fn queue_transitions(
        &self,
        slot: &ServiceSlot,
        step: &Step,
    ) -> (Option<Transition>, Option<Transition>) {
        if step.reset.is_none() && step.recorded.is_none() {
            return (None, None);
        }
        let epoch = self.observers.epoch();
        let [reset, recorded] = [step.reset, step.recorded].map(|change| {
            change.map(|change| {
                let transition = slot.transition(change);
                slot.outbox.push(transition.clone(), epoch);
                transition
            })
        });
        (reset, recorded)
    }

    fn update(&self, position: usize, request: Request) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        let count = match request {
            Request::Record(count) | Request::TryRecord { count, .. } => count,
            Request::Read => 0,
        };
        if count == 0 {
            return Err(slot.invalid_count(count, "count must be at least 1"));
        }
        let now = self.now();
        let StepResult {
            step,
            state,
            reset,
            recorded,
        } = self.step_at(position, now, request, true);
        let entered_critical = step
            .recorded
            .is_some_and(|c| c.from < Level::Critical && c.to >= Level::Critical);
        self.after_call(now, entered_critical);
        match step.refused {
            Some(Refusal::Overflow) => Err(slot.invalid_count(count, "the counter would overflow")),
            Some(Refusal::Denied { used }) => Err(QuotaError::Denied {
                service: Arc::clone(&slot.name),
                count,
                used,
                limit: slot.rules.limit,
            }),
            None => Ok(Recorded {
                usage: slot.usage(&state),
                reset,
                recorded,
            }),
        }
    }

    fn can_call_at(&self, position: usize) -> bool {
        let state = self
            .step_at(position, self.now(), Request::Read, true)
            .state;
        self.services[position]
            .rules
            .allows(state.used, self.is_reduced_rate())
    }

    fn usage_at(&self, position: usize) -> ServiceUsage<'_> {
        let state = self
            .step_at(position, self.now(), Request::Read, true)
            .state;
        self.services[position].usage(&state)
    }

    /// Every service's state under all their locks, taken in config order (the crate's one
    /// lock order), with their versions; roll-over transitions are delivered after if
    /// `deliver`.
    fn read_all(&self, now: u64, deliver: bool) -> (Vec<ServiceState>, Vec<u64>) {
        let mut guards: Vec<MutexGuard<'_, SlotState>> =
            self.services.iter().map(|slot| slot.state.lock()).collect();
        let mut states = Vec::with_capacity(guards.len());
        let mut versions = Vec::with_capacity(guards.len());
        let mut queued = Vec::new();
        for (position, (slot, guard)) in self.services.iter().zip(guards.iter_mut()).enumerate() {
            let step = slot.rules.step(&mut guard.service, now, Request::Read);
            if step.changed {
                guard.version += 1;
            }
            if self.queue_transitions(slot, &step).0.is_some() {
                queued.push(position);
            }
            states.push(guard.service);
            versions.push(guard.version);
        }
        drop(guards);
        if deliver {
            self.pump(&queued);
        }
        (states, versions)
    }

    fn pump(&self, positions: &[usize]) {
        for &position in positions {
            self.services[position]
                .outbox
                .pump(&self.observers, describe_transition);
        }
    }

    /// Takes in the saved counts, one service lock at a time, by the rules of
    /// [`ServiceRules::restore`]: at build the tracker is fresh, so this restores; after a
    /// load that failed at build, it merges what was saved before with what was recorded
    /// since. Entries of unknown services, other periods, or windows not on a boundary of the
    /// period are skipped.
    fn merge_saved(&self, saved: &PersistedState, now: u64, deliver: bool) {
        for saved in &saved.services {
            let Ok(position) = self.position(&saved.name) else {
                continue;
            };
            let slot = &self.services[position];
            let period = slot.config.period;
            if saved.config.period != period {
                continue;
            }
            let window_of = |start_ms: u64| {
                let window = period.window_at(start_ms);
                (window.start_ms == start_ms).then_some(window)
            };
            let Some(window) = window_of(saved.window_start_ms) else {
                continue;
            };
            let left = match saved.previous {
                None => None,
                Some(previous) => match window_of(previous.window_start_ms) {
                    Some(window) => Some(Left {
                        window,
                        used: previous.used,
                    }),
                    None => continue,
                },
            };
            let saved = ServiceState {
                used: saved.used,
                total: 0,
                window,
                left,
            };
            let (reset, recorded) = {
                let mut guard = slot.state.lock();
                let step = slot.rules.restore(&mut guard.service, saved, now);
                if step.changed {
                    guard.version += 1;
                }
                self.queue_transitions(slot, &step)
            };
            if deliver && (reset.is_some() || recorded.is_some()) {
                slot.outbox.pump(&self.observers, describe_transition);
            }
        }
    }

    /// Saves through the store if there is one; `None` if there is none or the save
    /// coalesced into one in flight. Runs with no service lock held; observers run only
    /// after the save lock is released.
    fn save(&self, reason: SaveReason, now: u64) -> Option<Result<(), StoreError>> {
        let persistence = self.persistence.as_ref()?;
        if reason == SaveReason::Flush && SavingGuard::is_saving(self) {
            return Some(Err(StoreError::Reentrant));
        }
        let outcome = {
            let _saving = SavingGuard::enter(self);
            persistence.save(
                reason,
                now,
                &self.store_observers,
                || {
                    if let Some(saved) = persistence.load()? {
                        self.merge_saved(&saved, now, false);
                    }
                    Ok(())
                },
                || {
                    let (states, versions) = self.read_all(now, false);
                    (self.persisted(&states, now), versions)
                },
                |state| persistence.write(state),
            )
        };
        // The save lock is released: deliver what the save queued (its reads, and calls its
        // store made), then its events; unless this is a save nested in one of this tracker's
        // own saves, which delivers it all when it ends.
        if !SavingGuard::is_saving(self) {
            self.pump(&(0..self.services.len()).collect::<Vec<_>>());
            persistence
                .events
                .pump(&self.store_observers, describe_store_event);
        }
        outcome.map(|outcome| outcome.result)
    }

    fn persisted(&self, states: &[ServiceState], now: u64) -> PersistedState {
        PersistedState {
            version: PersistedState::VERSION,
            services: self
                .services
                .iter()
                .zip(states)
                .map(|(slot, state)| PersistedService {
                    name: slot.config.name.clone(),
                    used: state.used,
                    window_start_ms: state.window.start_ms,
                    config: slot.config.clone(),
                    previous: state.left.map(|Left { window, used }| PersistedWindow {
                        window_start_ms: window.start_ms,
                        used,
                    }),
                })
                .collect(),
            updated_at_ms: now,
        }
    }

    /// After a recording call: save if one is due, or at once on entering Critical.
    fn after_call(&self, now: u64, entered_critical: bool) {
        let Some(persistence) = &self.persistence else {
            return;
        };
        if entered_critical && persistence.policy.force_on_critical {
            self.save(SaveReason::Critical, now);
        } else if persistence.due(now) {
            self.save(SaveReason::Interval, now);
        }
    }
}

/// What [`QuotaTracker::step_at`] leaves for the caller.
struct StepResult {
    step: Step,
    state: ServiceState,
    reset: Option<Transition>,
    recorded: Option<Transition>,
}

impl ServiceSlot {
    fn transition(&self, change: Change) -> Transition {
        Transition {
            service: Arc::clone(&self.name),
            from: change.from,
            to: change.to,
            used: change.used,
            limit: self.rules.limit,
            at_ms: change.at_ms,
        }
    }

    fn usage(&self, state: &ServiceState) -> ServiceUsage<'_> {
        ServiceUsage {
            name: Cow::Borrowed(&self.name),
            used: state.used,
            limit: self.rules.limit,
            remaining: self.rules.limit.saturating_sub(state.used),
            period: self.rules.period,
            window_start_ms: state.window.start_ms,
            reset_at_ms: state.window.reset_at_ms,
            total_recorded: state.total,
            warn_threshold: self.config.warn_threshold,
            critical_threshold: self.config.critical_threshold,
        }
    }

    fn invalid_count(&self, count: u64, reason: &'static str) -> QuotaError {
        QuotaError::InvalidCount {
            service: Arc::clone(&self.name),
            count,
            reason,
        }
    }
}

impl std::fmt::Debug for QuotaTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaTracker")
            .field("services", &self.snapshot().services)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
