//! Reading what JavaScript passes in: the config, service names and call counts.
//!
//! Every bad value becomes a JS `Error` whose message says what is wrong and what was given,
//! and is refused before the tracker is touched.

use crate::config::{Limit, ServiceConfig, TrackerConfig};
use crate::error::{ConfigProblem, QuotaError};
use crate::window::Period;
use js_sys::{Array, Error, Object, Reflect};
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

    /// The first of `object`'s own keys that is not in `allowed` (a list separated by `", "`),
    /// or `undefined`.
    #[wasm_bindgen(js_name = unknownKey)]
    fn unknown_key(object: &Object, allowed: &str) -> JsValue;

    /// One service's fields in the order of [`SERVICE_FIELDS`] (an optional one omitted or
    /// `null` as `undefined`), each of its type; or else a string saying which is missing or of
    /// the wrong type.
    #[wasm_bindgen(js_name = serviceFields)]
    fn service_fields(service: &Object) -> JsValue;

    /// One entry of `limits` in the order of [`LIMIT_FIELDS`], as `serviceFields` answers.
    #[wasm_bindgen(js_name = limitFields)]
    fn limit_fields(limit: &Object) -> JsValue;
}

/// `Number.MAX_SAFE_INTEGER`: the largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The fields of one service in a JS config; [`check_keys`] rejects the others (typos like
/// `limt`).
const SERVICE_FIELDS: &str =
    "name, limit, period, warnThreshold, criticalThreshold, reserveFraction, enforce, every, timezone, anchorDay, limits";

/// The fields of one entry of a service's `limits`.
const LIMIT_FIELDS: &str =
    "limit, period, every, timezone, anchorDay, warnThreshold, criticalThreshold, enforce";

/// The fields of `storage` in a JS config.
const STORAGE_FIELDS: &str = "key, syncIntervalMs, required";

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
    let object = plain_object(value).ok_or_else(|| {
        got(
            format_args!("expected an object like {{ services: [...] }}"),
            value,
        )
    })?;
    check_keys(object, "services, storage", "the config")?;
    let services = field(object, "services")?;
    if services.is_undefined() {
        return Err(invalid(
            "missing field \"services\": list the services to track".into(),
        ));
    }
    if !Array::is_array(&services) {
        return Err(got(
            format_args!("\"services\" must be an array"),
            &services,
        ));
    }
    let services: Array = services.unchecked_into();
    if services.length() == 0 {
        return Err(invalid(
            "\"services\" is empty: list at least one service".into(),
        ));
    }
    // A loop, not `collect` into a `Result`: that adapter is code of its own in the `.wasm`.
    let mut configs = Vec::with_capacity(services.length() as usize);
    for (index, value) in services.iter().enumerate() {
        configs.push(service_config(index, &value)?);
    }
    let services = configs;
    let storage = storage(&field(object, "storage")?)?;
    Ok(Config {
        tracker: TrackerConfig::new(services),
        storage,
    })
}

/// `storage`: omitted or `undefined` for none, else `{ key, syncIntervalMs?, required? }`.
fn storage(value: &JsValue) -> Result<Option<Storage>, Error> {
    if value.is_undefined() {
        return Ok(None);
    }
    let object = plain_object(value).ok_or_else(|| {
        got(
            format_args!("\"storage\" must be an object like {{ key: \"my-app\" }}"),
            value,
        )
    })?;
    check_keys(object, STORAGE_FIELDS, "storage")?;
    let key = field(object, "key")?;
    let key = match key.as_string() {
        Some(key) if !key.is_empty() => key,
        _ => {
            return Err(got(
                format_args!(
                    "storage.key must be a non-empty string naming the localStorage entry"
                ),
                &key,
            ))
        }
    };
    let interval = field(object, "syncIntervalMs")?;
    let sync_interval_ms = if interval.is_undefined() {
        crate::SyncPolicy::default().interval_ms
    } else {
        interval
            .as_f64()
            .filter(|ms| *ms == 0.0 || whole_count(*ms).is_some())
            .map(|ms| ms as u64)
            .ok_or_else(|| {
                got(
                    format_args!(
                        "storage.syncIntervalMs must be a whole number of milliseconds from 0 to \
                         Number.MAX_SAFE_INTEGER"
                    ),
                    &interval,
                )
            })?
    };
    let required = field(object, "required")?;
    let required = if required.is_undefined() {
        false
    } else {
        required.as_bool().ok_or_else(|| {
            got(
                format_args!("storage.required must be true or false"),
                &required,
            )
        })?
    };
    Ok(Some(Storage {
        key,
        sync_interval_ms,
        required,
    }))
}

fn service_config(index: usize, value: &JsValue) -> Result<ServiceConfig, Error> {
    let at = format!("services[{index}]");
    let object = plain_object(value).ok_or_else(|| {
        got(
            format_args!("{at} must be an object like {{ name, limit, period }}"),
            value,
        )
    })?;
    check_keys(object, SERVICE_FIELDS, &at)?;
    let fields = service_fields(object);
    if let Some(problem) = fields.as_string() {
        return Err(invalid(format!("{at}: {problem}")));
    }
    let fields: Array = fields.unchecked_into();
    let listed = fields.get(10);
    if listed.is_undefined() {
        // One limit: `limit` and `period` are required, as serde words it in a file.
        for (index, field) in [(1, "limit"), (2, "period")] {
            if fields.get(index).is_undefined() {
                return Err(invalid(format!("{at}: missing field `{field}`")));
            }
        }
    }
    let name = fields.get(0).as_string().unwrap_or_default();
    let at = format!("{at} ({})", quoted(&name));
    let mut config = ServiceConfig::new(name.clone(), 1, Period::Day);
    config.warn_threshold = fields.get(3).as_f64().unwrap_or(config.warn_threshold);
    config.critical_threshold = fields.get(4).as_f64().unwrap_or(config.critical_threshold);
    config.reserve_fraction = fields.get(5).as_f64().unwrap_or(config.reserve_fraction);
    config.enforce = fields.get(6).as_bool().unwrap_or(config.enforce);
    if listed.is_undefined() {
        let (limit, window) = limit_of(&at, &name, &fields, [1, 2, 7, 8, 9])?;
        config.limit = limit;
        config.window = window;
        return Ok(config);
    }
    if let Some(field) = [
        (1, "limit"),
        (2, "period"),
        (7, "every"),
        (8, "timezone"),
        (9, "anchorDay"),
    ]
    .into_iter()
    .find_map(|(index, field)| (!fields.get(index).is_undefined()).then_some(field))
    {
        return Err(invalid(format!(
            "{at}: {field} goes inside `limits` when that is given"
        )));
    }
    if !Array::is_array(&listed) {
        return Err(got(
            format_args!("{at}: limits must be an array of {{ limit, period }}"),
            &listed,
        ));
    }
    let listed: Array = listed.unchecked_into();
    let mut limits = Vec::with_capacity(listed.length() as usize);
    for (entry, value) in listed.iter().enumerate() {
        let at = format!("{at}: limits[{entry}]");
        let object = plain_object(&value).ok_or_else(|| {
            got(
                format_args!("{at} must be an object like {{ limit, period }}"),
                &value,
            )
        })?;
        check_keys(object, LIMIT_FIELDS, &at)?;
        let fields = limit_fields(object);
        if let Some(problem) = fields.as_string() {
            return Err(invalid(format!("{at}: {problem}")));
        }
        let fields: Array = fields.unchecked_into();
        let (count, window) = limit_of(&at, &name, &fields, [0, 1, 2, 3, 4])?;
        let mut limit = Limit::new(count, window);
        limit.warn_threshold = fields.get(5).as_f64();
        limit.critical_threshold = fields.get(6).as_f64();
        limit.enforce = fields.get(7).as_bool();
        limits.push(limit);
    }
    config.with_listed_limits(limits).map_err(error)
}

/// A limit and its window from `fields` at the indices of `limit`, `period`, `every`,
/// `timezone` and `anchorDay` (a service's own, or an entry of its `limits`).
fn limit_of(
    at: &str,
    name: &str,
    fields: &Array,
    [limit, period, every, timezone, anchor_day]: [u32; 5],
) -> Result<(u64, crate::window::WindowSpec), Error> {
    let value = fields.get(limit);
    let limit = value.as_f64().and_then(whole_count).ok_or_else(|| {
        got(
            format_args!("{at}: limit must be a positive integer"),
            &value,
        )
    })?;
    let period: Period = fields
        .get(period)
        .as_string()
        .unwrap_or_default()
        .parse()
        .map_err(|error| invalid(format!("{at}: {error}")))?;
    // `every` and `anchorDay`: whole numbers (the window spec checks their range).
    let whole = |index: u32, field: &str| -> Result<Option<u32>, Error> {
        let value = fields.get(index);
        if value.is_undefined() {
            return Ok(None);
        }
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
            .map(|n| Some(n as u32))
            .ok_or_else(|| got(format_args!("{at}: {field} must be a whole number"), &value))
    };
    let every = whole(every, "every")?.map_or(1, i64::from);
    let anchor_day = whole(anchor_day, "anchorDay")?.map(i64::from);
    let timezone = fields.get(timezone).as_string();
    let window = crate::config::window_spec(name, period, every, timezone.as_deref(), anchor_day)
        .map_err(error)?;
    Ok((limit, window))
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
        "anchor_day" => "anchorDay",
        "enter_after_failures" => "enterAfterFailures",
        "leave_after_successes" => "leaveAfterSuccesses",
        other => other,
    }
}

/// `invalid config: {what} (got ...)`, describing `value`: one place formats what every wrong
/// value's message ends with.
fn got(what: std::fmt::Arguments<'_>, value: &JsValue) -> Error {
    invalid(format!("{what} (got {})", describe(value)))
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
        .map_err(|_| invalid(format!("reading field {} threw", quoted(name))))
}

/// Refuses fields other than `allowed` (separated by `", "`), naming the first unknown one.
fn check_keys(object: &Object, allowed: &str, at: &str) -> Result<(), Error> {
    match unknown_key(object, allowed).as_string() {
        None => Ok(()),
        Some(key) => Err(invalid(format!(
            "{at}: unknown field {}; expected {allowed}",
            quoted(&key)
        ))),
    }
}

/// `text` in double quotes, as `{:?}` writes it for plain text (see `text::Quoted`).
pub(super) fn quoted(text: &str) -> String {
    crate::text::Quoted(text).to_string()
}

#[cfg(test)]
mod tests {
    //! The JS reader's fields against the one schema (`config/tests/schema.rs`).

    use super::{js_field, SERVICE_FIELDS};
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
        assert_eq!(SERVICE_FIELDS.split(", ").collect::<Vec<_>>(), js_names());
        // `input.js` reads them, in the same order (`serviceFields` answers them by index).
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
