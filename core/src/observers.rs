//! Observers: who is subscribed, and delivering to them without any thread waiting on another.
//!
//! Events are queued in an [`Outbox`] (one per service for transitions, one for store events)
//! by the call that caused them, in the order they happened, under the lock that orders them.
//! After every tracker lock is released, that call *pumps* the outbox: whichever thread finds
//! it idle takes the drain and delivers every queued event, including ones other threads queue
//! meanwhile, before its own call returns; a thread that finds a drain running returns at once
//! and leaves its events to it. "Drain held" and "work pending" live in one atomic word, and
//! the drainer lets go only with a compare-and-swap that fails if work arrived meanwhile, so
//! no event is ever stranded (the classic lost wake-up). No thread ever waits for, or spins
//! on, another thread's observer.
//!
//! An observer that calls back into the tracker on the same thread finds the drain held (by
//! itself) and returns at once; its events are delivered when the current observer returns.
//! Every flag is reset by a drop guard, and panics from observers (and from their payloads'
//! `Drop`) are caught, so no panic can wedge delivery.

use crate::locks::{AtomicU64, AtomicU8, Mutex, Ordering};
use crate::sorted::Map;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Identifies a subscription made with [`on_transition`](crate::QuotaTracker::on_transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransitionSubscription(u64);

/// Identifies a subscription made with [`on_store_event`](crate::QuotaTracker::on_store_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreEventSubscription(u64);

impl TransitionSubscription {
    pub(crate) fn new(id: u64) -> Self {
        TransitionSubscription(id)
    }

    pub(crate) fn get(self) -> u64 {
        self.0
    }
}

impl StoreEventSubscription {
    pub(crate) fn new(id: u64) -> Self {
        StoreEventSubscription(id)
    }

    pub(crate) fn get(self) -> u64 {
        self.0
    }
}

pub(crate) type Observer<E> = dyn Fn(&E) + Send + Sync;

/// Subscription ids come from one counter for the whole process, so an id handed to another
/// tracker's `unsubscribe` matches nothing there. (std's atomic even under loom: it only makes
/// ids unique; the protocol loom checks is each registry's `next_id`.)
static NEXT_SUBSCRIPTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The subscribed observers of events `E`, by id (a `BTreeMap`, a sorted vector on wasm32:
/// see `crate::sorted`). A delivery copies the list of observers once per event.
pub(crate) struct Registry<E> {
    observers: Mutex<Map<u64, Arc<Observer<E>>>>,
    /// Above every id in the map. Raised only after the observer is in the map, so an event
    /// that read it (its *epoch*) finds every observer with a smaller id when it is delivered.
    next_id: AtomicU64,
}

impl<E> Registry<E> {
    pub(crate) fn new() -> Self {
        Registry {
            observers: Mutex::new(Map::new()),
            next_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn subscribe(&self, observer: Arc<Observer<E>>) -> u64 {
        let mut observers = self.observers.lock();
        // Under this registry's lock, so its ids rise in the order they enter the map.
        let id = NEXT_SUBSCRIPTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        observers.insert(id, observer);
        self.next_id.store(id + 1, Ordering::Release);
        id
    }

    /// Removes `id`; `false` if it was not subscribed. Events queued after this returns never
    /// reach it; a delivery already running on another thread may still be calling it.
    pub(crate) fn unsubscribe(&self, id: u64) -> bool {
        let removed = self.observers.lock().remove(&id);
        // Dropped after the lock is released (its `Drop` may call back into the tracker) and
        // guarded (it may panic).
        let found = removed.is_some();
        quietly(move || drop(removed));
        found
    }

    /// Ids below this were subscribed before now: stamp an event with it when queueing it.
    pub(crate) fn epoch(&self) -> u64 {
        self.next_id.load(Ordering::Acquire)
    }

    /// Calls every observer subscribed before `epoch` and not unsubscribed since, on this
    /// thread, outside the registry's lock; a panicking observer is caught and logged.
    fn notify(&self, event: &E, epoch: u64, describe: fn(&E) -> String) {
        let observers: Vec<(u64, Arc<Observer<E>>)> = {
            let map = self.observers.lock();
            if map.is_empty() {
                return;
            }
            crate::sorted::below(&map, &epoch)
                .map(|(id, observer)| (*id, Arc::clone(observer)))
                .collect()
        };
        for (id, observer) in observers {
            // An observer's own calls are a plain caller's, even when an async call of the
            // tracker delivers (natively: see `caller`).
            #[cfg(not(target_arch = "wasm32"))]
            let delivered = quietly(|| crate::caller::as_plain(|| observer(event)));
            #[cfg(target_arch = "wasm32")]
            let delivered = quietly(|| observer(event));
            if !delivered {
                quietly(|| {
                    log::error!(
                        "quota: observer {id} panicked on {}; ignored",
                        describe(event)
                    )
                });
            }
            // Maybe the last reference (unsubscribed meanwhile): its `Drop` may panic.
            quietly(move || drop(observer));
        }
    }
}

/// Runs `f`, catching a panic; `false` if it panicked. The panic's payload is leaked rather
/// than dropped, since a payload whose `Drop` panics would escape here.
pub(crate) fn quietly(f: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(payload) => {
            std::mem::forget(payload);
            false
        }
    }
}

/// The drain is held by some thread.
const DRAINING: u8 = 0b01;
/// Events were queued since the drainer last looked.
const PENDING: u8 = 0b10;

/// Events waiting for delivery, in the order they happened, and who delivers them.
pub(crate) struct Outbox<E> {
    /// A leaf lock: held only to push or pop, never while anything else is taken.
    queue: Mutex<VecDeque<(E, u64)>>,
    /// `DRAINING | PENDING` bits.
    state: AtomicU8,
}

impl<E> Outbox<E> {
    pub(crate) fn new() -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            state: AtomicU8::new(0),
        }
    }

    /// Queues `event`, stamped with the registry's `epoch`. Call it under the lock that orders
    /// the events (a service's lock), then [`pump`](Self::pump) once that lock is released.
    pub(crate) fn push(&self, event: E, epoch: u64) {
        self.queue.lock().push_back((event, epoch));
    }

    /// Delivers every queued event to `registry`'s observers unless another thread is doing
    /// so; returns at once in that case (that thread delivers what was queued). Hold no tracker
    /// lock when calling it.
    pub(crate) fn pump(&self, registry: &Registry<E>, describe: fn(&E) -> String) {
        let before = self.state.fetch_or(DRAINING | PENDING, Ordering::AcqRel);
        if before & DRAINING != 0 {
            return;
        }
        // Lets go of the drain even if something below unwinds; what is still queued then goes
        // out with the next event's pump.
        let drain = DrainGuard(&self.state);
        loop {
            self.state.fetch_and(!PENDING, Ordering::AcqRel);
            loop {
                // The guard is a temporary: the queue is unlocked before the observers run.
                let next = self.queue.lock().pop_front();
                let Some((event, epoch)) = next else { break };
                registry.notify(&event, epoch, describe);
                // A payload whose `Drop` panics must not unwind through the drain.
                std::mem::forget(catch_unwind(AssertUnwindSafe(move || drop(event))));
            }
            // Let go only if nothing was queued meanwhile; otherwise drain again.
            if self
                .state
                .compare_exchange(DRAINING, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                std::mem::forget(drain);
                return;
            }
        }
    }

    /// Events queued and not yet taken by a drain.
    #[cfg(all(test, loom))]
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().len()
    }
}

struct DrainGuard<'a>(&'a AtomicU8);

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_and(!DRAINING, Ordering::AcqRel);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Two threads queue and pump concurrently (as two calls on one service do): every event
    /// reaches the observer exactly once, in queue order, and nothing is left queued.
    #[test]
    fn loom_drain_delivers_everything_exactly_once_in_order() {
        loom::model(|| {
            let outbox = crate::locks::Arc::new(Outbox::<u32>::new());
            let registry = crate::locks::Arc::new(Registry::<u32>::new());
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = Arc::clone(&seen);
            registry.subscribe(Arc::new(move |e: &u32| sink.lock().unwrap().push(*e)));
            // Queue order is decided by this lock, as a service's lock decides it.
            let order = crate::locks::Arc::new(Mutex::new(0u32));
            let spawn = |outbox: crate::locks::Arc<Outbox<u32>>,
                         registry: crate::locks::Arc<Registry<u32>>,
                         order: crate::locks::Arc<Mutex<u32>>| {
                move || {
                    {
                        let mut next = order.lock();
                        *next += 1;
                        outbox.push(*next, registry.epoch());
                    }
                    outbox.pump(&registry, |e| e.to_string());
                }
            };
            let other = thread::spawn(spawn(
                crate::locks::Arc::clone(&outbox),
                crate::locks::Arc::clone(&registry),
                crate::locks::Arc::clone(&order),
            ));
            spawn(
                crate::locks::Arc::clone(&outbox),
                crate::locks::Arc::clone(&registry),
                crate::locks::Arc::clone(&order),
            )();
            other.join().unwrap();
            assert_eq!(outbox.queued(), 0, "an event was stranded");
            assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
        });
    }
}
