//! The `storage` option's bad input, and the store methods without a store: the same in Node
//! and in browsers. What a store does is tested per runtime in `../storage/`.

use super::js::*;
use js_sys::Function;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// The keys of `stats()`, sorted.
pub const STATS_KEYS: [&str; 10] = [
    "coalescedSaves",
    "consecutiveFailures",
    "consecutiveSuccesses",
    "forcedSaves",
    "lastError",
    "loadFailures",
    "loads",
    "reducedRate",
    "saveFailures",
    "saves",
];

/// `new QuotaTracker({ services: [search, 100 per day], storage: <storage> })`, `storage` a JS
/// expression.
pub fn with_storage(storage: &str) -> Result<Tracker, JsValue> {
    let config = Function::new_no_args(&format!(
        "return {{ services: [{{ name: 'search', limit: 100, period: 'day' }}], storage: ({storage}) }};"
    ))
    .call0(&JsValue::NULL)
    .unwrap();
    Tracker::construct(&[config])
}

/// `stats()`, as JSON with sorted keys checked.
pub fn stats(tracker: &Tracker) -> JsValue {
    let stats = tracker.call("stats", &[]).unwrap();
    assert_eq!(keys(&stats), STATS_KEYS, "stats() keys");
    stats
}

/// `isReducedRate()`.
pub fn reduced(tracker: &Tracker) -> bool {
    tracker
        .call("isReducedRate", &[])
        .unwrap()
        .as_bool()
        .expect("isReducedRate returns a boolean")
}

#[wasm_bindgen_test]
fn bad_storage_options_throw_an_error_naming_the_problem() {
    let cases: [(&str, &[&str]); 20] = [
        ("null", &["\"storage\" must be an object", "null"]),
        (
            "'localStorage'",
            &["\"storage\" must be an object", "\"localStorage\""],
        ),
        ("[]", &["\"storage\" must be an object", "array"]),
        ("true", &["\"storage\" must be an object"]),
        ("({})", &["storage.key", "non-empty string", "undefined"]),
        (
            "({ key: '' })",
            &["storage.key", "non-empty string", "\"\""],
        ),
        ("({ key: 5 })", &["storage.key", "non-empty string", "5"]),
        ("({ key: null })", &["storage.key", "null"]),
        ("({ key: ['a'] })", &["storage.key", "array"]),
        (
            "({ key: 'a', syncIntervalMs: -1 })",
            &["storage.syncIntervalMs", "-1"],
        ),
        (
            "({ key: 'a', syncIntervalMs: 1.5 })",
            &["storage.syncIntervalMs", "1.5"],
        ),
        (
            "({ key: 'a', syncIntervalMs: NaN })",
            &["storage.syncIntervalMs", "NaN"],
        ),
        (
            "({ key: 'a', syncIntervalMs: Infinity })",
            &["storage.syncIntervalMs", "Infinity"],
        ),
        (
            "({ key: 'a', syncIntervalMs: 2 ** 53 })",
            &["storage.syncIntervalMs", "MAX_SAFE_INTEGER"],
        ),
        (
            "({ key: 'a', syncIntervalMs: '60000' })",
            &["storage.syncIntervalMs", "\"60000\""],
        ),
        (
            "({ key: 'a', syncIntervalMs: null })",
            &["storage.syncIntervalMs", "null"],
        ),
        (
            "({ key: 'a', syncInterval: 5 })",
            &[
                "storage",
                "unknown field \"syncInterval\"",
                "syncIntervalMs",
            ],
        ),
        ("({ kee: 'a' })", &["storage", "unknown field \"kee\""]),
        (
            "({ key: 'a', required: 'yes' })",
            &["storage.required", "true or false", "\"yes\""],
        ),
        ("({ key: 'a', required: 1 })", &["storage.required", "1"]),
    ];
    for (storage, words) in cases {
        let thrown = match with_storage(storage) {
            Ok(tracker) => panic!(
                "storage: {storage} created a tracker ({})",
                json(&tracker.snapshot())
            ),
            Err(thrown) => thrown,
        };
        let text = message(&thrown);
        assert!(
            text.starts_with("invalid config: "),
            "storage: {storage}: {text:?}"
        );
        for word in words {
            assert!(
                text.contains(word),
                "storage: {storage}: {text:?} should mention {word:?}"
            );
        }
    }
    // The config's own keys list `storage` as allowed.
    let thrown = Tracker::construct(&[parse(
        r#"{ "services": [{ "name": "a", "limit": 1, "period": "day" }], "storag": {} }"#,
    )])
    .err()
    .expect("an unknown top-level field throws");
    let text = message(&thrown);
    assert!(
        text.contains("unknown field \"storag\"") && text.contains("storage"),
        "{text:?}"
    );
}

#[wasm_bindgen_test]
fn without_storage_flush_does_nothing_and_stats_are_zero() {
    for tracker in [
        Tracker::with_defaults(),
        Tracker::of(r#"{ "services": [{ "name": "search", "limit": 10, "period": "minute" }] }"#),
    ] {
        let services = js_sys::Array::from(&get(&tracker.snapshot(), "services"));
        let first = text(&services.get(0), "name");
        tracker.record(&first, 9); // into critical: would force a save if there were a store
        assert!(tracker.call("flush", &[]).unwrap().is_undefined());
        assert!(!reduced(&tracker));
        let stats = stats(&tracker);
        for key in STATS_KEYS {
            let value = get(&stats, key);
            match key {
                "lastError" => assert!(value.is_null(), "lastError: {value:?}"),
                "reducedRate" => assert_eq!(value.as_bool(), Some(false)),
                _ => assert_eq!(value.as_f64(), Some(0.0), "{key}"),
            }
        }
    }
}
