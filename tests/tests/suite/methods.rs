//! Every method, with the exact shapes the JS API promises.

use super::js::*;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

const SEARCH: &str = r#"{ "services": [{ "name": "search", "limit": 10, "period": "minute" }] }"#;

const USAGE_KEYS: [&str; 9] = [
    "level",
    "limit",
    "name",
    "percentUsed",
    "period",
    "remaining",
    "resetAtMs",
    "used",
    "windowStartMs",
];
const TRANSITION_KEYS: [&str; 7] = ["atMs", "from", "limit", "service", "to", "used", "window"];

#[wasm_bindgen_test]
fn with_defaults_tracks_the_default_services() {
    let tracker = Tracker::with_defaults();
    let services = get(&tracker.snapshot(), "services");
    let rows: Vec<(String, f64, String, String)> = js_sys::Array::from(&services)
        .iter()
        .map(|u| {
            (
                text(&u, "name"),
                num(&u, "limit"),
                text(&u, "period"),
                text(&u, "level"),
            )
        })
        .collect();
    let expected = [
        ("tiingo", 500.0, "month"),
        ("finnhub", 60.0, "minute"),
        ("sendgrid", 100.0, "day"),
    ];
    assert_eq!(rows.len(), 3);
    for (row, (name, limit, period)) in rows.iter().zip(expected) {
        assert_eq!(
            (row.0.as_str(), row.1, row.2.as_str(), row.3.as_str()),
            (name, limit, period, "normal")
        );
    }
}

#[wasm_bindgen_test]
fn record_call_returns_the_usage_and_the_transition() {
    let _clock = FixedClock::at(NOW);
    let tracker = Tracker::of(SEARCH);

    let first = tracker
        .call("recordCall", &["search".into()])
        .expect("count defaults to 1");
    assert_eq!(keys(&first), ["transition", "usage"]);
    assert!(get(&first, "transition").is_null());
    let usage = get(&first, "usage");
    assert_eq!(keys(&usage), USAGE_KEYS);
    assert_eq!(text(&usage, "name"), "search");
    assert_eq!(num(&usage, "used"), 1.0);
    assert_eq!(num(&usage, "limit"), 10.0);
    assert_eq!(num(&usage, "remaining"), 9.0);
    assert_eq!(text(&usage, "period"), "minute");
    assert_eq!(text(&usage, "level"), "normal");
    assert_eq!(num(&usage, "percentUsed"), 10.0);
    assert_eq!(num(&usage, "windowStartMs"), MINUTE_START);
    assert_eq!(num(&usage, "resetAtMs"), MINUTE_END);

    let second = tracker.record("search", 4);
    let transition = get(&second, "transition");
    assert_eq!(keys(&transition), TRANSITION_KEYS);
    assert_eq!(text(&transition, "service"), "search");
    assert_eq!(levels(&transition), ("normal".into(), "warning".into()));
    assert_eq!(num(&transition, "used"), 5.0);
    assert_eq!(num(&transition, "limit"), 10.0);
    assert_eq!(num(&transition, "atMs"), NOW);
    assert_eq!(num(&get(&second, "usage"), "used"), 5.0);

    // An explicit `undefined` count is an omitted one.
    let third = tracker
        .call("recordCall", &["search".into(), JsValue::UNDEFINED])
        .unwrap();
    assert_eq!(num(&get(&third, "usage"), "used"), 6.0);
}

#[wasm_bindgen_test]
fn record_call_always_records_even_past_the_limit() {
    let tracker = Tracker::of(SEARCH);
    let result = tracker.record("search", 12);
    let usage = get(&result, "usage");
    assert_eq!(num(&usage, "used"), 12.0);
    assert_eq!(num(&usage, "remaining"), 0.0);
    assert_eq!(num(&usage, "percentUsed"), 120.0);
    assert_eq!(text(&usage, "level"), "exhausted");
    assert_eq!(
        levels(&get(&result, "transition")),
        ("normal".into(), "exhausted".into())
    );
}

#[wasm_bindgen_test]
fn try_record_records_only_what_is_allowed() {
    let tracker = Tracker::of(SEARCH);
    let try_record = |count: Option<u32>| {
        let mut args = vec![JsValue::from("search")];
        args.extend(count.map(JsValue::from));
        tracker.call("tryRecord", &args).unwrap()
    };

    let allowed = try_record(Some(7));
    assert_eq!(keys(&allowed), ["allowed", "transition", "usage"]);
    assert_eq!(get(&allowed, "allowed"), JsValue::TRUE);
    assert_eq!(num(&get(&allowed, "usage"), "used"), 7.0);
    assert_eq!(
        levels(&get(&allowed, "transition")),
        ("normal".into(), "warning".into())
    );

    // 7 + 4 > 10: refused, nothing recorded.
    let denied = try_record(Some(4));
    assert_eq!(keys(&denied), ["allowed", "reason", "usage"]);
    assert_eq!(get(&denied, "allowed"), JsValue::FALSE);
    assert_eq!(get(&denied, "reason").as_string().as_deref(), Some("limit"));
    assert_eq!(keys(&get(&denied, "usage")), USAGE_KEYS);
    assert_eq!(num(&get(&denied, "usage"), "used"), 7.0);

    let last = try_record(None);
    assert_eq!(get(&last, "allowed"), JsValue::TRUE);
    assert_eq!(
        levels(&get(&last, "transition")),
        ("warning".into(), "critical".into())
    );
    assert_eq!(num(&get(&last, "usage"), "used"), 8.0);
    assert_eq!(tracker.used("search"), 8.0);

    // 8 of 10 is critical: nothing more is allowed, although 2 calls remain.
    let refused = try_record(None);
    assert_eq!(get(&refused, "allowed"), JsValue::FALSE);
    assert_eq!(tracker.used("search"), 8.0);
}

#[wasm_bindgen_test]
fn can_call_is_true_until_critical() {
    let tracker = Tracker::of(SEARCH);
    let can_call = || tracker.call("canCall", &["search".into()]).unwrap();
    assert_eq!(can_call(), JsValue::TRUE);
    tracker.record("search", 7);
    assert_eq!(can_call(), JsValue::TRUE);
    tracker.record("search", 1);
    assert_eq!(can_call(), JsValue::FALSE);
}

#[wasm_bindgen_test]
fn reserve_allocation_is_the_floor_of_the_reserve_fraction() {
    let defaults = Tracker::with_defaults();
    for (service, reserve) in [("tiingo", 50.0), ("finnhub", 6.0), ("sendgrid", 10.0)] {
        let got = defaults
            .call("reserveAllocation", &[service.into()])
            .unwrap();
        assert_eq!(got.as_f64(), Some(reserve), "{service}");
    }
    let custom = Tracker::of(
        r#"{ "services": [{ "name": "mail", "limit": 15, "period": "day", "reserveFraction": 0.25 }] }"#,
    );
    let got = custom.call("reserveAllocation", &["mail".into()]).unwrap();
    assert_eq!(got.as_f64(), Some(3.0));
}

#[wasm_bindgen_test]
fn optional_thresholds_default_and_can_be_set() {
    let tracker = Tracker::of(
        r#"{ "services": [
            { "name": "plain", "limit": 10, "period": "hour" },
            { "name": "early", "limit": 10, "period": "hour", "warnThreshold": 0.2, "criticalThreshold": 0.3 }
        ] }"#,
    );
    tracker.record("plain", 4);
    tracker.record("early", 2);
    assert_eq!(text(&tracker.usage("plain"), "level"), "normal");
    assert_eq!(text(&tracker.usage("early"), "level"), "warning");
    tracker.record("plain", 1);
    tracker.record("early", 1);
    assert_eq!(text(&tracker.usage("plain"), "level"), "warning");
    assert_eq!(text(&tracker.usage("early"), "level"), "critical");
}

#[wasm_bindgen_test]
fn snapshot_lists_every_service_in_config_order() {
    let _clock = FixedClock::at(NOW);
    let tracker = Tracker::of(
        r#"{ "services": [
            { "name": "b", "limit": 100, "period": "day" },
            { "name": "a", "limit": 10, "period": "minute" },
            { "name": "c", "limit": 5, "period": "month" }
        ] }"#,
    );
    tracker.record("a", 3);
    tracker.record("c", 5);
    let snapshot = tracker.snapshot();
    assert_eq!(keys(&snapshot), ["atMs", "services", "totalUsed"]);
    assert_eq!(num(&snapshot, "atMs"), NOW);
    assert_eq!(num(&snapshot, "totalUsed"), 8.0);
    let services = js_sys::Array::from(&get(&snapshot, "services"));
    let names: Vec<String> = services.iter().map(|u| text(&u, "name")).collect();
    assert_eq!(names, ["b", "a", "c"]);
    for usage in services.iter() {
        assert_eq!(keys(&usage), USAGE_KEYS);
        // Each row is what `usage(name)` says.
        assert_eq!(json(&usage), json(&tracker.usage(&text(&usage, "name"))));
    }
    let levels: Vec<String> = services.iter().map(|u| text(&u, "level")).collect();
    assert_eq!(levels, ["normal", "normal", "exhausted"]);
}

#[wasm_bindgen_test]
fn windows_follow_the_js_clock() {
    let clock = FixedClock::at(NOW);
    let tracker = Tracker::of(SEARCH);
    tracker.record("search", 9);
    assert_eq!(tracker.used("search"), 9.0);

    clock.advance(60_000.0); // the next minute
    let usage = tracker.usage("search");
    assert_eq!(num(&usage, "used"), 0.0);
    assert_eq!(text(&usage, "level"), "normal");
    assert_eq!(num(&usage, "windowStartMs"), MINUTE_END);
    assert_eq!(num(&usage, "resetAtMs"), MINUTE_END + 60_000.0);
}

/// `api`: 100 a day, Critical at the limit, 10 calls of reserve: the reserve stops normal calls.
const RESERVED: &str = r#"{ "services": [
    { "name": "api", "limit": 100, "period": "day", "criticalThreshold": 1, "reserveFraction": 0.1 }
] }"#;

#[wasm_bindgen_test]
fn try_record_priority_uses_the_reserve_and_denials_say_why() {
    let _clock = FixedClock::at(NOW);
    let tracker = Tracker::of(RESERVED);
    let call =
        |method: &str, count: u32| tracker.call(method, &["api".into(), count.into()]).unwrap();
    let reason = |result: &JsValue| {
        assert_eq!(get(result, "allowed"), JsValue::FALSE);
        get(result, "reason").as_string().unwrap()
    };

    assert_eq!(get(&call("tryRecord", 90), "allowed"), JsValue::TRUE);
    let held = call("tryRecord", 1);
    assert_eq!(keys(&held), ["allowed", "reason", "usage"]);
    assert_eq!(reason(&held), "reserve");
    assert_eq!(num(&get(&held, "usage"), "used"), 90.0);
    assert_eq!(
        tracker.call("canCall", &["api".into()]).unwrap(),
        JsValue::FALSE
    );
    // More than the reserve: over the limit, for priority calls too.
    assert_eq!(reason(&call("tryRecordPriority", 11)), "limit");
    assert_eq!(tracker.used("api"), 90.0);

    let taken = call("tryRecordPriority", 10);
    assert_eq!(keys(&taken), ["allowed", "transition", "usage"]);
    assert_eq!(get(&taken, "allowed"), JsValue::TRUE);
    assert_eq!(num(&get(&taken, "usage"), "used"), 100.0);
    assert_eq!(
        levels(&get(&taken, "transition")),
        ("warning".into(), "exhausted".into())
    );
    // The count is optional, as for tryRecord.
    let last = tracker.call("tryRecordPriority", &["api".into()]).unwrap();
    assert_eq!(reason(&last), "limit");
    assert_eq!(reason(&call("tryRecord", 1)), "limit");
    assert_eq!(tracker.used("api"), 100.0);
}

#[wasm_bindgen_test]
fn normal_calls_stop_at_the_critical_level_when_it_comes_before_the_reserve() {
    let _clock = FixedClock::at(NOW);
    // The defaults: critical at 0.8 (8 of 10), the reserve (1) from 9.
    let tracker = Tracker::of(SEARCH);
    let call = |method: &str, count: u32| {
        tracker
            .call(method, &["search".into(), count.into()])
            .unwrap()
    };
    assert_eq!(get(&call("tryRecord", 8), "allowed"), JsValue::TRUE);
    let denied = call("tryRecord", 1);
    assert_eq!(
        get(&denied, "reason").as_string().as_deref(),
        Some("critical")
    );
    assert_eq!(get(&call("tryRecordPriority", 2), "allowed"), JsValue::TRUE);
    assert_eq!(tracker.used("search"), 10.0);
}
