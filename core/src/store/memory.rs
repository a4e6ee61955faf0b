//! A store in memory, with switches to make it fail.

#[cfg(feature = "shared-admission")]
use super::{AdmitReply, AdmitRequest, GiveBack, LeaseReply, LeaseRequest};
use super::{StoreError, StoredState, SyncBatch};
use crate::store::Store;
// The store's own data, outside the tracker: std's lock (not the loom-aware one), held only
// for one parse-apply-write with no callback inside.
use std::sync::{Arc, Mutex};

/// A store in memory, for tests, demos and trackers sharing counts within one process. Clones
/// share the data and the switches; any number of trackers may sync to it at once.
/// Its `admit`, `lease` and `give_back` (shared admission) come with the crate feature
/// `shared-admission`, as `Admission::Exact` and `Leased` do.
///
/// ```
/// use quota_core::{InstanceId, MemoryStore, Store, SyncBatch};
/// let store = MemoryStore::new();
/// let read = SyncBatch { instance: InstanceId::random(), seq: 0, done_below: 0, at_ms: 0, deltas: vec![], read: vec![], raises: vec![] };
/// store.fail_next(1);
/// assert!(store.sync(&read).is_err());
/// assert_eq!(store.sync(&read), Ok(vec![]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    text: Option<String>,
    /// Texts that did not parse, moved aside (never dropped).
    aside: Vec<String>,
    fail_next: u64,
    failing: bool,
    lose_replies: u64,
    syncs: u64,
}

impl MemoryStore {
    /// An empty store that works.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` syncs fail with [`StoreError::Injected`], applying nothing.
    pub fn fail_next(&self, n: u64) {
        self.lock().fail_next = n;
    }

    /// Makes every sync fail (applying nothing) until called with `false`.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Makes the next `n` calls (syncs, admissions, leases, give-backs) apply and then fail as
    /// if the reply was lost ([`StoreError::Io`]): the tracker resends the same operation,
    /// which must count once.
    pub fn lose_next_replies(&self, n: u64) {
        self.lock().lose_replies = n;
    }

    /// The stored JSON text, as the last sync left it.
    pub fn raw(&self) -> Option<String> {
        self.lock().text.clone()
    }

    /// Replaces the stored text, to simulate corrupt, old or foreign data.
    pub fn set_raw(&self, text: Option<String>) {
        self.lock().text = text;
    }

    /// Texts that were moved aside because they did not parse, oldest first.
    pub fn moved_aside(&self) -> Vec<String> {
        self.lock().aside.clone()
    }

    /// The stored state now (empty if nothing was stored).
    ///
    /// Errors: [`StoreError::Corrupt`] if the stored text does not parse.
    pub fn state(&self) -> Result<StoredState, StoreError> {
        match &self.lock().text {
            None => Ok(StoredState::new()),
            Some(text) => StoredState::from_json(text),
        }
    }

    /// Syncs attempted so far (failed ones included).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        crate::locks::lock_std(&self.inner)
    }
}

impl MemoryStore {
    /// One atomic read-change-write of the stored state, with the fault switches.
    fn with_state<T>(&self, change: impl FnOnce(&mut StoredState) -> T) -> Result<T, StoreError> {
        let mut inner = self.lock();
        inner.syncs += 1;
        if inner.failing {
            return Err(StoreError::Injected);
        }
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            return Err(StoreError::Injected);
        }
        let mut state = match inner.text.as_deref().map(StoredState::from_json) {
            None => StoredState::new(),
            Some(Ok(state)) => state,
            Some(Err(error)) => {
                // Kept, never dropped; the next sync starts from nothing.
                if let Some(text) = inner.text.take() {
                    inner.aside.push(text);
                }
                return Err(error);
            }
        };
        let answer = change(&mut state);
        inner.text = Some(state.to_json());
        if inner.lose_replies > 0 {
            inner.lose_replies -= 1;
            return Err(StoreError::Io("the reply was lost (injected)".into()));
        }
        Ok(answer)
    }
}

/// All three admission modes: one process's trackers share it exactly (the lock is the
/// atomic step).
impl Store for MemoryStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.with_state(|state| state.apply(batch))
    }

    // Shared admission (`Exact`, `Leased`) only with its feature: a build without it never
    // asks, and leaves their code out (the dashboard's `.wasm`).
    #[cfg(feature = "shared-admission")]
    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        request.check()?;
        self.with_state(|state| state.admit(request))
    }

    #[cfg(feature = "shared-admission")]
    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        request.check()?;
        self.with_state(|state| state.lease(request))
    }

    #[cfg(feature = "shared-admission")]
    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        request.check()?;
        self.with_state(|state| state.give_back(request))
    }

    #[cfg(feature = "shared-admission")]
    fn several_windows(&self) -> bool {
        true
    }
}
