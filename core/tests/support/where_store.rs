//! A `MemoryStore` that notes the thread of every store call (the async API's tests check
//! that none runs on the thread polling it), the most calls in flight at once, and can make
//! calls slow or hold them back.

#![allow(dead_code)]

use quota_core::{
    AdmitReply, AdmitRequest, GiveBack, LeaseReply, LeaseRequest, MemoryStore, Store, StoreError,
    SyncBatch,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name of the thread every test's runtime runs on.
pub const CALLER: &str = "async-caller";

/// A `MemoryStore` that notes the thread of every call, the most calls in flight at once,
/// and can hold calls back (`slow`) or make admissions wait for `open`.
#[derive(Clone, Default)]
pub struct WhereStore {
    pub inner: MemoryStore,
    pub threads: Arc<Mutex<Vec<String>>>,
    pub in_flight: Arc<AtomicUsize>,
    pub most_in_flight: Arc<AtomicUsize>,
    pub slow: Arc<Mutex<Duration>>,
    pub closed: Arc<AtomicBool>,
}

impl WhereStore {
    fn call<T>(&self, call: impl FnOnce() -> T) -> T {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.threads.lock().unwrap().push(name);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let slow = *self.slow.lock().unwrap();
        if !slow.is_zero() {
            std::thread::sleep(slow);
        }
        while self.closed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let answer = call();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    }

    /// The calls made on the caller's thread.
    pub fn on_caller(&self) -> usize {
        self.threads
            .lock()
            .unwrap()
            .iter()
            .filter(|name| *name == CALLER)
            .count()
    }

    pub fn total(&self) -> u64 {
        self.inner.state().unwrap().windows().map(|w| w.total).sum()
    }
}

impl Store for WhereStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.call(|| self.inner.sync(batch))
    }
    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        self.call(|| self.inner.admit(request))
    }
    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        self.call(|| self.inner.lease(request))
    }
    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        self.call(|| self.inner.give_back(request))
    }
}
