//! The lean handle `tracker.service(name)`: its numbers, its errors, and counts shared with
//! the tracker, through the real boundary (the JS class in `service.js` calling raw exports).

use super::js::*;
use js_sys::{Function, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// `tracker.service(name)`.
fn handle(tracker: &Tracker, name: &str) -> JsValue {
    tracker.call("service", &[name.into()]).unwrap()
}

/// `service[method](...args)`: the result, or what it threw.
fn call(service: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let function: Function = get(service, method).into();
    let args: js_sys::Array = args.iter().collect();
    Reflect::apply(&function, service, &args)
}

/// `service[method](...args)`, which must return a number.
fn number(service: &JsValue, method: &str, args: &[JsValue]) -> f64 {
    call(service, method, args)
        .unwrap_or_else(|error| panic!("{method} threw {}", message(&error)))
        .as_f64()
        .unwrap_or_else(|| panic!("{method} did not return a number"))
}

fn tracker() -> Tracker {
    Tracker::of(
        r#"{ "services": [
            { "name": "search", "limit": 10, "period": "minute" },
            { "name": "mail", "limit": 100, "period": "day" }
        ] }"#,
    )
}

#[wasm_bindgen_test]
fn record_and_try_record_return_the_remaining_count() {
    let _clock = FixedClock::at(NOW);
    let tracker = tracker();
    let search = handle(&tracker, "search");
    assert_eq!(get(&search, "name").as_string().as_deref(), Some("search"));
    assert_eq!(number(&search, "record", &[]), 9.0);
    assert_eq!(number(&search, "record", &[4.into()]), 5.0);
    assert_eq!(number(&search, "tryRecord", &[6.into()]), -1.0);
    assert_eq!(number(&search, "tryRecord", &[3.into()]), 2.0);
    assert_eq!(number(&search, "tryRecord", &[]), -1.0, "critical: denied");
    assert_eq!(number(&search, "record", &[5.into()]), 0.0);
    assert_eq!(tracker.used("search"), 13.0);
    assert_eq!(tracker.used("mail"), 0.0);
    let usage = call(&search, "usage", &[]).unwrap();
    assert_eq!(json(&usage), json(&tracker.usage("search")));
    assert_eq!(call(&search, "canCall", &[]).unwrap(), JsValue::FALSE);
}

#[wasm_bindgen_test]
fn transitions_reach_the_tracker_callbacks_and_windows_follow_the_js_clock() {
    let clock = FixedClock::at(NOW);
    let tracker = tracker();
    let seen = js_sys::Array::new();
    let callback = Function::new_with_args("seen", "return (t) => seen.push(t.from + '->' + t.to)")
        .call1(&JsValue::NULL, &seen)
        .unwrap();
    tracker.call("onTransition", &[callback]).unwrap();
    let search = handle(&tracker, "search");
    number(&search, "record", &[5.into()]);
    tracker.record("search", 3);
    assert_eq!(json(&seen), r#"["normal->warning","warning->critical"]"#);
    clock.advance(60_000.0);
    assert_eq!(number(&search, "record", &[]), 9.0, "a new minute");
    assert_eq!(
        json(&seen),
        r#"["normal->warning","warning->critical","critical->normal"]"#
    );
}

#[wasm_bindgen_test]
fn bad_input_throws_an_error_and_records_nothing() {
    let _clock = FixedClock::at(NOW);
    let tracker = tracker();
    let search = handle(&tracker, "search");
    for method in ["record", "tryRecord", "tryRecordPriority"] {
        for (count, problem) in [
            (JsValue::from(0), "at least 1"),
            (JsValue::from(1.5), "whole number"),
            (JsValue::from(f64::NAN), "finite"),
            (JsValue::NULL, "must be a number"),
            (JsValue::from("2"), "must be a number"),
        ] {
            let thrown = call(&search, method, &[count]).expect_err("a bad count throws");
            let text = message(&thrown);
            assert!(
                text.contains(problem) && text.contains("\"search\""),
                "{method}: {text:?}"
            );
        }
    }
    assert_eq!(tracker.used("search"), 0.0);
    for (name, words) in [
        (JsValue::from("nope"), "unknown service \"nope\""),
        (JsValue::from(5), "service must be a string"),
    ] {
        let thrown = tracker.call("service", &[name]).expect_err("throws");
        assert!(message(&thrown).contains(words), "{}", message(&thrown));
    }
    call(&search, "free", &[]).unwrap();
    let thrown = call(&search, "record", &[]).expect_err("a freed handle throws");
    assert!(message(&thrown).contains("freed"));
}

#[wasm_bindgen_test]
fn try_record_priority_takes_the_reserve_that_try_record_leaves() {
    let _clock = FixedClock::at(NOW);
    let tracker = Tracker::of(
        r#"{ "services": [
            { "name": "api", "limit": 100, "period": "day", "criticalThreshold": 1, "reserveFraction": 0.1 }
        ] }"#,
    );
    let api = handle(&tracker, "api");
    assert_eq!(number(&api, "tryRecord", &[90.into()]), 10.0);
    assert_eq!(
        number(&api, "tryRecord", &[]),
        -1.0,
        "the reserve is held back"
    );
    assert_eq!(
        number(&api, "tryRecordPriority", &[11.into()]),
        -1.0,
        "past the limit"
    );
    assert_eq!(number(&api, "tryRecordPriority", &[9.into()]), 1.0);
    assert_eq!(number(&api, "tryRecordPriority", &[]), 0.0);
    assert_eq!(number(&api, "tryRecordPriority", &[]), -1.0);
    assert_eq!(tracker.used("api"), 100.0);
    // The handle's denial and the tracker's agree, and say why.
    let denied = tracker.call("tryRecordPriority", &["api".into()]).unwrap();
    assert_eq!(get(&denied, "reason").as_string().as_deref(), Some("limit"));
}
