//! The stored JSON in the JS module, which reads and writes it with the JS engine's
//! `JSON.parse` and `JSON.stringify` instead of serde_json: the same documents, byte for byte,
//! as the Rust stores (checked against the fixture the native tests check serde_json with).

use quota_core::{Delta, InstanceId, Period, StoreError, StoredState, SyncBatch, WindowKey};
use wasm_bindgen_test::wasm_bindgen_test;

/// Written by serde_json (`to_string_pretty`); `core/src/store/document/tests.rs` checks that.
const FIXTURE: &str = include_str!("../../../core/src/store/document/fixture_v2.json");
/// The fixture's counts as `to_json_counts` writes them natively (`LocalStorageStore`'s form).
const COUNTS_FIXTURE: &str =
    include_str!("../../../core/src/store/document/fixture_v2_counts.json");

fn key(service: &str, period: Period, start_ms: u64) -> WindowKey {
    let window = period.window_at(start_ms);
    WindowKey {
        service: service.into(),
        spec: period.into(),
        start_ms: window.start_ms,
        end_ms: window.reset_at_ms,
    }
}

#[wasm_bindgen_test]
fn the_fixture_reads_and_writes_back_byte_for_byte() {
    let state = StoredState::from_json(FIXTURE).expect("the fixture parses");
    assert!(state.skipped().is_empty(), "{:?}", state.skipped());
    assert_eq!(state.to_json(), FIXTURE.trim_end());
    let search_minute = key("search", Period::Minute, 1_709_214_300_000);
    assert_eq!(state.total(&search_minute), 42);
    // Number.MAX_SAFE_INTEGER: exact.
    let search_day = key("search", Period::Day, 1_709_164_800_000);
    assert_eq!(state.total(&search_day), (1 << 53) - 1);
    let mail = key("mail", Period::Month, 1_706_745_600_000);
    assert_eq!(state.total(&mail), 1000);
    assert_eq!(state.updated_at_ms, 1_709_214_317_250);
}

#[wasm_bindgen_test]
fn the_fixtures_counts_read_and_write_as_the_native_build_writes_them() {
    let counts = StoredState::from_json_counts(FIXTURE).expect("the fixture parses");
    assert!(counts.skipped().is_empty(), "{:?}", counts.skipped());
    assert_eq!(counts.records(), 0);
    assert_eq!(counts.to_json_counts(), COUNTS_FIXTURE.trim_end());
    let full = StoredState::from_json(FIXTURE).unwrap();
    assert_eq!(full.to_json_counts(), COUNTS_FIXTURE.trim_end());
    assert_eq!(
        counts.windows().collect::<Vec<_>>(),
        full.windows().collect::<Vec<_>>()
    );
}

#[wasm_bindgen_test]
fn numbers_above_max_safe_integer_are_read_as_the_nearest_js_number() {
    let window = key("a", Period::Day, 0);
    let document = |total: &str| {
        format!(
            r#"{{ "version": 2, "windows": [{{ "service": "a", "period": "day", "start_ms": 0,
                "end_ms": 86400000, "total": {total} }}] }}"#
        )
    };
    // 2^62, the cap, is a JS number: read exactly, and written so that it reads back exactly.
    let state = StoredState::from_json(&document("4611686018427387904")).unwrap();
    assert_eq!(state.total(&window), StoredState::MAX_TOTAL);
    let again = StoredState::from_json(&state.to_json()).unwrap();
    assert_eq!(again.total(&window), StoredState::MAX_TOTAL);
    // 2^53 + 1 is not: JSON.parse reads 2^53.
    let state = StoredState::from_json(&document("9007199254740993")).unwrap();
    assert_eq!(state.total(&window), 1 << 53);
    // Above u64::MAX: not a count, skipped and named.
    let state = StoredState::from_json(&document("1e20")).unwrap();
    assert_eq!(state.windows().count(), 0);
    assert_eq!(state.skipped().len(), 1, "{:?}", state.skipped());
}

#[wasm_bindgen_test]
fn applying_a_batch_counts_once_and_writes_what_reads_back() {
    let mut state = StoredState::from_json(FIXTURE).unwrap();
    let window = key("search", Period::Minute, 1_709_214_300_000);
    // Instance ff's record in the fixture holds seqs 18 to 25: 26 is new.
    let batch = SyncBatch {
        instance: InstanceId::from_u128(0xff),
        seq: 26,
        done_below: 18,
        at_ms: 1_709_214_318_000,
        deltas: vec![Delta {
            window: window.clone(),
            calls: 8,
        }],
        read: vec![window.clone()],
        raises: vec![],
    };
    assert_eq!(state.apply(&batch), [50]);
    assert_eq!(state.apply(&batch), [50], "a retry is not counted again");
    let again = StoredState::from_json(&state.to_json()).unwrap();
    assert_eq!(again, state);
    assert_eq!(again.total(&window), 50);
}

#[wasm_bindgen_test]
fn bad_documents_are_corrupt_with_the_reason() {
    for (text, reason) in [
        ("", "empty data"),
        ("{ \"version\": 2, ", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("null", "not a JSON object"),
        ("{ \"version\": 3 }", "unsupported version 3"),
        ("{ \"version\": \"2\" }", "no numeric \"version\""),
        ("{ \"version\": 1.5 }", "no numeric \"version\""),
    ] {
        match StoredState::from_json(text) {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(reason), "{text:?}: {message:?}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[wasm_bindgen_test]
fn bad_entries_are_skipped_one_by_one_and_named() {
    let text = r#"{ "version": 2, "windows": [
        { "service": "a", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 5 },
        { "service": "b", "period": "fortnight", "start_ms": 0, "end_ms": 1, "total": 5 },
        { "service": "c", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": -1 },
        { "service": "d", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 1.5 },
        { "service": "e", "period": "day", "start_ms": 0, "end_ms": 86400000 },
        [1, 2, 3],
        { "service": "a", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 3 }
    ], "applied": [{ "instance": "xyz", "service": "a", "seq": 1, "seen": 1 }],
       "leases": 7 }"#;
    let state = StoredState::from_json(text).unwrap();
    assert_eq!(state.windows().count(), 1);
    // Two copies of one window keep the larger total.
    assert_eq!(state.total(&key("a", Period::Day, 0)), 5);
    let skipped = state.skipped();
    for (index, words) in [
        (0, ["windows[1]", "invalid window key \"fortnight\""]),
        (1, ["windows[2]", "\"total\" is not a whole number"]),
        (2, ["windows[3]", "\"total\" is not a whole number"]),
        (3, ["windows[4]", "\"total\" is not a whole number"]),
        (4, ["windows[5]", "\"service\" is not a string"]),
        (5, ["applied[0]", "32 hex digits"]),
        (6, ["\"leases\" is not an array", ""]),
    ] {
        let note = skipped.get(index).map(String::as_str).unwrap_or_default();
        assert!(
            words.iter().all(|word| note.contains(word)),
            "{index}: {skipped:?}"
        );
    }
    assert_eq!(skipped.len(), 7, "{skipped:?}");
}

#[wasm_bindgen_test]
fn version_1_is_converted() {
    let text = r#"{ "version": 1, "updated_at_ms": 7, "services": [
        { "name": "search", "used": 12, "window_start_ms": 86400000,
          "config": { "period": "day" }, "previous": { "window_start_ms": 0, "used": 30 } },
        { "name": "mail", "used": 3, "window_start_ms": 0, "config": {} }
    ] }"#;
    let state = StoredState::from_json(text).unwrap();
    assert!(state.converted());
    assert_eq!(state.total(&key("search", Period::Day, 86_400_000)), 12);
    assert_eq!(state.total(&key("search", Period::Day, 0)), 30);
    assert_eq!(state.skipped().len(), 1, "{:?}", state.skipped());
    assert!(state.skipped()[0].contains("config.period"));
    assert!(state.to_json().contains("\"version\": 2"));
}

#[wasm_bindgen_test]
fn fields_on_object_prototype_are_not_the_documents() {
    let prototype = js_sys::Object::get_prototype_of(&js_sys::Object::new().into());
    let set = |value: &wasm_bindgen::JsValue| {
        js_sys::Reflect::set(&prototype, &"version".into(), value).unwrap();
    };
    set(&2.into());
    let read = StoredState::from_json("{}");
    js_sys::Reflect::delete_property(&prototype, &"version".into()).unwrap();
    match read {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("version"), "{message:?}"),
        other => panic!("a document without \"version\" read as {other:?}"),
    }
}

/// One delta of `calls` to `window` from `instance`.
fn batch(instance: u128, seq: u64, window: &WindowKey, calls: u64) -> SyncBatch {
    SyncBatch {
        instance: InstanceId::from_u128(instance),
        seq,
        done_below: 0,
        at_ms: window.start_ms,
        deltas: vec![Delta {
            window: window.clone(),
            calls,
        }],
        read: Vec::new(),
        raises: Vec::new(),
    }
}

// wasm32 builds keep the state's maps as sorted vectors (native builds as B-trees): the
// rules that walk a service's entries in key order.

#[wasm_bindgen_test]
fn old_windows_go_by_count_per_service_and_period() {
    let mut state = StoredState::new();
    for day in 0..20u64 {
        let start = day * 86_400_000;
        state.apply(&batch(1, day + 1, &key("b", Period::Day, start), 1));
        // Entries of services before and after "b" in key order, and another period of "b".
        state.apply(&batch(2, day + 1, &key("a", Period::Day, start), 2));
        state.apply(&batch(3, day + 1, &key("c", Period::Day, start), 3));
    }
    state.apply(&batch(4, 1, &key("b", Period::Minute, 0), 4));
    let kept = |service: &str, period: Period| {
        state
            .windows()
            .filter(|w| w.service == service && w.spec.as_period() == Some(period))
            .map(|w| w.start_ms / 86_400_000)
            .collect::<Vec<_>>()
    };
    let latest: Vec<u64> = (20 - StoredState::WINDOWS_KEPT as u64..20).collect();
    assert_eq!(kept("a", Period::Day), latest);
    assert_eq!(kept("b", Period::Day), latest);
    assert_eq!(kept("c", Period::Day), latest);
    assert_eq!(kept("b", Period::Minute), [0]);
    assert_eq!(state.total(&key("b", Period::Minute, 0)), 4);
    assert_eq!(state.total(&key("c", Period::Day, 19 * 86_400_000)), 3);
    // Written in key order, and read back the same.
    let again = StoredState::from_json(&state.to_json()).unwrap();
    assert_eq!(again, state);
    let order: Vec<(String, String, u64)> = state
        .windows()
        .map(|w| (w.service.clone(), w.spec.key(), w.start_ms))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[wasm_bindgen_test]
fn operations_records_are_kept_per_service_while_their_window_lives() {
    let mut state = StoredState::new();
    let window = key("b", Period::Day, 0);
    // Services before and after "b" in key order, and thousands of instances.
    for instance in 0..2_000u128 {
        state.apply(&batch(instance, 1, &window, 1));
        state.apply(&batch(instance, 2, &key("a", Period::Day, 0), 1));
        state.apply(&batch(instance, 3, &key("c", Period::Day, 0), 1));
    }
    assert_eq!(state.records(), 6_000);
    // Resends in any order, through JSON: counted once.
    let mut state = StoredState::from_json(&state.to_json()).unwrap();
    state.apply(&batch(0, 1, &window, 1));
    state.apply(&batch(1_999, 1, &window, 1));
    assert_eq!(state.total(&window), 2_000);
    // Two days later (past the end of day 0 plus the grace), "b"'s records go, not the others.
    state.apply(&batch(7, 4, &key("b", Period::Day, 2 * 86_400_000), 1));
    assert_eq!(state.records(), 4_001);
}
