//! A `MemoryStore` that holds one admission's answer until the test lets it go, so that a test
//! can land a clock move, a reconfigure, a floor or a failure exactly while an admission is in
//! flight. Clones share the store and the gate.

#![allow(dead_code)]

use quota_core::{AdmitReply, AdmitRequest, GiveBack, MemoryStore, Store, StoreError, SyncBatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Forwards to a `MemoryStore`; once armed, the next admission is applied, then waits with its
/// answer in hand until the test lets it go (`Gate::reached` says it is there). With
/// `one_window`, an admission's answer leaves out every window but the first (a store that
/// says it checks several but does not).
#[derive(Clone)]
pub struct GateStore {
    pub inner: MemoryStore,
    armed: Arc<AtomicBool>,
    pub one_window: Arc<AtomicBool>,
    reached: Arc<Mutex<mpsc::Sender<()>>>,
    go: Arc<Mutex<mpsc::Receiver<()>>>,
}

/// The test's side of a [`GateStore`].
pub struct Gate {
    pub armed: Arc<AtomicBool>,
    pub reached: mpsc::Receiver<()>,
    pub go: mpsc::Sender<()>,
}

pub fn gate(inner: MemoryStore) -> (GateStore, Gate) {
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let armed = Arc::new(AtomicBool::new(false));
    let store = GateStore {
        inner,
        armed: Arc::clone(&armed),
        one_window: Arc::new(AtomicBool::new(false)),
        reached: Arc::new(Mutex::new(reached_tx)),
        go: Arc::new(Mutex::new(go_rx)),
    };
    (store, Gate { armed, reached, go })
}

impl Store for GateStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.inner.sync(batch)
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let mut reply = self.inner.admit(request);
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.lock().unwrap().send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
        }
        if self.one_window.load(Ordering::SeqCst) {
            if let Ok(AdmitReply::Admitted { also, .. } | AdmitReply::Denied { also, .. }) =
                &mut reply
            {
                also.clear();
            }
        }
        reply
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        self.inner.give_back(request)
    }

    fn several_windows(&self) -> bool {
        true
    }
}
