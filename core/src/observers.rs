//! Transition observers: who is subscribed, and delivering to them in order.
//!
//! Observers never run under a state lock. A call that changes a level takes a *ticket* for
//! that service while it still holds the service's lock; after releasing it, the call waits at
//! the service's [`DeliveryGate`] until every earlier ticket was delivered, runs the observers,
//! and opens the gate for the next ticket. So each service's transitions reach observers in the
//! order they happened, on the thread whose call caused them, before that call returns.
//!
//! An observer may call back into the tracker. A transition caused from inside an observer is
//! queued on the thread and delivered right after the current one (the nested call returns
//! first). A thread therefore holds at most one gate at a time and waits at a gate only while
//! holding none, which rules out deadlocks between gates.

use crate::sync::{self, thread_local, AtomicU64, Mutex, Ordering};
use crate::usage::Transition;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Identifies a subscription made with [`on_transition`](crate::QuotaTracker::on_transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

type Observer<E> = dyn Fn(&E) + Send + Sync;
/// The subscribed observers at one moment; cheap to clone (copy-on-write).
type ObserverList<E> = std::sync::Arc<Vec<(SubscriptionId, std::sync::Arc<Observer<E>>)>>;

/// The subscribed observers of events `E`, copy-on-write so a delivery only clones one `Arc`.
pub(crate) struct Registry<E> {
    inner: Mutex<RegistryInner<E>>,
}

struct RegistryInner<E> {
    next_id: u64,
    observers: ObserverList<E>,
}

impl<E> Registry<E> {
    pub(crate) fn new() -> Self {
        Registry {
            inner: Mutex::new(RegistryInner {
                next_id: 0,
                observers: std::sync::Arc::new(Vec::new()),
            }),
        }
    }

    pub(crate) fn subscribe(&self, observer: std::sync::Arc<Observer<E>>) -> SubscriptionId {
        let mut inner = sync::lock(&self.inner);
        let id = SubscriptionId(inner.next_id);
        inner.next_id += 1;
        let mut observers = Vec::clone(&inner.observers);
        observers.push((id, observer));
        inner.observers = std::sync::Arc::new(observers);
        id
    }

    pub(crate) fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut inner = sync::lock(&self.inner);
        if !inner.observers.iter().any(|(existing, _)| *existing == id) {
            return false;
        }
        let observers = inner
            .observers
            .iter()
            .filter(|(existing, _)| *existing != id)
            .cloned()
            .collect();
        inner.observers = std::sync::Arc::new(observers);
        true
    }

    fn current(&self) -> ObserverList<E> {
        std::sync::Arc::clone(&sync::lock(&self.inner).observers)
    }

    /// Calls every observer with `event` on this thread; a panicking observer is logged.
    pub(crate) fn notify(&self, event: &E, describe: impl Fn(&E) -> String) {
        notify_all(&self.current(), event, describe);
    }
}

fn notify_all<E>(observers: &ObserverList<E>, event: &E, describe: impl Fn(&E) -> String) {
    for (id, observer) in observers.iter() {
        if catch_unwind(AssertUnwindSafe(|| observer(event))).is_err() {
            log::error!(
                "quota: observer {} panicked on {}; ignored",
                id.0,
                describe(event)
            );
        }
    }
}

/// Orders one service's deliveries: tickets pass in the order they were issued.
pub(crate) struct DeliveryGate {
    /// The ticket whose turn it is.
    next: AtomicU64,
}

impl DeliveryGate {
    pub(crate) fn new() -> Self {
        DeliveryGate {
            next: AtomicU64::new(0),
        }
    }
}

/// Transitions of one service to deliver under one ticket.
pub(crate) struct Delivery {
    pub(crate) gate: sync::Arc<DeliveryGate>,
    pub(crate) ticket: u64,
    pub(crate) transitions: Vec<Transition>,
}

impl Delivery {
    fn wait_turn(&self) {
        while self.gate.next.load(Ordering::Acquire) != self.ticket {
            sync::yield_now();
        }
    }

    fn run(mut self, observers: &ObserverList<Transition>) {
        self.wait_turn();
        for transition in std::mem::take(&mut self.transitions) {
            notify_all(observers, &transition, |t| {
                format!("transition {} {} -> {}", t.service, t.from, t.to)
            });
        }
        // Dropping `self` opens the gate for the next ticket.
    }
}

/// Every ticket passes its gate: a delivery that is dropped (run, unwound, or never run)
/// waits for its turn and opens the gate for the next one, so no later ticket waits forever.
impl Drop for Delivery {
    fn drop(&mut self) {
        self.wait_turn();
        self.gate.next.store(self.ticket + 1, Ordering::Release);
    }
}

// Not `const`-initialized: loom's `thread_local!` (used under `cfg(loom)`) does not take it.
thread_local! {
    #[allow(clippy::missing_const_for_thread_local)]
    static DELIVERING: Cell<bool> = Cell::new(false);
    #[allow(clippy::missing_const_for_thread_local)]
    static DEFERRED: RefCell<VecDeque<(Delivery, ObserverList<Transition>)>> = RefCell::new(VecDeque::new());
}

/// Delivers `deliveries` (in order) to the observers subscribed now, or queues them behind the
/// delivery this thread is already running.
pub(crate) fn deliver(registry: &Registry<Transition>, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let observers = registry.current();
    if DELIVERING.with(Cell::get) {
        DEFERRED.with(|queue| {
            let mut queue = queue.borrow_mut();
            for delivery in deliveries {
                queue.push_back((delivery, std::sync::Arc::clone(&observers)));
            }
        });
        return;
    }
    DELIVERING.with(|flag| flag.set(true));
    for delivery in deliveries {
        delivery.run(&observers);
    }
    while let Some((delivery, observers)) = DEFERRED.with(|queue| queue.borrow_mut().pop_front()) {
        delivery.run(&observers);
    }
    DELIVERING.with(|flag| flag.set(false));
}
