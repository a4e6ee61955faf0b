//! Building a tracker: the builder (clock, store, sync policy, observers) and the assembly
//! of the services from a validated config.

use super::{Added, NameKey, QuotaTracker, ServiceSlot, TrackerClock, SHARED};
use crate::clock::{Clock, SystemClock};
use crate::config::SyncPolicy;
use crate::config::TrackerConfig;
use crate::config::{Admission, AdmissionText};
use crate::error::QuotaError;
use crate::locks::{AtomicU64, Mutex};
use crate::observers::{quietly, Observer, Registry};
use crate::persistence::{Persistence, SaveReason, StoreEvent};
use crate::sorted::Lookup;
use crate::store::Store;
use std::sync::Arc;

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
    pub(super) config: TrackerConfig,
    pub(super) clock: TrackerClock,
    pub(super) store: Option<Box<dyn Store>>,
    pub(super) policy: SyncPolicy,
    pub(super) require_store: bool,
    pub(super) store_observers: Vec<Arc<Observer<StoreEvent>>>,
    /// The store's URL, set by `QuotaFile::builder`.
    pub(super) store_url: Option<crate::config::StoreUrl>,
}

impl QuotaTrackerBuilder {
    /// Reads time from `clock` (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = TrackerClock::of(clock);
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

    /// Fail fast on a misconfigured store: [`build`](Self::build) reads the store's totals
    /// first, and with this set, a read that fails (a wrong URL, port or password, a store
    /// that is down) makes `build` return that [`StoreError`](crate::StoreError) as [`QuotaError::Store`]
    /// instead of a tracker. Without it the tracker starts from zero, reports a
    /// [`StoreEvent::ReadFailed`], retries after a short back-off and adds the stored totals
    /// at its first good sync: a store that is down costs a reduced rate, never an outage.
    /// Without a store it changes nothing.
    ///
    /// ```
    /// use quota_core::{MemoryStore, QuotaError, QuotaTracker, StoreError, TrackerConfig};
    ///
    /// let store = MemoryStore::new();
    /// store.set_failing(true); // as a wrong password would
    /// let built = QuotaTracker::builder(TrackerConfig::defaults())
    ///     .store(store)
    ///     .require_store()
    ///     .build();
    /// assert!(matches!(built, Err(QuotaError::Store(StoreError::Injected))));
    /// ```
    pub fn require_store(mut self) -> Self {
        self.require_store = true;
        self
    }

    /// Subscribes `observer` to the store's events (as
    /// [`QuotaTracker::on_store_event`]) before `build` reads the store, so it also hears
    /// about that first read ([`StoreEvent::ReadFailed`]). It stays subscribed for the
    /// tracker's life; subscribe after `build` for a subscription that can be removed.
    ///
    /// ```
    /// use quota_core::{MemoryStore, QuotaTracker, StoreEvent, TrackerConfig};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let store = MemoryStore::new();
    /// store.set_failing(true);
    /// let events = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&events);
    /// let tracker = QuotaTracker::builder(TrackerConfig::defaults())
    ///     .store(store)
    ///     .on_store_event(move |event| seen.lock().unwrap().push(event.clone()))
    ///     .build()?;
    /// assert!(matches!(events.lock().unwrap()[..], [StoreEvent::ReadFailed { .. }]));
    /// tracker.record_call("finnhub", 1)?; // counted all the same
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    pub fn on_store_event(
        mut self,
        observer: impl Fn(&StoreEvent) + Send + Sync + 'static,
    ) -> Self {
        self.store_observers.push(Arc::new(observer));
        self
    }

    /// The tracker. Fails on invalid config or policy, and, with
    /// [`require_store`](Self::require_store), when the first read of the store fails.
    /// Otherwise a store that fails to load, or holds corrupt data, is reported in
    /// [`QuotaTracker::stats`] and by a [`StoreEvent::ReadFailed`], and the tracker starts
    /// fresh.
    pub fn build(self) -> Result<QuotaTracker, QuotaError> {
        validate(
            &self.config,
            self.store.is_some(),
            self.store.as_deref().is_some_and(checks_every_window),
        )?;
        self.policy.validate()?;
        let mut tracker =
            QuotaTracker::assemble(self.config, self.clock, self.policy.reduced_rate.fraction);
        tracker.store_url = self.store_url;
        for observer in self.store_observers {
            tracker.store_observers.subscribe(observer);
        }
        // Subscribed before the first sync, so the transitions it causes are counted too.
        #[cfg(feature = "metrics")]
        tracker.subscribe_metrics();
        #[cfg(feature = "metrics")]
        let has_store = self.store.is_some();
        if let Some(store) = self.store {
            let now = tracker.now();
            tracker.persistence = Some(Persistence::new(store, self.policy, now));
            // Read the stored totals of the current windows. A store that is down now is
            // harmless: deltas only add, so later syncs never overwrite what it holds.
            if let Some(Err(error)) = tracker.save(SaveReason::Load, now) {
                if self.require_store {
                    // Nothing was recorded: dropped without a store, it syncs nothing.
                    tracker.persistence = None;
                    return Err(QuotaError::Store(error));
                }
                quietly(|| log::warn!("quota: could not read the store, starting fresh: {error}"));
            }
        }
        #[cfg(feature = "metrics")]
        {
            crate::metrics::built(
                tracker.services.iter().map(QuotaTracker::metrics_entry),
                has_store,
            );
            tracker.publish_metrics();
        }
        Ok(tracker)
    }
}

/// Checks `config` as a tracker with a store (`has_store`) or without needs it: every service
/// (`TrackerConfig::validate`), and shared admission, which needs the feature and a store shared
/// by the instances, and for a service of several limits a store that checks every window in
/// one step (`several_windows`). [`QuotaTrackerBuilder::build`] and
/// [`QuotaTracker::reconfigure`] both ask this.
pub(super) fn validate(
    config: &TrackerConfig,
    has_store: bool,
    several_windows: bool,
) -> Result<(), QuotaError> {
    config.validate()?;
    let missing = if !SHARED {
        Some("needs the crate feature `shared-admission`, which this build leaves out")
    } else if !has_store {
        Some("needs a store shared by the instances (builder().store(..))")
    } else {
        None
    };
    let shared = config
        .services
        .iter()
        .find(|s| s.admission != Admission::Local);
    if let (Some(service), Some(reason)) = (shared, missing) {
        return Err(QuotaError::invalid_config(
            Some(&service.name),
            "admission",
            AdmissionText(service.admission),
            reason,
        ));
    }
    let several = config
        .services
        .iter()
        .find(|s| s.admission != Admission::Local && !s.more_limits.is_empty());
    if let Some(service) = several.filter(|_| !several_windows) {
        return Err(QuotaError::invalid_config(
            Some(&service.name),
            "admission",
            AdmissionText(service.admission),
            "with more than one limit needs a store that checks every window in one step \
             (Store::several_windows); this store does not",
        ));
    }
    Ok(())
}

/// Whether `store` checks every window of a service in one step (its own answer, asked outside
/// every lock; a panic is a "no").
pub(super) fn checks_every_window(store: &dyn Store) -> bool {
    matches!(
        crate::persistence::guarded(|| Ok(store.several_windows())),
        Ok(true)
    )
}

impl QuotaTracker {
    /// The tracker of a validated config, without persistence.
    pub(super) fn assemble(
        config: TrackerConfig,
        clock: TrackerClock,
        reduced_fraction: f64,
    ) -> Self {
        let mut tracker = QuotaTracker {
            services: Box::new([]),
            added: Added::new(),
            order: Mutex::new((0..config.services.len()).collect()),
            reconfiguring: Mutex::new(()),
            store_url: None,
            reduced_fraction,
            keys: Box::new([]),
            index: Lookup::default(),
            clock,
            // Until the clock gave a reading, a panicking clock falls back to the system's.
            last_good_ms: AtomicU64::new(SystemClock::wall_ms()),
            observers: Registry::new(),
            store_observers: Registry::new(),
            persistence: None,
            #[cfg(feature = "metrics")]
            unreported: crate::metrics::Unreported::default(),
            #[cfg(not(target_arch = "wasm32"))]
            waiting: Default::default(),
            #[cfg(not(target_arch = "wasm32"))]
            syncer: Default::default(),
            #[cfg(not(target_arch = "wasm32"))]
            io: Default::default(),
        };
        let now = tracker.now();
        tracker.services = config
            .services
            .into_iter()
            .map(|config| ServiceSlot::new(config, reduced_fraction, now))
            .collect();
        tracker.keys = tracker
            .services
            .iter()
            .map(|slot| NameKey::of(&slot.name))
            .collect();
        // Inserted one by one: collecting a sorted vector would sort it (a sort in the `.wasm`).
        for (i, slot) in tracker.services.iter().enumerate() {
            tracker.index.insert(Arc::clone(&slot.name), i);
        }
        tracker
    }
}
