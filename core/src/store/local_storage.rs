//! The browser's `localStorage`, under one key.

use super::{Store, StoreError, StoredState, SyncBatch};

/// The browser's `localStorage`, under one key ([`StoredState`] JSON, version 2). Holds only
/// the key, so it is `Send + Sync`; each sync looks `localStorage` up, and reports
/// [`StoreError::Unavailable`] where there is none (Node, some private modes).
///
/// Within one tab, any number of trackers share it exactly (a tab runs one thread, and a sync
/// is one synchronous read-add-write). Several tabs on one origin share the key too, but
/// `localStorage` has no lock across tabs: two tabs syncing at the same moment can lose one
/// tab's delta. Give each tab its own key where that matters.
///
/// It keeps no exactly-once records ([`StoredState::apply_counts`]): a sync either writes the
/// key and answers, or fails having written nothing (`setItem` throws without storing, as the
/// Web Storage standard has it: a storage that stored and then threw would count a resend
/// again), so a tracker resends only what was not counted, and no reply can be lost between
/// the two. The
/// document holds the windows' counts only; records another store wrote into it (a document
/// copied from a file) are dropped at the next write, its counts kept.
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

    /// Whether this runtime has a `localStorage` at all.
    pub fn available() -> bool {
        storage().is_ok()
    }

    /// Removes the stored state.
    pub fn clear(&self) -> Result<(), StoreError> {
        storage()?
            .remove_item(&self.key)
            .map_err(|e| StoreError::Io(format!("localStorage.removeItem: {e:?}")))
    }

    /// The stored counts now (empty if nothing is stored), as a sync reads them.
    pub fn state(&self) -> Result<StoredState, StoreError> {
        match self.read()? {
            None => Ok(StoredState::new()),
            Some(text) => StoredState::from_json_counts(&text),
        }
    }

    fn read(&self) -> Result<Option<String>, StoreError> {
        storage()?
            .get_item(&self.key)
            .map_err(|e| StoreError::Io(format!("localStorage.getItem: {e:?}")))
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
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let storage = storage()?;
        let mut state = match self.read()?.as_deref().map(StoredState::from_json_counts) {
            None => StoredState::new(),
            Some(Ok(state)) => state,
            Some(Err(error)) => {
                // Kept beside the key, never dropped; the next sync starts from nothing. A copy
                // that cannot be written (the storage full) leaves the data where it is.
                if let Some(text) = self.read()? {
                    let aside = format!("{}.corrupt-{}", self.key, batch.at_ms);
                    if storage.set_item(&aside, &text).is_err() {
                        return Err(error);
                    }
                }
                let _ = storage.remove_item(&self.key);
                return Err(error);
            }
        };
        let totals = state.apply_counts(batch);
        if batch.changes() || state.converted() {
            storage
                .set_item(&self.key, &state.to_json_counts())
                .map_err(|e| StoreError::Io(format!("localStorage.setItem: {e:?}")))?;
        }
        Ok(totals)
    }
}
