//! The lean `Service` handle (`tracker.service(name)`), for hot loops.
//!
//! Its `record`, `tryRecord` and `tryRecordPriority` are one call each from the class in `service.js` straight into
//! the raw exports below: numbers in (the handle, the count, `Date.now()` read in JS), one
//! number out (the remaining count). No wasm-bindgen glue, no externref, no object is built,
//! and the time costs no call out of wasm. Anything else (an error, a usage object) is handed
//! over through a one-value mailbox in `service.js`.
//!
//! A handle is a number naming an entry in this thread's slab of handles; each entry holds the
//! tracker (shared with the JS `QuotaTracker`) and the service's position. `free()`, or the garbage
//! collector through a `FinalizationRegistry`, removes it.

use super::slab::Slab;
use super::{input, shapes, Inner};
use crate::error::QuotaError;
use crate::Service;
use js_sys::Error;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/service.js")]
extern "C" {
    /// `new Service(exports, handle, name)`.
    #[wasm_bindgen(js_name = newService)]
    fn new_service(exports: &JsValue, handle: u32, name: &JsValue) -> JsValue;

    /// Leaves `value` for the `Service` method that made this call, which takes it when the
    /// raw call returns [`HANDED_OVER`].
    #[wasm_bindgen(js_name = handOver)]
    pub(super) fn hand_over(value: &JsValue);
}

/// The raw calls' answers below 0 (the others are remaining counts, or booleans as 0 and 1).
/// `tryRecord` was denied: nothing recorded.
const DENIED: f64 = -1.0;
/// The count is not a whole number from 1 to `Number.MAX_SAFE_INTEGER`: `service.js` says so.
const BAD_COUNT: f64 = -2.0;
/// The answer (an error to throw, or an object to return) was handed over.
const HANDED_OVER: f64 = -3.0;

/// A handle's entry: the tracker and the service's position in it.
struct Handle {
    inner: Rc<Inner>,
    position: usize,
}

thread_local! {
    /// This thread's handles.
    static HANDLES: RefCell<Slab<Handle>> = RefCell::default();
}

/// A new JS `Service` on the service at `position` of `inner`'s tracker.
pub(super) fn handle(inner: &Rc<Inner>, position: usize) -> JsValue {
    let entry = Handle {
        inner: Rc::clone(inner),
        position,
    };
    let number = HANDLES.with(|handles| handles.borrow_mut().insert(entry));
    new_service(&wasm_bindgen::exports(), number, &inner.names.js(position))
}

/// Runs `body` on handle `number`'s tracker and service. The slab is not borrowed while it
/// runs: a transition callback may make or free handles.
fn with(number: u32, body: impl FnOnce(&Inner, usize) -> f64) -> f64 {
    let entry = HANDLES.with(|handles| {
        let handles = handles.borrow();
        let entry = handles.get(number)?;
        Some((Rc::clone(&entry.inner), entry.position))
    });
    match entry {
        Some((inner, position)) => body(&inner, position),
        None => handed_over(&Error::new("this Service was freed").into()),
    }
}

fn handed_over(value: &JsValue) -> f64 {
    hand_over(value);
    HANDED_OVER
}

/// What a recording call answers: the remaining count, [`DENIED`], or an error handed over.
fn answer(inner: &Inner, result: Result<u64, QuotaError>) -> f64 {
    inner.deliver();
    match result {
        Ok(remaining) => remaining as f64,
        Err(QuotaError::Denied { .. }) => DENIED,
        Err(error) => handed_over(&input::error(error).into()),
    }
}

/// `service.record(count)`: the remaining count after recording.
#[no_mangle]
pub extern "C" fn quota_service_record(handle: u32, count: f64, now_ms: f64) -> f64 {
    counted(handle, count, now_ms, |service, count| {
        service.record_remaining(count)
    })
}

/// `service.tryRecord(count)`: the remaining count after recording, or [`DENIED`].
#[no_mangle]
pub extern "C" fn quota_service_try_record(handle: u32, count: f64, now_ms: f64) -> f64 {
    counted(handle, count, now_ms, |service, count| {
        service.try_record_remaining(count)
    })
}

/// `service.tryRecordPriority(count)`: the remaining count after recording, or [`DENIED`].
#[no_mangle]
pub extern "C" fn quota_service_try_record_priority(handle: u32, count: f64, now_ms: f64) -> f64 {
    counted(handle, count, now_ms, |service, count| {
        service
            .try_record_priority(count)
            .map(|recorded| recorded.usage.remaining)
    })
}

/// The three counting calls: checks the count, runs `call` at the caller's time, and answers
/// the remaining count (or [`DENIED`], or a handed-over error).
#[inline(always)]
fn counted(
    handle: u32,
    count: f64,
    now_ms: f64,
    call: impl Fn(&Service<'_>, u64) -> Result<u64, QuotaError>,
) -> f64 {
    with(handle, |inner, position| {
        let Some(count) = input::whole_count(count) else {
            return BAD_COUNT;
        };
        let result = inner.clock.at(super::JsClock::js_time(now_ms), || {
            let service = inner.service_at(position)?;
            call(&service, count)
        });
        answer(inner, result)
    })
}

/// `service.canCall()`: 1 or 0.
#[no_mangle]
pub extern "C" fn quota_service_can_call(handle: u32, now_ms: f64) -> f64 {
    with(handle, |inner, position| {
        let allowed = inner.clock.at(super::JsClock::js_time(now_ms), || {
            inner
                .service_at(position)
                .is_ok_and(|service| service.can_call())
        });
        inner.deliver();
        f64::from(u8::from(allowed))
    })
}

/// `service.usage()`: the usage object, handed over.
#[no_mangle]
pub extern "C" fn quota_service_usage(handle: u32, now_ms: f64) -> f64 {
    with(handle, |inner, position| {
        let usage = inner.clock.at(super::JsClock::js_time(now_ms), || {
            inner.service_at(position).map(|service| service.usage())
        });
        inner.deliver();
        match usage {
            Ok(usage) => handed_over(&shapes::usage(&inner.names.js(position), &usage)),
            Err(error) => handed_over(&input::error(error).into()),
        }
    })
}

/// `service.free()`, or the garbage collector: removes the handle (0: none).
#[no_mangle]
pub extern "C" fn quota_service_free(handle: u32) {
    let removed = HANDLES.with(|handles| handles.borrow_mut().remove(handle));
    // Dropped outside the borrow: the last handle on a tracker drops the tracker.
    drop(removed);
}
