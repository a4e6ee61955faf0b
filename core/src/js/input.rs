//! Reading what JavaScript passes in: the config, service names and call counts.
//!
//! Every bad value becomes a JS `Error` whose message says what is wrong and what was given,
//! and is refused before the tracker is touched. The config's shape (objects, arrays, unknown
//! and missing fields, types, whole numbers) is checked by `input.js`, where reading a JS
//! value costs no call across the boundary and JavaScript describes the values; this side
//! reads what it answers, parses periods and builds the windows, and the core checks the
//! values. Every problem is reported in the order a reader of the config meets it.

use crate::config::{Limit, ServiceConfig, TrackerConfig};
use crate::error::{ConfigProblem, QuotaError};
use crate::window::Period;
use js_sys::{Array, Error};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen(module = "/src/js/input.js")]
extern "C" {
    /// 1 for `undefined`, the number for a number, else `NaN`.
    #[wasm_bindgen(js_name = countOf)]
    fn count_of(value: &JsValue) -> f64;

    /// The `Error` for a bad count of calls to `service`, naming the problem.
    #[wasm_bindgen(js_name = countError)]
    fn count_error(service: &str, value: &JsValue) -> Error;

    /// A short description of a JS value for error messages (`5`, `NaN`, `the string "a"`,
    /// `null`, `an array`, `an object`, ...).
    fn describe(value: &JsValue) -> String;

    /// Service `index` of a config, its shape checked: a message for the first problem, or
    /// its fields and one group of [`LIMIT_SLOTS`] per limit (see `serviceOf` in `input.js`).
    #[wasm_bindgen(js_name = serviceOf)]
    fn service_of(service: &JsValue, index: u32) -> JsValue;

    /// The config `{ services, storage? }`, its shape checked: a message for the first
    /// problem, or its services array (see `configOf` in `input.js`).
    #[wasm_bindgen(js_name = configOf)]
    fn config_of(config: &JsValue) -> JsValue;

    /// The config's `storage`: `[key, syncIntervalMs, required]`, `undefined` when omitted, or
    /// a message for its first problem (see `storageOf` in `input.js`).
    #[wasm_bindgen(js_name = storageOf)]
    fn storage_of(config: &JsValue) -> JsValue;

    /// `tryRecordMany`'s calls as `[service, count, service, count, ...]`, or a message for
    /// their first problem (see `callsOf` in `input.js`).
    #[wasm_bindgen(js_name = callsOf)]
    fn calls_of(calls: &JsValue) -> JsValue;
}

/// `Number.MAX_SAFE_INTEGER`: the largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The slots of one limit in what `serviceOf` answers: `[at, early, limit, period, every,
/// timezone, anchorDay, warnThreshold, criticalThreshold, enforce, late]`.
const LIMIT_SLOTS: u32 = 11;

/// Where the first limit's group starts, after `[name, warnThreshold, criticalThreshold,
/// reserveFraction, enforce, listed]`.
const FIRST_LIMIT: u32 = 6;

/// A JS config read and checked: the services, and where to persist them.
pub(super) struct Config {
    pub(super) tracker: TrackerConfig,
    /// `storage`, when given.
    pub(super) storage: Option<Storage>,
}

/// `storage: { key, syncIntervalMs?, required? }`: persist the counts in `localStorage` under `key`.
pub(super) struct Storage {
    /// The `localStorage` key: a non-empty string.
    pub(super) key: String,
    /// Save when this long has passed since the last save (default 60 000 ms).
    pub(super) sync_interval_ms: u64,
    /// `required: true`: the constructor throws when the first read fails.
    pub(super) required: bool,
}

/// The tracker config `{ services: [{ name, limit, period, ... }], storage? }`.
///
/// Checks the shape here; the values are checked by [`TrackerConfig::validate`] when the
/// tracker is built (its messages go through [`error`]).
#[inline(never)]
pub(super) fn config(value: &JsValue) -> Result<Config, Error> {
    if value.is_undefined() {
        return Err(Error::new(
            "QuotaTracker needs a config: new QuotaTracker({ services: [{ name, limit, period }] }); \
             use QuotaTracker.withDefaults() for the default services",
        ));
    }
    let services = config_of(value);
    if let Some(problem) = services.as_string() {
        return Err(invalid(problem));
    }
    let services: Array = services.unchecked_into();
    // A loop, not `collect` into a `Result`: that adapter is code of its own in the `.wasm`.
    // No capacity from the array's length: a sparse array's length is no count of services.
    let mut configs = Vec::new();
    for (index, value) in services.iter().enumerate() {
        configs.push(service_config(index, &value)?);
    }
    // After every service, as a reader of the config meets it.
    let storage = storage_of(value);
    if let Some(problem) = storage.as_string() {
        return Err(invalid(problem));
    }
    let storage = (!storage.is_undefined()).then(|| {
        let storage: Array = storage.unchecked_into();
        Storage {
            key: storage.get(0).as_string().unwrap_or_default(),
            sync_interval_ms: storage
                .get(1)
                .as_f64()
                .map_or(crate::SyncPolicy::default().interval_ms, |ms| ms as u64),
            required: storage.get(2).as_bool().unwrap_or(false),
        }
    });
    Ok(Config {
        tracker: TrackerConfig::new(configs),
        storage,
    })
}

/// Service `index`: its shape checked by `serviceOf` (input.js), its periods, windows and values
/// here and by the core.
fn service_config(index: usize, value: &JsValue) -> Result<ServiceConfig, Error> {
    let fields = service_of(value, index as u32);
    if let Some(problem) = fields.as_string() {
        return Err(invalid(problem));
    }
    let fields: Array = fields.unchecked_into();
    let name = fields.get(0).as_string().unwrap_or_default();
    let mut config = ServiceConfig::new(name.clone(), 1, Period::Day);
    config.warn_threshold = fields.get(1).as_f64().unwrap_or(config.warn_threshold);
    config.critical_threshold = fields.get(2).as_f64().unwrap_or(config.critical_threshold);
    config.reserve_fraction = fields.get(3).as_f64().unwrap_or(config.reserve_fraction);
    config.enforce = fields.get(4).as_bool().unwrap_or(config.enforce);
    let listed = fields.get(5).as_bool() == Some(true);
    let mut limits = Vec::new();
    let mut at = FIRST_LIMIT;
    while at < fields.length() {
        limits.push(limit(&name, &fields, at, listed)?);
        at += LIMIT_SLOTS;
    }
    if !listed {
        // The service's own limit, under the service's thresholds.
        let limit = limits
            .pop()
            .ok_or_else(|| invalid("a service without limits".into()))?;
        config.limit = limit.count;
        config.window = limit.window;
        return Ok(config);
    }
    config.with_listed_limits(limits).map_err(error)
}

/// The limit whose group starts at `at` in `fields` (see [`LIMIT_SLOTS`]): its problems in the
/// order a reader of the fields meets them (its shape and count, its period, its `every` and
/// `anchorDay`, its window). A window's problem in an entry of `limits` after the first names
/// the entry, as the core's checks of that entry do.
fn limit(name: &str, fields: &Array, at: u32, listed: bool) -> Result<Limit, Error> {
    let early = fields.get(at + 1);
    if let Some(problem) = early.as_string() {
        return Err(invalid(problem));
    }
    if Array::is_array(&early) {
        // What reading the entry threw (a proxy's trap, a getter), thrown here in its turn.
        return Err(early.unchecked_into::<Array>().get(0).unchecked_into());
    }
    let place = fields.get(at).as_string().unwrap_or_default();
    let period: Period = fields
        .get(at + 3)
        .as_string()
        .unwrap_or_default()
        .parse()
        .map_err(|error| invalid(format!("{place}: {error}")))?;
    if let Some(problem) = fields.get(at + 10).as_string() {
        return Err(invalid(problem));
    }
    // Whole numbers in range (checked by `serviceOf`).
    let every = fields.get(at + 4).as_f64().map_or(1, |n| n as i64);
    let anchor_day = fields.get(at + 6).as_f64().map(|n| n as i64);
    let timezone = fields.get(at + 5).as_string();
    let entry = (at - FIRST_LIMIT) / LIMIT_SLOTS + 1;
    let window = crate::config::window_spec(name, period, every, timezone.as_deref(), anchor_day)
        .map_err(|problem| error_in(problem, (listed && entry > 1).then_some(entry)))?;
    let mut limit = Limit::new(fields.get(at + 2).as_f64().unwrap_or(1.0) as u64, window);
    limit.warn_threshold = fields.get(at + 7).as_f64();
    limit.critical_threshold = fields.get(at + 8).as_f64();
    limit.enforce = fields.get(at + 9).as_bool();
    Ok(limit)
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
    whole_count(count_of(value)).ok_or_else(|| count_error(service, value))
}

/// A hold's estimate: a count ([`count`]) that must be given.
pub(super) fn estimate(service: &str, value: &JsValue) -> Result<u64, Error> {
    if value.is_undefined() {
        return Err(count_error(service, value));
    }
    count(service, value)
}

/// `tryRecordMany`'s calls, `[service, count]` pairs or an object of counts, flattened:
/// `[service, count, service, count, ...]`, each still to be checked.
pub(super) fn calls(value: &JsValue) -> Result<Vec<JsValue>, Error> {
    let calls = calls_of(value);
    if let Some(message) = calls.as_string() {
        return Err(Error::new(&message));
    }
    let calls = Array::from(&calls);
    match calls.length() {
        // What reading the calls threw, thrown here in its turn.
        1 => Err(calls.get(0).unchecked_into()),
        _ => Ok(calls.to_vec()),
    }
}

/// `n` as a count when it is a whole number from 1 to `Number.MAX_SAFE_INTEGER`.
pub(super) fn whole_count(n: f64) -> Option<u64> {
    // NaN is in no range, so it is refused too.
    ((1.0..=MAX_SAFE_INTEGER).contains(&n) && n.fract() == 0.0).then_some(n as u64)
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
/// wrote them (`warnThreshold`), formatted from the error's fields; an entry of `limits` after
/// the first names its field at the start of the reason (`entry 2: warn_threshold must be ...`,
/// as `ServiceConfig::check_limit` words it), and that name is written the JS way too.
pub(super) fn error(error: QuotaError) -> Error {
    error_in(error, None)
}

/// [`error`], for a problem of entry `entry` of a service's `limits` when given (the core
/// found it in that entry's window, and does not say which entry).
fn error_in(error: QuotaError, entry: Option<u32>) -> Error {
    match &error {
        QuotaError::InvalidConfig {
            service,
            field,
            value,
            reason,
        } => {
            let in_entry = match entry {
                Some(entry) => Some(format!("entry {entry}: {} {reason}", js_field(field))),
                None => (*field == "limits")
                    .then(|| entry_field(reason))
                    .flatten()
                    .map(|(entry, name, tail)| format!("{entry}: {} {tail}", js_field(name))),
            };
            invalid(
                ConfigProblem {
                    service: service.as_deref(),
                    field: if in_entry.is_some() {
                        "limits"
                    } else {
                        js_field(field)
                    },
                    value,
                    reason: in_entry.as_deref().unwrap_or(reason),
                }
                .to_string(),
            )
        }
        _ => Error::new(&error.to_string()),
    }
}

/// `entry N: <field> <tail>` split into its three parts, when `<field>` is a Rust config field
/// with another name in JS. Searched byte by byte (`str::split_once` with a text pattern would
/// bring its searcher and a panic message with `char`'s `Debug` into the `.wasm`: 5 KB).
fn entry_field(reason: &str) -> Option<(&str, &str, &str)> {
    let colon = reason.bytes().position(|b| b == b':')?;
    let rest = reason.get(colon + 2..)?;
    let space = rest.bytes().position(|b| b == b' ')?;
    let name = rest.get(..space)?;
    (js_field(name) != name).then_some((reason.get(..colon)?, name, rest.get(space + 1..)?))
}

/// The camelCase name a JS config uses for a Rust config field.
fn js_field(field: &str) -> &str {
    match field {
        "warn_threshold" => "warnThreshold",
        "critical_threshold" => "criticalThreshold",
        "reserve_fraction" => "reserveFraction",
        "anchor_day" => "anchorDay",
        "enter_after_failures" => "enterAfterFailures",
        "leave_after_successes" => "leaveAfterSuccesses",
        other => other,
    }
}

fn invalid(message: String) -> Error {
    Error::new(&format!("invalid config: {message}"))
}

/// `text` in double quotes, as `{:?}` writes it for plain text (see `text::Quoted`).
pub(super) fn quoted(text: &str) -> String {
    crate::text::Quoted(text).to_string()
}

#[cfg(test)]
mod tests {
    //! The JS reader's fields against the one schema (`config/tests/schema.rs`).

    use super::js_field;
    use crate::config::tests::schema;

    /// The schema's service fields a JS config has, by their JS names.
    fn js_names() -> Vec<&'static str> {
        schema::SERVICE_FIELDS
            .iter()
            .filter_map(|(_, js)| *js)
            .collect()
    }

    #[test]
    fn the_js_reader_accepts_the_schemas_fields() {
        // `input.js` reads them, in this order (`serviceOf` answers them by index).
        let script = include_str!("input.js");
        let start = script.find("const SERVICE_FIELDS = [").unwrap();
        let list = &script[start..start + script[start..].find("];").unwrap()];
        let read: Vec<&str> = list
            .lines()
            .skip(1)
            .filter_map(|line| line.trim().strip_prefix("[\"")?.split('"').next())
            .collect();
        assert_eq!(read, js_names());
    }

    #[test]
    fn errors_name_the_fields_as_js_configs_do() {
        for (rust, js) in schema::SERVICE_FIELDS {
            if let Some(js) = js {
                assert_eq!(js_field(rust), js);
            }
        }
    }
}
