//! `storage` in Node, which has no `localStorage`: a store that cannot exist is a configuration
//! error, so the constructor throws, and nothing else changes.

use super::suite::js::*;
use super::suite::storage::with_storage;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn storage_without_local_storage_throws_from_the_constructor() {
    let _clock = FixedClock::at(NOW);
    let before =
        Tracker::of(r#"{ "services": [{ "name": "search", "limit": 100, "period": "day" }] }"#);
    before.record("search", 25);
    for storage in [
        "({ key: 'quota-node' })",
        "({ key: 'quota-node', syncIntervalMs: 0 })",
        "({ key: 'quota-node', syncIntervalMs: Number.MAX_SAFE_INTEGER })",
    ] {
        let thrown = match with_storage(storage) {
            Ok(_) => panic!("storage: {storage} made a tracker without localStorage"),
            Err(thrown) => thrown,
        };
        let text = message(&thrown); // asserts an `Error`
        assert!(
            text.starts_with("storage: there is no localStorage in this runtime")
                && text.contains("\"quota-node\""),
            "storage: {storage}: {text:?}"
        );
    }
    // Nothing panicked: a tracker made before works on, unchanged.
    assert_eq!(before.used("search"), 25.0);
    before.record("search", 1);
    assert_eq!(before.used("search"), 26.0);
    assert_eq!(before.call("canCall", &["search".into()]).unwrap(), true);
}
