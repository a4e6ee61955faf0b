//! What the JS API hands out: plain objects built by `shapes.js`, one boundary call each.

use crate::error::DenyReason;
use crate::level::Level;
use crate::persistence::StoreStats;
use crate::usage::{Recorded, ServiceUsage, Transition};
use crate::window::Period;
use js_sys::Array;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/shapes.js")]
extern "C" {
    /// A usage `{ name, used, ... }`, alone or inside the result [`Shape`] names, with `extra`
    /// (the transition or the reason; unused for the usage alone): one call for the whole result.
    #[wasm_bindgen(js_name = withUsage)]
    #[allow(clippy::too_many_arguments)]
    fn with_usage_object(
        shape: u8,
        name: &JsValue,
        used: f64,
        limit: f64,
        remaining: f64,
        period: u8,
        level: u8,
        percent_used: f64,
        window_start_ms: f64,
        reset_at_ms: f64,
        extra: &JsValue,
    ) -> JsValue;

    #[wasm_bindgen(js_name = transition)]
    fn transition_object(
        service: &str,
        from: u8,
        to: u8,
        used: f64,
        limit: f64,
        window: &str,
        at_ms: f64,
    ) -> JsValue;

    /// `{ added, removed, changed }`
    pub(super) fn reconfigured(added: &Array, removed: &Array, changed: &Array) -> JsValue;

    /// `{ estimate, actual, givenBack, added, used }`: what settling a hold did.
    pub(super) fn settlement(
        estimate: f64,
        actual: f64,
        given_back: f64,
        added: f64,
        used: f64,
    ) -> JsValue;

    /// `{ allowed: true, recorded }`: what `tryRecordMany` admitted.
    pub(super) fn many(recorded: &Array) -> JsValue;

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
    with_usage(Shape::Usage, name, usage, &JsValue::NULL)
}

/// `{ usage, transition }`, and `shadowDenied: reason` where shadow mode admitted a call that
/// enforcing would have refused (`tryRecordMany`: a record is never refused).
pub(super) fn recorded(name: &JsValue, recorded: &Recorded) -> JsValue {
    shadowed(with_transition(Shape::Recorded, name, recorded), recorded)
}

/// `{ allowed: true, usage, transition }`, and `shadowDenied: reason` where shadow mode
/// admitted a call that enforcing would have refused.
pub(super) fn allowed(name: &JsValue, recorded: &Recorded) -> JsValue {
    shadowed(with_transition(Shape::Allowed, name, recorded), recorded)
}

/// `value` with `shadowDenied: reason` where shadow mode admitted what `recorded` counted.
fn shadowed(value: JsValue, recorded: &Recorded) -> JsValue {
    if let Some(reason) = recorded.shadow_denied {
        // Only in shadow mode: one more crossing, off the enforcing path.
        let _ = js_sys::Reflect::set(
            &value,
            &JsValue::from_str("shadowDenied"),
            &JsValue::from_str(deny_reason(reason)),
        );
    }
    value
}

/// `{ allowed: false, usage, reason }`.
pub(super) fn denied(name: &JsValue, usage: &ServiceUsage, reason: DenyReason) -> JsValue {
    with_usage(
        Shape::Denied,
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
        // Native only (`until_ready`): the JS module never refuses for it.
        DenyReason::Waiting => "waiting",
    }
}

/// What `withUsage` in `shapes.js` builds around the usage (the numbers it switches on).
#[derive(Clone, Copy)]
enum Shape {
    /// The usage alone.
    Usage = 0,
    /// `{ usage, transition }`.
    Recorded = 1,
    /// `{ allowed: true, usage, transition }`.
    Allowed = 2,
    /// `{ allowed: false, usage, reason }`.
    Denied = 3,
}

fn with_transition(shape: Shape, name: &JsValue, recorded: &Recorded) -> JsValue {
    let transition = transition(recorded.transition());
    with_usage(shape, name, &recorded.usage, &transition)
}

fn with_usage(shape: Shape, name: &JsValue, usage: &ServiceUsage, extra: &JsValue) -> JsValue {
    with_usage_object(
        shape as u8,
        name,
        usage.used as f64,
        usage.limit as f64,
        usage.remaining as f64,
        period_index(usage.period),
        level_index(usage.level()),
        usage.percent_used(),
        usage.window_start_ms as f64,
        usage.reset_at_ms as f64,
        extra,
    )
}

/// `{ service, from, to, used, limit, window, atMs }` (`window`: the limit's window spec's key,
/// `"day"`, `"5minute"`, `"day@America/Los_Angeles"`), or `null` for no transition.
pub(super) fn transition(transition: Option<&Transition>) -> JsValue {
    match transition {
        None => JsValue::NULL,
        Some(t) => transition_object(
            &t.service,
            level_index(t.from),
            level_index(t.to),
            t.used as f64,
            t.limit as f64,
            &t.window.key(),
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

/// The index into `PERIODS` in `shapes.js` (new periods are appended: the numbers stay).
fn period_index(period: Period) -> u8 {
    match period {
        Period::Minute => 0,
        Period::Hour => 1,
        Period::Day => 2,
        Period::Month => 3,
        Period::Second => 4,
        Period::Week => 5,
    }
}
