//! Reading what JavaScript passes in: the config, service names and call counts.
//!
//! Every bad value becomes a JS `Error` whose message says what is wrong and what was given,
//! and is refused before the tracker is touched.

use crate::error::{ConfigProblem, QuotaError};
use crate::service::{ServiceConfig, TrackerConfig};
use crate::window::Period;
use js_sys::{Array, Error, Object, Reflect};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen(module = "/src/js/input.js")]
extern "C" {
    /// 1 for `undefined`, the number for a number, else `NaN`.
    #[wasm_bindgen(js_name = countOf)]
    fn count_of(value: &JsValue) -> f64;
}

/// `Number.MAX_SAFE_INTEGER`: the largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The fields of one service in a JS config. serde-wasm-bindgen ignores
/// `deny_unknown_fields`, so [`check_keys`] rejects the others (typos like `limt`).
const SERVICE_FIELDS: [&str; 6] = [
    "name",
    "limit",
    "period",
    "warnThreshold",
    "criticalThreshold",
    "reserveFraction",
];

/// One service as JavaScript writes it; read with serde-wasm-bindgen, then checked.
#[derive(Deserialize)]
struct ServiceInput {
    #[serde(deserialize_with = "name")]
    name: String,
    /// A JS number; [`positive_integer`] checks that it is a whole one.
    #[serde(deserialize_with = "limit")]
    limit: f64,
    /// Parsed with `Period::from_str`, whose error lists the valid words.
    #[serde(deserialize_with = "period")]
    period: String,
    #[serde(rename = "warnThreshold", default, deserialize_with = "warn")]
    warn_threshold: Option<f64>,
    #[serde(rename = "criticalThreshold", default, deserialize_with = "critical")]
    critical_threshold: Option<f64>,
    #[serde(rename = "reserveFraction", default, deserialize_with = "reserve")]
    reserve_fraction: Option<f64>,
}

/// Deserializes a `T`, naming `field` in the error (serde's type errors name only the types).
fn named<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
    field: &str,
) -> Result<T, D::Error> {
    T::deserialize(deserializer).map_err(|error| {
        // Say it in JavaScript's words: numbers are not "floating point" or "f64" there.
        let text = error
            .to_string()
            .replace("floating point", "number")
            .replace("expected f64", "expected a number");
        let text = text.strip_prefix("Error: ").unwrap_or(&text);
        D::Error::custom(format_args!("{field}: {text}"))
    })
}

/// One `deserialize_with` function per field of [`ServiceInput`], each naming its field.
macro_rules! named_fields {
    ($($function:ident: $ty:ty = $field:literal;)*) => {$(
        fn $function<'de, D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
            named(deserializer, $field)
        }
    )*};
}

named_fields! {
    name: String = "name";
    limit: f64 = "limit";
    period: String = "period";
    warn: Option<f64> = "warnThreshold";
    critical: Option<f64> = "criticalThreshold";
    reserve: Option<f64> = "reserveFraction";
}

/// The fields of `storage` in a JS config.
const STORAGE_FIELDS: [&str; 2] = ["key", "syncIntervalMs"];

/// A JS config read and checked: the services, and where to persist them.
pub(super) struct Config {
    pub(super) tracker: TrackerConfig,
    /// `storage`, when given.
    pub(super) storage: Option<Storage>,
}

/// `storage: { key, syncIntervalMs? }`: persist the counts in `localStorage` under `key`.
pub(super) struct Storage {
    /// The `localStorage` key: a non-empty string.
    pub(super) key: String,
    /// Save when this long has passed since the last save (default 60 000 ms).
    pub(super) sync_interval_ms: u64,
}

/// The tracker config `{ services: [{ name, limit, period, ... }], storage? }`.
///
/// Checks the shape here; the values are checked by [`TrackerConfig::validate`] when the
/// tracker is built (its messages go through [`error`]).
pub(super) fn config(value: &JsValue) -> Result<Config, Error> {
    if value.is_undefined() {
        return Err(Error::new(
            "QuotaTracker needs a config: new QuotaTracker({ services: [{ name, limit, period }] }); \
             use QuotaTracker.withDefaults() for the default services",
        ));
    }
    let object = plain_object(value).ok_or_else(|| {
        invalid(format!(
            "expected an object like {{ services: [...] }} (got {})",
            describe(value)
        ))
    })?;
    check_keys(object, &["services", "storage"], "the config")?;
    let services = field(object, "services")?;
    if services.is_undefined() {
        return Err(invalid(
            "missing field \"services\": list the services to track".into(),
        ));
    }
    if !Array::is_array(&services) {
        return Err(invalid(format!(
            "\"services\" must be an array (got {})",
            describe(&services)
        )));
    }
    let services: Array = services.unchecked_into();
    if services.length() == 0 {
        return Err(invalid(
            "\"services\" is empty: list at least one service".into(),
        ));
    }
    let services = services
        .iter()
        .enumerate()
        .map(|(index, value)| service_config(index, &value))
        .collect::<Result<Vec<_>, _>>()?;
    let storage = storage(&field(object, "storage")?)?;
    Ok(Config {
        tracker: TrackerConfig::new(services),
        storage,
    })
}

/// `storage`: omitted or `undefined` for none, else `{ key, syncIntervalMs? }`.
fn storage(value: &JsValue) -> Result<Option<Storage>, Error> {
    if value.is_undefined() {
        return Ok(None);
    }
    let object = plain_object(value).ok_or_else(|| {
        invalid(format!(
            "\"storage\" must be an object like {{ key: \"my-app\" }} (got {})",
            describe(value)
        ))
    })?;
    check_keys(object, &STORAGE_FIELDS, "storage")?;
    let key = field(object, "key")?;
    let key = match key.as_string() {
        Some(key) if !key.is_empty() => key,
        _ => {
            return Err(invalid(format!(
                "storage.key must be a non-empty string naming the localStorage entry (got {})",
                describe(&key)
            )))
        }
    };
    let interval = field(object, "syncIntervalMs")?;
    let sync_interval_ms = if interval.is_undefined() {
        crate::SyncPolicy::default().interval_ms
    } else {
        interval
            .as_f64()
            .filter(|ms| *ms == 0.0 || positive_integer(*ms).is_some())
            .map(|ms| ms as u64)
            .ok_or_else(|| {
                invalid(format!(
                    "storage.syncIntervalMs must be a whole number of milliseconds from 0 to \
                     Number.MAX_SAFE_INTEGER (got {})",
                    describe(&interval)
                ))
            })?
    };
    Ok(Some(Storage {
        key,
        sync_interval_ms,
    }))
}

fn service_config(index: usize, value: &JsValue) -> Result<ServiceConfig, Error> {
    let at = format!("services[{index}]");
    let object = plain_object(value).ok_or_else(|| {
        invalid(format!(
            "{at} must be an object like {{ name, limit, period }} (got {})",
            describe(value)
        ))
    })?;
    check_keys(object, &SERVICE_FIELDS, &at)?;
    let input: ServiceInput = serde_wasm_bindgen::from_value(value.clone())
        .map_err(|error| invalid(format!("{at}: {}", serde_message(&error))))?;
    let at = format!("{at} ({:?})", input.name);
    let limit = positive_integer(input.limit).ok_or_else(|| {
        invalid(format!(
            "{at}: limit must be a positive integer (got {})",
            number(input.limit)
        ))
    })?;
    let period: Period = input
        .period
        .parse()
        .map_err(|error| invalid(format!("{at}: {error}")))?;
    let defaults = ServiceConfig::new(input.name, limit, period);
    Ok(ServiceConfig {
        warn_threshold: input.warn_threshold.unwrap_or(defaults.warn_threshold),
        critical_threshold: input
            .critical_threshold
            .unwrap_or(defaults.critical_threshold),
        reserve_fraction: input.reserve_fraction.unwrap_or(defaults.reserve_fraction),
        ..defaults
    })
}

/// A service name: any string (whether it is configured is the tracker's check).
pub(super) fn service(value: &JsValue) -> Result<String, Error> {
    value.as_string().ok_or_else(|| {
        Error::new(&format!(
            "service must be a string naming a configured service (got {})",
            describe(value)
        ))
    })
}

/// A call count: a whole number from 1 to `Number.MAX_SAFE_INTEGER`; `undefined` (omitted)
/// means 1. `null` is refused rather than read as "omitted", so a bug upstream is not
/// silently counted as one call.
pub(super) fn count(service: &str, value: &JsValue) -> Result<u64, Error> {
    if let Some(count) = positive_integer(count_of(value)) {
        return Ok(count);
    }
    let problem = match value.as_f64() {
        None => "count must be a number",
        Some(n) if !n.is_finite() => "count must be a finite number",
        Some(n) if n.fract() != 0.0 => "count must be a whole number",
        Some(n) if n < 1.0 => "count must be at least 1",
        Some(_) => "count must not exceed Number.MAX_SAFE_INTEGER (9007199254740991)",
    };
    Err(Error::new(&format!(
        "invalid count for service {service:?}: {problem} (got {})",
        describe(value)
    )))
}

/// A callback for `onTransition`.
pub(super) fn callback(value: &JsValue) -> Result<js_sys::Function, Error> {
    value.dyn_ref::<js_sys::Function>().cloned().ok_or_else(|| {
        Error::new(&format!(
            "onTransition needs a function (transition) => void (got {})",
            describe(value)
        ))
    })
}

/// The tracker's error as a JS `Error`. Config errors name fields the way JavaScript users
/// wrote them (`warnThreshold`), formatted from the error's fields, not by rewriting text.
pub(super) fn error(error: QuotaError) -> Error {
    match &error {
        QuotaError::InvalidConfig {
            service,
            field,
            value,
            reason,
        } => invalid(
            ConfigProblem {
                service: service.as_deref(),
                field: js_field(field),
                value,
                reason,
            }
            .to_string(),
        ),
        _ => Error::new(&error.to_string()),
    }
}

/// The camelCase name a JS config uses for a Rust config field.
fn js_field(field: &str) -> &str {
    match field {
        "warn_threshold" => "warnThreshold",
        "critical_threshold" => "criticalThreshold",
        "reserve_fraction" => "reserveFraction",
        "enter_after_failures" => "enterAfterFailures",
        "leave_after_successes" => "leaveAfterSuccesses",
        other => other,
    }
}

fn invalid(message: String) -> Error {
    Error::new(&format!("invalid config: {message}"))
}

/// `value` as an object with fields: not `null`, not an array, not a function.
fn plain_object(value: &JsValue) -> Option<&Object> {
    (value.is_object() && !Array::is_array(value)).then(|| value.unchecked_ref())
}

fn field(object: &Object, name: &str) -> Result<JsValue, Error> {
    Reflect::get(object, &JsValue::from_str(name))
        .map_err(|_| invalid(format!("reading field {name:?} threw")))
}

/// Refuses fields other than `allowed`, naming the first unknown one.
fn check_keys(object: &Object, allowed: &[&str], at: &str) -> Result<(), Error> {
    for key in Object::keys(object).iter() {
        let key = key.as_string().unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(format!(
                "{at}: unknown field {key:?}; expected {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// `n` as a count when it is a whole number from 1 to `Number.MAX_SAFE_INTEGER`.
fn positive_integer(n: f64) -> Option<u64> {
    // NaN is in no range, so it is refused too.
    ((1.0..=MAX_SAFE_INTEGER).contains(&n) && n.fract() == 0.0).then_some(n as u64)
}

/// A serde-wasm-bindgen error's message without the `Error: ` that `String(error)` adds.
fn serde_message(error: &serde_wasm_bindgen::Error) -> String {
    let text = error.to_string();
    text.strip_prefix("Error: ").unwrap_or(&text).to_owned()
}

/// A JS number the way JavaScript prints it (`NaN`, `Infinity`, `1.5`).
fn number(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        n.to_string()
    }
}

/// A short description of a JS value for error messages.
fn describe(value: &JsValue) -> String {
    if let Some(n) = value.as_f64() {
        number(n)
    } else if let Some(text) = value.as_string() {
        format!("the string {text:?}")
    } else if let Some(flag) = value.as_bool() {
        flag.to_string()
    } else if value.is_null() {
        "null".into()
    } else if value.is_undefined() {
        "undefined".into()
    } else if Array::is_array(value) {
        "an array".into()
    } else {
        match value.js_typeof().as_string().as_deref() {
            Some("function") => "a function".into(),
            Some("bigint") => "a bigint".into(),
            Some("symbol") => "a symbol".into(),
            _ => "an object".into(),
        }
    }
}
