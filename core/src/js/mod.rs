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
//! `LocalStorageStore` (wasm32, feature `browser`). Where there is no `localStorage` at all
//! (Node) the constructor throws: a store that cannot exist is a configuration error, not a
//! string of failed saves. A store that exists but fails never stops a tracker:
//! `stats().lastError` says why.
//!
//! JS callbacks are not `Send + Sync`, so they cannot be the tracker's observers. Instead one
//! Rust observer queues every transition, and each method delivers the queue to the JS
//! callbacks after the tracker returned, outside every lock.

/// The JS module's allocator: talc's, smaller in the .wasm than the default (dlmalloc).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod callbacks;
mod clock;
mod hold;
mod inner;
mod input;
mod names;
mod service;
mod shapes;
mod slab;
mod storage;

use crate::config::SyncPolicy;
use crate::config::TrackerConfig;
use crate::error::QuotaError;
use crate::tracker::QuotaTracker;
use callbacks::Callbacks;
use clock::JsClock;
use inner::Inner;
use js_sys::{Array, Error};
use names::Names;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

/// The TypeScript declarations of the shapes the class takes and returns, kept in `types.d.ts`
/// (where an editor reads them as TypeScript); wasm-bindgen appends them to the generated
/// `.d.ts`, after a blank line.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = concat!("\n", include_str!("types.d.ts"));

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
                .boxed_store(storage::local_storage(storage.key)?)
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
        Ok(shapes::recorded(service, &recorded))
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

    /// The calls held back as a reserve: `floor(limit x reserveFraction)`; for a service of
    /// several limits, its first limit's (each limit holds back that fraction of its own).
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

    /// The usage of every limit of `service`, its own limit (`limit` per `period`) first, each
    /// at its own level (one for a service of one limit): an array of what `usage` returns,
    /// which describes only the binding limit.
    #[wasm_bindgen(js_name = usageLimits, unchecked_return_type = "ServiceUsage[]")]
    pub fn usage_limits(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
    ) -> Result<Array, Error> {
        let inner = &*self.inner;
        let (found, _, now) = inner.names.find_call(service, &JsValue::UNDEFINED)?;
        let limits = inner.clock.at(now, || {
            inner.handle(&found).map(|handle| handle.usage_limits())
        });
        let limits = inner.delivered(limits)?;
        Ok(limits
            .iter()
            .map(|usage| shapes::usage(service, usage))
            .collect())
    }

    /// Every service's usage at one instant, in config order: `{ services, totalUsed, atMs }`.
    #[wasm_bindgen(unchecked_return_type = "Snapshot")]
    pub fn snapshot(&self) -> JsValue {
        let inner = &*self.inner;
        let snapshot = inner.tracker.snapshot();
        inner.deliver();
        // The snapshot lists the configured services in config order, as `order` does.
        let services: Array = snapshot
            .services()
            .iter()
            .zip(inner.names.order())
            .map(|(usage, position)| shapes::usage(&inner.names.js(position), usage))
            .collect();
        shapes::snapshot(
            &services,
            snapshot.total_used() as f64,
            snapshot.at_ms() as f64,
        )
    }

    /// Changes the services at run time without losing a count: `{ services: [...] }` as the
    /// constructor takes them (`storage` cannot change: passing it throws). Services not in
    /// the config are removed (their lean handles then throw "unknown service"), new ones
    /// added, changed ones keep the count of a window that still exists (a lower limit may
    /// change the level at once: one transition, delivered to the callbacks). A changed
    /// window (period) starts fresh counts. Returns `{ added, removed, changed }`, each an
    /// array of names. Throws on an invalid config, changing nothing.
    #[wasm_bindgen(unchecked_return_type = "Reconfigured")]
    pub fn reconfigure(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ServicesConfig")] config: &JsValue,
    ) -> Result<JsValue, Error> {
        let input::Config { tracker, storage } = input::config(config)?;
        if storage.is_some() {
            return Err(Error::new(
                "invalid config: storage cannot change after the tracker is built \
                 (reconfigure takes { services })",
            ));
        }
        let inner = &*self.inner;
        let names = service_names(&tracker);
        let result = inner.tracker.reconfigure(tracker);
        if result.is_ok() {
            inner.names.reconfigured(&inner.tracker, &names);
        }
        let done = inner.delivered(result)?;
        let list = |names: &[String]| -> Array { names.iter().map(JsValue::from).collect() };
        Ok(shapes::reconfigured(
            &list(&done.added),
            &list(&done.removed),
            &list(&done.changed),
        ))
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
        Ok(self.inner.callbacks.add(callback))
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
        self.inner.callbacks.remove(id)
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

impl JsQuotaTracker {
    fn wrap(tracker: QuotaTracker, names: Vec<String>, clock: JsClock) -> JsQuotaTracker {
        let callbacks = Callbacks::observe(&tracker);
        let names = Names::new(&tracker, names);
        JsQuotaTracker {
            inner: Rc::new(Inner {
                tracker,
                names,
                clock,
                callbacks,
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
            Ok(recorded) => Ok(shapes::allowed(service, &recorded)),
            Err(Ok((usage, reason))) => Ok(shapes::denied(service, &usage, reason)),
            Err(Err(error)) => Err(input::error(error)),
        }
    }
}
