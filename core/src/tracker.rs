//! The tracker: per-service counters behind per-service locks.

use crate::clock::{Clock, SystemClock};
use crate::error::QuotaError;
use crate::level::{calls_at_most, Level, Thresholds};
use crate::observers::{self, Delivery, DeliveryGate, Registry, SubscriptionId};
use crate::persistence::{Persistence, SaveReason, StoreEvent, StoreStats, SyncPolicy};
use crate::service::{ServiceConfig, TrackerConfig};
use crate::store::{PersistedService, PersistedState, Store, StoreError};
use crate::sync::{self, Arc, Mutex, MutexGuard};
use crate::usage::{Recorded, ServiceUsage, Snapshot, Transition};
use crate::window::Window;
use crossbeam_utils::CachePadded;
use rustc_hash::FxHashMap;

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
/// assert_eq!(recorded.transition.unwrap().to, Level::Critical);
/// assert!(!tracker.can_call("search").unwrap());
/// assert!(tracker.try_record("search", 1).is_err());
///
/// clock.advance(60_000); // the next minute: a fresh window
/// assert_eq!(tracker.usage("search").unwrap().used, 0);
/// ```
pub struct QuotaTracker {
    services: Box<[ServiceSlot]>,
    index: FxHashMap<String, usize>,
    clock: Box<dyn Clock>,
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
            let now = tracker.clock.now_ms();
            let loaded = store.load();
            let mut deliveries = Vec::new();
            if let Ok(Some(saved)) = &loaded {
                deliveries = tracker.merge_saved(saved, now);
            }
            // What was just restored is what the store holds: not dirty.
            let (readings, rolled_over) = tracker.read_all(now);
            let versions = readings.iter().map(|r| r.version).collect();
            // Nobody has subscribed yet, but every ticket must pass its gate.
            deliveries.extend(rolled_over);
            observers::deliver(&tracker.observers, deliveries);
            // Retry a load that failed for now (not one that found corrupt data) before the
            // first save, so a passing outage never overwrites the saved counts.
            let restored =
                !matches!(&loaded, Err(error) if !matches!(error, StoreError::Corrupt(_)));
            let persistence = Persistence::new(store, self.policy, now, versions, restored);
            persistence.record_load(loaded.as_ref().err());
            if let Err(error) = &loaded {
                log::warn!("quota: could not restore counts, starting fresh: {error}");
            }
            tracker.persistence = Some(persistence);
        }
        Ok(tracker)
    }
}

/// Up to this many services, names are looked up by comparing them in order.
const LINEAR_LOOKUP_MAX: usize = 8;

/// One service: its fixed config and its guarded state.
struct ServiceSlot {
    config: ServiceConfig,
    thresholds: Thresholds,
    reserve: u64,
    /// What reduced-rate mode still allows: `floor(limit x fraction)`.
    reduced_allowance: u64,
    /// Padded to its own cache line so threads on different services do not contend.
    state: CachePadded<Mutex<ServiceState>>,
    gate: Arc<DeliveryGate>,
}

/// What a service's lock guards.
struct ServiceState {
    used: u64,
    /// Calls recorded since the tracker was created, across all windows.
    total: u64,
    window: Window,
    /// Bumped by every recording; tells the saver what changed since the last save.
    version: u64,
    /// Delivery tickets issued so far (see `observers`).
    tickets: u64,
}

/// The numbers of a service read under its lock; turned into a `ServiceUsage` after it.
#[derive(Clone, Copy)]
struct Reading {
    used: u64,
    total: u64,
    window: Window,
    version: u64,
}

/// Level changes made under one lock acquisition, to deliver after it.
#[derive(Default)]
struct Changes {
    reset: Option<Transition>,
    recorded: Option<Transition>,
    ticket: Option<u64>,
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
        let now = clock.now_ms();
        let services: Box<[ServiceSlot]> = config
            .services
            .into_iter()
            .map(|config| ServiceSlot {
                thresholds: Thresholds::new(
                    config.limit,
                    config.warn_threshold,
                    config.critical_threshold,
                ),
                reserve: calls_at_most(config.limit, config.reserve_fraction),
                reduced_allowance: calls_at_most(config.limit, reduced_fraction),
                state: CachePadded::new(Mutex::new(ServiceState {
                    used: 0,
                    total: 0,
                    window: config.period.window_at(now),
                    version: 0,
                    tickets: 0,
                })),
                gate: Arc::new(DeliveryGate::new()),
                config,
            })
            .collect();
        let index = services
            .iter()
            .enumerate()
            .map(|(i, slot)| (slot.config.name.clone(), i))
            .collect();
        QuotaTracker {
            services,
            index,
            clock,
            observers: Registry::new(),
            store_observers: Registry::new(),
            persistence: None,
        }
    }

    /// Adds the saved counts of services whose saved window is the current one, one service
    /// lock at a time. At build the tracker is empty, so this restores; after a load that
    /// failed at build, it merges what was saved before with what was recorded since.
    fn merge_saved(&self, saved: &PersistedState, now: u64) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for saved in &saved.services {
            let Some(&position) = self.index.get(&saved.name) else {
                continue;
            };
            let slot = &self.services[position];
            if saved.config.period != slot.config.period || saved.used == 0 {
                continue;
            }
            let mut state = sync::lock(&slot.state);
            let mut changes = Changes {
                reset: slot.roll_over(&mut state, now),
                ..Changes::default()
            };
            if saved.window_start_ms == state.window.start_ms {
                let before = slot.level(state.used);
                state.used = state.used.saturating_add(saved.used);
                state.version += 1;
                changes.recorded = slot.transition(before, state.used, now);
            }
            slot.issue_ticket(&mut state, &mut changes);
            deliveries.extend(slot.delivery(changes));
        }
        deliveries
    }

    /// Records `count` calls to `service` as one atomic read-modify-write and returns the
    /// usage right after. It always records: `used` may pass the limit (`remaining` saturates).
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for 0 or a count
    /// that would overflow the counter. On error nothing was recorded.
    pub fn record_call(&self, service: &str, count: u64) -> Result<Recorded, QuotaError> {
        self.update(service, count, |_slot, _state| Ok(()))
    }

    /// Records `count` calls only if they are allowed: the service is below Critical, has
    /// calls remaining, and `used + count <= limit`. Check and record are one atomic step, so
    /// two threads can never both take the last calls.
    ///
    /// Errors: [`QuotaError::Denied`] when not allowed (nothing recorded), and the errors of
    /// [`record_call`](Self::record_call).
    pub fn try_record(&self, service: &str, count: u64) -> Result<Recorded, QuotaError> {
        self.update(service, count, |slot, state| {
            let fits = state
                .used
                .checked_add(count)
                .is_some_and(|after| after <= slot.config.limit);
            if slot.allows(state.used, self.is_reduced_rate()) && fits {
                Ok(())
            } else {
                Err(QuotaError::Denied {
                    service: slot.config.name.clone(),
                    count,
                    used: state.used,
                    limit: slot.config.limit,
                })
            }
        })
    }

    /// Whether a call to `service` is allowed now: calls remain and the level is below Critical.
    pub fn can_call(&self, service: &str) -> Result<bool, QuotaError> {
        let (slot, reading) = self.read(service)?;
        Ok(slot.allows(reading.used, self.is_reduced_rate()))
    }

    /// The calls held back as a reserve: `floor(limit x reserve_fraction)`.
    pub fn reserve_allocation(&self, service: &str) -> Result<u64, QuotaError> {
        Ok(self.services[self.position(service)?].reserve)
    }

    /// `service`'s usage now.
    pub fn usage(&self, service: &str) -> Result<ServiceUsage, QuotaError> {
        let (slot, reading) = self.read(service)?;
        Ok(slot.usage(reading))
    }

    /// Every service's usage at one instant, in config order.
    ///
    /// Takes every service's lock, always in config order (the one lock order of the crate),
    /// so no recording is half-seen.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now_ms();
        let (readings, deliveries) = self.read_all(now);
        observers::deliver(&self.observers, deliveries);
        Snapshot {
            services: self
                .services
                .iter()
                .zip(readings)
                .map(|(slot, reading)| slot.usage(reading))
                .collect(),
            at_ms: now,
        }
    }

    /// Calls `observer` once for every level change, on the thread whose call caused it,
    /// after the tracker's lock is released and before that call returns; per service in the
    /// order the changes happened. A panicking observer is caught and logged; the call still
    /// returns its result and the other observers still run.
    pub fn on_transition(
        &self,
        observer: impl Fn(&Transition) + Send + Sync + 'static,
    ) -> SubscriptionId {
        self.observers.subscribe(std::sync::Arc::new(observer))
    }

    /// Removes a subscription; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.observers.unsubscribe(id)
    }

    /// Calls `observer` when reduced-rate mode starts or ends, on the thread whose call
    /// caused it, after every lock is released. Panics are caught and logged.
    pub fn on_store_event(
        &self,
        observer: impl Fn(&StoreEvent) + Send + Sync + 'static,
    ) -> SubscriptionId {
        self.store_observers
            .subscribe(std::sync::Arc::new(observer))
    }

    /// Removes a subscription made with [`on_store_event`](Self::on_store_event).
    pub fn unsubscribe_store_events(&self, id: SubscriptionId) -> bool {
        self.store_observers.unsubscribe(id)
    }

    /// Saves every count to the store now, waiting for a save in flight to finish first.
    /// `Ok(())` without a store. A failed flush counts like any failed save.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self.save(SaveReason::Flush, self.clock.now_ms()) {
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
        self.clock.now_ms()
    }

    /// Every service read under all their locks, taken in config order (the crate's one lock
    /// order), and the roll-over transitions for the caller to deliver once it holds no lock.
    fn read_all(&self, now: u64) -> (Vec<Reading>, Vec<Delivery>) {
        let mut guards: Vec<MutexGuard<'_, ServiceState>> = self
            .services
            .iter()
            .map(|slot| sync::lock(&slot.state))
            .collect();
        let mut deliveries = Vec::new();
        let mut readings = Vec::with_capacity(guards.len());
        for (slot, state) in self.services.iter().zip(guards.iter_mut()) {
            let mut changes = Changes {
                reset: slot.roll_over(state, now),
                ..Changes::default()
            };
            slot.issue_ticket(state, &mut changes);
            deliveries.extend(slot.delivery(changes));
            readings.push(state.reading());
        }
        drop(guards);
        (readings, deliveries)
    }

    /// Saves through the store if there is one; `None` if there is none or the save
    /// coalesced into one in flight. Runs with no service lock held.
    fn save(&self, reason: SaveReason, now: u64) -> Option<Result<(), StoreError>> {
        let persistence = self.persistence.as_ref()?;
        let deliveries = std::cell::RefCell::new(Vec::new());
        let outcome = persistence.save(
            reason,
            now,
            || {
                if let Some(saved) = persistence.store.load()? {
                    deliveries
                        .borrow_mut()
                        .extend(self.merge_saved(&saved, now));
                }
                Ok(())
            },
            || {
                let (readings, rolled_over) = self.read_all(now);
                deliveries.borrow_mut().extend(rolled_over);
                let versions = readings.iter().map(|r| r.version).collect();
                (self.persisted(&readings, now), versions)
            },
            |state| persistence.store.save(state),
        );
        // The save lock is released: observers may call back into the tracker.
        observers::deliver(&self.observers, deliveries.into_inner());
        let outcome = outcome?;
        for event in &outcome.events {
            self.store_observers.notify(event, |e| format!("{e:?}"));
        }
        Some(outcome.result)
    }

    fn persisted(&self, readings: &[Reading], now: u64) -> PersistedState {
        PersistedState {
            version: PersistedState::VERSION,
            services: self
                .services
                .iter()
                .zip(readings)
                .map(|(slot, reading)| PersistedService {
                    name: slot.config.name.clone(),
                    used: reading.used,
                    window_start_ms: reading.window.start_ms,
                    config: slot.config.clone(),
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

    fn position(&self, service: &str) -> Result<usize, QuotaError> {
        // A few names compare faster than they hash; many are found through the map.
        let found = if self.services.len() <= LINEAR_LOOKUP_MAX {
            self.services
                .iter()
                .position(|slot| slot.config.name == service)
        } else {
            self.index.get(service).copied()
        };
        found.ok_or_else(|| QuotaError::UnknownService(service.to_owned()))
    }

    /// One lock acquisition that only rolls the window over if due and reads.
    fn read(&self, service: &str) -> Result<(&ServiceSlot, Reading), QuotaError> {
        let slot = &self.services[self.position(service)?];
        let now = self.clock.now_ms();
        let (reading, delivery) = {
            let mut state = sync::lock(&slot.state);
            let mut changes = Changes {
                reset: slot.roll_over(&mut state, now),
                ..Changes::default()
            };
            slot.issue_ticket(&mut state, &mut changes);
            (state.reading(), slot.delivery(changes))
        };
        observers::deliver(&self.observers, delivery.into_iter().collect());
        Ok((slot, reading))
    }

    /// One lock acquisition: roll over if due, let `admit` refuse, record `count`.
    fn update(
        &self,
        service: &str,
        count: u64,
        admit: impl FnOnce(&ServiceSlot, &ServiceState) -> Result<(), QuotaError>,
    ) -> Result<Recorded, QuotaError> {
        let slot = &self.services[self.position(service)?];
        if count == 0 {
            return Err(slot.invalid_count(count, "count must be at least 1"));
        }
        let now = self.clock.now_ms();
        let (outcome, changes) = {
            let mut state = sync::lock(&slot.state);
            let mut changes = Changes {
                reset: slot.roll_over(&mut state, now),
                ..Changes::default()
            };
            let outcome = match state.used.checked_add(count) {
                None => Err(slot.invalid_count(count, "the counter would overflow")),
                Some(after) => admit(slot, &state).map(|()| {
                    let before = slot.level(state.used);
                    state.used = after;
                    state.total = state.total.saturating_add(count);
                    state.version += 1;
                    changes.recorded = slot.transition(before, after, now);
                    state.reading()
                }),
            };
            slot.issue_ticket(&mut state, &mut changes);
            (outcome, changes)
        };
        // The common case changes no level: nothing to deliver, nothing to clone.
        let entered_critical = changes
            .recorded
            .as_ref()
            .is_some_and(|t| t.from < Level::Critical && t.to >= Level::Critical);
        let (reset, recorded) = if changes.ticket.is_some() {
            let kept = (changes.reset.clone(), changes.recorded.clone());
            observers::deliver(
                &self.observers,
                slot.delivery(changes).into_iter().collect(),
            );
            kept
        } else {
            (None, None)
        };
        self.after_call(now, entered_critical);
        let reading = outcome?;
        Ok(Recorded {
            usage: slot.usage(reading),
            reset_transition: recorded.as_ref().and(reset.clone()),
            transition: recorded.or(reset),
        })
    }
}

impl ServiceSlot {
    fn level(&self, used: u64) -> Level {
        Level::of(used, self.config.limit, self.thresholds)
    }

    fn allows(&self, used: u64, reduced_rate: bool) -> bool {
        used < self.config.limit
            && self.level(used) < Level::Critical
            && (!reduced_rate || used < self.reduced_allowance)
    }

    fn transition(&self, before: Level, used: u64, at_ms: u64) -> Option<Transition> {
        let after = self.level(used);
        (before != after).then(|| Transition {
            service: self.config.name.clone(),
            from: before,
            to: after,
            used,
            limit: self.config.limit,
            at_ms,
        })
    }

    /// Starts a new window if `now` reached the end of the current one; returns the downward
    /// level change, if any. A clock that went backwards never reopens an old window.
    fn roll_over(&self, state: &mut ServiceState, now: u64) -> Option<Transition> {
        if now < state.window.reset_at_ms {
            return None;
        }
        let before = self.level(state.used);
        state.used = 0;
        state.window = self.config.period.window_at(now);
        self.transition(before, 0, now)
    }

    fn issue_ticket(&self, state: &mut ServiceState, changes: &mut Changes) {
        if changes.reset.is_some() || changes.recorded.is_some() {
            changes.ticket = Some(state.tickets);
            state.tickets += 1;
        }
    }

    fn delivery(&self, changes: Changes) -> Option<Delivery> {
        let ticket = changes.ticket?;
        Some(Delivery {
            gate: Arc::clone(&self.gate),
            ticket,
            transitions: changes.reset.into_iter().chain(changes.recorded).collect(),
        })
    }

    fn usage(&self, reading: Reading) -> ServiceUsage {
        ServiceUsage {
            name: self.config.name.clone(),
            used: reading.used,
            limit: self.config.limit,
            remaining: self.config.limit.saturating_sub(reading.used),
            period: self.config.period,
            window_start_ms: reading.window.start_ms,
            reset_at_ms: reading.window.reset_at_ms,
            total_recorded: reading.total,
            warn_threshold: self.config.warn_threshold,
            critical_threshold: self.config.critical_threshold,
        }
    }

    fn invalid_count(&self, count: u64, reason: &'static str) -> QuotaError {
        QuotaError::InvalidCount {
            service: self.config.name.clone(),
            count,
            reason,
        }
    }
}

impl ServiceState {
    fn reading(&self) -> Reading {
        Reading {
            used: self.used,
            total: self.total,
            window: self.window,
            version: self.version,
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
