//! Offsets on wasm32: the JS engine's `Intl.DateTimeFormat` in the zone, with a 24-hour
//! clock, formats an instant into its local date and time (`formatToParts`); the offset is that
//! local time minus the instant. No time zone data goes into the .wasm. One formatter per zone,
//! made once per thread (a formatter is a JS object: it cannot be shared between threads).

use super::super::calendar::days_from_civil;
use js_sys::wasm_bindgen::{JsCast, JsValue};
use js_sys::{Array, Date, Function, Intl::DateTimeFormat, Reflect, JSON};
use std::cell::RefCell;

thread_local! {
    /// The formatters made so far, by zone name.
    static FORMATTERS: RefCell<Vec<(Box<str>, DateTimeFormat)>> =
        const { RefCell::new(Vec::new()) };
}

/// A zone the JS engine knows; its formatter is found by name.
pub(super) struct Zone;

impl Zone {
    /// The zone named `name`, if `Intl` accepts it, and its name as the engine spells it when
    /// that differs from `name` in ASCII case only (a link the engine resolves to another zone
    /// keeps its name, so that the key does not depend on the engine's version).
    pub(super) fn lookup(name: &str) -> Option<(String, Zone)> {
        let formatter = formatter(name)?;
        let resolved = Reflect::get(&formatter.resolved_options(), &"timeZone".into())
            .ok()
            .and_then(|zone| zone.as_string())
            .filter(|resolved| resolved.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| name.to_owned());
        Some((resolved, Zone))
    }

    /// The offset from UTC, in seconds, at `second` (seconds since the epoch, within the range
    /// of a JS `Date`); 0 if the engine no longer formats it (it did when the zone was made).
    pub(super) fn offset_s(&self, name: &str, second: i64) -> i64 {
        let Some(formatter) = formatter(name) else {
            return 0;
        };
        let date = Date::new(&JsValue::from_f64(second as f64 * 1_000.0));
        // year, month, day, hour, minute, second
        let mut fields = [0_i64; 6];
        for part in formatter.format_to_parts(&date).iter() {
            let field = |key: &str| Reflect::get(&part, &key.into()).unwrap_or_default();
            let index = match field("type").as_string().as_deref() {
                Some("year") => 0,
                Some("month") => 1,
                Some("day") => 2,
                Some("hour") => 3,
                Some("minute") => 4,
                Some("second") => 5,
                _ => continue,
            };
            // The digits, as JavaScript's `+value` reads them (a string never throws there).
            fields[index] = field("value").unchecked_into_f64() as i64;
        }
        let [year, month, day, hour, minute, sec] = fields;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return 0;
        }
        // Some engines write midnight as hour 24 of the same day despite `h23`.
        let hour = hour % 24;
        let days = days_from_civil(year, month as u32, day as u32);
        days * 86_400 + hour * 3_600 + minute * 60 + sec - second
    }
}

/// The formatter of zone `name`, made on first use; `None` if `Intl` refuses the zone (a
/// `RangeError`).
fn formatter(name: &str) -> Option<DateTimeFormat> {
    FORMATTERS.with(|formatters| {
        let mut formatters = formatters.borrow_mut();
        if let Some((_, formatter)) = formatters.iter().find(|(known, _)| &**known == name) {
            return Some(formatter.clone());
        }
        let formatter = make_formatter(name)?;
        formatters.push((name.into(), formatter.clone()));
        Some(formatter)
    })
}

/// `new Intl.DateTimeFormat("en-US", { timeZone: name, hourCycle: "h23", year: "numeric",
/// ... })`, through `Reflect.construct`, which hands back the `RangeError` of an unknown zone
/// instead of throwing it through the wasm.
fn make_formatter(name: &str) -> Option<DateTimeFormat> {
    // The name holds letters, digits and `/ _ - +` only (`valid_name`): nothing to escape.
    let options = JSON::parse(&format!(
        "{{\"timeZone\":\"{name}\",\"hourCycle\":\"h23\",\"year\":\"numeric\",\
         \"month\":\"numeric\",\"day\":\"numeric\",\"hour\":\"numeric\",\
         \"minute\":\"numeric\",\"second\":\"numeric\"}}"
    ))
    .ok()?;
    let intl = Reflect::get(&js_sys::global(), &"Intl".into()).ok()?;
    let constructor: Function = Reflect::get(&intl, &"DateTimeFormat".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let arguments = Array::of2(&"en-US".into(), &options);
    Reflect::construct(&constructor, &arguments)
        .ok()?
        .dyn_into()
        .ok()
}
