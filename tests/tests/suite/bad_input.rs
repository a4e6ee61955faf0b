//! Every bad input throws an `Error` whose message names the problem, and changes nothing.

use super::js::*;
use js_sys::Function;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// The value of a JS expression.
fn eval(expression: &str) -> JsValue {
    Function::new_no_args(&format!("return ({expression});"))
        .call0(&JsValue::NULL)
        .unwrap()
}

/// A tracker with some calls recorded, so "unchanged" means something.
fn busy_tracker() -> Tracker {
    let tracker = Tracker::of(
        r#"{ "services": [
            { "name": "search", "limit": 10, "period": "month" },
            { "name": "mail", "limit": 100, "period": "month" }
        ] }"#,
    );
    tracker.record("search", 3);
    tracker.record("mail", 60);
    tracker
}

/// Calls `method(args)`, which must throw an `Error` mentioning every one of `words` and leave
/// the tracker as it was.
fn assert_refused(tracker: &Tracker, method: &str, args: &[JsValue], words: &[&str]) {
    let before = tracker.state();
    let thrown = match tracker.call(method, args) {
        Ok(value) => panic!(
            "{method}({args:?}) returned {} instead of throwing",
            json(&value)
        ),
        Err(thrown) => thrown,
    };
    let text = message(&thrown);
    for word in words {
        assert!(
            text.contains(word),
            "{method}({args:?}): {text:?} should mention {word:?}"
        );
    }
    assert_eq!(
        tracker.state(),
        before,
        "{method}({args:?}) changed the tracker"
    );
}

#[wasm_bindgen_test]
fn bad_counts_throw_and_record_nothing() {
    let _clock = FixedClock::at(NOW);
    let tracker = busy_tracker();
    let cases: [(&str, &str); 13] = [
        ("0", "at least 1"),
        ("-3", "at least 1"),
        ("-0.5", "whole number"),
        ("1.5", "whole number"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("Number.MAX_SAFE_INTEGER + 1", "MAX_SAFE_INTEGER"),
        ("null", "must be a number"),
        ("'5'", "must be a number"),
        ("true", "must be a number"),
        ("({ count: 1 })", "must be a number"),
        ("5n", "must be a number"),
    ];
    for method in ["recordCall", "tryRecord", "tryRecordPriority"] {
        for (count, problem) in cases {
            let args = [JsValue::from("search"), eval(count)];
            assert_refused(&tracker, method, &args, &[problem, "count", "\"search\""]);
        }
    }
    // The largest safe count is accepted.
    let fresh =
        Tracker::of(r#"{ "services": [{ "name": "bulk", "limit": 10, "period": "month" }] }"#);
    let max = eval("Number.MAX_SAFE_INTEGER");
    fresh.call("recordCall", &["bulk".into(), max]).unwrap();
    assert_eq!(fresh.used("bulk"), 9_007_199_254_740_991.0);
}

#[wasm_bindgen_test]
fn bad_services_throw_and_change_nothing() {
    let _clock = FixedClock::at(NOW);
    let tracker = busy_tracker();
    let methods = [
        "recordCall",
        "tryRecord",
        "tryRecordPriority",
        "canCall",
        "reserveAllocation",
        "usage",
    ];
    for method in methods {
        assert_refused(
            &tracker,
            method,
            &["nope".into()],
            &["unknown service", "\"nope\""],
        );
        assert_refused(&tracker, method, &["".into()], &["unknown service", "\"\""]);
        assert_refused(&tracker, method, &["Search".into()], &["\"Search\""]);
        // Names are quoted as JSON writes them (the module has no Rust `{:?}` for text).
        assert_refused(
            &tracker,
            method,
            &["say \"hi\"\\\n".into()],
            &["unknown service \"say \\\"hi\\\"\\\\\\n\""],
        );
        for (value, shown) in [
            ("5", "5"),
            ("null", "null"),
            ("undefined", "undefined"),
            ("({ name: 'search' })", "an object"),
            ("['search']", "an array"),
        ] {
            assert_refused(
                &tracker,
                method,
                &[eval(value)],
                &["service must be a string", shown],
            );
        }
    }
    // No argument at all is an undefined service.
    assert_refused(&tracker, "usage", &[], &["service must be a string"]);
}

#[wasm_bindgen_test]
fn bad_configs_throw_with_the_problem_named() {
    let service = "name: 'a', limit: 5, period: 'day'";
    let cases: Vec<(Option<String>, Vec<&str>)> = vec![
        (None, vec!["needs a config", "withDefaults"]),
        (
            Some("undefined".into()),
            vec!["needs a config", "withDefaults"],
        ),
        (Some("null".into()), vec!["expected an object", "null"]),
        (Some("42".into()), vec!["expected an object", "42"]),
        (Some("[]".into()), vec!["expected an object", "an array"]),
        (Some("{}".into()), vec!["missing field \"services\""]),
        (
            Some("{ services: {} }".into()),
            vec!["\"services\" must be an array"],
        ),
        (
            Some("{ services: [] }".into()),
            vec!["\"services\" is empty"],
        ),
        (
            Some("{ services: [5] }".into()),
            vec!["services[0] must be an object", "5"],
        ),
        (
            Some(format!("{{ services: [{{ {service} }}], extra: 1 }}")),
            vec!["unknown field \"extra\""],
        ),
        (
            Some("{ services: [{ name: 'a', limt: 5, period: 'day' }] }".into()),
            vec!["services[0]", "unknown field \"limt\"", "limit"],
        ),
        (
            Some("{ services: [{ limit: 5, period: 'day' }] }".into()),
            vec!["services[0]", "missing field `name`"],
        ),
        (
            Some("{ services: [{ name: 7, limit: 5, period: 'day' }] }".into()),
            vec![
                "services[0]",
                "name: invalid type: number `7.0`",
                "expected a string",
            ],
        ),
        (
            Some("{ services: [{ name: '', limit: 5, period: 'day' }] }".into()),
            vec!["name must not be empty"],
        ),
        (
            Some(format!(
                "{{ services: [{{ {service} }}, {{ {service} }}] }}"
            )),
            vec!["service \"a\": name must be unique"],
        ),
        (
            Some("{ services: [{ name: 'a', period: 'day' }] }".into()),
            vec!["missing field `limit`"],
        ),
        (
            Some("{ services: [{ name: 'a', limit: '5', period: 'day' }] }".into()),
            vec!["services[0]", "limit", "invalid type", "expected a number"],
        ),
        (
            // `limit` may be left out for a list of `limits`: null is left out.
            Some("{ services: [{ name: 'a', limit: null, period: 'day' }] }".into()),
            vec!["services[0]", "missing field `limit`"],
        ),
        (
            Some("{ services: [{ name: 'a', limit: 5, period: 'weekly' }] }".into()),
            vec!["\"a\"", "unknown period \"weekly\"", "minute"],
        ),
        (
            Some("{ services: [{ name: 'a', limit: 5 }] }".into()),
            vec!["missing field `period`"],
        ),
        (
            Some(format!(
                "{{ services: [{{ {service}, warnThreshold: '0.5' }}] }}"
            )),
            vec!["warnThreshold", "invalid type"],
        ),
    ];
    let mut cases = cases;
    for limit in ["0", "-5", "2.5", "NaN", "Infinity", "2 ** 53"] {
        cases.push((
            Some(format!(
                "{{ services: [{{ name: 'a', limit: {limit}, period: 'day' }}] }}"
            )),
            vec!["\"a\"", "limit must be a positive integer"],
        ));
    }
    for (field, value) in [
        ("warnThreshold", "0"),
        ("warnThreshold", "-0.1"),
        ("warnThreshold", "NaN"),
        ("criticalThreshold", "1.5"),
        ("criticalThreshold", "Infinity"),
    ] {
        cases.push((
            Some(format!(
                "{{ services: [{{ {service}, {field}: {value} }}] }}"
            )),
            vec!["\"a\"", field, "must be in (0, 1]"],
        ));
    }
    cases.push((
        Some(format!(
            "{{ services: [{{ {service}, warnThreshold: 0.9, criticalThreshold: 0.5 }}] }}"
        )),
        vec!["warnThreshold must not exceed the critical threshold (0.5) (got 0.9)"],
    ));
    cases.push((
        Some(format!(
            "{{ services: [{{ {service}, reserveFraction: 1 }}] }}"
        )),
        vec!["reserveFraction must be in [0, 1)"],
    ));

    for (config, words) in cases {
        let args: Vec<JsValue> = config.iter().map(|c| eval(c)).collect();
        let thrown = match Tracker::construct(&args) {
            Ok(_) => panic!("new QuotaTracker({config:?}) did not throw"),
            Err(thrown) => thrown,
        };
        let text = message(&thrown);
        for word in words {
            assert!(
                text.contains(word),
                "new QuotaTracker({config:?}): {text:?} should mention {word:?}"
            );
        }
    }
}

#[wasm_bindgen_test]
fn callbacks_must_be_functions() {
    let tracker = busy_tracker();
    for value in ["undefined", "null", "42", "'f'", "({})"] {
        assert_refused(
            &tracker,
            "onTransition",
            &[eval(value)],
            &["onTransition needs a function"],
        );
    }
    // Nothing was subscribed: ids start at 1 and none is taken.
    let off = tracker.call("offTransition", &[1.into()]).unwrap();
    assert_eq!(off, JsValue::FALSE);
    for id in ["undefined", "'1'", "1.5", "-1"] {
        let off = tracker.call("offTransition", &[eval(id)]).unwrap();
        assert_eq!(off, JsValue::FALSE, "offTransition({id})");
    }
}
