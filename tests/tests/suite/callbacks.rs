//! `onTransition` / `offTransition`: each transition reaches each callback exactly once, in
//! order, whichever method caused it; a throwing callback is reported and changes nothing.

use super::js::*;
use js_sys::{Array, Function};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// search: 10 per minute; Warning from 5, Critical from 8, Exhausted at 10.
const SEARCH: &str = r#"{ "services": [{ "name": "search", "limit": 10, "period": "minute" }] }"#;

fn subscribe(tracker: &Tracker, callback: &JsValue) -> f64 {
    let id = tracker
        .call("onTransition", std::slice::from_ref(callback))
        .unwrap();
    id.as_f64().expect("onTransition returns a number")
}

#[wasm_bindgen_test]
fn each_transition_reaches_each_callback_once_whatever_caused_it() {
    let clock = FixedClock::at(NOW);
    let tracker = Tracker::of(SEARCH);
    let (first, first_log) = recorder();
    let (second, second_log) = recorder();
    let ids = (subscribe(&tracker, &first), subscribe(&tracker, &second));
    assert_ne!(ids.0, ids.1);

    tracker.record("search", 5); // normal -> warning
    tracker.record("search", 3); // warning -> critical
    let denied = tracker.call("tryRecord", &["search".into()]).unwrap();
    assert_eq!(get(&denied, "allowed"), JsValue::FALSE);
    tracker.record("search", 2); // critical -> exhausted
    tracker.record("search", 1); // no change

    // A window reset is reported by whichever call notices it first, once: canCall...
    clock.advance(60_000.0);
    assert_eq!(
        tracker.call("canCall", &["search".into()]).unwrap(),
        JsValue::TRUE
    );
    tracker.usage("search");
    tracker.snapshot();
    tracker.record("search", 10); // normal -> exhausted
    clock.advance(60_000.0);
    tracker.snapshot(); // ...snapshot...
    tracker.usage("search");
    tracker.record("search", 9); // normal -> critical
    clock.advance(60_000.0);
    tracker.usage("search"); // ...usage...
    tracker.record("search", 9); // normal -> critical
    clock.advance(60_000.0);
    // ...and recordCall, which reports the reset and then its own change.
    let result = tracker.record("search", 5);
    assert_eq!(
        levels(&get(&result, "transition")),
        ("normal".into(), "warning".into())
    );

    let expected = pairs(&[
        ("normal", "warning"),
        ("warning", "critical"),
        ("critical", "exhausted"),
        ("exhausted", "normal"),
        ("normal", "exhausted"),
        ("exhausted", "normal"),
        ("normal", "critical"),
        ("critical", "normal"),
        ("normal", "critical"),
        ("critical", "normal"),
        ("normal", "warning"),
    ]);
    assert_eq!(logged(&first_log), expected);
    assert_eq!(logged(&second_log), expected);
    for transition in first_log.iter() {
        assert_eq!(text(&transition, "service"), "search");
        assert_eq!(num(&transition, "limit"), 10.0);
    }
    // The reset noticed by canCall happened at the start of the next minute's check.
    let reset = first_log.get(3);
    assert_eq!(
        (num(&reset, "used"), num(&reset, "atMs")),
        (0.0, NOW + 60_000.0)
    );
    let exhausted = first_log.get(2);
    assert_eq!(
        (num(&exhausted, "used"), num(&exhausted, "atMs")),
        (10.0, NOW)
    );
}

#[wasm_bindgen_test]
fn off_transition_stops_delivery() {
    let tracker = Tracker::of(SEARCH);
    let (kept, kept_log) = recorder();
    let (removed, removed_log) = recorder();
    subscribe(&tracker, &kept);
    let id = subscribe(&tracker, &removed);
    tracker.record("search", 5);

    assert_eq!(
        tracker.call("offTransition", &[id.into()]).unwrap(),
        JsValue::TRUE
    );
    assert_eq!(
        tracker.call("offTransition", &[id.into()]).unwrap(),
        JsValue::FALSE
    );
    tracker.record("search", 3);

    assert_eq!(
        logged(&kept_log),
        pairs(&[("normal", "warning"), ("warning", "critical")])
    );
    assert_eq!(logged(&removed_log), pairs(&[("normal", "warning")]));
}

#[wasm_bindgen_test]
fn a_throwing_callback_is_reported_and_affects_nothing_else() {
    let errors = ConsoleErrors::spy();
    let tracker = Tracker::of(SEARCH);
    let (before, before_log) = recorder();
    let throws_error = Function::new_with_args("t", "throw new Error('boom at ' + t.to);");
    let throws_string = Function::new_with_args("t", "throw 'plain ' + t.to;");
    let (after, after_log) = recorder();
    subscribe(&tracker, &before);
    subscribe(&tracker, &throws_error);
    subscribe(&tracker, &throws_string);
    subscribe(&tracker, &after);

    let result = tracker.record("search", 5);
    assert_eq!(num(&get(&result, "usage"), "used"), 5.0);
    assert_eq!(
        levels(&get(&result, "transition")),
        ("normal".into(), "warning".into())
    );
    let result = tracker
        .call("tryRecord", &["search".into(), 3.into()])
        .unwrap();
    assert_eq!(get(&result, "allowed"), JsValue::TRUE);
    assert_eq!(tracker.used("search"), 8.0);

    let expected = pairs(&[("normal", "warning"), ("warning", "critical")]);
    assert_eq!(logged(&before_log), expected);
    assert_eq!(logged(&after_log), expected);
    let calls = errors.calls();
    drop(errors);
    assert_eq!(calls.len(), 4, "one report per throw: {calls:?}");
    for (call, needle) in calls.iter().zip([
        "boom at warning",
        "plain warning",
        "boom at critical",
        "plain critical",
    ]) {
        assert!(call.contains(needle), "{call:?} should contain {needle:?}");
        assert!(call.contains("search"), "{call:?} should name the service");
    }
}

#[wasm_bindgen_test]
fn callbacks_may_call_back_into_the_tracker() {
    let tracker = Tracker::of(SEARCH);
    let log = Array::new();
    // On Warning, record 3 more calls (reaching Critical) and read the usage.
    let reentrant = Function::new_with_args(
        "tracker, log",
        "return (t) => {
            log.push(t);
            if (t.to === 'warning') {
                const nested = tracker.recordCall('search', 3);
                log.push(nested.usage.used, tracker.usage('search').level);
            }
        }",
    )
    .call2(&JsValue::NULL, &tracker.object, &log)
    .unwrap();
    let (plain, plain_log) = recorder();
    subscribe(&tracker, &reentrant);
    subscribe(&tracker, &plain);

    tracker.record("search", 5);

    assert_eq!(tracker.used("search"), 8.0);
    // The nested call's own transition is delivered after the current one, once each.
    let expected = pairs(&[("normal", "warning"), ("warning", "critical")]);
    assert_eq!(logged(&plain_log), expected);
    assert_eq!(log.length(), 4);
    assert_eq!(levels(&log.get(0)), expected[0]);
    assert_eq!(log.get(1).as_f64(), Some(8.0));
    assert_eq!(log.get(2).as_string().as_deref(), Some("critical"));
    assert_eq!(levels(&log.get(3)), expected[1]);
}

#[wasm_bindgen_test]
fn a_callback_may_unsubscribe_itself() {
    let tracker = Tracker::of(SEARCH);
    let log = Array::new();
    let once = Function::new_with_args(
        "tracker, log",
        "const callback = (t) => { log.push(t); tracker.offTransition(callback.id); };
         return callback;",
    )
    .call2(&JsValue::NULL, &tracker.object, &log)
    .unwrap();
    let id = subscribe(&tracker, &once);
    js_sys::Reflect::set(&once, &"id".into(), &id.into()).unwrap();

    tracker.record("search", 5);
    tracker.record("search", 5);
    assert_eq!(logged(&log), pairs(&[("normal", "warning")]));
    assert_eq!(
        tracker.call("offTransition", &[id.into()]).unwrap(),
        JsValue::FALSE
    );
}

#[wasm_bindgen_test]
fn a_callback_removed_during_a_delivery_is_not_called_after_its_removal() {
    let tracker = Tracker::of(SEARCH);
    let (removed, removed_log) = recorder();
    // The first callback removes the second one the first time it runs.
    let remover = Function::new_with_args(
        "tracker, state",
        "return (t) => { if (state.victim !== undefined) { tracker.offTransition(state.victim); } }",
    );
    let state = js_sys::Object::new();
    let remover = remover
        .call2(&JsValue::NULL, &tracker.object, &state)
        .unwrap();
    subscribe(&tracker, &remover);
    let victim = subscribe(&tracker, &removed);
    js_sys::Reflect::set(&state, &"victim".into(), &victim.into()).unwrap();

    tracker.record("search", 5);
    tracker.record("search", 3);
    assert!(
        logged(&removed_log).is_empty(),
        "{:?}",
        logged(&removed_log)
    );
}
