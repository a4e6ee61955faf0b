//! The tracker: per-service counters behind per-service locks.

use crate::clock::{Clock, SystemClock};
use crate::error::{DenyReason, QuotaError};
use crate::locks::{thread_local, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::observers::{
    quietly, Observer, Outbox, Registry, StoreEventSubscription, TransitionSubscription,
};
use crate::persistence::{
    Cut, HeldAdmit, Late, Persistence, SaveReason, Settled, StoreEvent, StoreStats, SyncPolicy,
};
use crate::service::Admission;
use crate::service::{ServiceConfig, TrackerConfig};
use crate::step::{Change, Refusal, Request, ServiceRules, ServiceState, Step};
use crate::store::{
    Delta, GiveBack, InstanceId, Raise, Store, StoreError, StoredState, SyncBatch, WindowKey,
};
use crate::usage::{Raised, Recorded, ServiceUsage, Snapshot, Transition};
use crate::window::Window;
use crossbeam_utils::CachePadded;
use rustc_hash::FxHashMap;
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

mod fast_path;
mod from_file;
mod handle;
mod shared;

use fast_path::FastPath;
pub use handle::{Service, ServiceId};

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
    services: Box<[ServiceSlot]>,
    /// Each service's [`NameKey`], in config order: the lookup among a few services.
    keys: Box<[NameKey]>,
    /// Names to positions, for lookups among many services.
    index: FxHashMap<Arc<str>, usize>,
    clock: TrackerClock,
    /// The clock's latest good reading, to within a second: used when the clock panics.
    last_good_ms: AtomicU64,
    observers: Registry<Transition>,
    store_observers: Registry<StoreEvent>,
    persistence: Option<Persistence>,
    /// Syncs not reported to the metrics yet.
    #[cfg(feature = "metrics")]
    unreported: crate::metrics::Unreported,
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
    clock: TrackerClock,
    store: Option<Box<dyn Store>>,
    policy: SyncPolicy,
    require_store: bool,
    store_observers: Vec<Arc<Observer<StoreEvent>>>,
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
    /// that is down) makes `build` return that [`StoreError`] as [`QuotaError::Store`]
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
        self.config.validate()?;
        self.policy.validate()?;
        // Shared admission needs the feature and a store shared by the instances.
        let missing = if !SHARED {
            Some("needs the crate feature `shared-admission`, which this build leaves out")
        } else if self.store.is_none() {
            Some("needs a store shared by the instances (builder().store(..))")
        } else {
            None
        };
        let shared = self
            .config
            .services
            .iter()
            .find(|s| s.admission != Admission::Local);
        if let (Some(service), Some(reason)) = (shared, missing) {
            return Err(QuotaError::invalid_config(
                Some(&service.name),
                "admission",
                format_args!("{:?}", service.admission),
                reason,
            ));
        }
        let mut tracker =
            QuotaTracker::assemble(self.config, self.clock, self.policy.reduced_rate.fraction);
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
            crate::metrics::built(tracker.services.iter().map(|slot| &slot.name), has_store);
            tracker.publish_metrics();
        }
        Ok(tracker)
    }
}

/// Up to this many services, names are looked up by comparing them in order.
const LINEAR_LOOKUP_MAX: usize = 8;

/// Where the tracker reads the time. The [`SystemClock`] is read directly: it cannot panic
/// (see [`SystemClock::wall_ms`]), so it needs no panic guard and no dynamic call; any other
/// clock is called through `dyn Clock` under `catch_unwind`.
enum TrackerClock {
    System,
    Other(Box<dyn Clock>),
}

impl TrackerClock {
    fn of<C: Clock + 'static>(clock: C) -> Self {
        if (&clock as &dyn Any).is::<SystemClock>() {
            TrackerClock::System
        } else {
            TrackerClock::Other(Box::new(clock))
        }
    }
}

/// A name's length and its bytes packed into one word, compared before the name itself.
///
/// Up to 8 bytes the packing is exact (equal keys, equal names: no text is compared at all);
/// for longer names the word holds the first and the last 8 bytes folded together, and a
/// matching key is confirmed by comparing the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameKey {
    len: usize,
    bytes: u64,
}

impl NameKey {
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn of(name: &str) -> NameKey {
        let b = name.as_bytes();
        let len = b.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let bytes = if len > 8 {
            // Only a filter: the first 8 bytes, and the last 8 rotated.
            word(0) ^ word(len - 8).rotate_left(32)
        } else if len >= 4 {
            // The first 4 and the last 4 bytes (overlapping below 8) cover all of them.
            half(0) | half(len - 4) << 32
        } else if len > 0 {
            // The first, middle and last byte cover up to 3.
            u64::from(b[0]) | u64::from(b[len / 2]) << 8 | u64::from(b[len - 1]) << 16
        } else {
            0
        };
        NameKey { len, bytes }
    }

    /// Whether equal keys mean equal names.
    #[inline]
    fn is_exact(self) -> bool {
        self.len <= 8
    }
}

/// One service: its fixed config and rules, its guarded state, its queued transitions.
struct ServiceSlot {
    /// Shared with every transition of the service (cloning it copies no text).
    name: Arc<str>,
    config: ServiceConfig,
    rules: ServiceRules,
    /// Padded to its own cache line so threads on different services do not contend. Taken
    /// only through [`lock`](Self::lock), which also takes the fast path's word.
    state: CachePadded<Mutex<SlotState>>,
    /// The lock-free count of calls that change nothing else (its own cache line).
    fast: FastPath,
    /// Transitions waiting for the observers, queued under `state`'s lock.
    outbox: Outbox<Transition>,
    /// Denials not counted in the metrics yet.
    #[cfg(feature = "metrics")]
    denials: crate::metrics::Denials,
}

/// What a service's lock guards.
struct SlotState {
    service: ServiceState,
    /// What a shared store has not acknowledged yet (kept only with a store).
    sync: SyncState,
    /// The block in hand (`Leased` admission only).
    lease: shared::LeaseState,
    /// What the fast path's word was released with (`None`: left taken).
    published: Option<fast_path::Published>,
}

/// A service's lock, held: its state, with the calls the fast path counted before the lock
/// was taken already in it. Dropping it publishes the state for the fast path, then unlocks.
struct SlotGuard<'a> {
    guard: MutexGuard<'a, SlotState>,
    slot: &'a ServiceSlot,
    /// The fast path's word as the lock took it.
    taken: u64,
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = SlotState;
    fn deref(&self) -> &SlotState {
        &self.guard
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotState {
        &mut self.guard
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let slot = self.slot;
        let enabled = !SHARED || slot.config.admission == Admission::Local;
        let state = &mut *self.guard;
        state.published = slot.fast.release(
            self.taken,
            &state.service,
            &slot.rules,
            enabled,
            state.published,
        );
    }
}

/// A service's calls a store has not acknowledged yet. `service.used` is the store's total of
/// the current window at the last sync plus `unacked`.
#[derive(Default)]
struct SyncState {
    /// Calls of the current window not acknowledged by a reply.
    unacked: u64,
    /// How many of `unacked` are in the batch in flight (or whose reply was lost), and their
    /// window: once the window moves on, those calls belong to the batch alone.
    cut: u64,
    cut_window: Option<Window>,
    /// Calls of ended windows not cut into a batch yet (a delta for a window that ended is
    /// added to that window, never to the next).
    ended: Vec<(Window, u64)>,
    /// Leased calls to give back with the next sync.
    give_backs: Vec<GiveBack>,
    /// `Exact` admissions whose answer was lost, resent as they are by the next sync (those
    /// refused to the caller stay booked in `floor_asked` until then).
    admits: Vec<HeldAdmit>,
    /// A raise of the current window that no reply has acknowledged as it is now: the window
    /// and the floor to send (`used` right after the raise, plus the calls counted since).
    /// Every batch carries it (a maximum: resending it is harmless) until a reply
    /// acknowledges this very value: calls a store adds before it applies the floor (shared
    /// admission, or a batch resent late) would otherwise be absorbed by it.
    raise: Option<(Window, u64)>,
    /// Raises of windows that ended before they were cut.
    ended_raises: Vec<(Window, u64)>,
    /// Calls asked of the store (`Exact` admissions, leased blocks) whose answer is not taken
    /// in yet. While any is unanswered no reply acknowledges a floor (the store may have added
    /// the call before the floor, which absorbed it); and the store cannot hold a floor it has
    /// not seen against a call, so admission checks the floor plus these here first.
    floor_asked: u64,
}

impl SyncState {
    /// Books a step: counted calls, and a window that moved (the old window's calls not cut
    /// yet go to `ended`; the new one starts with what the step carried into it).
    fn book(&mut self, old_window: Window, step: &Step, counted: u64) {
        if let Some(carried) = step.moved {
            let cut = if self.cut_window == Some(old_window) {
                self.cut
            } else {
                0
            };
            let pending = self.unacked.saturating_sub(cut);
            // The calls cut from the old window now belong to the batch alone: its reply
            // must not take them off the new window's count.
            self.cut = 0;
            self.cut_window = None;
            if pending > 0 {
                match self.ended.iter_mut().find(|(w, _)| *w == old_window) {
                    Some((_, calls)) => *calls = calls.saturating_add(pending),
                    None => self.ended.push((old_window, pending)),
                }
            }
            self.unacked = carried;
            // A raise not cut yet belongs to the window it was seen in.
            if let Some(raise) = self.raise.take() {
                self.ended_raises.push(raise);
            }
        }
        self.unacked = self.unacked.saturating_add(counted);
        if let Some((_, floor)) = &mut self.raise {
            *floor = floor.saturating_add(counted);
        }
    }
}

impl SyncState {
    /// Calls counted in `window` outside [`book`](Self::book) (shared admission: admitted by
    /// the store, held, or a leased block, whole, when it is granted) add to a floor not synced
    /// yet, which the store would otherwise absorb; returns the floor.
    fn after_raise(&mut self, window: Window, count: u64) -> Option<u64> {
        let (raised, floor) = self.raise.as_mut()?;
        if *raised != window {
            return None;
        }
        *floor = floor.saturating_add(count);
        Some(*floor)
    }

    /// The floor of `window` the store may not hold yet, plus the calls asked of the store
    /// since (`None`: no such floor).
    fn floor_seen(&self, window: Window) -> Option<u64> {
        let (raised, floor) = self.raise?;
        (raised == window).then(|| floor.saturating_add(self.floor_asked))
    }
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

/// Kept out of line: the lookups inline, their error does not.
#[cold]
#[inline(never)]
fn unknown_service(service: &str) -> QuotaError {
    QuotaError::UnknownService(service.to_owned())
}

/// Whether this build has `Exact` and `Leased` admission (feature `shared-admission`); without
/// it `build()` refuses them, so the shared paths are never taken and are left out.
const SHARED: bool = cfg!(feature = "shared-admission");

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
        }
    }

    /// The tracker of a validated config, without persistence.
    fn assemble(config: TrackerConfig, clock: TrackerClock, reduced_fraction: f64) -> Self {
        let mut tracker = QuotaTracker {
            services: Box::new([]),
            keys: Box::new([]),
            index: FxHashMap::default(),
            clock,
            // Until the clock gave a reading, a panicking clock falls back to the system's.
            last_good_ms: AtomicU64::new(SystemClock::wall_ms()),
            observers: Registry::new(),
            store_observers: Registry::new(),
            persistence: None,
            #[cfg(feature = "metrics")]
            unreported: crate::metrics::Unreported::default(),
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
                    sync: SyncState::default(),
                    lease: shared::LeaseState::default(),
                    published: None,
                })),
                fast: FastPath::new(),
                outbox: Outbox::new(),
                #[cfg(feature = "metrics")]
                denials: crate::metrics::Denials::default(),
                config,
            })
            .collect();
        tracker.keys = tracker
            .services
            .iter()
            .map(|slot| NameKey::of(&slot.name))
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
    #[inline]
    pub fn record_call(&self, service: &str, count: u64) -> Result<Recorded<'_>, QuotaError> {
        self.update_named(service, Request::Record(count))
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
        Request::TryRecord {
            count,
            reduced_rate: self.is_reduced_rate(),
            priority,
        }
    }

    /// Whether a normal call to `service` is allowed now, as [`try_record`](Self::try_record)
    /// would decide for one call: below the Critical threshold, below `limit - reserve`, and in
    /// reduced-rate mode below the reduced allowance.
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
        let states = self.read_all(now, true);
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

    /// Saves every count to the store now, resends every operation whose outcome is unknown,
    /// and gives unused leased calls back. `Ok(())` without a store, or once the store has
    /// answered everything.
    ///
    /// While the store fails it tries again, pausing 10 ms doubling to 500 ms, until
    /// [`SyncPolicy::flush_timeout_ms`] (3 s by default) has passed (a try under way runs to
    /// its end, bounded by the store's timeouts; on wasm it tries once), then returns the last
    /// error; each failed try counts as a failed save. What stays unresolved is in
    /// [`stats`](Self::stats) (`unresolved_ops`, `unresolved_calls`) and logged.
    ///
    /// The one call of the tracker that may wait: for a save in flight on another thread and
    /// for those retries, never for an observer. Called from inside this tracker's own save (a
    /// store that calls back), it returns [`StoreError::Reentrant`] instead of waiting for
    /// itself.
    pub fn flush(&self) -> Result<(), StoreError> {
        let Some(persistence) = &self.persistence else {
            return Ok(());
        };
        let mut retry = FlushRetry::new(persistence.policy.flush_timeout_ms);
        loop {
            let result = self
                .save_until(SaveReason::Flush, self.now(), &|| retry.expired())
                .unwrap_or(Ok(()));
            let Err(error) = result else {
                return Ok(());
            };
            if error == StoreError::Reentrant {
                return Err(error);
            }
            // Operations whose outcome is unknown stay queued: resend them for a while (the
            // store may be back in a moment), then report what is left.
            if retry.pause() {
                continue;
            }
            let stats = self.stats();
            if stats.unresolved_ops > 0 {
                quietly(|| {
                    log::warn!(
                        "quota: flush gave up with {} store operations unresolved ({} calls \
                         may be counted wrongly in the store): {error}",
                        stats.unresolved_ops,
                        stats.unresolved_calls
                    )
                });
            }
            return Err(error);
        }
    }

    /// Whether reduced-rate mode is on (the store failed too often in a row).
    pub fn is_reduced_rate(&self) -> bool {
        self.persistence
            .as_ref()
            .is_some_and(Persistence::is_reduced)
    }

    /// Counters of the store activity; all zero without a store. The unresolved operations
    /// include those still queued under the services' locks (not cut into a sync yet, for
    /// instance while an earlier batch's resend keeps failing): one lock acquisition per
    /// service.
    pub fn stats(&self) -> StoreStats {
        let Some(persistence) = &self.persistence else {
            return StoreStats::default();
        };
        let mut stats = persistence.stats();
        // Without shared admission nothing is queued under the services' locks.
        for slot in self.services.iter().filter(|_| SHARED) {
            let guard = slot.lock(true);
            let queued = guard.sync.admits.len() + guard.lease.unanswered.len();
            let calls = guard
                .sync
                .admits
                .iter()
                .map(|held| held.request.count)
                .chain(guard.lease.unanswered.iter().map(|lease| lease.block))
                .chain(guard.sync.give_backs.iter().map(|back| back.unused))
                .fold(0u64, u64::saturating_add);
            stats.unresolved_ops += (queued + guard.sync.give_backs.len()) as u64;
            stats.unresolved_calls = stats.unresolved_calls.saturating_add(calls);
        }
        stats
    }

    /// Sets the metrics' gauges (`quota_used`, `quota_limit`, `quota_remaining`, `quota_level`
    /// of every service, and `quota_reduced_rate`) from one snapshot: call it before each
    /// scrape. Feature `metrics`; see [`describe_metrics`](crate::describe_metrics) for the
    /// full list.
    ///
    /// The gauges are also set when the tracker is built, after each sync with the store, and
    /// for one service when its level changes, but never on the plain recording path, so
    /// between refreshes `quota_used` may lag. Takes every service's lock once (in config
    /// order, like [`snapshot`](Self::snapshot)); the recorder is called after they are
    /// released. Syncs and denials not counted yet (made from inside the recorder) are counted
    /// too. Called back from inside the recorder while this thread reports (a
    /// refresh, or a sync's counts), it does nothing: the report in progress is what it would
    /// emit, and a sync the recorder caused is counted by the next report.
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use quota_core::QuotaTracker;
    ///
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let handle = recorder.handle();
    /// metrics::with_local_recorder(&recorder, || {
    ///     let tracker = QuotaTracker::with_defaults();
    ///     tracker.record_call("finnhub", 12).unwrap();
    ///     tracker.publish_metrics();
    /// });
    /// assert!(handle.render().contains(r#"quota_used{service="finnhub"} 12"#));
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        crate::metrics::report(|| {
            self.unreported.report();
            self.publish_gauges();
        });
    }

    /// [`publish_metrics`](Self::publish_metrics)' gauges, and the denials left for the next
    /// report (made from inside the recorder). Call it inside `metrics::report`.
    #[cfg(feature = "metrics")]
    fn publish_gauges(&self) {
        for slot in self.services.iter() {
            slot.denials.report(&slot.name);
        }
        let states = self.read_all(self.now(), true);
        crate::metrics::publish(
            self.services.iter().zip(&states).map(|(slot, state)| {
                (
                    &slot.name,
                    state.used,
                    slot.rules.limit,
                    slot.rules.level(state.used),
                )
            }),
            self.is_reduced_rate(),
            self.persistence
                .as_ref()
                .map(|_| self.stats().unresolved_calls),
        );
    }

    /// The tracker's own observers, feeding the metrics as transitions and store events are
    /// delivered (outside every lock, in order).
    #[cfg(feature = "metrics")]
    fn subscribe_metrics(&self) {
        self.observers
            .subscribe(Arc::new(crate::metrics::transition));
        self.store_observers
            .subscribe(Arc::new(crate::metrics::store_event));
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
    #[inline]
    fn now(&self) -> u64 {
        match &self.clock {
            TrackerClock::System => SystemClock.now_ms(),
            TrackerClock::Other(clock) => self.guarded_now(&**clock),
        }
    }

    /// Reads a user's clock under a panic guard.
    fn guarded_now(&self, clock: &dyn Clock) -> u64 {
        match catch_unwind(AssertUnwindSafe(|| clock.now_ms())) {
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

    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn position(&self, service: &str) -> Result<usize, QuotaError> {
        match self.find(service) {
            Some(position) => Ok(position),
            None => Err(unknown_service(service)),
        }
    }

    /// A few names are found by their keys (a word compare each, no text compared up to 8
    /// bytes), many through the map.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn find(&self, service: &str) -> Option<usize> {
        if self.keys.len() > LINEAR_LOOKUP_MAX {
            return self.index.get(service).copied();
        }
        let key = NameKey::of(service);
        self.keys.iter().enumerate().find_map(|(position, k)| {
            (*k == key && (key.is_exact() || *self.services[position].name == *service))
                .then_some(position)
        })
    }

    /// One step of one service under its lock (the only lock taken), then, if `deliver`, the
    /// transitions delivered after the lock is released. Inlined, so that the hot path's
    /// step, state and result live in registers rather than being moved through memory.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn step_at(&self, position: usize, now: u64, request: Request, deliver: bool) -> StepResult {
        let (guard, step) = self.lock_and_step(position, now, request);
        self.finish_step(position, guard, step, deliver)
    }

    /// The first half of [`step_at`](Self::step_at): locks the service and steps it (booking
    /// the change for a store); the lock stays held.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn lock_and_step(&self, position: usize, now: u64, request: Request) -> (SlotGuard<'_>, Step) {
        let slot = &self.services[position];
        let mut guard = slot.lock(self.persistence.is_some());
        let old_window = guard.service.window;
        let step = slot.rules.step(&mut guard.service, now, request);
        if step.changed && self.persistence.is_some() {
            let counted = match (request, step.refused) {
                (Request::Record(n) | Request::TryRecord { count: n, .. }, None) => n,
                _ => 0,
            };
            guard.sync.book(old_window, &step, counted);
        }
        (guard, step)
    }

    /// The second half of [`step_at`](Self::step_at): queues the step's transitions under
    /// the lock, releases it, then asks for a sync if the window moved and delivers.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn finish_step(
        &self,
        position: usize,
        guard: SlotGuard<'_>,
        step: Step,
        deliver: bool,
    ) -> StepResult {
        let slot = &self.services[position];
        let (reset, recorded) = self.queue_transitions(slot, &step);
        let state = guard.service;
        drop(guard);
        if step.moved.is_some() {
            if let Some(persistence) = &self.persistence {
                persistence.sync_soon();
            }
        }
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
    #[inline]
    fn queue_transitions(
        &self,
        slot: &ServiceSlot,
        step: &Step,
    ) -> (Option<Transition>, Option<Transition>) {
        if step.reset.is_none() && step.recorded.is_none() {
            return (None, None);
        }
        self.queue_changes(slot, step)
    }

    /// [`queue_transitions`](Self::queue_transitions) when there are some: rare, out of line.
    #[cold]
    #[inline(never)]
    fn queue_changes(
        &self,
        slot: &ServiceSlot,
        step: &Step,
    ) -> (Option<Transition>, Option<Transition>) {
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

    /// [`update`](Self::update) of the service named `service`: the lookup and the update in
    /// one function (one call, one stack frame for `record_call` and `try_record`).
    #[inline(never)]
    fn update_named(&self, service: &str, request: Request) -> Result<Recorded<'_>, QuotaError> {
        match self.find(service) {
            Some(position) => self.update_inline(position, request),
            None => Err(unknown_service(service)),
        }
    }

    /// `record` and `try_record` of a [`Service`] handle.
    #[inline(never)]
    fn update(&self, position: usize, request: Request) -> Result<Recorded<'_>, QuotaError> {
        self.update_inline(position, request)
    }

    /// [`update`](Self::update) answering only the remaining count: its own function, so
    /// that the inlined hot path builds nothing else.
    #[inline(never)]
    fn update_remaining(&self, position: usize, request: Request) -> Result<u64, QuotaError> {
        self.update_as(
            position,
            request,
            |slot, state| slot.rules.limit.saturating_sub(state.used),
            |recorded| recorded.usage.remaining,
        )
    }

    /// `record_call` and `try_record` (by name or by handle) with the whole result.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn update_inline(&self, position: usize, request: Request) -> Result<Recorded<'_>, QuotaError> {
        self.update_as(
            position,
            request,
            |slot, state| Recorded {
                usage: slot.usage(state),
                reset: None,
                recorded: None,
            },
            |recorded| recorded,
        )
    }

    /// The hot path for `Local` admission, answering `quiet(slot, state after)` when the call
    /// changed nothing but the count (the fast path, or the lock with nothing to queue) and
    /// `changed(result)` otherwise. Written so that the step, the state and the answer stay
    /// in registers; shared admission, a window that moves, a level change and every error
    /// are out of line.
    ///
    /// The hot path's helpers are forced inline natively only: on wasm32 (built for size) the
    /// copies would cost more module bytes than the JS boundary would notice.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn update_as<'s, R>(
        &'s self,
        position: usize,
        request: Request,
        quiet: impl FnOnce(&'s ServiceSlot, &ServiceState) -> R,
        changed: impl FnOnce(Recorded<'s>) -> R,
    ) -> Result<R, QuotaError> {
        let slot = &self.services[position];
        let count = match request {
            Request::Record(count) | Request::TryRecord { count, .. } => count,
            Request::Read => 0,
        };
        if count == 0 {
            return Err(slot.invalid_count(count, "count must be at least 1"));
        }
        if SHARED && slot.config.admission != Admission::Local {
            return self.shared_update_as(position, count, request, changed);
        }
        let now = self.now();
        let ask = match request {
            Request::Record(_) => fast_path::Ask::Record,
            Request::TryRecord {
                reduced_rate: false,
                priority,
                ..
            } => {
                if priority {
                    fast_path::Ask::Priority
                } else {
                    fast_path::Ask::Normal
                }
            }
            // Reduced rate (rare) and reads take the lock.
            _ => fast_path::Ask::Lock,
        };
        // A call that changes nothing but the count: one atomic swap, no lock.
        if let Some(counted) = slot.fast.try_count(now, count, ask) {
            self.after_call(now, false);
            return Ok(quiet(slot, &counted.state()));
        }
        self.update_locked(position, request, now, count, quiet, changed)
    }

    /// [`update_as`](Self::update_as) with shared admission: out of line, so that its result
    /// takes no room in the fast path's frame.
    #[inline(never)]
    fn shared_update_as<'s, R>(
        &'s self,
        position: usize,
        count: u64,
        request: Request,
        changed: impl FnOnce(Recorded<'s>) -> R,
    ) -> Result<R, QuotaError> {
        self.shared_update(position, count, request).map(changed)
    }

    /// [`update_as`](Self::update_as) under the service's lock: out of line (natively), so
    /// that the fast path's function stays small (no registers to save for the step).
    #[cfg_attr(not(target_arch = "wasm32"), inline(never))]
    fn update_locked<'s, R>(
        &'s self,
        position: usize,
        request: Request,
        now: u64,
        count: u64,
        quiet: impl FnOnce(&'s ServiceSlot, &ServiceState) -> R,
        changed: impl FnOnce(Recorded<'s>) -> R,
    ) -> Result<R, QuotaError> {
        let slot = &self.services[position];
        let (guard, step) = self.lock_and_step(position, now, request);
        if step.reset.is_some() || step.recorded.is_some() || step.moved.is_some() {
            return self
                .update_changed(position, guard, step, now, count)
                .map(changed);
        }
        // Nothing to queue, deliver or sync soon: what `finish_step` would do is only this.
        let state = guard.service;
        drop(guard);
        self.after_call(now, false);
        match step.refused {
            Some(refusal) => Err(slot.refused(refusal, count)),
            None => Ok(quiet(slot, &state)),
        }
    }

    /// The end of [`update`](Self::update) when the level changed or the window moved.
    #[cold]
    #[inline(never)]
    fn update_changed(
        &self,
        position: usize,
        guard: SlotGuard<'_>,
        step: Step,
        now: u64,
        count: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        let StepResult {
            step,
            state,
            reset,
            recorded,
        } = self.finish_step(position, guard, step, true);
        self.after_call(now, step.entered_critical());
        match step.refused {
            Some(refusal) => Err(slot.refused(refusal, count)),
            None => Ok(Recorded {
                usage: slot.usage(&state),
                reset,
                recorded,
            }),
        }
    }

    /// [`update`](Self::update) of a service with `Exact` or `Leased` admission.
    #[inline(never)]
    fn shared_update(
        &self,
        position: usize,
        count: u64,
        request: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        let ask = match request {
            Request::TryRecord { priority: true, .. } => shared::Ask::Priority,
            Request::TryRecord { .. } => shared::Ask::Normal,
            _ => shared::Ask::Force,
        };
        match self.services[position].config.admission {
            Admission::Exact => self.exact_update(position, count, ask),
            Admission::Leased { block } => self.leased_update(position, count, ask, block),
            Admission::Local => unreachable!("update handles Local admission"),
        }
    }

    fn can_call_at(&self, position: usize) -> bool {
        match self.services[position].config.admission {
            _ if !SHARED => {}
            Admission::Local => {}
            Admission::Exact => return self.exact_can_call(position),
            Admission::Leased { block } => return self.leased_can_call(position, block),
        }
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
    /// lock order); roll-over transitions are delivered after if `deliver`.
    fn read_all(&self, now: u64, deliver: bool) -> Vec<ServiceState> {
        let mut guards: Vec<SlotGuard<'_>> = self
            .services
            .iter()
            .map(|slot| slot.lock(self.persistence.is_some()))
            .collect();
        let (states, moved) = self.read_locked(&mut guards, now, &mut |_, _| {});
        drop(guards);
        // As after any call that moves a window: the store may hold other instances' calls
        // in the new one. (A sync's own read, in `cut`, reads the new windows anyway.)
        if moved {
            if let Some(persistence) = &self.persistence {
                persistence.sync_soon();
            }
        }
        if deliver {
            self.pump(&(0..self.services.len()).collect::<Vec<_>>());
        }
        states
    }

    /// Steps every service (all locked) to `now`, then lets `also` look at each; whether a
    /// window moved.
    fn read_locked(
        &self,
        guards: &mut [SlotGuard<'_>],
        now: u64,
        also: &mut dyn FnMut(&ServiceSlot, &mut SlotState),
    ) -> (Vec<ServiceState>, bool) {
        let shared = self.persistence.is_some();
        let mut states = Vec::with_capacity(guards.len());
        let mut moved = false;
        for (slot, guard) in self.services.iter().zip(guards.iter_mut()) {
            let old_window = guard.service.window;
            let step = slot.rules.step(&mut guard.service, now, Request::Read);
            if shared && step.changed {
                guard.sync.book(old_window, &step, 0);
            }
            moved |= step.moved.is_some();
            self.queue_transitions(slot, &step);
            also(slot, guard);
            states.push(guard.service);
        }
        (states, moved)
    }

    fn pump(&self, positions: &[usize]) {
        for &position in positions {
            self.services[position]
                .outbox
                .pump(&self.observers, describe_transition);
        }
    }

    /// Syncs with the store if there is one; `None` if there is none or the sync coalesced
    /// into one in flight. Runs with no service lock held; observers run only after the save
    /// lock is released.
    fn save(&self, reason: SaveReason, now: u64) -> Option<Result<(), StoreError>> {
        self.save_until(reason, now, &|| false)
    }

    /// [`save`](Self::save); a flush that waited for the lock while another sync ran takes that
    /// sync's outcome once `out_of_time` says its time is up.
    fn save_until(
        &self,
        reason: SaveReason,
        now: u64,
        out_of_time: &dyn Fn() -> bool,
    ) -> Option<Result<(), StoreError>> {
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
                |instance| self.cut(instance, now, reason == SaveReason::Flush),
                |batch, totals| self.take_totals(batch, totals, now),
                // Late answers come only with shared admission (not in the JS module).
                |late| match SHARED {
                    true => self.settle(late),
                    false => Settled::Nothing,
                },
                out_of_time,
            )
        };
        // The save lock is released: deliver what the sync queued (its reads, replies, and
        // calls its store made), then its events; unless this is a sync nested in one of this
        // tracker's own, which delivers it all when it ends.
        if !SavingGuard::is_saving(self) {
            self.pump(&(0..self.services.len()).collect::<Vec<_>>());
            persistence
                .events
                .pump(&self.store_observers, describe_store_event);
            // Every lock is released. The load's view is published when the build ends. A
            // save made from inside a report (a recorder calling back) is reported by the next.
            #[cfg(feature = "metrics")]
            if let Some(outcome) = &outcome {
                self.unreported.add(outcome.synced, outcome.failed);
                crate::metrics::report(|| {
                    self.unreported.report();
                    if reason != SaveReason::Load {
                        self.publish_gauges();
                    }
                });
            }
        }
        outcome.map(|outcome| outcome.result)
    }

    /// A new batch under all service locks: each service's ended windows' calls and its
    /// current window's unacknowledged calls, which become the batch's `cut`; it reads every
    /// current window.
    fn cut(&self, instance: InstanceId, now: u64, return_leases: bool) -> Cut {
        let mut deltas = Vec::new();
        let mut raises = Vec::new();
        let mut give_backs = Vec::new();
        let mut admits = Vec::new();
        let mut leases = Vec::new();
        let mut read = Vec::with_capacity(self.services.len());
        let mut guards: Vec<SlotGuard<'_>> = self
            .services
            .iter()
            .map(|slot| slot.lock(self.persistence.is_some()))
            .collect();
        self.read_locked(&mut guards, now, &mut |slot, guard| {
            let key = |window: Window| WindowKey {
                service: slot.config.name.clone(),
                period: slot.rules.period,
                start_ms: window.start_ms,
                end_ms: window.reset_at_ms,
            };
            if SHARED {
                give_backs.append(&mut guard.sync.give_backs);
                admits.append(&mut guard.sync.admits);
                leases.append(&mut guard.lease.unanswered);
            }
            if SHARED && return_leases {
                let (back, step) = guard.give_lease_back(slot, self, now);
                give_backs.extend(back);
                self.queue_transitions(slot, &step);
            }
            for (window, calls) in guard.sync.ended.drain(..) {
                deltas.push(Delta {
                    window: key(window),
                    calls,
                });
            }
            let raised = guard.sync.raise;
            for (window, at_least) in guard.sync.ended_raises.drain(..).chain(raised) {
                raises.push(Raise {
                    window: key(window),
                    at_least,
                });
            }
            let window = guard.service.window;
            let sync = &mut guard.sync;
            if sync.unacked > 0 {
                deltas.push(Delta {
                    window: key(window),
                    calls: sync.unacked,
                });
            }
            sync.cut = sync.unacked;
            sync.cut_window = Some(window);
            read.push(key(window));
        });
        let mut batch = SyncBatch {
            instance,
            seq: 0,
            done_below: 0,
            at_ms: now,
            deltas,
            read,
            raises,
        };
        if batch.changes() {
            (batch.seq, batch.done_below) = self.issue();
        }
        Cut {
            batch,
            give_backs,
            admits,
            leases,
        }
    }

    /// A late answer a sync learned: releases the calls booked for it; calls the store applied
    /// or granted that the caller never got are given back (the store forfeits them if a raise
    /// was applied to their window since: see [`GiveBack::raise_count`]).
    fn settle(&self, late: Late<'_>) -> Settled {
        let (window, booked, calls, raise_count) = match late {
            Late::Admit { request, admitted } => (
                &request.window,
                request.count,
                admitted.map_or(0, |_| request.count),
                admitted.unwrap_or(0),
            ),
            Late::Lease {
                request,
                granted,
                raise_count,
            } => (&request.window, request.block, granted, raise_count),
        };
        if let Some(position) = self.find(&window.service) {
            let mut guard = self.services[position].lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(booked);
        }
        match calls {
            0 => Settled::Nothing,
            calls => Settled::GiveBack(self.give_back_of(window.clone(), calls, raise_count)),
        }
    }

    /// Takes in a reply: per service, the batch's cut is acknowledged, and `used` rises to the
    /// stored total plus what was recorded since the cut.
    fn take_totals(&self, batch: &SyncBatch, totals: &[u64], now: u64) {
        for (read, &total) in batch.read.iter().zip(totals) {
            let Ok(position) = self.position(&read.service) else {
                continue;
            };
            let slot = &self.services[position];
            let mut guard = slot.lock(self.persistence.is_some());
            let window = guard.service.window;
            let sync = &mut guard.sync;
            if sync.cut_window.is_some_and(|w| w.start_ms == read.start_ms) {
                sync.unacked = sync.unacked.saturating_sub(sync.cut);
            }
            // The floor is in the store once a reply acknowledges the value it holds now (no
            // call counted since the batch was cut), and no call asked of the store meanwhile
            // is still unanswered (the store may have added it before the floor, which then
            // absorbed it: the floor goes again with it on top).
            if let Some((raised, floor)) = sync.raise.filter(|_| sync.floor_asked == 0) {
                let acknowledged = batch.raises.iter().any(|r| {
                    r.window.service == read.service
                        && r.window.start_ms == raised.start_ms
                        && r.at_least == floor
                });
                if acknowledged {
                    sync.raise = None;
                }
            }
            sync.cut = 0;
            sync.cut_window = None;
            if window.start_ms == read.start_ms {
                let unacked = sync.unacked;
                let step =
                    slot.rules
                        .observe(&mut guard.service, total.saturating_add(unacked), now);
                self.queue_transitions(slot, &step);
            }
        }
    }

    /// [`raise_used`](Self::raise_used) of the service at `position`: one step under its lock.
    fn raise_at(
        &self,
        position: usize,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> Result<Raised<'_>, QuotaError> {
        let slot = &self.services[position];
        if at_least > StoredState::MAX_TOTAL {
            return Err(slot.invalid_count(at_least, "a raise is at most 2^62 calls"));
        }
        let now = self.now();
        let mut guard = slot.lock(self.persistence.is_some());
        let old_window = guard.service.window;
        let (step, rose) = slot
            .rules
            .raise(&mut guard.service, now, at_least, resets_at_ms);
        if self.persistence.is_some() {
            if step.changed {
                guard.sync.book(old_window, &step, 0);
            }
            if rose == Some(true) {
                // The floor to sync: `used` now (the calls counted since add to it).
                guard.sync.raise = Some((guard.service.window, guard.service.used));
                // A leased block in hand is forfeited, not spent (the provider's count says
                // less is left than the block assumed) and not given back (a give-back
                // subtracts, and could take the stored total below the floor). The store
                // keeps counting its calls: an under-admission, never an over-admission.
                guard.lease.left = 0;
                // Shared admission asks the store, which needs the floor soon: sync with the
                // next call.
                if slot.config.admission != Admission::Local {
                    if let Some(persistence) = &self.persistence {
                        persistence.sync_soon();
                    }
                }
            }
        }
        let StepResult {
            step,
            state,
            reset,
            recorded,
        } = self.finish_step(position, guard, step, true);
        self.after_call(now, step.entered_critical());
        Ok(Raised {
            usage: slot.usage(&state),
            applied: rose.is_some(),
            reset,
            recorded,
        })
    }

    /// After a recording call: save if one is due, or at once on entering Critical.
    #[inline]
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
    /// Takes the service's lock, the only way to it: the calls the fast path counted since
    /// the lock was last released go into the state first (and, with a store, `booking`,
    /// into what the store has not acknowledged yet), as if each had taken the lock.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    fn lock(&self, booking: bool) -> SlotGuard<'_> {
        let mut guard = self.state.lock();
        let (taken, counted) = self.fast.take(guard.published);
        if counted > 0 {
            Self::absorb(&mut guard, counted, booking);
        }
        SlotGuard {
            guard,
            slot: self,
            taken,
        }
    }

    /// Adds `counted` fast calls (all in the current window, at the same level) to `state`.
    #[inline(never)]
    fn absorb(state: &mut SlotState, counted: u64, booking: bool) {
        state.service.used = state.service.used.saturating_add(counted);
        state.service.total = state.service.total.saturating_add(counted);
        if booking {
            let window = state.service.window;
            state.sync.book(window, &Step::default(), counted);
        }
    }

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

    #[inline]
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

    /// The error of a refused step.
    #[cold]
    #[inline(never)]
    fn refused(&self, refusal: Refusal, count: u64) -> QuotaError {
        match refusal {
            Refusal::Overflow => self.invalid_count(count, "the counter would overflow"),
            Refusal::Denied { used, reason } => self.denied(count, used, reason),
        }
    }

    /// The error of a denied call (with feature `metrics`, counted). Call it with no lock held.
    #[cold]
    fn denied(&self, count: u64, used: u64, reason: DenyReason) -> QuotaError {
        #[cfg(feature = "metrics")]
        self.denials.deny(&self.name, reason);
        QuotaError::Denied {
            service: Arc::clone(&self.name),
            count,
            used,
            limit: self.rules.limit,
            reason,
        }
    }

    #[cold]
    fn invalid_count(&self, count: u64, reason: &'static str) -> QuotaError {
        QuotaError::InvalidCount {
            service: Arc::clone(&self.name),
            count,
            reason,
        }
    }
}

/// How long `flush` keeps resending: pauses doubling from 10 ms to 500 ms until
/// `flush_timeout_ms` has passed (native; on wasm and under loom it never waits).
struct FlushRetry {
    #[cfg(not(any(target_arch = "wasm32", loom)))]
    until: std::time::Instant,
    #[cfg(not(any(target_arch = "wasm32", loom)))]
    pause: std::time::Duration,
}

impl FlushRetry {
    fn new(timeout_ms: u64) -> Self {
        let _ = timeout_ms;
        FlushRetry {
            #[cfg(not(any(target_arch = "wasm32", loom)))]
            // At most a day: a larger setting must not overflow the instant.
            until: std::time::Instant::now()
                + std::time::Duration::from_millis(timeout_ms.min(86_400_000)),
            #[cfg(not(any(target_arch = "wasm32", loom)))]
            pause: std::time::Duration::from_millis(10),
        }
    }

    /// Whether time is up (never on wasm or under loom, where a flush tries once).
    fn expired(&self) -> bool {
        #[cfg(not(any(target_arch = "wasm32", loom)))]
        {
            std::time::Instant::now() >= self.until
        }
        #[cfg(any(target_arch = "wasm32", loom))]
        {
            false
        }
    }

    /// Waits before the next try; `false` when time is up.
    fn pause(&mut self) -> bool {
        #[cfg(not(any(target_arch = "wasm32", loom)))]
        {
            let left = self
                .until
                .saturating_duration_since(std::time::Instant::now());
            if !left.is_zero() {
                std::thread::sleep(self.pause.min(left));
                self.pause = (self.pause * 2).min(std::time::Duration::from_millis(500));
                return true;
            }
        }
        false
    }
}

/// A tracker with a store flushes when dropped (native builds): it syncs what it recorded,
/// resends what is unresolved and gives leased calls back, retrying for up to
/// [`SyncPolicy::flush_timeout_ms`] while the store fails (so a drop may take that long); a
/// failure is logged. On wasm the page decides when to `flush`.
#[cfg(not(target_arch = "wasm32"))]
impl Drop for QuotaTracker {
    fn drop(&mut self) {
        // `flush` resends for at most `SyncPolicy::flush_timeout_ms` and logs what it leaves.
        if let Err(error) = self.flush() {
            quietly(|| log::warn!("quota: the last sync before drop failed: {error}"));
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

#[cfg(all(test, not(loom)))]
mod lookup_tests {
    use super::{NameKey, QuotaTracker};
    use crate::{ManualClock, Period, ServiceConfig, TrackerConfig};

    fn tracker(names: &[&str]) -> QuotaTracker {
        let config = TrackerConfig::new(
            names
                .iter()
                .map(|name| ServiceConfig::new(*name, 100, Period::Day)),
        );
        QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000)).unwrap()
    }

    #[test]
    fn keys_are_exact_up_to_eight_bytes() {
        let names = [
            "", "a", "b", "ab", "ba", "aa", "abc", "acc", "abb", "a\0", "a\0\0", "abcd", "abce",
            "abcde", "abcdf", "bbcde", "aaaabbbb", "bbbbaaaa", "abcdefgh", "abcdefgg",
        ];
        for a in names {
            for b in names {
                assert_eq!(NameKey::of(a) == NameKey::of(b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn lookups_find_exactly_the_configured_names() {
        // Names that share keys beyond 8 bytes, or whole halves below it.
        let sets: [&[&str]; 4] = [
            &["aaaabbbb", "bbbbaaaa", "llm", "mail"],
            &["service_01", "service_10", "service_1_", "service_0"],
            &[
                "ab",
                "ba",
                "aba",
                "abba",
                "abcdefghijklmnop",
                "abcdefghXjklmnop",
            ],
            &[
                "x",
                "xx",
                "xxx",
                "xxxx",
                "xxxxx",
                "xxxxxxxx",
                "xxxxxxxxx",
                "y",
            ],
        ];
        let absent = [
            "",
            "aaaabbba",
            "bbbb",
            "service_11",
            "ab ",
            "abcdefghijklmnoq",
            "xxxxxx",
            "z",
            "abcdefghYjklmnop",
        ];
        for names in sets {
            let tracker = tracker(names);
            for (position, name) in names.iter().enumerate() {
                assert_eq!(tracker.find(name), Some(position), "{name:?} in {names:?}");
                tracker.record_call(name, position as u64 + 1).unwrap();
            }
            for (position, name) in names.iter().enumerate() {
                assert_eq!(tracker.usage(name).unwrap().used, position as u64 + 1);
            }
            for name in absent {
                assert_eq!(tracker.find(name), None, "{name:?} in {names:?}");
                assert!(tracker.record_call(name, 1).is_err());
            }
        }
    }

    #[test]
    fn random_names_are_found_by_key_as_by_comparing() {
        // Short names over a tiny alphabet collide as often as names can.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let alphabet = ['a', 'b', '\0'];
        let name = |next: &mut dyn FnMut(u64) -> u64| {
            let len = next(12) as usize;
            (0..len)
                .map(|_| alphabet[next(3) as usize])
                .collect::<String>()
        };
        for _ in 0..300 {
            let mut names: Vec<String> = Vec::new();
            while names.len() < 8 {
                let candidate = name(&mut next);
                if !candidate.is_empty() && !names.contains(&candidate) {
                    names.push(candidate);
                }
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let tracker = tracker(&refs);
            for _ in 0..50 {
                let query = name(&mut next);
                let expected = names.iter().position(|n| *n == query);
                assert_eq!(tracker.find(&query), expected, "{query:?} in {names:?}");
            }
            for (position, n) in names.iter().enumerate() {
                assert_eq!(tracker.find(n), Some(position));
            }
        }
    }
}
