//! Holds (`tracker.hold(service, estimate)`: settled later at what the call really cost) and
//! several services in one step (`tracker.tryRecordMany(calls)`).
//!
//! A JS `Hold` (the class in `hold.js`) is a number naming an entry of this thread's slab of
//! holds: what the core's hold counted ([`Held`]) beside the tracker's `Rc`, so it may outlive
//! the `QuotaTracker` object that made it. Settling or cancelling takes the entry out (`hold.js`
//! forgets the number first: a second call, or one from a transition callback the first one
//! delivers to, throws there). `free()`, `Symbol.dispose` and the garbage collector drop an
//! unsettled entry, which keeps its estimate counted, as dropping a Rust `Hold` does. Entries
//! leave the slab as soon as they are settled: a program that makes millions of holds keeps
//! none of them.

use super::service::hand_over;
use super::slab::Slab;
use super::{input, shapes, Inner, JsQuotaTracker};
use crate::error::QuotaError;
use crate::tracker::Held;
use js_sys::{Array, Error};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/hold.js")]
extern "C" {
    /// `new Hold(exports, number, service, estimate)`.
    #[wasm_bindgen(js_name = newHold)]
    fn new_hold(exports: &JsValue, number: u32, service: &JsValue, estimate: f64) -> JsValue;
}

/// A hold's entry: the tracker, and what the hold counted.
struct Entry {
    inner: Rc<Inner>,
    held: Held,
}

thread_local! {
    /// This thread's unsettled holds.
    static HOLDS: RefCell<Slab<Entry>> = RefCell::default();
}

/// `hold.settle(actual)` (`hold.cancel()`: 0), `actual` checked by `hold.js`: hands over the
/// settlement `{ estimate, actual, givenBack, added, used }`, or the `Error` to throw.
#[no_mangle]
pub extern "C" fn quota_hold_settle(number: u32, actual: f64) {
    let Some(Entry { inner, held }) = HOLDS.with(|holds| holds.borrow_mut().remove(number)) else {
        return hand_over(&Error::new("this hold was freed").into());
    };
    // Whole numbers below 2^53 (checked in JS): exact as u64.
    let settled = inner.delivered(inner.tracker.settle_held(&held, actual as u64));
    hand_over(&match settled {
        Ok(settled) => shapes::settlement(
            settled.estimate as f64,
            settled.actual as f64,
            settled.given_back as f64,
            settled.added as f64,
            settled.used as f64,
        ),
        Err(error) => error.into(),
    });
}

/// `hold.free()`, `Symbol.dispose` or the garbage collector: drops an unsettled hold (its
/// estimate stays counted).
#[no_mangle]
pub extern "C" fn quota_hold_free(number: u32) {
    let removed = HOLDS.with(|holds| holds.borrow_mut().remove(number));
    // Dropped outside the borrow: the last reference to a tracker drops the tracker.
    drop(removed);
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
    ) -> Result<JsValue, Error> {
        let inner = &self.inner;
        let found = inner.names.find(service)?;
        let estimate = input::estimate(&inner.names.name(&found), estimate)?;
        let held = inner
            .handle(&found)
            .and_then(|handle| handle.held(estimate));
        inner.deliver();
        let entry = Entry {
            inner: Rc::clone(inner),
            held: held.map_err(refused)?,
        };
        let number = HOLDS.with(|holds| holds.borrow_mut().insert(entry));
        Ok(new_hold(
            &wasm_bindgen::exports(),
            number,
            service,
            estimate as f64,
        ))
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
