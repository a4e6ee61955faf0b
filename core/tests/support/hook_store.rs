//! A real `MemoryStore` with hooks: the next lease (or give-back) runs a closure in its place,
//! on the caller's thread, with no tracker lock held (the tracker promises that), so a test
//! can land a reconfigure, a raise, a clock move, a panic or a hang exactly while a lease is in
//! flight, or tamper with a reply. Clones share the store and the hooks.

#![allow(dead_code)]

use quota_core::{
    AdmitReply, AdmitRequest, GiveBack, LeaseReply, LeaseRequest, MemoryStore, Store, StoreError,
    SyncBatch,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub type LeaseHook =
    Box<dyn FnOnce(&MemoryStore, &LeaseRequest) -> Result<LeaseReply, StoreError> + Send>;
pub type GiveBackHook = Box<dyn FnOnce(&MemoryStore, &GiveBack) -> Result<u64, StoreError> + Send>;

#[derive(Clone, Default)]
pub struct HookStore {
    pub inner: MemoryStore,
    leases: Arc<Mutex<VecDeque<LeaseHook>>>,
    give_backs: Arc<Mutex<VecDeque<GiveBackHook>>>,
    /// Every lease request seen, in order (hooked or not).
    pub seen_leases: Arc<Mutex<Vec<LeaseRequest>>>,
}

impl HookStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next lease runs `hook` instead of the store's own (the hook may call it).
    pub fn on_lease(
        &self,
        hook: impl FnOnce(&MemoryStore, &LeaseRequest) -> Result<LeaseReply, StoreError>
            + Send
            + 'static,
    ) {
        self.leases.lock().unwrap().push_back(Box::new(hook));
    }

    /// The next give-back runs `hook` instead of the store's own (the hook may call it).
    pub fn on_give_back(
        &self,
        hook: impl FnOnce(&MemoryStore, &GiveBack) -> Result<u64, StoreError> + Send + 'static,
    ) {
        self.give_backs.lock().unwrap().push_back(Box::new(hook));
    }
}

impl Store for HookStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.inner.sync(batch)
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        self.inner.admit(request)
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        self.seen_leases.lock().unwrap().push(request.clone());
        // Taken out before it runs: a hook may lease again (no lock held meanwhile).
        let hook = self.leases.lock().unwrap().pop_front();
        match hook {
            Some(hook) => hook(&self.inner, request),
            None => self.inner.lease(request),
        }
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        let hook = self.give_backs.lock().unwrap().pop_front();
        match hook {
            Some(hook) => hook(&self.inner, request),
            None => self.inner.give_back(request),
        }
    }

    fn several_windows(&self) -> bool {
        true
    }
}
