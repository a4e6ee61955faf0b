//! DEMONSTRATION ONLY: the old persistence protocol, where each tracker instance wrote its whole
//! view over the store, kept so the dashboard can show what it loses when instances share one
//! store. Never use it to keep counts: use a real [`Store`] (such as
//! [`MemoryStore`](quota_core::MemoryStore)), which adds deltas.

use quota_core::{InstanceId, Store, StoreError, SyncBatch, WindowKey, WindowSpec};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// A window as this store keys it: service, window spec, start.
type WindowId = (String, WindowSpec, u64);

fn id(window: &WindowKey) -> WindowId {
    (window.service.clone(), window.spec.clone(), window.start_ms)
}

/// DEMONSTRATION ONLY, not a store to keep counts in: the snapshot protocol the [`Store`] trait
/// replaced, behind that trait so that the same trackers can use it.
///
/// Each instance keeps its own view: what the store held when the instance first synced (the
/// "load" at build), plus every call the instance recorded since. Every sync with calls "saves"
/// that whole view: it replaces whatever the store holds. The instance never sees the other
/// instances' calls again, and each save erases the calls the others saved since its load: the
/// lost update, one level up (between processes instead of threads): two instances that
/// both load 0 and then save 5 and 3 leave 3 in the store, not 8.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// What the store holds: the last view saved, whole.
    stored: BTreeMap<WindowId, u64>,
    /// Each instance's own view, and the last batch it applied (a retry is applied once).
    views: BTreeMap<InstanceId, View>,
}

#[derive(Debug, Default, Clone)]
struct View {
    totals: BTreeMap<WindowId, u64>,
    last_seq: u64,
}

impl SnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the store holds for `service` in windows of `spec` now, summed across them (a
    /// service of several limits stores each call once per limit, in each limit's window).
    pub fn total(&self, service: &str, spec: &WindowSpec) -> u64 {
        self.lock()
            .stored
            .iter()
            .filter(|((name, stored, _), _)| name == service && stored == spec)
            .map(|(_, total)| *total)
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::locks::lock(&self.inner)
    }
}

impl Store for SnapshotStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let mut inner = self.lock();
        let Inner { stored, views } = &mut *inner;
        // An instance's first sync is its load: its view starts as what the store holds.
        let view = views.entry(batch.instance).or_insert_with(|| View {
            totals: batch
                .read
                .iter()
                .map(|window| {
                    let window = id(window);
                    let total = stored.get(&window).copied().unwrap_or(0);
                    (window, total)
                })
                .collect(),
            last_seq: 0,
        });
        if !batch.deltas.is_empty() && batch.seq > view.last_seq {
            view.last_seq = batch.seq;
            for delta in &batch.deltas {
                let total = view.totals.entry(id(&delta.window)).or_insert(0);
                *total = total.saturating_add(delta.calls);
            }
            // The save: the whole view replaces whatever the store holds, including the calls
            // other instances saved since this one loaded.
            *stored = view.totals.clone();
        }
        // The reply is the instance's own view: it never loads again.
        Ok(batch
            .read
            .iter()
            .map(|window| view.totals.get(&id(window)).copied().unwrap_or(0))
            .collect())
    }
}
