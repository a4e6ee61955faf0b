//! Calls to a token service (an LLM's tokens, see [`Unit`](crate::model::Unit)).
//!
//! - Locked mode: each call runs as a task of its own ([`spawn`]), so the worker goes on with
//!   its other calls meanwhile. It [holds](quota_core::QuotaTracker::hold) an estimate
//!   ([`ESTIMATE_TOKENS`] per unit of the op; admission is `try_record`'s whatever the
//!   "admission" select says, since a hold is an admission), waits a simulated response time
//!   ([`RESPONSE_MS`], real time) and settles a random actual, `0..=2 × estimate`; one call in
//!   [`CANCEL_ONE_IN`] fails to connect and cancels instead (actual 0). The engine counts the
//!   task as a running worker, so a pause shows "pausing" until every hold is settled and the
//!   counters are final.
//! - Racy mode (demonstration): the racy counts cannot hold or give back. A token call counts
//!   its estimate the racy way at once, as a client without holds would (see
//!   [`Run::record_in_copy`]), losing updates like the other services' calls: nothing is held,
//!   its estimate counts as settled, and lost is `settled - recorded`.

use super::run::Run;
use super::Engine;
use crate::model::HoldCounts;
use gloo_timers::future::TimeoutFuture;
use quota_core::{QuotaError, QuotaTracker, Settlement};
use std::rc::Rc;

/// Tokens a worker holds per unit of an op (the simulation's ops are of 1 unit, a burst's a
/// few): about what a short chat completion costs.
pub const ESTIMATE_TOKENS: u64 = 2_000;
/// The simulated response time, in real ms: from the first to the second, at random.
pub const RESPONSE_MS: (u32, u32) = (200, 1_200);
/// One call in this many fails to connect: its hold is cancelled.
pub const CANCEL_ONE_IN: u32 = 10;

/// Starts a call of `units` to the token service `name` as worker `worker` (from 1), as a
/// task of its own (locked mode); the engine counts it as active until it is settled.
pub(super) fn spawn(engine: &Rc<Engine>, run: &Rc<Run>, worker: usize, name: String, units: u64) {
    let (engine, run) = (Rc::clone(engine), Rc::clone(run));
    engine.workers.enter();
    leptos::task::spawn_local(async move {
        call(&run, worker, &name, units).await;
        engine.workers.exit();
        if !engine.workers.is_running() {
            // Settled after the pause's sync: sync again, so a reload has it.
            engine.flush();
        }
    });
}

/// Holds the estimate, waits for the response, settles (or cancels).
async fn call(run: &Run, worker: usize, name: &str, units: u64) {
    let Some(tracker) = run.counter().tracker() else {
        return;
    };
    let estimate = units.saturating_mul(ESTIMATE_TOKENS);
    run.set_actor(worker);
    let held = tracker.hold(name, estimate);
    // The end of the service's own window the hold is counted in: a settlement after that
    // window ended, or after a reconfigure gave the service another window, books the excess
    // to the hold's window (see `HoldCounts::past_window`).
    let window = window_end(tracker, name);
    run.set_actor(0);
    let hold = match held {
        Ok(hold) => hold,
        Err(error) => {
            let denied = matches!(error, QuotaError::Denied { .. });
            if !denied {
                refused(&error);
            }
            let denied = estimate * u64::from(denied);
            run.count_tokens(name, true, estimate, denied, HoldCounts::default(), 0);
            return;
        }
    };
    let holds = HoldCounts {
        in_flight: estimate,
        ..HoldCounts::default()
    };
    run.count_tokens(name, true, estimate, 0, holds, 0);
    let response = RESPONSE_MS.0 + random_to(u64::from(RESPONSE_MS.1 - RESPONSE_MS.0)) as u32;
    TimeoutFuture::new(response).await;
    run.set_actor(worker);
    let settled = match random_to(u64::from(CANCEL_ONE_IN) - 1) {
        0 => hold.cancel(),
        _ => hold.settle(random_to(estimate.saturating_mul(2))),
    };
    run.set_actor(0);
    let past = window_end(tracker, name) != window;
    match settled {
        Ok(settlement) => {
            let holds = counts_of(&settlement, past);
            run.count_tokens(name, false, 0, 0, holds, settlement.estimate);
        }
        // A reconfigure removed the service: its counts went with it.
        Err(error) => refused(&error),
    }
}

/// A uniform random integer in `0..=max` (the browser's `Math.random`: the demo needs no
/// seed).
fn random_to(max: u64) -> u64 {
    (js_sys::Math::random() * (max as f64 + 1.0)) as u64
}

/// The end of the window of the service's own limit now (0: none, a removed service).
fn window_end(tracker: &QuotaTracker, name: &str) -> u64 {
    tracker
        .usage_limits(name)
        .ok()
        .and_then(|limits| Some(limits.first()?.reset_at_ms))
        .unwrap_or(0)
}

/// What a settled hold adds to the counts: its actual, what it gave back and added, and what
/// the tracker kept beyond the actual (`estimate + added - given_back - actual`: a forfeited
/// give-back). `past`: the window the hold was counted in had ended.
fn counts_of(settlement: &Settlement, past: bool) -> HoldCounts {
    HoldCounts {
        settled: settlement.actual,
        given_back: settlement.given_back,
        added: settlement.added,
        kept: (settlement.estimate + settlement.added)
            .saturating_sub(settlement.given_back + settlement.actual),
        past_window: settlement.added * u64::from(past),
        in_flight: 0,
    }
}

/// Logs a refusal other than a denial (none is expected but a removed service's).
fn refused(error: &QuotaError) {
    leptos::logging::warn!("dashboard: token call refused: {error}");
}
