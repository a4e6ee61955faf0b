//! Where the dashboard keeps its state between reloads: the browser's `localStorage`.
//!
//! [`DashboardStorage`] keeps two keys under one base key (the page uses [`DEFAULT_KEY`]):
//!
//! - `<key>.tracker`: the tracker's own [`PersistedState`], written by the core through
//!   [`OutageStore`] (a [`LocalStorageStore`] behind the "store outage" switch).
//! - `<key>.counters`: the dashboard's [`SavedCounters`] (issued, recorded since the reset, and
//!   calls), written by the engine right after each successful sync of the tracker and stamped
//!   with that sync's time, so the two always describe the same moment. After a reload every
//!   number continues from the last successful sync; calls made since then (during an outage,
//!   say) are forgotten by both, and lost keeps meaning "overwritten by a racing worker".

use quota_core::{LocalStorageStore, PersistedState, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The base key the page stores under.
pub const DEFAULT_KEY: &str = "quota-dashboard";

/// The error a save or load returns while the outage switch is on.
pub const OUTAGE_MESSAGE: &str = "simulated store outage";

/// The "store outage" switch. Clones share one switch.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<AtomicBool>);

impl Outage {
    /// Turns the outage on (every load and save fails) or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    /// Whether the outage is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The tracker's store: `localStorage` under `<key>.tracker`, failing with
/// [`StoreError::Unavailable`] while the [`Outage`] is on. Notes the time of each successful
/// save in its [`Synced`], so the engine can write the counters of that same moment.
#[derive(Debug, Clone)]
pub struct OutageStore {
    inner: LocalStorageStore,
    outage: Outage,
    synced: Synced,
}

impl OutageStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.outage.is_on() {
            Err(StoreError::Unavailable(OUTAGE_MESSAGE.to_owned()))
        } else {
            Ok(())
        }
    }
}

impl Store for OutageStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        self.check()?;
        self.inner.load()
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save(state)?;
        self.synced.note(state.updated_at_ms);
        Ok(())
    }
}

/// The time of the latest successful save not yet taken. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pending: Arc<AtomicBool>,
    at_ms: Arc<AtomicU64>,
}

impl Synced {
    fn note(&self, at_ms: u64) {
        self.at_ms.store(at_ms, Ordering::Relaxed);
        self.pending.store(true, Ordering::Release);
    }

    /// The tracker time of the save since the last call, if one succeeded (one atomic load
    /// when none did: this runs after every recorded call).
    pub fn take(&self) -> Option<u64> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        self.pending.store(false, Ordering::Relaxed);
        Some(self.at_ms.load(Ordering::Relaxed))
    }
}

/// The dashboard's own numbers at a successful sync, under `<key>.counters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCounters {
    /// Format version, [`SavedCounters::VERSION`].
    pub version: u32,
    /// The `updated_at_ms` of the tracker state saved with these counters.
    pub synced_at_ms: u64,
    /// Calls issued since the reset.
    pub calls: u64,
    /// Per service, in config order.
    pub services: Vec<SavedService>,
}

/// One service in [`SavedCounters`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedService {
    /// The service's name.
    pub name: String,
    /// Units issued since the reset.
    pub issued: u64,
    /// Units the tracker recorded since the reset, across windows.
    pub recorded: u64,
}

impl SavedCounters {
    /// The only format version this build reads and writes.
    pub const VERSION: u32 = 1;

    /// The counters of service `name`, if saved.
    pub fn service(&self, name: &str) -> Option<&SavedService> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// What a previous page left: the tracker's state and the counters saved with it.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    /// The tracker's last saved state.
    pub tracker: Option<PersistedState>,
    /// The counters of that same sync; `None` if missing, unreadable, or from another sync.
    pub counters: Option<SavedCounters>,
}

/// The dashboard's two `localStorage` keys (the tracker's state, the page's counters) and the
/// outage switch its stores share.
#[derive(Debug, Clone)]
pub struct DashboardStorage {
    tracker_key: String,
    counters_key: String,
    outage: Outage,
}

impl DashboardStorage {
    /// The keys `<key>.tracker` and `<key>.counters`, with the outage off.
    pub fn new(key: &str) -> Self {
        DashboardStorage {
            tracker_key: format!("{key}.tracker"),
            counters_key: format!("{key}.counters"),
            outage: Outage::default(),
        }
    }

    /// The outage switch.
    pub fn outage(&self) -> &Outage {
        &self.outage
    }

    /// The key the tracker's state is saved under.
    pub fn tracker_key(&self) -> &str {
        &self.tracker_key
    }

    /// A new store for a tracker, and the [`Synced`] it reports its saves to.
    pub fn store(&self) -> (OutageStore, Synced) {
        let synced = Synced::default();
        let store = OutageStore {
            inner: LocalStorageStore::new(self.tracker_key.clone()),
            outage: self.outage.clone(),
            synced: synced.clone(),
        };
        (store, synced)
    }

    /// What a previous page saved. Unreadable data is logged and ignored (the tracker reports
    /// its own load errors in its stats).
    pub fn load(&self) -> Saved {
        let tracker = match LocalStorageStore::new(self.tracker_key.clone()).load() {
            Ok(state) => state,
            Err(error) => {
                leptos::logging::warn!("dashboard: not restoring the tracker: {error}");
                None
            }
        };
        let counters = tracker.as_ref().and_then(|state| {
            let counters = self.load_counters()?;
            if counters.synced_at_ms == state.updated_at_ms {
                Some(counters)
            } else {
                leptos::logging::warn!(
                    "dashboard: counters are from another sync ({} ms, the tracker's {} ms); \
                     counting from 0",
                    counters.synced_at_ms,
                    state.updated_at_ms
                );
                None
            }
        });
        Saved { tracker, counters }
    }

    fn load_counters(&self) -> Option<SavedCounters> {
        let text = local_storage()?.get_item(&self.counters_key).ok()??;
        match serde_json::from_str::<SavedCounters>(&text) {
            Ok(counters) if counters.version == SavedCounters::VERSION => Some(counters),
            Ok(counters) => {
                leptos::logging::warn!(
                    "dashboard: ignoring counters of version {}",
                    counters.version
                );
                None
            }
            Err(error) => {
                leptos::logging::warn!("dashboard: ignoring unreadable counters: {error}");
                None
            }
        }
    }

    /// Writes the counters of the sync at `counters.synced_at_ms`. Not behind the outage
    /// switch: it only ever follows a save that succeeded.
    pub fn save_counters(&self, counters: &SavedCounters) {
        let Some(storage) = local_storage() else {
            return;
        };
        let text = serde_json::to_string(counters).unwrap_or_default();
        if let Err(error) = storage.set_item(&self.counters_key, &text) {
            leptos::logging::warn!("dashboard: could not save the counters: {error:?}");
        }
    }

    /// Removes both keys: the next tracker starts from nothing.
    pub fn clear(&self) {
        if let Err(error) = LocalStorageStore::new(self.tracker_key.clone()).clear() {
            leptos::logging::warn!("dashboard: could not clear the tracker state: {error}");
        }
        if let Some(storage) = local_storage() {
            if let Err(error) = storage.remove_item(&self.counters_key) {
                leptos::logging::warn!("dashboard: could not clear the counters: {error:?}");
            }
        }
    }
}

/// The page's `localStorage`, if the browser allows it.
fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}
