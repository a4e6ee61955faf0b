//! The tracker as a JavaScript class (feature `js`), built into an ES module with TypeScript
//! types by `cargo xtask pkg`.
//!
//! ```js
//! import init, { QuotaTracker } from "quota-core";
//! await init();
//! const tracker = new QuotaTracker({
//!   services: [{ name: "search", limit: 100, period: "minute", warnThreshold: 0.7 }],
//! });
//! tracker.onTransition((t) => console.log(`${t.service}: ${t.from} -> ${t.to}`));
//! const { usage, transition } = tracker.recordCall("search", 70); // logs "search: normal -> warning"
//! usage.remaining; // 30
//! tracker.tryRecord("search", 40).allowed; // false: nothing recorded
//!
//! // A lean handle for hot loops: one number back, no objects.
//! const search = tracker.service("search");
//! search.record(); // 29: the remaining count
//! search.tryRecord(40); // -1: denied, nothing recorded
//!
//! // Counts that survive reloads: restored from localStorage["my-app"], saved there by later
//! // calls once a minute (syncIntervalMs) or at once on entering critical, and by flush().
//! const saved = new QuotaTracker({ services: [/* ... */], storage: { key: "my-app" } });
//! saved.flush(); // throws an Error with the store's message if the save fails
//! saved.stats().lastError; // null, or why the last load or save failed
//! ```
//!
//! The class wraps one [`QuotaTracker`] on the JS clock (`Date.now()`). Inputs are checked at
//! the boundary (module `input`): every bad one throws an `Error` naming the problem and changes
//! nothing. Results are plain objects (module `shapes`); the TypeScript declarations below
//! describe them. `service(name)` hands out a lean `Service` handle (module `service`) whose
//! calls skip the wasm-bindgen glue.
//!
//! With `storage`, the tracker persists through a
//! [`LocalStorageStore`](crate::LocalStorageStore). Where there is no `localStorage` at all
//! (Node) the constructor throws: a store that cannot exist is a configuration error, not a
//! string of failed saves. A store that exists but fails never stops a tracker:
//! `stats().lastError` says why.
//!
//! JS callbacks are not `Send + Sync`, so they cannot be the tracker's observers. Instead one
//! Rust observer queues every transition, and each method delivers the queue to the JS
//! callbacks after the tracker returned, outside every lock.

mod input;
mod names;
mod service;
mod shapes;

use crate::clock::Clock;
use crate::error::QuotaError;
use crate::persistence::SyncPolicy;
use crate::service::TrackerConfig;
use crate::store::Store;
use crate::tracker::QuotaTracker;
use crate::usage::Transition;
use js_sys::{Array, Error, Function};
use names::{Found, Names};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A window length; windows align to UTC calendar boundaries. */
export type Period = "minute" | "hour" | "day" | "month";

/** How close a service is to its limit. */
export type Level = "normal" | "warning" | "critical" | "exhausted";

/** One rate-limited service. Thresholds are fractions of the limit. */
export interface ServiceConfig {
  /** Unique, non-empty name that calls are recorded under. */
  name: string;
  /** Calls allowed per window: a positive integer. */
  limit: number;
  period: Period;
  /** Warning from this fraction of the limit, in (0, 1]; default 0.5. */
  warnThreshold?: number;
  /** Critical from this fraction of the limit, in (0, 1]; default 0.8. */
  criticalThreshold?: number;
  /** Fraction of the limit held back for `tryRecordPriority`, in [0, 1); default 0.1. */
  reserveFraction?: number;
}

/**
 * Where a tracker persists its counts: `localStorage[key]`. A new tracker on the same key
 * continues from the last save. Saves are made by the calls themselves (no timer): once
 * `syncIntervalMs` has passed since the last save, at once when a service enters critical, and
 * on `flush()`. Where there is no `localStorage` (Node) the constructor throws an Error.
 */
export interface StorageOptions {
  /** The localStorage key: a non-empty string. */
  key: string;
  /** Save when this many ms have passed since the last save: a whole number >= 0; default 60000. */
  syncIntervalMs?: number;
  /**
   * `true`: the constructor throws an Error with the store's message when the first read of
   * `localStorage[key]` fails (corrupt data, a `getItem` that throws). Default `false`: the
   * tracker starts from zero and `stats().lastError` says why.
   */
  required?: boolean;
}

/** The services a tracker counts, in display order, and optionally where to persist them. */
export interface TrackerConfig {
  services: ServiceConfig[];
  storage?: StorageOptions;
}

/** Counters of a tracker's store activity (all zero, `lastError` null, without `storage`). */
export interface StoreStats {
  /** Loads attempted: one at construction, and retries before a save while loading fails. */
  loads: number;
  /** Loads that failed or found corrupt data (the tracker then started fresh). */
  loadFailures: number;
  /** Successful saves. */
  saves: number;
  /** Failed saves (a failed flush counts too). */
  saveFailures: number;
  /** Saves made at once because a service entered critical. */
  forcedSaves: number;
  /** Save triggers that found a save already running and folded into it. */
  coalescedSaves: number;
  /** The most recent load or save error, or null if there was none. */
  lastError: string | null;
  /** Failed saves since the last success. */
  consecutiveFailures: number;
  /** Successful saves since the last failure. */
  consecutiveSuccesses: number;
  /** Whether reduced-rate mode is on (see `isReducedRate`). */
  reducedRate: boolean;
}

/** One service's usage in its current window. Times are ms since the Unix epoch. */
export interface ServiceUsage {
  name: string;
  used: number;
  limit: number;
  remaining: number;
  period: Period;
  level: Level;
  percentUsed: number;
  windowStartMs: number;
  resetAtMs: number;
}

/** A change of one service's level. */
export interface Transition {
  service: string;
  from: Level;
  to: Level;
  used: number;
  limit: number;
  atMs: number;
}

/** What `recordCall` returns; `transition` is the level change this call made, if any. */
export interface RecordResult {
  usage: ServiceUsage;
  transition: Transition | null;
}

/**
 * Which admission rule refused a call: `"critical"` (normal calls stop at the Critical level),
 * `"reserve"` (normal calls leave the reserve to priority calls), `"limit"` (past the limit,
 * priority calls too), `"reducedRate"` (the store failed too often: the reduced allowance caps
 * priority calls too), `"storeUnavailable"` (shared admission could not reach the store).
 */
export type DenyReason = "critical" | "reserve" | "limit" | "reducedRate" | "storeUnavailable";

/** What `tryRecord` and `tryRecordPriority` return: recorded, or refused with nothing recorded. */
export type TryRecordResult =
  | { allowed: true; usage: ServiceUsage; transition: Transition | null }
  | { allowed: false; usage: ServiceUsage; reason: DenyReason };

/** Every service's usage at one instant. */
export interface Snapshot {
  services: ServiceUsage[];
  totalUsed: number;
  atMs: number;
}

/** Called once per level change. */
export type TransitionCallback = (transition: Transition) => void;

/**
 * A lean handle on one service, from `tracker.service(name)`, for hot loops: `record` and
 * `tryRecord` return only the remaining count and build no objects. The counts, levels,
 * callbacks and storage are the tracker's: a call here is a call there.
 */
export interface Service {
  /** The service's name. */
  readonly name: string;
  /**
   * Records `count` calls (default 1) and returns the remaining count, `max(limit - used, 0)`.
   * It always records, as `recordCall` does. Throws an Error if `count` is not a whole number
   * from 1 to `Number.MAX_SAFE_INTEGER`.
   */
  record(count?: number): number;
  /**
   * Records `count` calls (default 1) only if they are allowed, as `tryRecord` decides, and
   * returns the remaining count after; `-1` when denied (nothing recorded). Throws as `record`.
   */
  tryRecord(count?: number): number;
  /**
   * As `tryRecord`, under priority admission (`tryRecordPriority`): may use the reserve, up
   * to the limit. Returns the remaining count after, or `-1` when denied.
   */
  tryRecordPriority(count?: number): number;
  /** Whether a call is allowed now, as `canCall(name)`. */
  canCall(): boolean;
  /** The service's usage now, as `usage(name)`. */
  usage(): ServiceUsage;
  /** Lets go of the tracker now rather than when this handle is garbage-collected; any later call throws. */
  free(): void;
}
"#;

#[wasm_bindgen(module = "/src/js/shapes.js")]
extern "C" {
    /// `console.error` that callback `id` threw `error` on `transition` (a JS transition).
    #[wasm_bindgen(js_name = reportThrow)]
    fn report_throw(id: u32, transition: &JsValue, error: &JsValue);
}

/// Counts calls per service against their quotas, on the JS clock (`Date.now()`).
///
/// Every method that is given a bad argument throws an `Error` whose message names the problem,
/// and changes nothing.
#[wasm_bindgen(js_name = QuotaTracker)]
pub struct JsQuotaTracker {
    /// Shared with the lean [`Service`](service) handles, which outlive this object if JS keeps
    /// them.
    inner: Rc<Inner>,
}

/// What a JS `QuotaTracker` and its `Service` handles share.
struct Inner {
    tracker: QuotaTracker,
    names: Names,
    /// The time a lean call read in JS, for the tracker's clock while that call runs.
    clock: JsClock,
    /// Transitions the tracker reported and the JS callbacks have not seen yet. Filled by a
    /// `Send + Sync` observer, hence the `Mutex` (`std`'s: this state is not part of the
    /// loom-checked tracker).
    pending: Arc<Pending>,
    callbacks: RefCell<Vec<(u32, Function)>>,
    next_id: Cell<u32>,
    /// Set while delivering: a call made from inside a callback leaves its transitions to the
    /// delivery already running, so each service's transitions arrive in order.
    delivering: Cell<bool>,
}

#[wasm_bindgen(js_class = QuotaTracker)]
impl JsQuotaTracker {
    /// A tracker of `config`'s services: `{ services: [{ name, limit, period, warnThreshold?,
    /// criticalThreshold?, reserveFraction? }], storage?: { key, syncIntervalMs?, required? } }`. Throws
    /// on a missing or invalid config and on unknown fields (to catch typos).
    ///
    /// With `storage`, counts are restored from `localStorage[key]` and saved there. Where
    /// there is no `localStorage` at all (Node) this throws: a store that cannot exist is a
    /// configuration error. A store that fails to load (corrupt data, a failing `getItem`)
    /// throws only with `required: true`; otherwise the tracker starts fresh and
    /// `stats().lastError` says why.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "TrackerConfig")] config: &JsValue,
    ) -> Result<JsQuotaTracker, Error> {
        let input::Config { tracker, storage } = input::config(config)?;
        let names = service_names(&tracker);
        let clock = JsClock::default();
        let mut builder = QuotaTracker::builder(tracker).clock(clock.clone());
        if let Some(storage) = storage {
            builder = builder
                .boxed_store(local_storage(storage.key)?)
                .sync_policy(SyncPolicy {
                    interval_ms: storage.sync_interval_ms,
                    ..SyncPolicy::default()
                });
            if storage.required {
                builder = builder.require_store();
            }
        }
        let tracker = builder.build().map_err(|error| match error {
            QuotaError::Store(error) => Error::new(&format!(
                "storage: could not read localStorage (storage.required is true): {error}"
            )),
            error => input::error(error),
        })?;
        Ok(Self::wrap(tracker, names, clock))
    }

    /// A tracker of the default services: tiingo 500 per month, finnhub 60 per minute,
    /// sendgrid 100 per day.
    #[wasm_bindgen(js_name = withDefaults)]
    pub fn with_defaults() -> JsQuotaTracker {
        let config = TrackerConfig::defaults();
        let names = service_names(&config);
        let clock = JsClock::default();
        let tracker = QuotaTracker::builder(config).clock(clock.clone()).build();
        match tracker {
            Ok(tracker) => Self::wrap(tracker, names, clock),
            Err(error) => unreachable!("the default config is valid: {error}"),
        }
    }

    /// Records `count` calls (default 1) to `service` and returns `{ usage, transition }`:
    /// the usage right after, and the level change this call made or `null`. It always
    /// records: `used` may pass the limit.
    #[wasm_bindgen(js_name = recordCall, unchecked_return_type = "RecordResult")]
    pub fn record_call(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] count: &JsValue,
    ) -> Result<JsValue, Error> {
        let inner = &*self.inner;
        let (found, count, now) = inner.names.find_call(service, count)?;
        let recorded = inner.clock.at(now, || {
            inner
                .handle(&found)
                .and_then(|service| service.record(count))
        });
        let recorded = inner.delivered(recorded)?;
        Ok(shapes::recorded(
            service,
            &recorded.usage,
            recorded.transition(),
        ))
    }

    /// Records `count` calls (default 1) only if normal admission allows them: `used + count`
    /// stays at or below the critical threshold and at or below `limit - reserve` (the reserve
    /// is held back for `tryRecordPriority`), and within the reduced allowance while the store
    /// fails. Returns `{ allowed: true, usage, transition }`, or `{ allowed: false, usage,
    /// reason }` with nothing recorded (`reason`: which rule refused, a `DenyReason`).
    #[wasm_bindgen(js_name = tryRecord, unchecked_return_type = "TryRecordResult")]
    pub fn try_record(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] count: &JsValue,
    ) -> Result<JsValue, Error> {
        self.admit(service, count, false)
    }

    /// Records `count` calls (default 1) only if priority admission allows them: `used +
    /// count` stays at or below the limit (past the critical level, into the reserve); the
    /// reduced allowance still caps it while the store fails. Returns what `tryRecord` does.
    #[wasm_bindgen(js_name = tryRecordPriority, unchecked_return_type = "TryRecordResult")]
    pub fn try_record_priority(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] count: &JsValue,
    ) -> Result<JsValue, Error> {
        self.admit(service, count, true)
    }

    /// A lean handle on `service` for hot loops: `record(count = 1)` returns only the
    /// remaining count, `tryRecord(count = 1)` the remaining count or `-1` when denied. Its
    /// counts and callbacks are this tracker's.
    #[wasm_bindgen(unchecked_return_type = "Service")]
    pub fn service(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
    ) -> Result<JsValue, Error> {
        let found = self.inner.names.find(service)?;
        let position = self.inner.position(&found).map_err(input::error)?;
        Ok(service::handle(&self.inner, position))
    }

    /// Whether a normal call to `service` is allowed now, as `tryRecord` would decide for one
    /// call: below the critical threshold, below `limit - reserve`, and within the reduced
    /// allowance while the store fails.
    #[wasm_bindgen(js_name = canCall)]
    pub fn can_call(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
    ) -> Result<bool, Error> {
        let inner = &*self.inner;
        let (found, _, now) = inner.names.find_call(service, &JsValue::UNDEFINED)?;
        let allowed = inner.clock.at(now, || {
            inner.handle(&found).map(|service| service.can_call())
        });
        inner.delivered(allowed)
    }

    /// The calls held back as a reserve: `floor(limit x reserveFraction)`.
    #[wasm_bindgen(js_name = reserveAllocation)]
    pub fn reserve_allocation(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
    ) -> Result<f64, Error> {
        let found = self.inner.names.find(service)?;
        let reserve = self
            .inner
            .handle(&found)
            .map(|service| service.reserve_allocation());
        Ok(self.inner.delivered(reserve)? as f64)
    }

    /// `service`'s usage now: `{ name, used, limit, remaining, period, level, percentUsed,
    /// windowStartMs, resetAtMs }`.
    #[wasm_bindgen(unchecked_return_type = "ServiceUsage")]
    pub fn usage(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
    ) -> Result<JsValue, Error> {
        let inner = &*self.inner;
        let (found, _, now) = inner.names.find_call(service, &JsValue::UNDEFINED)?;
        let usage = inner
            .clock
            .at(now, || inner.handle(&found).map(|handle| handle.usage()));
        let usage = inner.delivered(usage)?;
        Ok(shapes::usage(service, &usage))
    }

    /// Every service's usage at one instant, in config order: `{ services, totalUsed, atMs }`.
    #[wasm_bindgen(unchecked_return_type = "Snapshot")]
    pub fn snapshot(&self) -> JsValue {
        let inner = &*self.inner;
        let snapshot = inner.tracker.snapshot();
        inner.deliver();
        let services: Array = snapshot
            .services()
            .iter()
            .enumerate()
            .map(|(position, usage)| shapes::usage(inner.names.js(position), usage))
            .collect();
        shapes::snapshot(
            &services,
            snapshot.total_used() as f64,
            snapshot.at_ms() as f64,
        )
    }

    /// Calls `callback(transition)` once for every level change from now on, after the call
    /// that caused it has updated the tracker and before it returns. Returns an id for
    /// `offTransition`. A callback that throws is reported with `console.error`; the tracker
    /// and the other callbacks carry on. The tracker holds the callback until `offTransition`
    /// or `free()`: one that refers to this tracker keeps it alive until then (the garbage
    /// collector does not see the cycle through the `.wasm`).
    #[wasm_bindgen(js_name = onTransition)]
    pub fn on_transition(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TransitionCallback")] callback: &JsValue,
    ) -> Result<u32, Error> {
        let callback = input::callback(callback)?;
        let id = self.inner.next_id.get();
        self.inner.next_id.set(id + 1);
        self.inner.callbacks.borrow_mut().push((id, callback));
        Ok(id)
    }

    /// Saves every count to the store now (waiting for a save in progress). Throws an `Error`
    /// with the store's message if the save fails; a failed flush counts as a failed save
    /// (`stats().saveFailures`, reduced-rate mode). Does nothing without `storage`.
    pub fn flush(&self) -> Result<(), Error> {
        let result = self.inner.tracker.flush();
        // A flush may first take in counts that an earlier failed load missed.
        self.inner.deliver();
        result.map_err(|error| Error::new(&error.to_string()))
    }

    /// Whether reduced-rate mode is on: after 3 failed saves in a row, `canCall` and
    /// `tryRecord` allow a service only while `used < floor(limit x 0.25)`, until 5 saves in a
    /// row succeed. Always `false` without `storage`.
    #[wasm_bindgen(js_name = isReducedRate)]
    pub fn is_reduced_rate(&self) -> bool {
        self.inner.tracker.is_reduced_rate()
    }

    /// Counters of the store activity: `{ loads, loadFailures, saves, saveFailures,
    /// forcedSaves, coalescedSaves, lastError, consecutiveFailures, consecutiveSuccesses,
    /// reducedRate }`; `lastError` is a string or `null`.
    #[wasm_bindgen(unchecked_return_type = "StoreStats")]
    pub fn stats(&self) -> JsValue {
        shapes::stats(&self.inner.tracker.stats())
    }

    /// Removes the callback `onTransition` returned `id` for; `false` if there was none.
    #[wasm_bindgen(js_name = offTransition)]
    pub fn off_transition(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] id: &JsValue,
    ) -> bool {
        let Some(id) = id.as_f64() else {
            return false;
        };
        let mut callbacks = self.inner.callbacks.borrow_mut();
        let before = callbacks.len();
        callbacks.retain(|(existing, _)| f64::from(*existing) != id);
        callbacks.len() != before
    }
}

/// The tracker's clock: `Date.now()`, except while a lean call runs, which reads `Date.now()`
/// in JavaScript (cheaper there than a call out of wasm) and passes it in.
#[derive(Clone)]
struct JsClock(Arc<AtomicU64>);

impl JsClock {
    /// No time passed in: read `Date.now()`.
    const UNSET: u64 = u64::MAX;

    /// Runs `body` with the clock reading `now_ms` (`Date.now()` if `None`).
    fn at<T>(&self, now_ms: Option<u64>, body: impl FnOnce() -> T) -> T {
        let Some(now_ms) = now_ms else {
            return body();
        };
        self.0.store(now_ms.min(Self::UNSET - 1), Ordering::Relaxed);
        let result = body();
        self.0.store(Self::UNSET, Ordering::Relaxed);
        result
    }

    /// `Date.now()` as JS passed it in: `as` saturates, so a negative or NaN time reads as 0,
    /// as `SystemClock` reads it.
    fn js_time(now_ms: f64) -> Option<u64> {
        Some(now_ms as u64)
    }
}

impl Default for JsClock {
    fn default() -> Self {
        JsClock(Arc::new(AtomicU64::new(Self::UNSET)))
    }
}

impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            Self::UNSET => js_sys::Date::now() as u64,
            now_ms => now_ms,
        }
    }
}

/// The names of `config`'s services, in order.
fn service_names(config: &TrackerConfig) -> Vec<String> {
    config
        .services
        .iter()
        .map(|service| service.name.clone())
        .collect()
}

/// The store behind `storage: { key }`: `localStorage[key]`. A runtime without
/// `localStorage` (Node, a browser that refuses it) is a configuration error: a store that
/// cannot exist would only make every save fail and the tracker fall to reduced rate.
#[cfg(target_arch = "wasm32")]
fn local_storage(key: String) -> Result<Box<dyn Store>, Error> {
    if crate::store::LocalStorageStore::available() {
        Ok(Box::new(crate::store::LocalStorageStore::new(key)))
    } else {
        Err(no_local_storage(&key))
    }
}

/// Off wasm32 there is no `localStorage` (the JS module is built for wasm32 only).
#[cfg(not(target_arch = "wasm32"))]
fn local_storage(key: String) -> Result<Box<dyn Store>, Error> {
    Err(no_local_storage(&key))
}

/// The error for `storage: { key }` where there is no `localStorage`.
fn no_local_storage(key: &str) -> Error {
    Error::new(&format!(
        "storage: there is no localStorage in this runtime (Node has none), so counts cannot \
         be kept under key {}; leave storage out to count in memory only",
        input::quoted(key)
    ))
}

impl JsQuotaTracker {
    fn wrap(tracker: QuotaTracker, names: Vec<String>, clock: JsClock) -> JsQuotaTracker {
        let pending = Arc::new(Pending::default());
        let queue = Arc::clone(&pending);
        tracker.on_transition(move |transition| queue.push(transition));
        let names = Names::new(&tracker, names);
        JsQuotaTracker {
            inner: Rc::new(Inner {
                tracker,
                names,
                clock,
                pending,
                callbacks: RefCell::new(Vec::new()),
                next_id: Cell::new(1),
                delivering: Cell::new(false),
            }),
        }
    }

    /// `tryRecord` (`priority`: `tryRecordPriority`).
    fn admit(&self, service: &JsValue, count: &JsValue, priority: bool) -> Result<JsValue, Error> {
        let inner = &*self.inner;
        let (found, count, now) = inner.names.find_call(service, count)?;
        let handle = inner.delivered(inner.handle(&found))?;
        let result = inner.clock.at(now, || {
            let admitted = if priority {
                handle.try_record_priority(count)
            } else {
                handle.try_record(count)
            };
            match admitted {
                // Not allowed now: an answer, not an error.
                Err(QuotaError::Denied { reason, .. }) => Err(Ok((handle.usage(), reason))),
                other => other.map_err(Err),
            }
        });
        inner.deliver();
        match result {
            Ok(recorded) => Ok(shapes::allowed(
                service,
                &recorded.usage,
                recorded.transition(),
            )),
            Err(Ok((usage, reason))) => Ok(shapes::denied(service, &usage, reason)),
            Err(Err(error)) => Err(input::error(error)),
        }
    }
}

impl Inner {
    /// The tracker's handle on the service `found` names; the tracker's error for a name that
    /// is no configured service.
    fn handle(&self, found: &Found) -> Result<crate::tracker::Service<'_>, QuotaError> {
        self.service_at(self.position(found)?)
    }

    /// The tracker's handle on the service at `position` (of the config).
    fn service_at(&self, position: usize) -> Result<crate::tracker::Service<'_>, QuotaError> {
        self.tracker
            .service_by_id(self.names.id(position))
            .ok_or_else(|| QuotaError::UnknownService(self.names.rust(position).to_owned()))
    }

    /// The position of the service `found` names; the tracker's error for a name that is no
    /// configured service.
    fn position(&self, found: &Found) -> Result<usize, QuotaError> {
        match found {
            Found::Position(position) => Ok(*position),
            Found::Unknown(name) => Err(QuotaError::UnknownService(name.clone())),
        }
    }

    /// Delivers what the tracker call that produced `result` queued, then converts its error.
    fn delivered<T>(&self, result: Result<T, QuotaError>) -> Result<T, Error> {
        self.deliver();
        result.map_err(input::error)
    }

    /// Hands every queued transition to every callback, in order, outside all locks.
    fn deliver(&self) {
        // Nearly every call: nothing queued, and the lock is not taken.
        if !self.pending.queued.load(Ordering::Acquire) || self.delivering.replace(true) {
            return;
        }
        while let Some(transition) = self.pending.pop() {
            let callbacks = self.callbacks.borrow().clone();
            for (id, callback) in callbacks {
                // A callback may have removed another one during this round.
                if !self.callbacks.borrow().iter().any(|(live, _)| *live == id) {
                    continue;
                }
                let value = shapes::transition(Some(&transition));
                if let Err(error) = callback.call1(&JsValue::UNDEFINED, &value) {
                    report_throw(id, &value, &error);
                }
            }
        }
        self.delivering.set(false);
    }
}

/// The transitions the tracker reported and the JS callbacks have not seen yet, in order.
#[derive(Default)]
struct Pending {
    queue: Mutex<VecDeque<Transition>>,
    /// Whether `queue` may hold any: read without the lock on every call.
    queued: AtomicBool,
}

impl Pending {
    fn push(&self, transition: &Transition) {
        let mut queue = crate::locks::lock_std(&self.queue);
        queue.push_back(transition.clone());
        self.queued.store(true, Ordering::Release);
    }

    fn pop(&self) -> Option<Transition> {
        let mut queue = crate::locks::lock_std(&self.queue);
        let next = queue.pop_front();
        if queue.is_empty() {
            self.queued.store(false, Ordering::Release);
        }
        next
    }
}
