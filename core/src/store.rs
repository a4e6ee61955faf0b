//! Where counts persist: the [`Store`] trait, its JSON format and three stores.
//!
//! The tracker saves through a store after its locks are released (see
//! [`SyncPolicy`](crate::SyncPolicy)); a store that fails never blocks calls or loses counts.

use crate::service::ServiceConfig;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a store could not load or save.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stored data is not a valid [`PersistedState`]; the message says what was wrong.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// Reading or writing failed.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The store cannot be reached at all (for instance no `localStorage` in this runtime).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A failure injected on purpose by [`MemoryStore::fail_next`] or
    /// [`MemoryStore::set_failing`].
    #[error("injected store failure")]
    Injected,
    /// The store panicked; the tracker caught it and counted a failed load or save.
    #[error("the store panicked: {0}")]
    Panicked(String),
    /// [`flush`](crate::QuotaTracker::flush) was called from inside that tracker's own save
    /// (a store that calls back into its tracker): waiting for the save would wait forever.
    #[error("flush called from inside the tracker's own save")]
    Reentrant,
}

/// Persists the tracker's counts. Object-safe; `Send + Sync` so a tracker holding one stays so.
///
/// The tracker calls it from whichever thread triggered a save, never while holding a
/// service lock, and never twice at once. A save replaces the whole state: give each live
/// tracker its own store (two trackers saving to one store overwrite each other's counts).
pub trait Store: Send + Sync {
    /// The last saved state, or `None` if nothing was saved yet.
    fn load(&self) -> Result<Option<PersistedState>, StoreError>;
    /// Replaces the saved state with `state`.
    fn save(&self, state: &PersistedState) -> Result<(), StoreError>;
}

/// A shared store is a store: keep a handle to inspect it while a tracker uses it.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        (**self).load()
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        (**self).save(state)
    }
}

/// What a store holds: JSON with `"version": 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    /// The format version, [`PersistedState::VERSION`].
    pub version: u32,
    /// Each service's count in the window it was saved in.
    pub services: Vec<PersistedService>,
    /// When it was saved (the tracker clock), ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// One service in a [`PersistedState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedService {
    /// The service's name.
    pub name: String,
    /// Calls used in the window starting at `window_start_ms`.
    pub used: u64,
    /// Start of the window `used` counts in, ms since the Unix epoch.
    pub window_start_ms: u64,
    /// The service's config when saved.
    pub config: ServiceConfig,
    /// Set when the service moved to `window_start_ms` on a clock reading that may have been
    /// bogus (far ahead or far behind): the window it left and the calls it still owns there.
    /// A tracker whose clock is in that window restores `previous.used + used`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PersistedWindow>,
}

/// A window and the calls counted in it, in a [`PersistedService`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedWindow {
    /// Start of the window, ms since the Unix epoch.
    pub window_start_ms: u64,
    /// Calls counted there.
    pub used: u64,
}

impl PersistedState {
    /// The only format version this build reads and writes.
    pub const VERSION: u32 = 1;

    /// The state as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings, numbers and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses JSON text; anything but a well-formed version 1 state is
    /// [`StoreError::Corrupt`] with the reason.
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        if text.trim().is_empty() {
            return Err(StoreError::Corrupt("empty data".into()));
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| StoreError::Corrupt(format!("not valid JSON: {error}")))?;
        match value.get("version") {
            None => return Err(StoreError::Corrupt("no \"version\" field".into())),
            Some(version) if version.as_u64() != Some(u64::from(Self::VERSION)) => {
                return Err(StoreError::Corrupt(format!(
                    "unsupported version {version} (this build reads version {})",
                    Self::VERSION
                )))
            }
            Some(_) => {}
        }
        let state: PersistedState = serde_json::from_value(value)
            .map_err(|error| StoreError::Corrupt(format!("unexpected content: {error}")))?;
        for service in &state.services {
            service
                .config
                .validate()
                .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        }
        Ok(state)
    }
}

/// A store in memory, for tests and demos, with switches to make it fail.
/// Clones share the data and the switches.
///
/// ```
/// use quota_core::{MemoryStore, Store};
/// let store = MemoryStore::new();
/// store.fail_next(1);
/// assert!(store.load().is_err());
/// assert_eq!(store.load(), Ok(None));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    text: Option<String>,
    fail_next: u64,
    failing: bool,
}

impl MemoryStore {
    /// An empty store that works.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` loads or saves fail with [`StoreError::Injected`].
    pub fn fail_next(&self, n: u64) {
        self.lock().fail_next = n;
    }

    /// Makes every load and save fail until called with `false`.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// The stored JSON text, as a save left it.
    pub fn raw(&self) -> Option<String> {
        self.lock().text.clone()
    }

    /// Replaces the stored text, to simulate corrupt or foreign data.
    pub fn set_raw(&self, text: Option<String>) {
        self.lock().text = text;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn injected_failure(inner: &mut MemoryInner) -> Result<(), StoreError> {
        if inner.failing {
            return Err(StoreError::Injected);
        }
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            return Err(StoreError::Injected);
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let mut inner = self.lock();
        Self::injected_failure(&mut inner)?;
        inner
            .text
            .as_deref()
            .map(PersistedState::from_json)
            .transpose()
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::injected_failure(&mut inner)?;
        inner.text = Some(state.to_json());
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use file::FileStore;

#[cfg(not(target_arch = "wasm32"))]
mod file {
    use super::{PersistedState, Store, StoreError};
    use std::fs::{self, File};
    use std::io::{ErrorKind, Write};
    use std::path::{Path, PathBuf};

    /// A JSON file. Saves write a temporary file beside it, fsync it and rename it over the
    /// old one, so a crash leaves either the old state or the new one, never a mix.
    ///
    /// A file that does not parse is moved aside as `<name>.corrupt-<ms>` (its bytes are kept,
    /// never silently dropped), the load reports [`StoreError::Corrupt`], and the next save
    /// starts a fresh file.
    #[derive(Debug, Clone)]
    pub struct FileStore {
        path: PathBuf,
    }

    impl FileStore {
        /// A store at `path` (the file need not exist yet; its folder must).
        pub fn new(path: impl Into<PathBuf>) -> Self {
            FileStore { path: path.into() }
        }

        /// The file's path.
        pub fn path(&self) -> &Path {
            &self.path
        }

        fn sibling(&self, suffix: &str) -> PathBuf {
            let mut name = self.path.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            self.path.with_file_name(name)
        }

        fn move_aside(&self) -> Result<PathBuf, StoreError> {
            let ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
            let mut aside = self.sibling(&format!(".corrupt-{ms}"));
            let mut n = 1;
            while aside.exists() {
                aside = self.sibling(&format!(".corrupt-{ms}-{n}"));
                n += 1;
            }
            fs::rename(&self.path, &aside).map_err(|error| {
                StoreError::Io(format!("moving {} aside: {error}", self.path.display()))
            })?;
            Ok(aside)
        }
    }

    fn io(what: &str, path: &Path, error: std::io::Error) -> StoreError {
        StoreError::Io(format!("{what} {}: {error}", path.display()))
    }

    impl Store for FileStore {
        fn load(&self) -> Result<Option<PersistedState>, StoreError> {
            let bytes = match fs::read(&self.path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(io("reading", &self.path, error)),
            };
            let parsed = std::str::from_utf8(&bytes)
                .map_err(|error| StoreError::Corrupt(format!("not UTF-8: {error}")))
                .and_then(PersistedState::from_json);
            match parsed {
                Ok(state) => Ok(Some(state)),
                Err(StoreError::Corrupt(reason)) => {
                    let aside = self.move_aside()?;
                    Err(StoreError::Corrupt(format!(
                        "{}: {reason}; moved aside to {}",
                        self.path.display(),
                        aside.display()
                    )))
                }
                Err(other) => Err(other),
            }
        }

        fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
            let temp = self.sibling(".tmp");
            let mut file = File::create(&temp).map_err(|e| io("creating", &temp, e))?;
            file.write_all(state.to_json().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io("writing", &temp, e))?;
            drop(file);
            fs::rename(&temp, &self.path).map_err(|e| io("renaming onto", &self.path, e))?;
            // Make the rename itself durable.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Ok(dir) = File::open(dir) {
                    let _ = dir.sync_all();
                }
            }
            Ok(())
        }
    }
}

#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub use local_storage::LocalStorageStore;

#[cfg(all(feature = "browser", target_arch = "wasm32"))]
mod local_storage {
    use super::{PersistedState, Store, StoreError};

    /// The browser's `localStorage`, under one key. Holds only the key, so it is `Send + Sync`;
    /// each load and save looks `localStorage` up, and reports
    /// [`StoreError::Unavailable`] where there is none (Node, some private modes).
    #[derive(Debug, Clone)]
    pub struct LocalStorageStore {
        key: String,
    }

    impl LocalStorageStore {
        /// The key used when none is given.
        pub const DEFAULT_KEY: &'static str = "quota-tracker";

        /// A store under `key`.
        pub fn new(key: impl Into<String>) -> Self {
            LocalStorageStore { key: key.into() }
        }

        /// The key it stores under.
        pub fn key(&self) -> &str {
            &self.key
        }

        /// Removes the stored state.
        pub fn clear(&self) -> Result<(), StoreError> {
            storage()?
                .remove_item(&self.key)
                .map_err(|e| StoreError::Io(format!("localStorage.removeItem: {e:?}")))
        }
    }

    impl Default for LocalStorageStore {
        fn default() -> Self {
            Self::new(Self::DEFAULT_KEY)
        }
    }

    fn storage() -> Result<web_sys::Storage, StoreError> {
        let unavailable = || StoreError::Unavailable("no localStorage in this runtime".into());
        web_sys::window()
            .ok_or_else(unavailable)?
            .local_storage()
            .ok()
            .flatten()
            .ok_or_else(unavailable)
    }

    impl Store for LocalStorageStore {
        fn load(&self) -> Result<Option<PersistedState>, StoreError> {
            let text = storage()?
                .get_item(&self.key)
                .map_err(|e| StoreError::Io(format!("localStorage.getItem: {e:?}")))?;
            text.as_deref().map(PersistedState::from_json).transpose()
        }

        fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
            storage()?
                .set_item(&self.key, &state.to_json())
                .map_err(|e| StoreError::Io(format!("localStorage.setItem: {e:?}")))
        }
    }
}
