//! The tracker: per-service counters behind per-service locks.

use crate::clock::{Clock, SystemClock};
use crate::config::SyncPolicy;
use crate::config::TrackerConfig;
use crate::error::QuotaError;
use crate::locks::{AtomicU64, Mutex};
use crate::observers::{Registry, StoreEventSubscription, TransitionSubscription};
use crate::persistence::{Persistence, StoreEvent};
use crate::rules::Request;
use crate::sorted::Lookup;
use crate::usage::{Raised, Recorded, ServiceUsage, Snapshot, Transition};
use std::sync::Arc;

mod added;
mod builder;
mod clock;
mod fast_path;
mod flush_retry;
mod from_file;
mod handle;
mod hold;
mod hot;
mod limits;
mod lookup;
mod many;
#[cfg(not(target_arch = "wasm32"))]
mod nonblocking;
mod reads;
mod reconfigure;
mod shared;
mod slot;
mod sync;
mod syncer;
#[cfg(not(target_arch = "wasm32"))]
mod wait;

use crate::persistence::Ledger;
use added::Added;
pub use builder::QuotaTrackerBuilder;
use clock::TrackerClock;
use fast_path::FastPath;
pub use handle::{Service, ServiceId};
pub(crate) use hold::Held;
pub use hold::{Hold, OwnedHold, Settlement};
use lookup::{unknown_service, NameKey};
#[cfg(not(target_arch = "wasm32"))]
pub use nonblocking::{AsyncCall, AsyncRecorded};
pub use reconfigure::Reconfigured;
use slot::{LimitState, ServiceSlot, Settings, SlotGuard, SlotState, StepResult};
use sync::SavingGuard;
#[cfg(not(target_arch = "wasm32"))]
pub use wait::{HoldWhenReady, ReadyResult, UntilReady};

/// Counts calls per service against their quotas. `Send + Sync`: share it with an `Arc`.
///
/// Every operation on a service is one acquisition of that service's lock, which covers the
/// whole read-modify-write (window roll-over, check, count, level change), so concurrent calls
/// never lose updates; a call that changes nothing but the count (same window, same level,
/// admitted) is instead one compare-and-swap on an atomic word beside the lock, which the next
/// lock holder takes in. Observers, logging and everything slow run after the lock is released.
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
    /// The services of the build's config, at positions `0..len` (a removed one stays, its
    /// settings marked removed).
    services: Box<[ServiceSlot]>,
    /// Services added by [`reconfigure`](Self::reconfigure), at positions from
    /// `services.len()` on: reached only when a position is past the build's.
    added: Added,
    /// The positions of the services in force, in the latest config's order (a leaf lock,
    /// held only to read or replace it).
    order: Mutex<Arc<[usize]>>,
    /// Held by [`reconfigure`](Self::reconfigure) alone: reconfigures run one at a time.
    reconfiguring: Mutex<()>,
    /// The store's URL when the tracker was built from a config file (`QuotaFile::builder`):
    /// what [`QuotaFile::reconfigure`](crate::QuotaFile::reconfigure) checks a reloaded file
    /// against (a store cannot change at run time).
    store_url: Option<crate::config::StoreUrl>,
    /// The reduced-rate fraction of the sync policy (rules of new settings need it).
    reduced_fraction: f64,
    /// Each build service's [`NameKey`], in config order: the lookup among a few services.
    keys: Box<[NameKey]>,
    /// The build's names to positions, for lookups among many services.
    index: Lookup<Arc<str>, usize>,
    clock: TrackerClock,
    /// The clock's latest good reading, to within a second: used when the clock panics.
    last_good_ms: AtomicU64,
    observers: Registry<Transition>,
    store_observers: Registry<StoreEvent>,
    persistence: Option<Persistence>,
    /// Syncs not reported to the metrics yet.
    #[cfg(feature = "metrics")]
    unreported: crate::metrics::Unreported,
    /// Calls queued by `until_ready`, and the thread that admits them.
    #[cfg(not(target_arch = "wasm32"))]
    waiting: wait::Waiting,
    /// The background syncer, once `sync_in_background` started it.
    #[cfg(not(target_arch = "wasm32"))]
    syncer: syncer::Syncer,
    #[cfg(not(target_arch = "wasm32"))]
    io: nonblocking::IoPool, // the async API's I/O threads
}

/// [`SHARED_ADMISSION`](crate::config::SHARED_ADMISSION), by its short name in the tracker.
const SHARED: bool = crate::config::SHARED_ADMISSION;

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
            clock: TrackerClock::System,
            store: None,
            policy: SyncPolicy::default(),
            require_store: false,
            store_observers: Vec::new(),
            store_url: None,
        }
    }

    /// Records `count` calls to `service` as one atomic read-modify-write and returns the
    /// usage right after. It always records: `used` may pass the limit (`remaining` saturates).
    /// Allocates nothing unless the level changes.
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for 0 or a count
    /// that would overflow the counter. On error nothing was recorded.
    #[inline]
    pub fn record_call(&self, service: &str, count: u64) -> Result<Recorded<'_>, QuotaError> {
        self.update_named(service, Request::record(count))
    }

    /// Records `count` calls only if normal admission allows them: `used + count` stays at
    /// or below the Critical threshold and at or below `limit - reserve` (the reserve is held
    /// back for [`try_record_priority`](Self::try_record_priority)), and in reduced-rate mode
    /// at or below the reduced allowance. Check and record are one atomic step, so two
    /// threads can never both take the last calls.
    ///
    /// Errors: [`QuotaError::Denied`] when not allowed (nothing recorded), whose
    /// [`DenyReason`](crate::DenyReason) names the rule that refused, and the errors of
    /// [`record_call`](Self::record_call).
    #[inline]
    pub fn try_record(&self, service: &str, count: u64) -> Result<Recorded<'_>, QuotaError> {
        self.update_named(service, self.admission(count, false))
    }

    /// Takes in a count reported from outside, such as an API provider's remaining-calls
    /// header (`limit - remaining`) or a 429 (`limit`): `used` rises to `at_least`, never
    /// falls. It is a floor, not calls: the provider's count includes calls this tracker (and
    /// every instance sharing its store) already counted, so adding it would count them twice.
    /// With a store it is synced as a floor too (the stored total becomes the larger of the
    /// two), with the next sync, at once if it makes the service Critical.
    ///
    /// `resets_at_ms` is when the reporter's count resets (ms since the Unix epoch): the report
    /// is taken in only if that instant falls in the current window (`window_start_ms <
    /// resets_at_ms <= reset_at_ms`), and is ignored otherwise (a count of another window says
    /// nothing about this one); `None` takes it as a count of the current window. The window
    /// rolls over first if due, and level changes reach the observers as for recorded calls.
    ///
    /// A service of several limits
    /// ([`ServiceConfig::more_limits`](crate::ServiceConfig::more_limits)) takes the report
    /// into one limit: the one of the shortest window that contains `resets_at_ms` (`None`:
    /// the shortest window's), every limit rolled over first; `at_least` is a count of that
    /// limit.
    /// [`ServiceUsage::limit_for_reset`] tells which one it will be, to compute `at_least`
    /// from a provider's remaining calls.
    ///
    /// ```
    /// use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
    ///
    /// let clock = ManualClock::new(1_700_000_000_000);
    /// let config = TrackerConfig::new([ServiceConfig::new("search", 100, Period::Minute)]);
    /// let tracker = QuotaTracker::new_with_clock(config, clock)?;
    /// tracker.record_call("search", 10)?;
    /// let reset_at = tracker.usage("search")?.reset_at_ms;
    /// // The provider says 60 calls remain until our window's end: 40 were used.
    /// let raised = tracker.raise_used("search", 100 - 60, Some(reset_at))?;
    /// assert!(raised.applied);
    /// assert_eq!(raised.usage.used, 40);
    /// // A count for a window that resets later is not ours: ignored.
    /// let ignored = tracker.raise_used("search", 90, Some(reset_at + 60_000))?;
    /// assert!(!ignored.applied);
    /// assert_eq!(ignored.usage.used, 40);
    /// // Lower reports change nothing: `used` never falls.
    /// assert_eq!(tracker.raise_used("search", 5, None)?.usage.used, 40);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for `at_least`
    /// above 2^62 (no store could hold it). On error nothing changed.
    pub fn raise_used(
        &self,
        service: &str,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> Result<Raised<'_>, QuotaError> {
        self.raise_at(self.position(service)?, at_least, resets_at_ms)
    }

    /// Records `count` calls only if priority admission allows them: `used + count` stays at
    /// or below the limit, past the Critical level and into the reserve. Reduced-rate mode
    /// still caps it at the reduced allowance (it guards against a failing store, which no
    /// priority makes safe). Atomic like [`try_record`](Self::try_record); shared admission
    /// (`Exact`, `Leased`) applies the same rule across instances.
    ///
    /// ```
    /// use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
    /// let config = TrackerConfig::new([ServiceConfig::new("api", 100, Period::Day)]);
    /// let tracker = QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000))?;
    /// tracker.try_record("api", 80)?; // normal calls stop at Critical (80)
    /// assert!(tracker.try_record("api", 1).is_err());
    /// tracker.try_record_priority("api", 20)?; // priority calls go on to the limit
    /// assert!(tracker.try_record_priority("api", 1).is_err());
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    ///
    /// Errors: as [`try_record`](Self::try_record).
    #[inline]
    pub fn try_record_priority(
        &self,
        service: &str,
        count: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        self.update_named(service, self.admission(count, true))
    }

    /// The request of `try_record` (`priority`: of `try_record_priority`).
    #[inline]
    fn admission(&self, count: u64, priority: bool) -> Request {
        let reduced_rate = self.is_reduced_rate();
        if priority {
            Request::priority(count, reduced_rate)
        } else {
            Request::normal(count, reduced_rate)
        }
    }

    /// Whether a normal call to `service` is allowed now, as [`try_record`](Self::try_record)
    /// would decide for one call: below the Critical threshold, below `limit - reserve`, and in
    /// reduced-rate mode below the reduced allowance.
    pub fn can_call(&self, service: &str) -> Result<bool, QuotaError> {
        Ok(self.can_call_at(self.position(service)?))
    }

    /// The calls held back as a reserve: `floor(limit x reserve_fraction)`. For a service of
    /// several limits, its own limit's (`limit` per `window`); each of
    /// [`more_limits`](crate::ServiceConfig::more_limits) holds back the same fraction of its
    /// own count in its own window.
    pub fn reserve_allocation(&self, service: &str) -> Result<u64, QuotaError> {
        Ok(self.slot(self.position(service)?).settings().rules.reserve)
    }

    /// `service`'s usage now.
    pub fn usage(&self, service: &str) -> Result<ServiceUsage<'_>, QuotaError> {
        Ok(self.usage_at(self.position(service)?))
    }

    /// The usage of every limit of `service`
    /// ([`ServiceConfig::more_limits`](crate::ServiceConfig::more_limits)), its own limit
    /// (`limit` per `window`) first, each at its own level; one entry for a service of one
    /// limit. [`usage`](Self::usage) describes only the binding limit; this allocates.
    ///
    /// ```
    /// use quota_core::{Level, Limit, ManualClock, Period, QuotaTracker, ServiceConfig,
    ///     TrackerConfig};
    ///
    /// let tiingo = ServiceConfig::builder("tiingo", 50, Period::Hour)
    ///     .and_limit(Limit::new(1_000, Period::Day))
    ///     .build()?;
    /// let tracker = QuotaTracker::new_with_clock(
    ///     TrackerConfig::new([tiingo]),
    ///     ManualClock::new(1_718_000_000_000),
    /// )?;
    /// tracker.record_call("tiingo", 45)?;
    /// let limits = tracker.usage_limits("tiingo")?;
    /// assert_eq!((limits[0].used, limits[0].limit), (45, 50));
    /// assert_eq!((limits[1].used, limits[1].limit), (45, 1_000));
    /// assert_eq!(limits[1].level(), Level::Normal);
    /// // `usage` describes the binding limit (the least headroom): the hour's.
    /// assert_eq!(tracker.usage("tiingo")?.remaining, 5);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    pub fn usage_limits(&self, service: &str) -> Result<Vec<ServiceUsage<'_>>, QuotaError> {
        Ok(self.usage_limits_at(self.position(service)?))
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
    /// id from a tracker with fewer services) or the service was removed by
    /// [`reconfigure`](Self::reconfigure) (a handle taken before answers
    /// [`QuotaError::UnknownService`]). An id never names another service than the one it was
    /// given for, whatever reconfigures add or remove.
    pub fn service_by_id(&self, id: ServiceId) -> Option<Service<'_>> {
        let slot = self.get_slot(id.index())?;
        (!slot.settings().removed).then(|| Service::new(self, id.index()))
    }

    /// Every service's usage at one instant, in config order (the latest config's, after a
    /// [`reconfigure`](Self::reconfigure)).
    ///
    /// Takes every service's lock, always in position order (the one lock order of the
    /// crate), so no recording is half-seen.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let read = self.read_all(now, true, false);
        Snapshot {
            // By reference: collecting the reads by value reuses their allocation in place,
            // a specialization of its own in the JS module.
            services: read
                .iter()
                .map(|read| read.usage.clone().into_owned())
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

    /// The configuration in force: the one the tracker was built with, or the latest
    /// [`reconfigure`](Self::reconfigure)'s.
    pub fn config(&self) -> TrackerConfig {
        TrackerConfig::new(
            self.live()
                .iter()
                .map(|&position| self.slot(position).settings().config.clone()),
        )
    }

    /// The tracker clock's time now, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now()
    }
}

impl QuotaTracker {
    /// The slot at `position` (one the tracker handed out): the build's by one bounds check,
    /// an added one on a cold path.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn slot(&self, position: usize) -> &ServiceSlot {
        match self.services.get(position) {
            Some(slot) => slot,
            None => self.added_slot(position),
        }
    }

    #[cold]
    #[inline(never)]
    fn added_slot(&self, position: usize) -> &ServiceSlot {
        match self.get_slot(position) {
            Some(slot) => slot,
            None => unreachable!("position {position} was handed out by this tracker"),
        }
    }

    /// The slot at `position`, if there is one.
    fn get_slot(&self, position: usize) -> Option<&ServiceSlot> {
        match position.checked_sub(self.services.len()) {
            None => self.services.get(position),
            Some(index) => self.added.get(index),
        }
    }

    /// How many positions there are (removed services' included).
    fn slot_count(&self) -> usize {
        self.services.len() + self.added.len()
    }

    /// Wakes the `until_ready` waiter if calls wait for the service at `position` (call it
    /// with no lock held, after something freed calls there).
    fn calls_freed(&self, position: usize) {
        #[cfg(not(target_arch = "wasm32"))]
        if self
            .slot(position)
            .waiting
            .load(crate::locks::Ordering::Relaxed)
            != 0
        {
            self.waiting.notify();
        }
        #[cfg(target_arch = "wasm32")]
        let _ = position;
    }

    /// The positions of the services in force, in config order.
    fn live(&self) -> Arc<[usize]> {
        Arc::clone(&self.order.lock())
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
