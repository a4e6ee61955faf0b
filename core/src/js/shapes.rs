//! What the JS API hands out: plain objects built by `shapes.js`, one boundary call each.

use crate::error::DenyReason;
use crate::level::Level;
use crate::persistence::StoreStats;
use crate::usage::{ServiceUsage, Transition};
use crate::window::Period;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/shapes.js")]
extern "C" {
    /// `{ name, used, ... }` (`transition` is not used).
    #[wasm_bindgen(js_name = usage)]
    #[allow(clippy::too_many_arguments)]
    fn usage_object(
        name: &JsValue,
        used: f64,
        limit: f64,
        remaining: f64,
        period: u8,
        level: u8,
        percent_used: f64,
        window_start_ms: f64,
        reset_at_ms: f64,
        transition: &JsValue,
    ) -> JsValue;

    #[wasm_bindgen(js_name = transition)]
    fn transition_object(
        service: &str,
        from: u8,
        to: u8,
        used: f64,
        limit: f64,
        at_ms: f64,
    ) -> JsValue;

    /// `{ usage, transition }`, the usage from its fields: one call for the whole result.
    #[wasm_bindgen(js_name = recorded)]
    #[allow(clippy::too_many_arguments)]
    fn recorded_object(
        name: &JsValue,
        used: f64,
        limit: f64,
        remaining: f64,
        period: u8,
        level: u8,
        percent_used: f64,
        window_start_ms: f64,
        reset_at_ms: f64,
        transition: &JsValue,
    ) -> JsValue;

    /// `{ allowed: true, usage, transition }`, likewise.
    #[wasm_bindgen(js_name = allowed)]
    #[allow(clippy::too_many_arguments)]
    fn allowed_object(
        name: &JsValue,
        used: f64,
        limit: f64,
        remaining: f64,
        period: u8,
        level: u8,
        percent_used: f64,
        window_start_ms: f64,
        reset_at_ms: f64,
        transition: &JsValue,
    ) -> JsValue;

    /// `{ allowed: false, usage, reason }`, likewise (the last argument is the reason).
    #[wasm_bindgen(js_name = denied)]
    #[allow(clippy::too_many_arguments)]
    fn denied_object(
        name: &JsValue,
        used: f64,
        limit: f64,
        remaining: f64,
        period: u8,
        level: u8,
        percent_used: f64,
        window_start_ms: f64,
        reset_at_ms: f64,
        reason: &JsValue,
    ) -> JsValue;

    /// `{ services, totalUsed, atMs }`
    pub(super) fn snapshot(services: &JsValue, total_used: f64, at_ms: f64) -> JsValue;

    #[wasm_bindgen(js_name = stats)]
    #[allow(clippy::too_many_arguments)]
    fn stats_object(
        loads: f64,
        load_failures: f64,
        saves: f64,
        save_failures: f64,
        forced_saves: f64,
        coalesced_saves: f64,
        last_error: &JsValue,
        consecutive_failures: u32,
        consecutive_successes: u32,
        reduced_rate: bool,
    ) -> JsValue;
}

/// `{ loads, loadFailures, saves, saveFailures, forcedSaves, coalescedSaves, lastError,
/// consecutiveFailures, consecutiveSuccesses, reducedRate }`, `lastError` a string or `null`.
pub(super) fn stats(stats: &StoreStats) -> JsValue {
    let last_error = stats
        .last_error
        .as_deref()
        .map_or(JsValue::NULL, JsValue::from_str);
    stats_object(
        stats.loads as f64,
        stats.load_failures as f64,
        stats.saves as f64,
        stats.save_failures as f64,
        stats.forced_saves as f64,
        stats.coalesced_saves as f64,
        &last_error,
        stats.consecutive_failures,
        stats.consecutive_successes,
        stats.reduced_rate,
    )
}

/// `{ name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs }`,
/// with `name` passed in as a JS string the caller already holds (no re-encoding).
///
/// Counts and times become JS numbers: exact up to `Number.MAX_SAFE_INTEGER`, which counts
/// stay under unless more than that many calls are recorded in one window.
pub(super) fn usage(name: &JsValue, usage: &ServiceUsage) -> JsValue {
    with_usage(usage_object, name, usage, &JsValue::NULL)
}

/// `{ usage, transition }`.
pub(super) fn recorded(
    name: &JsValue,
    usage: &ServiceUsage,
    transition: Option<&Transition>,
) -> JsValue {
    with_usage(recorded_object, name, usage, &self::transition(transition))
}

/// `{ allowed: true, usage, transition }`.
pub(super) fn allowed(
    name: &JsValue,
    usage: &ServiceUsage,
    transition: Option<&Transition>,
) -> JsValue {
    with_usage(allowed_object, name, usage, &self::transition(transition))
}

/// `{ allowed: false, usage, reason }`.
pub(super) fn denied(name: &JsValue, usage: &ServiceUsage, reason: DenyReason) -> JsValue {
    with_usage(
        denied_object,
        name,
        usage,
        &JsValue::from_str(deny_reason(reason)),
    )
}

/// A [`DenyReason`] as the JS `DenyReason` type spells it.
pub(super) fn deny_reason(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::Critical => "critical",
        DenyReason::Limit => "limit",
        DenyReason::Reserve => "reserve",
        DenyReason::ReducedRate => "reducedRate",
        DenyReason::StoreUnavailable => "storeUnavailable",
    }
}

/// The shape of a usage and its transition, built by one of the imports above.
type Build = fn(&JsValue, f64, f64, f64, u8, u8, f64, f64, f64, &JsValue) -> JsValue;

fn with_usage(build: Build, name: &JsValue, usage: &ServiceUsage, transition: &JsValue) -> JsValue {
    build(
        name,
        usage.used as f64,
        usage.limit as f64,
        usage.remaining as f64,
        period_index(usage.period),
        level_index(usage.level()),
        usage.percent_used(),
        usage.window_start_ms as f64,
        usage.reset_at_ms as f64,
        transition,
    )
}

/// `{ service, from, to, used, limit, atMs }`, or `null` for no transition.
pub(super) fn transition(transition: Option<&Transition>) -> JsValue {
    match transition {
        None => JsValue::NULL,
        Some(t) => transition_object(
            &t.service,
            level_index(t.from),
            level_index(t.to),
            t.used as f64,
            t.limit as f64,
            t.at_ms as f64,
        ),
    }
}

/// The index into `LEVELS` in `shapes.js`.
fn level_index(level: Level) -> u8 {
    match level {
        Level::Normal => 0,
        Level::Warning => 1,
        Level::Critical => 2,
        Level::Exhausted => 3,
    }
}

/// The index into `PERIODS` in `shapes.js`.
fn period_index(period: Period) -> u8 {
    match period {
        Period::Minute => 0,
        Period::Hour => 1,
        Period::Day => 2,
        Period::Month => 3,
    }
}
