//! Holds (`tracker.hold(service, estimate)`: settle later at what the call really cost) and
//! several services in one step (`tracker.tryRecordMany(calls)`).
//!
//! A JS `Hold` keeps what the core's hold counted ([`Held`]) beside the tracker's `Rc`, so it
//! may outlive the `QuotaTracker` object that made it. `settle` and `cancel` take the held
//! calls out before they run: a second call (or one from a transition callback the first one
//! delivers to) finds none and throws. `free()`, `Symbol.dispose` (where the runtime has it)
//! and the garbage collector drop an unsettled hold, which keeps its estimate counted, as
//! dropping a Rust `Hold` does.

use super::{input, shapes, Inner, JsQuotaTracker};
use crate::error::QuotaError;
use crate::tracker::Held;
use js_sys::{Array, Error};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

/// Calls admitted at an estimate, from `tracker.hold(service, estimate)`: `settle(actual)` them
/// once the response says what they cost, or `cancel()` them if the call was never made. One
/// of the two, once: a second call throws. A hold never settled (freed, disposed, or garbage
/// collected) keeps its estimate counted.
#[wasm_bindgen(js_name = Hold)]
pub struct JsHold {
    inner: Rc<Inner>,
    /// The service's name, as the caller passed it.
    service: JsValue,
    estimate: u64,
    /// What the hold counted, until it is settled or cancelled.
    held: Cell<Option<Held>>,
}

#[wasm_bindgen(js_class = Hold)]
impl JsHold {
    /// The service held.
    #[wasm_bindgen(getter, unchecked_return_type = "string")]
    pub fn service(&self) -> JsValue {
        self.service.clone()
    }

    /// The calls admitted.
    #[wasm_bindgen(getter)]
    pub fn estimate(&self) -> f64 {
        self.estimate as f64
    }

    /// Whether `settle` or `cancel` has been called.
    #[wasm_bindgen(getter)]
    pub fn settled(&self) -> bool {
        // Taken out and put back: `Held` is not `Copy`.
        let held = self.held.take();
        let settled = held.is_none();
        self.held.set(held);
        settled
    }

    /// Settles the hold at `actual` calls (a whole number from 0 to `Number.MAX_SAFE_INTEGER`):
    /// below the estimate the difference is given back (the level may go down: a transition,
    /// delivered to the callbacks), above it the excess is added, even past the limit. Returns
    /// `{ estimate, actual, givenBack, added, used }`. Throws if `actual` is not such a number
    /// (the hold stays unsettled), if the hold was already settled or cancelled, or if a
    /// `reconfigure` removed the service (the estimate stays counted).
    #[wasm_bindgen(unchecked_return_type = "Settlement")]
    pub fn settle(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] actual: &JsValue,
    ) -> Result<JsValue, Error> {
        let actual = input::actual(&self.service, actual)?;
        self.finish(actual)
    }

    /// Gives the whole estimate back: the call was never made (`settle(0)`). Throws as
    /// `settle`.
    #[wasm_bindgen(unchecked_return_type = "Settlement")]
    pub fn cancel(&self) -> Result<JsValue, Error> {
        self.finish(0)
    }
}

impl JsHold {
    fn finish(&self, actual: u64) -> Result<JsValue, Error> {
        let held = self.held.take().ok_or_else(|| {
            Error::new(&format!(
                "this hold of {} was already settled or cancelled",
                input::quoted(&self.service.as_string().unwrap_or_default())
            ))
        })?;
        let inner = &*self.inner;
        let settled = inner.delivered(inner.tracker.settle_held(&held, actual))?;
        Ok(shapes::settlement(
            settled.estimate as f64,
            settled.actual as f64,
            settled.given_back as f64,
            settled.added as f64,
            settled.used as f64,
        ))
    }
}

#[wasm_bindgen(js_class = QuotaTracker)]
impl JsQuotaTracker {
    /// Admits `estimate` calls to `service` as `tryRecord` would (counted at once) and returns
    /// a `Hold` to settle them at what they really cost: `hold.settle(actual)` once the
    /// response says (an LLM call's tokens), `hold.cancel()` if the call was never made. A hold
    /// never settled keeps its estimate. Throws an `Error` when refused (nothing counted; its
    /// `reason` is the `DenyReason`), for an unknown service, and for an estimate that is not a
    /// whole number from 1 to `Number.MAX_SAFE_INTEGER`.
    #[wasm_bindgen(unchecked_return_type = "Hold")]
    pub fn hold(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: &JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] estimate: &JsValue,
    ) -> Result<JsHold, Error> {
        let inner = &self.inner;
        let found = inner.names.find(service)?;
        let estimate = input::estimate(&inner.names.name(&found), estimate)?;
        let held = inner
            .handle(&found)
            .and_then(|handle| handle.held(estimate));
        inner.deliver();
        Ok(JsHold {
            inner: Rc::clone(inner),
            service: service.clone(),
            estimate,
            held: Cell::new(Some(held.map_err(refused)?)),
        })
    }

    /// Records the calls of several services only if normal admission allows every one of
    /// them, all or none, in one step: `calls` is an array of `[service, count]` pairs (or an
    /// object `{ [service]: count }`). Returns `{ allowed: true, recorded }`, each service's
    /// `{ usage, transition }` in the order asked, or `{ allowed: false, usage, reason }`,
    /// the first refusing service's usage, with nothing recorded. Throws on an unknown service,
    /// a bad count, or a service named twice, recording nothing.
    #[wasm_bindgen(js_name = tryRecordMany, unchecked_return_type = "TryRecordManyResult")]
    pub fn try_record_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "[string, number][] | Record<string, number>")]
        calls: &JsValue,
    ) -> Result<JsValue, Error> {
        let inner = &*self.inner;
        let pairs = input::calls(calls)?;
        // Each service's JS position (for its name) and the tracker's, with its count.
        let mut asked = Vec::with_capacity(pairs.len() / 2);
        let mut positions = Vec::with_capacity(pairs.len() / 2);
        for pair in pairs.chunks_exact(2) {
            let found = inner.names.find(&pair[0])?;
            let count = input::count(&inner.names.name(&found), &pair[1])?;
            let handle = inner.delivered(inner.handle(&found))?;
            asked.push(inner.position(&found).unwrap_or_default());
            positions.push((handle.position(), count));
        }
        let result = inner.tracker.admit_many(&positions, false);
        inner.deliver();
        match result {
            Ok((recorded, _)) => {
                let list = Array::new();
                for (recorded, &position) in recorded.iter().zip(&asked) {
                    list.push(&shapes::recorded(&inner.names.js(position), recorded));
                }
                Ok(shapes::many(&list))
            }
            Err(QuotaError::Denied {
                service, reason, ..
            }) => {
                let usage = inner.tracker.usage(&service);
                let usage = inner.delivered(usage)?;
                Ok(shapes::denied(&JsValue::from_str(&service), &usage, reason))
            }
            Err(error) => Err(input::error(error)),
        }
    }
}

/// A refused hold's `Error`, with the `DenyReason` as its `reason` where admission refused it.
fn refused(error: QuotaError) -> Error {
    let reason = match &error {
        QuotaError::Denied { reason, .. } => Some(shapes::deny_reason(*reason)),
        _ => None,
    };
    let error = input::error(error);
    if let Some(reason) = reason {
        let _ = js_sys::Reflect::set(&error, &"reason".into(), &reason.into());
    }
    error
}
