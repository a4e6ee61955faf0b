//! `storage` in headless Chromium: counts persist in `localStorage` across trackers; a failing
//! `localStorage` is reported, turns reduced rate on, and off again once saves succeed.

use super::suite::js::*;
use super::suite::storage::{reduced, stats, STATS_KEYS};
use js_sys::{Function, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

const SERVICES: &str = r#"[
    { "name": "search", "limit": 10, "period": "minute" },
    { "name": "mail", "limit": 100, "period": "day" }
]"#;

fn local_storage() -> web_storage::Storage {
    web_storage::Storage(get(&js_sys::global(), "localStorage"))
}

/// A tiny view of `window.localStorage` through JS calls.
mod web_storage {
    use super::*;

    pub struct Storage(pub JsValue);

    impl Storage {
        fn call(&self, method: &str, args: &[JsValue]) -> JsValue {
            let function: Function = get(&self.0, method).into();
            let args: js_sys::Array = args.iter().collect();
            Reflect::apply(&function, &self.0, &args).unwrap()
        }

        pub fn get(&self, key: &str) -> Option<String> {
            self.call("getItem", &[key.into()]).as_string()
        }

        pub fn set(&self, key: &str, value: &str) {
            self.call("setItem", &[key.into(), value.into()]);
        }

        pub fn remove(&self, key: &str) {
            self.call("removeItem", &[key.into()]);
        }
    }
}

/// A `localStorage` key no other test uses, empty now and removed when dropped.
struct Key(String);

impl Key {
    fn fresh(name: &str) -> Key {
        let key = format!("quota-test-{name}-{}", js_sys::Math::random());
        local_storage().remove(&key);
        Key(key)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        local_storage().remove(&self.0);
    }
}

/// `new QuotaTracker({ services: SERVICES, storage: { key, syncIntervalMs? } })`.
fn tracker(key: &Key, sync_interval_ms: Option<u32>) -> Tracker {
    let interval =
        sync_interval_ms.map_or(String::new(), |ms| format!(", \"syncIntervalMs\": {ms}"));
    Tracker::of(&format!(
        r#"{{ "services": {SERVICES}, "storage": {{ "key": "{}"{interval} }} }}"#,
        key.0
    ))
}

/// `localStorage.setItem` made to throw until dropped.
struct BrokenSetItem {
    prototype: JsValue,
    original: JsValue,
}

impl BrokenSetItem {
    fn install() -> BrokenSetItem {
        let prototype = get(&get(&js_sys::global(), "Storage"), "prototype");
        let original = get(&prototype, "setItem");
        let broken = Function::new_no_args("throw new Error('QuotaExceededError: disk full');");
        Reflect::set(&prototype, &"setItem".into(), &broken).unwrap();
        BrokenSetItem {
            prototype,
            original,
        }
    }
}

impl Drop for BrokenSetItem {
    fn drop(&mut self) {
        Reflect::set(&self.prototype, &"setItem".into(), &self.original).unwrap();
    }
}

#[wasm_bindgen_test]
fn a_second_tracker_on_the_same_key_restores_the_counts_after_flush() {
    let _clock = FixedClock::at(NOW);
    let key = Key::fresh("restore");
    let first = tracker(&key, None);
    first.record("search", 3);
    first.record("mail", 60);

    // Nothing saved yet: the interval (60 s) has not passed and nothing went critical.
    assert_eq!(local_storage().get(&key.0), None);
    let early = tracker(&key, None);
    assert_eq!((early.used("search"), early.used("mail")), (0.0, 0.0));

    assert!(first.call("flush", &[]).unwrap().is_undefined());
    let saved = parse(
        &local_storage()
            .get(&key.0)
            .expect("flush wrote localStorage"),
    );
    assert_eq!(num(&saved, "version"), 2.0);

    let second = tracker(&key, None);
    assert_eq!((second.used("search"), second.used("mail")), (3.0, 60.0));
    assert_eq!(text(&second.usage("mail"), "level"), "warning");
    let restored = stats(&second);
    assert_eq!(
        (num(&restored, "loads"), num(&restored, "loadFailures")),
        (1.0, 0.0)
    );
    assert!(get(&restored, "lastError").is_null());
    // It goes on counting from there, and another key is separate.
    second.record("search", 1);
    assert_eq!(second.used("search"), 4.0);
    let other = Key::fresh("other");
    assert_eq!(tracker(&other, None).used("search"), 0.0);
}

#[wasm_bindgen_test]
fn stats_count_loads_saves_and_forced_saves() {
    let clock = FixedClock::at(NOW);
    let key = Key::fresh("stats");
    let tracker = tracker(&key, Some(1_000));
    let fresh = stats(&tracker);
    assert_eq!(
        json(&fresh),
        r#"{"loads":1,"loadFailures":0,"saves":0,"saveFailures":0,"forcedSaves":0,"coalescedSaves":0,"lastError":null,"consecutiveFailures":0,"consecutiveSuccesses":0,"reducedRate":false}"#
    );

    tracker.call("flush", &[]).unwrap();
    assert_eq!(num(&stats(&tracker), "saves"), 1.0);
    assert_eq!(num(&stats(&tracker), "consecutiveSuccesses"), 1.0);

    // syncIntervalMs: a call once 1 s has passed saves.
    tracker.record("mail", 5);
    assert_eq!(num(&stats(&tracker), "saves"), 1.0);
    clock.advance(1_000.0);
    tracker.record("mail", 5);
    assert_eq!(num(&stats(&tracker), "saves"), 2.0);

    // Entering critical saves at once.
    tracker.record("search", 8);
    let after = stats(&tracker);
    assert_eq!(num(&after, "forcedSaves"), 1.0);
    assert_eq!(num(&after, "saves"), 3.0);
    assert_eq!(num(&after, "consecutiveSuccesses"), 3.0);
    let saved = local_storage().get(&key.0).unwrap();
    assert!(saved.contains("\"total\": 8"), "{saved}");
    assert_eq!(keys(&after), STATS_KEYS);
}

#[wasm_bindgen_test]
fn corrupt_saved_data_is_reported_and_the_tracker_starts_fresh() {
    let _clock = FixedClock::at(NOW);
    let key = Key::fresh("corrupt");
    local_storage().set(&key.0, "{ not json");
    let tracker = tracker(&key, None);
    assert_eq!(tracker.used("search"), 0.0);
    let stats_now = stats(&tracker);
    assert_eq!(num(&stats_now, "loadFailures"), 1.0);
    let last_error = text(&stats_now, "lastError");
    assert!(last_error.contains("corrupt"), "{last_error:?}");
    // The next save replaces it with good data.
    tracker.record("mail", 2);
    tracker.call("flush", &[]).unwrap();
    assert_eq!(self::tracker(&key, None).used("mail"), 2.0);
}

#[wasm_bindgen_test]
fn required_storage_throws_when_the_first_read_fails_and_changes_nothing() {
    let _clock = FixedClock::at(NOW);
    let key = Key::fresh("required");
    local_storage().set(&key.0, "{ not json");
    let config = |required: &str| {
        format!(
            r#"{{ "services": {SERVICES}, "storage": {{ "key": "{}", "required": {required} }} }}"#,
            key.0
        )
    };
    let Err(thrown) = Tracker::construct(&[parse(&config("true"))]) else {
        panic!("required storage built a tracker on corrupt data");
    };
    let text = message(&thrown);
    assert!(
        text.starts_with("storage: could not read localStorage") && text.contains("corrupt"),
        "{text:?}"
    );
    // The bad data is kept beside the key (never dropped), as on any failed read.
    let aside = Key(format!("{}.corrupt-{NOW}", key.0));
    assert_eq!(local_storage().get(&aside.0).as_deref(), Some("{ not json"));
    assert_eq!(local_storage().get(&key.0), None);
    // `required: false` (the default) starts fresh and says why in its stats.
    local_storage().set(&key.0, "{ not json");
    let tracker = Tracker::of(&config("false"));
    assert_eq!(num(&stats(&tracker), "loadFailures"), 1.0);
    // Readable data: `required: true` builds and restores it.
    tracker.record("mail", 4);
    tracker.call("flush", &[]).unwrap();
    assert_eq!(Tracker::of(&config("true")).used("mail"), 4.0);
}

#[wasm_bindgen_test]
fn failing_local_storage_turns_reduced_rate_on_and_off() {
    let _clock = FixedClock::at(NOW);
    let key = Key::fresh("outage");
    let tracker = tracker(&key, None);
    tracker.record("mail", 25); // a quarter of mail's limit: the reduced-rate allowance
    assert_eq!(tracker.call("canCall", &["mail".into()]).unwrap(), true);

    {
        let _broken = BrokenSetItem::install();
        for failures in 1..=3 {
            let thrown = tracker.call("flush", &[]).expect_err("flush throws");
            let text = message(&thrown);
            assert!(
                text.contains("localStorage.setItem") && text.contains("disk full"),
                "{text:?}"
            );
            assert_eq!(
                reduced(&tracker),
                failures == 3,
                "after {failures} failures"
            );
        }
        let stats_now = stats(&tracker);
        assert_eq!(num(&stats_now, "saveFailures"), 3.0);
        assert_eq!(num(&stats_now, "consecutiveFailures"), 3.0);
        assert_eq!(get(&stats_now, "reducedRate").as_bool(), Some(true));
        assert!(text(&stats_now, "lastError").contains("disk full"));
        assert_eq!(tracker.call("canCall", &["mail".into()]).unwrap(), false);
        let refused = tracker.call("tryRecord", &["mail".into()]).unwrap();
        assert_eq!(get(&refused, "allowed").as_bool(), Some(false));
    }

    // localStorage works again: five good saves in a row end reduced rate.
    for successes in 1..=5 {
        assert!(tracker.call("flush", &[]).unwrap().is_undefined());
        assert_eq!(
            reduced(&tracker),
            successes < 5,
            "after {successes} successes"
        );
    }
    assert_eq!(tracker.call("canCall", &["mail".into()]).unwrap(), true);
    assert_eq!(num(&stats(&tracker), "saves"), 5.0);
}

#[wasm_bindgen_test]
fn good_storage_options_construct() {
    for storage in [
        "undefined",
        "({ key: 'quota-test-ok' })",
        "({ key: 'quota-test-ok', syncIntervalMs: 0 })",
        "({ key: 'quota-test-ok', syncIntervalMs: 1000 })",
        "({ key: 'quota-test-ok', syncIntervalMs: undefined })",
        "({ key: 'quota-test-ok', syncIntervalMs: Number.MAX_SAFE_INTEGER })",
    ] {
        let tracker = super::suite::storage::with_storage(storage)
            .unwrap_or_else(|thrown| panic!("storage: {storage} threw {}", message(&thrown)));
        assert_eq!(tracker.used("search"), 0.0, "storage: {storage}");
    }
}

/// `hold.settle(actual)` on a `Hold` from `tracker.hold(service, estimate)`.
fn hold_and_settle(tracker: &Tracker, service: &str, estimate: u32) -> impl Fn(u32) -> JsValue {
    let hold = tracker
        .call("hold", &[service.into(), estimate.into()])
        .unwrap();
    move |actual| {
        let settle: Function = get(&hold, "settle").into();
        settle.call1(&hold, &actual.into()).unwrap()
    }
}

#[wasm_bindgen_test]
fn a_hold_settled_before_its_save_is_saved_at_its_actual_and_one_saved_before_stays() {
    let _clock = FixedClock::at(NOW);
    let key = Key::fresh("holds");
    let tracker = tracker(&key, Some(60_000));
    let settle = hold_and_settle(&tracker, "mail", 40);
    assert_eq!(tracker.used("mail"), 40.0);
    assert_eq!(num(&settle(12), "givenBack"), 28.0);
    tracker.call("flush", &[]).unwrap();
    assert_eq!(tracker_on(&key).used("mail"), 12.0);

    // Saved before it settles (a flush, or entering critical): what was saved stays counted
    // (the JS module sends no give-backs; README), here and in `localStorage` alike.
    let settle = hold_and_settle(&tracker, "mail", 30);
    tracker.call("flush", &[]).unwrap();
    let settled = settle(10);
    assert_eq!(
        (num(&settled, "givenBack"), num(&settled, "used")),
        (0.0, 42.0)
    );
    assert_eq!(tracker.used("mail"), 42.0);
    tracker.call("flush", &[]).unwrap();
    assert_eq!(tracker_on(&key).used("mail"), 42.0);
    // Part saved, part not: the part not saved comes off.
    let settle = hold_and_settle(&tracker, "mail", 10);
    assert_eq!(num(&settle(4), "givenBack"), 6.0);
    tracker.call("flush", &[]).unwrap();
    assert_eq!(tracker_on(&key).used("mail"), 46.0);
}

/// A second tracker on `key`, which reads what the first one saved.
fn tracker_on(key: &Key) -> Tracker {
    tracker(key, None)
}
