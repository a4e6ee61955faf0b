//! Window specs in time zones on wasm32, where the offsets come from the JS engine's `Intl`
//! (headless Chromium), against the table Node's `Intl` computed (`core/tests/tz_oracle.mjs`;
//! the native test `core/tests/tz_oracle.rs` checks that the table is what the script prints
//! now): days around the daylight saving time changes of 2000 to 2037 in Los Angeles, Paris
//! and Lord Howe, Lord Howe's hours around its half-hour changes, and months from anchor days
//! 29, 30 and 31 in Los Angeles and Paris.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Object, JSON};
use quota_core::{TimeZone, Window, WindowSpec, WindowSpecError};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const FIXTURE: &str = include_str!("../../core/tests/tz_oracle_fixture.json");

#[wasm_bindgen_test]
fn windows_agree_with_the_oracles_table() {
    let table = JSON::parse(FIXTURE).expect("the fixture's JSON");
    let mut checked = 0;
    for entry in Object::entries(table.unchecked_ref()).iter() {
        let entry: Array = entry.unchecked_into();
        let key = entry.get(0).as_string().unwrap();
        let list: Array = entry.get(1).unchecked_into();
        let spec = WindowSpec::from_key(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let numbers: Vec<u64> = list.iter().map(|n| n.as_f64().unwrap() as u64).collect();
        for pair in numbers.chunks(2) {
            let (start, reset) = (pair[0] * 1_000, (pair[0] + pair[1]) * 1_000);
            let expected = Window {
                start_ms: start,
                reset_at_ms: reset,
            };
            for now in [start, start + (reset - start) / 2, reset - 1] {
                assert_eq!(spec.window_at(now), expected, "{key} at {now} ms");
            }
            checked += 1;
        }
    }
    assert!(checked > 1_500, "{checked} windows");
}

#[wasm_bindgen_test]
fn zones_are_what_intl_knows() {
    assert_eq!(
        TimeZone::new("europe/paris").unwrap().name(),
        "Europe/Paris"
    );
    assert_eq!(
        TimeZone::new("Mars/Olympus_Mons").unwrap_err(),
        WindowSpecError::UnknownTimeZone("Mars/Olympus_Mons".into())
    );
    // Intl takes offsets as zones; a key cannot hold the colon.
    assert!(TimeZone::new("+05:30").is_err());
    let day = WindowSpec::from_key("day@America/Los_Angeles").unwrap();
    let w = day.window_at(1_710_072_000_000); // 2024-03-10T12:00:00Z
    assert_eq!(w.start_ms, 1_710_057_600_000);
    assert_eq!(w.reset_at_ms - w.start_ms, 23 * 3_600_000);
}
