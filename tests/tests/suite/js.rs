//! Helpers: the JS class seen from JavaScript, reading JS objects, a fixed `Date.now()`, and a
//! `console.error` spy.

use js_sys::{Array, Function, Object, Reflect, JSON};
use quota_core::js::JsQuotaTracker;
use wasm_bindgen::{JsCast, JsValue};

/// 2024-02-29T13:45:17.250Z: a fixed instant for tests that check windows.
pub const NOW: f64 = 1_709_214_317_250.0;
/// 2024-02-29T13:45:00Z and 13:46:00Z: the minute window around [`NOW`].
pub const MINUTE_START: f64 = 1_709_214_300_000.0;
pub const MINUTE_END: f64 = 1_709_214_360_000.0;

/// The `QuotaTracker` class as JavaScript sees it.
pub fn class() -> Function {
    let instance = JsValue::from(JsQuotaTracker::with_defaults());
    get(&instance, "constructor").unchecked_into()
}

/// A JS `QuotaTracker` object, called through its JS methods.
pub struct Tracker {
    pub object: JsValue,
}

impl Tracker {
    /// `new QuotaTracker(...args)`.
    pub fn construct(args: &[JsValue]) -> Result<Tracker, JsValue> {
        let args: Array = args.iter().collect();
        Reflect::construct(&class(), &args).map(|object| Tracker { object })
    }

    /// `new QuotaTracker(JSON.parse(config))`, which must succeed.
    pub fn of(config: &str) -> Tracker {
        Tracker::construct(&[parse(config)]).expect("a valid config")
    }

    /// `QuotaTracker.withDefaults()`.
    pub fn with_defaults() -> Tracker {
        let class = class();
        let object = call_function(&get(&class, "withDefaults"), &class, &[]).unwrap();
        Tracker { object }
    }

    /// `tracker[method](...args)`: the result, or what it threw.
    pub fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
        let function = get(&self.object, method);
        assert!(
            function.is_function(),
            "QuotaTracker has no method {method}"
        );
        call_function(&function, &self.object, args)
    }

    /// `recordCall(service, count)`, which must succeed.
    pub fn record(&self, service: &str, count: u32) -> JsValue {
        self.call("recordCall", &[service.into(), count.into()])
            .unwrap_or_else(|error| panic!("recordCall threw {}", message(&error)))
    }

    /// `usage(service)`, which must succeed.
    pub fn usage(&self, service: &str) -> JsValue {
        self.call("usage", &[service.into()]).unwrap()
    }

    /// `usage(service).used`.
    pub fn used(&self, service: &str) -> f64 {
        num(&self.usage(service), "used")
    }

    /// `snapshot()`.
    pub fn snapshot(&self) -> JsValue {
        self.call("snapshot", &[]).unwrap()
    }

    /// `JSON.stringify(snapshot().services)`: the whole state, to compare before and after.
    pub fn state(&self) -> String {
        json(&get(&self.snapshot(), "services"))
    }
}

fn call_function(function: &JsValue, this: &JsValue, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let args: Array = args.iter().collect();
    Reflect::apply(function.unchecked_ref::<Function>(), this, &args)
}

/// `JSON.parse(text)`.
pub fn parse(text: &str) -> JsValue {
    JSON::parse(text).unwrap_or_else(|_| panic!("bad JSON in a test: {text}"))
}

/// `JSON.stringify(value)`.
pub fn json(value: &JsValue) -> String {
    JSON::stringify(value).unwrap().into()
}

/// `value[key]`.
pub fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).unwrap()
}

/// `value[key]`, which must be a number.
pub fn num(value: &JsValue, key: &str) -> f64 {
    get(value, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {}", json(value)))
}

/// `value[key]`, which must be a string.
pub fn text(value: &JsValue, key: &str) -> String {
    get(value, key)
        .as_string()
        .unwrap_or_else(|| panic!("{key} is not a string in {}", json(value)))
}

/// `Object.keys(value)`, sorted.
pub fn keys(value: &JsValue) -> Vec<String> {
    let mut keys: Vec<String> = Object::keys(value.unchecked_ref::<Object>())
        .iter()
        .filter_map(|key| key.as_string())
        .collect();
    keys.sort();
    keys
}

/// The message of a thrown value, which must be an `Error`.
pub fn message(thrown: &JsValue) -> String {
    assert!(
        thrown.is_instance_of::<js_sys::Error>(),
        "threw a non-Error: {thrown:?}"
    );
    thrown.unchecked_ref::<js_sys::Error>().message().into()
}

/// `(from, to)` of a transition object.
pub fn levels(transition: &JsValue) -> (String, String) {
    (text(transition, "from"), text(transition, "to"))
}

/// `Date.now()` replaced by a settable clock until dropped (the tracker's clock is `Date.now`).
pub struct FixedClock {
    date: JsValue,
    original: JsValue,
    state: Object,
}

impl FixedClock {
    pub fn at(ms: f64) -> FixedClock {
        let date = get(&js_sys::global(), "Date");
        let original = get(&date, "now");
        let state = Object::new();
        let now = Function::new_with_args("state", "return () => state.now")
            .call1(&JsValue::NULL, &state)
            .unwrap();
        Reflect::set(&date, &"now".into(), &now).unwrap();
        let clock = FixedClock {
            date,
            original,
            state,
        };
        clock.set(ms);
        clock
    }

    pub fn set(&self, ms: f64) {
        Reflect::set(&self.state, &"now".into(), &ms.into()).unwrap();
    }

    pub fn advance(&self, ms: f64) {
        self.set(num(&self.state, "now") + ms);
    }
}

impl Drop for FixedClock {
    fn drop(&mut self) {
        Reflect::set(&self.date, &"now".into(), &self.original).unwrap();
    }
}

/// `console.error` replaced by a recorder until dropped.
pub struct ConsoleErrors {
    console: JsValue,
    original: JsValue,
    calls: Array,
}

impl ConsoleErrors {
    pub fn spy() -> ConsoleErrors {
        let console = get(&js_sys::global(), "console");
        let original = get(&console, "error");
        let calls = Array::new();
        let spy = Function::new_with_args(
            "calls",
            "return (...args) => { calls.push(args.map((a) => String(a)).join(' ')); }",
        )
        .call1(&JsValue::NULL, &calls)
        .unwrap();
        Reflect::set(&console, &"error".into(), &spy).unwrap();
        ConsoleErrors {
            console,
            original,
            calls,
        }
    }

    /// Each call's arguments, stringified and joined by spaces.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter_map(|call| call.as_string())
            .collect()
    }
}

impl Drop for ConsoleErrors {
    fn drop(&mut self) {
        Reflect::set(&self.console, &"error".into(), &self.original).unwrap();
    }
}

/// A JS function `(transition) => log.push(transition)` and its log.
pub fn recorder() -> (JsValue, Array) {
    let log = Array::new();
    let callback = Function::new_with_args("log", "return (t) => { log.push(t); }")
        .call1(&JsValue::NULL, &log)
        .unwrap();
    (callback, log)
}

/// `(from, to)` of every transition in `log`.
pub fn logged(log: &Array) -> Vec<(String, String)> {
    log.iter().map(|t| levels(&t)).collect()
}

/// `(from, to)` pairs from words.
pub fn pairs(words: &[(&str, &str)]) -> Vec<(String, String)> {
    words
        .iter()
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect()
}
