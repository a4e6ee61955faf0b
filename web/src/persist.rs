//! Where the dashboard keeps its state between reloads: the browser's `localStorage`.
//!
//! [`DashboardStorage`] keeps two keys under one base key (the page uses [`DEFAULT_KEY`]):
//!
//! - `<key>.tracker`: the tracker's store, a [`StoredState`] (the stored totals of each
//!   service's windows, and which syncs were applied), written by the core's
//!   [`LocalStorageStore`] through [`OutageStore`] (which adds the "store outage" switch).
//! - `<key>.counters`: the dashboard's [`SavedCounters`]: the running config, the simulated
//!   time, and issued / denied / recorded since the reset and calls. The engine writes them
//!   right after each successful sync of the tracker, stamped with the store's
//!   `updated_at_ms` after that sync, so a page that finds both knows they describe the same
//!   moment. After a reload every number continues from the last successful sync; calls made
//!   since then (during an outage, say) are forgotten by both, and lost keeps meaning
//!   "overwritten by a racing worker".
//!
//! The store holds no config and no clock (it holds counts, which any number of trackers can
//! share): both come back from the counters.

use quota_core::{LocalStorageStore, ServiceConfig, Store, StoreError, StoredState, SyncBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The base key the page stores under.
pub const DEFAULT_KEY: &str = "quota-dashboard";

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

/// The tracker's store: `localStorage` under `<key>.tracker`, failing with
/// [`StoreError::Unavailable`] (and applying nothing) while the [`Outage`] is on. Notes each
/// successful sync in its [`Synced`], so the engine can write the counters of that same moment.
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
        let totals = self.inner.sync(batch)?;
        // The store's stamp after this sync: a batch with deltas is written with the later of
        // the two times; one without changes nothing (unless it converted old data), so read
        // it back then (rare: the read at build, a flush with nothing new).
        let stored_at_ms = if batch.deltas.is_empty() {
            self.inner
                .state()
                .map_or(self.synced.stored_at_ms(), |state| state.updated_at_ms)
        } else {
            self.synced.stored_at_ms().max(batch.at_ms)
        };
        self.synced.note(SyncedAt {
            clock_ms: batch.at_ms,
            stored_at_ms,
        });
        Ok(totals)
    }
}

/// One successful sync, as the counters are stamped with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedAt {
    /// The tracker's (simulated) time of the sync, ms since the Unix epoch.
    pub clock_ms: u64,
    /// The store's [`StoredState::updated_at_ms`] right after it.
    pub stored_at_ms: u64,
}

/// The latest successful sync not yet taken. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pending: Arc<AtomicBool>,
    clock_ms: Arc<AtomicU64>,
    stored_at_ms: Arc<AtomicU64>,
}

impl Synced {
    fn note(&self, at: SyncedAt) {
        self.clock_ms.store(at.clock_ms, Ordering::Relaxed);
        self.stored_at_ms.store(at.stored_at_ms, Ordering::Relaxed);
        self.pending.store(true, Ordering::Release);
    }

    fn stored_at_ms(&self) -> u64 {
        self.stored_at_ms.load(Ordering::Relaxed)
    }

    /// The sync since the last call, if one succeeded (one atomic load when none did: this
    /// runs after every recorded call).
    pub fn take(&self) -> Option<SyncedAt> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        self.pending.store(false, Ordering::Relaxed);
        Some(SyncedAt {
            clock_ms: self.clock_ms.load(Ordering::Relaxed),
            stored_at_ms: self.stored_at_ms(),
        })
    }
}

/// The dashboard's own state at a successful sync, under `<key>.counters` (JSON, the fields
/// below).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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

    /// Reads counters from their JSON, field by field (read by hand rather than derived: the
    /// derived reader was most of the cost of the counters in the `.wasm`); the config's
    /// services are read as the core defines them.
    ///
    /// Errors: the first field missing or of the wrong type.
    pub fn from_json(value: &Value) -> Result<SavedCounters, String> {
        let config = array(value, "config")?
            .iter()
            .map(|service| {
                ServiceConfig::deserialize(service).map_err(|error| format!("config: {error}"))
            })
            .collect::<Result<_, _>>()?;
        let services = array(value, "services")?
            .iter()
            .map(|service| {
                Ok(SavedService {
                    name: service
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("services: \"name\" is not a string")?
                        .to_owned(),
                    issued: number(service, "issued")?,
                    denied: number(service, "denied")?,
                    recorded: number(service, "recorded")?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(SavedCounters {
            version: u32::try_from(number(value, "version")?)
                .map_err(|_| "\"version\" is too large".to_owned())?,
            synced_at_ms: number(value, "synced_at_ms")?,
            clock_ms: number(value, "clock_ms")?,
            config,
            calls: number(value, "calls")?,
            services,
        })
    }
}

/// The array `field` of a JSON object.
fn array<'v>(value: &'v Value, field: &str) -> Result<&'v [Value], String> {
    match value.get(field) {
        Some(Value::Array(entries)) => Ok(entries),
        _ => Err(format!("\"{field}\" is not an array")),
    }
}

/// The whole number `field` of a JSON object.
fn number(value: &Value, field: &str) -> Result<u64, String> {
    value
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("\"{field}\" is not a whole number"))
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
        // Parsed to a `Value` first, as the core reads its store (one JSON parser in the build).
        let value = serde_json::from_str::<Value>(&text).ok();
        let version = value
            .as_ref()
            .and_then(|value| value.get("version")?.as_u64());
        if version != Some(u64::from(SavedCounters::VERSION)) {
            leptos::logging::warn!("dashboard: ignoring counters of version {version:?}");
            return None;
        }
        match value.as_ref().map(SavedCounters::from_json)? {
            Ok(counters) => Some(counters),
            Err(error) => {
                leptos::logging::warn!("dashboard: ignoring unreadable counters: {error}");
                None
            }
        }
    }

    /// Writes the counters of the sync stamped `counters.synced_at_ms`. Not behind the outage
    /// switch: it only ever follows a sync that succeeded.
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
