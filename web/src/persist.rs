//! Where the dashboard keeps its state between reloads: the browser's `localStorage`.
//!
//! [`DashboardStorage`] keeps two keys under one base key (the page uses [`DEFAULT_KEY`]):
//!
//! - `<key>.tracker`: the tracker's store, a [`StoredState`] (the stored totals of each
//!   service's windows, as `LocalStorageStore` keeps them: no exactly-once records). The tracker syncs to [`OutageStore`]
//!   (which adds the "store outage" switch), which applies its syncs to a copy in memory,
//!   [`Synced`]; [`DashboardStorage::write`] writes that copy to `localStorage`.
//! - `<key>.counters`: the dashboard's [`SavedCounters`]: the running config, the simulated
//!   time, and issued / denied / recorded since the reset and calls, written right after the
//!   tracker's store and stamped with its `updated_at_ms`, so a page that finds both knows they
//!   describe the same moment.
//!
//! Writes are bounded in real time, however fast the simulated clock runs (at 86,400x the
//! tracker syncs on almost every call): the engine writes both keys after a successful sync at
//! most every [`WRITE_INTERVAL_MS`] of real time, sooner (but not within
//! [`CRITICAL_WRITE_GAP_MS`] of the last write) when a service has just entered Critical, and at
//! once after a flush (pause, the page hidden). After a reload every number continues from the
//! last write; calls made since then (during an outage, say) are forgotten by both, and lost
//! keeps meaning "overwritten by a racing worker".
//!
//! The store holds no config and no clock (it holds counts, which any number of trackers can
//! share): both come back from the counters.

use js_sys::wasm_bindgen::JsValue;
use quota_core::{LocalStorageStore, ServiceConfig, Store, StoreError, StoredState, SyncBatch};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The base key the page stores under.
pub const DEFAULT_KEY: &str = "quota-dashboard";

/// Real ms between two writes to `localStorage` while the workers run (at most twice a second).
pub const WRITE_INTERVAL_MS: f64 = 500.0;

/// Real ms a write on entering Critical waits at least after the previous write (at the fastest
/// speeds services enter Critical hundreds of times a second).
pub const CRITICAL_WRITE_GAP_MS: f64 = 100.0;

/// The error a sync returns while the outage switch is on.
pub const OUTAGE_MESSAGE: &str = "simulated store outage";

/// The "store outage" switch. Clones share one switch.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<AtomicBool>);

impl Outage {
    /// Turns the outage on (every sync fails, the first read at build included) or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    /// Whether the outage is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The tracker's store: `localStorage` under `<key>.tracker`, written behind. The tracker's
/// first sync (the read at build) goes to `localStorage` itself (which reads what an earlier
/// page left, and moves corrupt data aside); every later sync is applied to a copy in memory,
/// the [`Synced`] state, which [`DashboardStorage::write`] writes to `localStorage`, whole and
/// together with the page's counters, at most a few times a second (the engine decides when).
/// While the [`Outage`] is on, every sync fails with [`StoreError::Unavailable`] and applies
/// nothing.
#[derive(Debug, Clone)]
pub struct OutageStore {
    inner: LocalStorageStore,
    outage: Outage,
    synced: Synced,
}

impl Store for OutageStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        if self.outage.is_on() {
            return Err(StoreError::Unavailable(OUTAGE_MESSAGE.to_owned()));
        }
        let mut synced = self.synced.lock();
        let totals = match &mut synced.state {
            // As `LocalStorageStore` applies it: no exactly-once records (a sync in memory is
            // never applied without being answered).
            Some(state) => state.apply_counts(batch),
            None => {
                let totals = self.inner.sync(batch)?;
                // The batch is counted: a failing read now must not fail the sync (its resend
                // would count again). The next sync reads `localStorage` once more.
                synced.state = self.inner.state().ok();
                totals
            }
        };
        synced.clock_ms = batch.at_ms;
        synced.fresh = true;
        Ok(totals)
    }
}

/// The tracker's store as its successful syncs left it (in memory). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Synced(Arc<Mutex<SyncedState>>);

#[derive(Debug, Default)]
struct SyncedState {
    /// The store after the latest successful sync; `None` before the first.
    state: Option<StoredState>,
    /// The tracker's (simulated) time of that sync, ms since the Unix epoch.
    clock_ms: u64,
    /// A sync succeeded since the last [`Synced::take`].
    fresh: bool,
}

impl Synced {
    fn lock(&self) -> MutexGuard<'_, SyncedState> {
        crate::locks::lock(&self.0)
    }

    /// Whether a sync succeeded since the last call (this runs after every recorded call).
    pub fn take(&self) -> bool {
        std::mem::take(&mut self.lock().fresh)
    }
}

/// The dashboard's own state at a successful sync, under `<key>.counters` (JSON, the fields
/// below). Read and written through the browser's `JSON` and serde-wasm-bindgen, as the core
/// reads its store: the `.wasm` carries no JSON parser or writer of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCounters {
    /// Format version, [`SavedCounters::VERSION`].
    pub version: u32,
    /// The store's `updated_at_ms` right after the sync these counters go with.
    pub synced_at_ms: u64,
    /// The simulated time of that sync: a reload continues the clock from here.
    pub clock_ms: u64,
    /// The running config: a reload runs it again.
    pub config: Vec<ServiceConfig>,
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
    /// Units issued (attempted) since the reset.
    pub issued: u64,
    /// Units `try_record` refused since the reset.
    pub denied: u64,
    /// Units the tracker recorded since the reset, across windows.
    pub recorded: u64,
}

impl SavedCounters {
    /// The only format version this build reads and writes (version 1 went with the tracker's
    /// old snapshot state, which held the config and the time).
    pub const VERSION: u32 = 2;

    /// The counters of service `name`, if saved.
    pub fn service(&self, name: &str) -> Option<&SavedService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Reads counters from their parsed JSON (`JSON.parse`'s result).
    ///
    /// Errors: the first field missing or of the wrong type, as serde-wasm-bindgen words it.
    pub fn from_json(value: JsValue) -> Result<SavedCounters, String> {
        serde_wasm_bindgen::from_value(value).map_err(|error| error.to_string())
    }

    /// The counters as JSON text.
    ///
    /// Errors: a number past `Number.MAX_SAFE_INTEGER` (2^53 - 1), which JSON in the browser
    /// would round.
    pub fn to_json(&self) -> Result<String, String> {
        let value = self
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|error| error.to_string())?;
        // Plain objects of strings, numbers, booleans and nulls always stringify.
        Ok(js_sys::JSON::stringify(&value)
            .map(String::from)
            .unwrap_or_default())
    }
}

/// What a previous page left.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    /// The store's `updated_at_ms`, if it holds anything readable.
    pub stored_at_ms: Option<u64>,
    /// The counters of the store's last sync; `None` if missing, unreadable, or from another
    /// sync.
    pub counters: Option<SavedCounters>,
}

/// The dashboard's two `localStorage` keys (the tracker's store, the page's counters) and the
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

    /// The key the tracker's store is under.
    pub fn tracker_key(&self) -> &str {
        &self.tracker_key
    }

    /// A new store for a tracker, and the [`Synced`] it reports its syncs to.
    pub fn store(&self) -> (OutageStore, Synced) {
        let synced = Synced::default();
        let store = OutageStore {
            inner: LocalStorageStore::new(self.tracker_key.clone()),
            outage: self.outage.clone(),
            synced: synced.clone(),
        };
        (store, synced)
    }

    /// The tracker's store as it is now (empty if nothing is stored).
    ///
    /// Errors: the store's, for corrupt data or no `localStorage`.
    pub fn stored(&self) -> Result<StoredState, StoreError> {
        LocalStorageStore::new(self.tracker_key.clone()).state()
    }

    /// What a previous page saved. Unreadable data is logged and ignored (the tracker reports
    /// its own errors reading the store in its stats).
    pub fn load(&self) -> Saved {
        let stored_at_ms = match self.stored() {
            Ok(state) => Some(state.updated_at_ms),
            Err(error) => {
                leptos::logging::warn!("dashboard: not restoring the counts: {error}");
                None
            }
        };
        let counters = stored_at_ms.and_then(|stored_at_ms| {
            let counters = self.load_counters()?;
            if counters.synced_at_ms == stored_at_ms {
                Some(counters)
            } else {
                leptos::logging::warn!(
                    "dashboard: counters are from another sync ({} ms, the store's {} ms); \
                     counting from 0",
                    counters.synced_at_ms,
                    stored_at_ms
                );
                None
            }
        });
        Saved {
            stored_at_ms,
            counters,
        }
    }

    fn load_counters(&self) -> Option<SavedCounters> {
        let text = local_storage()?.get_item(&self.counters_key).ok()??;
        let value = js_sys::JSON::parse(&text).unwrap_or(JsValue::UNDEFINED);
        let version = js_sys::Reflect::get(&value, &JsValue::from_str("version"))
            .ok()
            .and_then(|version| version.as_f64());
        if version != Some(f64::from(SavedCounters::VERSION)) {
            // Rust's float formatting stays out of the `.wasm` (see `format::number`).
            let version = version.map(crate::format::number);
            leptos::logging::warn!("dashboard: ignoring counters of version {version:?}");
            return None;
        }
        match SavedCounters::from_json(value) {
            Ok(counters) => Some(counters),
            Err(error) => {
                leptos::logging::warn!("dashboard: ignoring unreadable counters: {error}");
                None
            }
        }
    }

    /// Writes the tracker's store as `synced` holds it and, right after, the page's counters
    /// that go with it: `counters(synced_at_ms, clock_ms)`, given the store's `updated_at_ms`
    /// and the simulated time of its latest sync. Call it only when the counters now describe
    /// that sync (right after a tracker call or a flush that succeeded). Not behind the outage
    /// switch: `synced` holds only syncs that succeeded. Nothing to write before the first sync.
    pub fn write(&self, synced: &Synced, counters: impl FnOnce(u64, u64) -> SavedCounters) {
        let synced = synced.lock();
        let clock_ms = synced.clock_ms;
        let Some(state) = &synced.state else {
            return;
        };
        let Some(storage) = local_storage() else {
            return;
        };
        // The counters written out first: if they cannot be, neither key changes, and the
        // pair left describes one moment.
        let text = match counters(state.updated_at_ms, clock_ms).to_json() {
            Ok(text) => text,
            Err(error) => {
                leptos::logging::warn!("dashboard: could not save the counters: {error}");
                return;
            }
        };
        if let Err(error) = storage.set_item(&self.tracker_key, &state.to_json_counts()) {
            leptos::logging::warn!("dashboard: could not save the tracker's store: {error:?}");
            return;
        }
        if let Err(error) = storage.set_item(&self.counters_key, &text) {
            leptos::logging::warn!("dashboard: could not save the counters: {error:?}");
        }
    }

    /// Removes both keys: the next tracker starts from nothing.
    pub fn clear(&self) {
        if let Err(error) = LocalStorageStore::new(self.tracker_key.clone()).clear() {
            leptos::logging::warn!("dashboard: could not clear the tracker's store: {error}");
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
