//! Offsets on wasm32: the JS engine's `Intl.DateTimeFormat` in the zone, with a 24-hour
//! clock, formats an instant into its local date and time (`formatToParts`); the offset is that
//! local time minus the instant. No time zone data goes into the .wasm. One formatter per zone,
//! made once per thread (a formatter is a JS object: it cannot be shared between threads) and
//! kept by `intl.js`.

use super::super::calendar::days_from_civil;
use js_sys::wasm_bindgen;
use js_sys::wasm_bindgen::prelude::wasm_bindgen;
use js_sys::wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/window/zone/intl.js")]
extern "C" {
    /// The zone's name as `resolvedOptions()` reports it; `undefined` if `Intl` refuses the
    /// zone.
    #[wasm_bindgen(js_name = resolvedZone)]
    fn resolved_zone(name: &str) -> JsValue;

    /// Writes the local year, month, day, hour, minute and second at `second` (seconds since
    /// the epoch) into `fields`, each as JavaScript's `+value` reads its digits; `false`
    /// (nothing written) if `Intl` refuses the zone.
    #[wasm_bindgen(js_name = localTime)]
    fn local_time(name: &str, second: f64, fields: &mut [f64]) -> bool;
}

/// A zone the JS engine knows; its formatter is found by name.
pub(super) struct Zone;

impl Zone {
    /// The zone named `name`, if `Intl` accepts it, and its name as the engine spells it when
    /// that differs from `name` in ASCII case only (a link the engine resolves to another zone
    /// keeps its name, so that the key does not depend on the engine's version).
    pub(super) fn lookup(name: &str) -> Option<(String, Zone)> {
        let resolved = resolved_zone(name);
        if resolved.is_undefined() {
            return None;
        }
        let resolved = resolved
            .as_string()
            .filter(|resolved| resolved.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| name.to_owned());
        Some((resolved, Zone))
    }

    /// The offset from UTC, in seconds, at `second` (seconds since the epoch, within the range
    /// of a JS `Date`); 0 if the engine no longer formats it (it did when the zone was made).
    pub(super) fn offset_s(&self, name: &str, second: i64) -> i64 {
        // year, month, day, hour, minute, second
        let mut fields = [0.0; 6];
        if !local_time(name, second as f64, &mut fields) {
            return 0;
        }
        let [year, month, day, hour, minute, sec] = fields.map(|field| field as i64);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return 0;
        }
        // Some engines write midnight as hour 24 of the same day despite `h23`.
        let hour = hour % 24;
        let days = days_from_civil(year, month as u32, day as u32);
        days * 86_400 + hour * 3_600 + minute * 60 + sec - second
    }
}
