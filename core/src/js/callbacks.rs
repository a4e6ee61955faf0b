//! The JS transition callbacks (`onTransition`). JS callbacks are not `Send + Sync`, so they
//! cannot be the tracker's observers: one Rust observer queues every transition, and each
//! method delivers the queue to the JS callbacks after the tracker returned, outside every lock.

use super::shapes;
use crate::tracker::QuotaTracker;
use crate::usage::Transition;
use js_sys::Function;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/shapes.js")]
extern "C" {
    /// `console.error` that callback `id` threw `error` on `transition` (a JS transition).
    #[wasm_bindgen(js_name = reportThrow)]
    fn report_throw(id: u32, transition: &JsValue, error: &JsValue);
}

/// A tracker's JS callbacks, and the transitions they have not seen yet.
pub(super) struct Callbacks {
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

impl Callbacks {
    /// No callbacks yet; every transition of `tracker` is queued for them from now on.
    pub(super) fn observe(tracker: &QuotaTracker) -> Callbacks {
        let pending = Arc::new(Pending::default());
        let queue = Arc::clone(&pending);
        tracker.on_transition(move |transition| queue.push(transition));
        Callbacks {
            pending,
            callbacks: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            delivering: Cell::new(false),
        }
    }

    /// Adds `callback`; returns its id for [`remove`](Self::remove).
    pub(super) fn add(&self, callback: Function) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.callbacks.borrow_mut().push((id, callback));
        id
    }

    /// Removes the callback [`add`](Self::add) returned `id` for; `false` if there was none.
    pub(super) fn remove(&self, id: f64) -> bool {
        let mut callbacks = self.callbacks.borrow_mut();
        let before = callbacks.len();
        callbacks.retain(|(existing, _)| f64::from(*existing) != id);
        callbacks.len() != before
    }

    /// Hands every queued transition to every callback, in order, outside all locks.
    pub(super) fn deliver(&self) {
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
