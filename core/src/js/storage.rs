//! The store behind `storage: { key }` (`localStorage[key]`), and the error where there is
//! none.

use super::input;
use crate::store::Store;
use js_sys::Error;

/// The store behind `storage: { key }`: `localStorage[key]`. A runtime without
/// `localStorage` (Node, a browser that refuses it) is a configuration error: a store that
/// cannot exist would only make every save fail and the tracker fall to reduced rate.
#[cfg(target_arch = "wasm32")]
pub(super) fn local_storage(key: String) -> Result<Box<dyn Store>, Error> {
    if crate::store::LocalStorageStore::available() {
        Ok(Box::new(crate::store::LocalStorageStore::new(key)))
    } else {
        Err(no_local_storage(&key))
    }
}

/// Off wasm32 there is no `localStorage` (the JS module is built for wasm32 only).
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn local_storage(key: String) -> Result<Box<dyn Store>, Error> {
    Err(no_local_storage(&key))
}

/// The error for `storage: { key }` where there is no `localStorage`.
fn no_local_storage(key: &str) -> Error {
    Error::new(&format!(
        "storage: there is no localStorage in this runtime (Node has none), so counts cannot \
         be kept under key {}; leave storage out to count in memory only",
        input::quoted(key)
    ))
}
