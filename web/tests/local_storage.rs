//! `quota_core::LocalStorageStore` in headless Chromium: a new tracker on the same key reads the
//! counts a previous one synced, and trackers sharing the key add up. Here rather than in core/
//! because it needs the `browser` feature and a real browser's `localStorage`.
#![cfg(target_arch = "wasm32")]

use quota_core::{LocalStorageStore, ManualClock, QuotaTracker, StoredState, TrackerConfig};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// 2024-02-29T13:45:10Z: mid-minute.
const T0: u64 = 1_709_214_310_000;

fn storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

/// A store under `key`, emptied first (the browser profile may be reused).
fn empty_store(key: &str) -> LocalStorageStore {
    let store = LocalStorageStore::new(key);
    store.clear().unwrap();
    store
}

fn tracker(store: &LocalStorageStore, clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::builder(TrackerConfig::defaults())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap()
}

fn used(tracker: &QuotaTracker, service: &str) -> u64 {
    tracker.usage(service).unwrap().used
}

#[wasm_bindgen_test]
fn a_new_tracker_on_the_same_key_restores_the_counts() {
    let store = empty_store("quota-test.restore");
    let clock = ManualClock::new(T0);
    let first = tracker(&store, &clock);
    first.record_call("sendgrid", 7).unwrap();
    first.record_call("finnhub", 5).unwrap();
    first.record_call("finnhub", 2).unwrap();
    first.flush().unwrap();
    let raw = storage().get_item("quota-test.restore").unwrap();
    let raw = raw.expect("flush wrote the key");
    assert!(raw.contains("\"version\": 2"), "{raw}");

    let second = tracker(&store, &clock);
    assert_eq!(used(&second, "sendgrid"), 7);
    assert_eq!(used(&second, "finnhub"), 7);
    assert_eq!(used(&second, "tiingo"), 0);
    let stats = second.stats();
    assert_eq!((stats.loads, stats.load_failures), (1, 0), "{stats:?}");

    // Only the current window is restored: a minute later finnhub starts over, sendgrid
    // (per day) does not.
    clock.advance(60_000);
    let third = tracker(&store, &clock);
    assert_eq!(used(&third, "finnhub"), 0);
    assert_eq!(used(&third, "sendgrid"), 7);

    store.clear().unwrap();
    assert_eq!(store.state(), Ok(StoredState::new()));
    assert_eq!(used(&tracker(&store, &clock), "sendgrid"), 0);
}

#[wasm_bindgen_test]
fn corrupt_data_is_reported_and_the_tracker_starts_fresh() {
    let store = empty_store("quota-test.corrupt");
    storage()
        .set_item("quota-test.corrupt", "{\"version\": 1, \"services\": [")
        .unwrap();
    let clock = ManualClock::new(T0);
    let fresh = tracker(&store, &clock);
    assert_eq!(used(&fresh, "sendgrid"), 0);
    let stats = fresh.stats();
    assert_eq!(stats.load_failures, 1);
    let error = stats.last_error.unwrap_or_default();
    assert!(error.contains("not valid JSON"), "{error}");

    // The next save replaces the corrupt data with a readable state.
    fresh.record_call("sendgrid", 3).unwrap();
    fresh.flush().unwrap();
    assert_eq!(used(&tracker(&store, &clock), "sendgrid"), 3);
}

#[wasm_bindgen_test]
fn trackers_sharing_one_key_add_up_and_lose_nothing() {
    let store = empty_store("quota-test.shared");
    let clock = ManualClock::new(T0);
    let (a, b) = (tracker(&store, &clock), tracker(&store, &clock));
    a.record_call("sendgrid", 4).unwrap();
    b.record_call("sendgrid", 5).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    a.record_call("sendgrid", 1).unwrap();
    a.flush().unwrap();
    // Each sees the store's total plus its own calls since: both syncs are in it.
    assert_eq!(used(&a, "sendgrid"), 10);
    assert_eq!(
        used(&b, "sendgrid"),
        9,
        "b has not synced since a's last call"
    );
    b.flush().unwrap();
    assert_eq!(used(&b, "sendgrid"), 10);
    let total: u64 = store
        .state()
        .unwrap()
        .windows()
        .filter(|w| w.service == "sendgrid")
        .map(|w| w.total)
        .sum();
    assert_eq!(total, 10);
    assert_eq!(used(&tracker(&store, &clock), "sendgrid"), 10);
}

#[wasm_bindgen_test]
fn records_another_store_wrote_are_dropped_and_every_count_kept() {
    let store = empty_store("quota-test.records");
    // A document copied from a file store: a count, and the records of who synced it.
    storage()
        .set_item(
            "quota-test.records",
            r#"{ "version": 2, "updated_at_ms": 1709214300000,
                 "windows": [{ "service": "sendgrid", "period": "day",
                     "start_ms": 1709164800000, "end_ms": 1709251200000, "total": 40 }],
                 "ops": [{ "instance": "0123456789abcdef0123456789abcdef", "service": "sendgrid",
                     "low": 0, "done": [[1, "1"]], "until_ms": 1709254800000, "seen": 1 }],
                 "applied": [{ "instance": "fedcba9876543210fedcba9876543210",
                     "service": "sendgrid", "seq": 3, "seen": 1 }],
                 "applies": 1 }"#,
        )
        .unwrap();
    let clock = ManualClock::new(T0);
    let first = tracker(&store, &clock);
    assert_eq!(used(&first, "sendgrid"), 40, "the count is read");
    first.record_call("sendgrid", 2).unwrap();
    first.flush().unwrap();
    let text = storage().get_item("quota-test.records").unwrap().unwrap();
    assert!(!text.contains("\"ops\""), "{text}");
    assert!(!text.contains("fedcba98"), "{text}");
    assert_eq!(
        StoredState::from_json(&text).unwrap().records(),
        0,
        "no records written"
    );
    assert_eq!(used(&tracker(&store, &clock), "sendgrid"), 42);
}

#[wasm_bindgen_test]
fn corrupt_data_that_cannot_be_set_aside_stays_where_it_is() {
    let key = "quota-test.full";
    let _ = empty_store(key);
    let storage = storage();
    // Corrupt data as large as the origin's quota lets one entry be: no room for its copy.
    let corrupt = |size: usize| format!("{{\"version\": 1, \"services\": [{}", "x".repeat(size));
    let (mut fits, mut too_big) = (0, 64 << 20);
    while too_big - fits > 1024 {
        let size = (fits + too_big) / 2;
        if storage.set_item(key, &corrupt(size)).is_ok() {
            fits = size;
        } else {
            too_big = size;
        }
    }
    let text = corrupt(fits);
    storage.set_item(key, &text).unwrap();
    let clock = ManualClock::new(T0);
    let fresh = tracker(&LocalStorageStore::new(key), &clock);
    assert_eq!(fresh.stats().load_failures, 1);
    assert_eq!(
        storage.get_item(key).unwrap().map(|kept| kept == text),
        Some(true),
        "the data stays where it is when no copy fits"
    );
    let length = storage.length().unwrap();
    let copies = (0..length)
        .filter_map(|index| storage.key(index).unwrap())
        .filter(|name| name.starts_with("quota-test.full.corrupt-"))
        .count();
    assert_eq!(copies, 0);
    storage.remove_item(key).unwrap();
}
