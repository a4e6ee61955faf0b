//! Calls to a token service (an LLM's tokens, see [`Unit`](crate::model::Unit)): each call
//! runs as a task of its own, so the worker goes on pacing its other calls meanwhile.
//!
//! - Locked mode: the call [holds](quota_core::QuotaTracker::hold) an estimate
//!   ([`ESTIMATE_TOKENS`] per unit of the op; admission is `try_record`'s whatever the
//!   "admission" select says, since a hold is an admission), waits a simulated response time
//!   ([`RESPONSE_MS`], real time) and settles a random actual, `0..=2 × estimate`; one call in
//!   [`CANCEL_ONE_IN`] fails to connect and cancels instead (actual 0).
//! - Racy mode (demonstration): nothing can be held. The call waits for its response and then
//!   counts the actual the racy way (copy the whole state, let the others run, write the copy
//!   back), losing the updates of the workers that ran in between, as the other services' do.
//!   Its estimate, actual and their difference (as `given_back` or `added`) are counted when
//!   the response is in, so the identity of [`HoldCounts`](crate::model::HoldCounts) holds
//!   there too, with nothing in flight.

use super::run::Run;
use super::Engine;
use crate::model::HoldCounts;
use gloo_timers::future::TimeoutFuture;
use quota_core::sim::Counter;
use quota_core::{Clock, QuotaError, Settlement};
use std::rc::Rc;

/// Tokens a worker holds per unit of an op (the simulation's ops are of 1 unit, a burst's a
/// few): about what a short chat completion costs.
pub const ESTIMATE_TOKENS: u64 = 2_000;
/// The simulated response time, in real ms: from the first to the second, at random.
pub const RESPONSE_MS: (u32, u32) = (200, 1_200);
/// One call in this many fails to connect: its hold is cancelled.
pub const CANCEL_ONE_IN: u32 = 10;

/// A uniform random integer in `0..=max` (the browser's `Math.random`: the demo needs no
/// seed).
fn random_to(max: u64) -> u64 {
    (js_sys::Math::random() * (max as f64 + 1.0)) as u64
}

/// Starts one call of `units` to the token service `name` as worker `worker` (from 1). The
/// engine counts the task as active until it ends, so a pause shows "pausing" until every
/// hold is settled and the counters are final.
pub(super) fn spawn_call(
    engine: &Rc<Engine>,
    run: &Rc<Run>,
    worker: usize,
    name: &str,
    units: u64,
) {
    let (engine, run, name) = (Rc::clone(engine), Rc::clone(run), name.to_owned());
    engine.workers.enter();
    leptos::task::spawn_local(async move {
        call(&engine, &run, worker, &name, units).await;
        engine.workers.exit();
        if !engine.workers.is_running() {
            // Settled after the pause's sync: sync again, so a reload has it.
            engine.flush();
        }
    });
}

async fn call(engine: &Engine, run: &Run, worker: usize, name: &str, units: u64) {
    let estimate = units.saturating_mul(ESTIMATE_TOKENS);
    let response = RESPONSE_MS.0 + random_to(u64::from(RESPONSE_MS.1 - RESPONSE_MS.0)) as u32;
    let actual = random_to(estimate.saturating_mul(2));
    let cancel = random_to(u64::from(CANCEL_ONE_IN) - 1) == 0;
    match run.counter() {
        Counter::Locked(tracker) => {
            run.set_actor(worker);
            let held = tracker.hold(name, estimate);
            // The end of the window the hold is counted in (a settlement after it books the
            // excess to it; see `HoldCounts::past_window`).
            let window_end = tracker.usage(name).map_or(u64::MAX, |u| u.reset_at_ms);
            run.set_actor(0);
            let hold = match held {
                Ok(hold) => hold,
                Err(error) => {
                    let denied = matches!(error, QuotaError::Denied { .. });
                    if !denied {
                        leptos::logging::warn!("hold refused: {error}");
                    }
                    run.count_tokens(name, true, |_, issued, refused| {
                        *issued += estimate;
                        *refused += estimate * u64::from(denied);
                    });
                    return;
                }
            };
            run.count_tokens(name, true, |holds, issued, _| {
                *issued += estimate;
                holds.in_flight += estimate;
            });
            TimeoutFuture::new(response).await;
            run.set_actor(worker);
            let settled = if cancel {
                hold.cancel()
            } else {
                hold.settle(actual)
            };
            run.set_actor(0);
            let past = engine.clock.now_ms() >= window_end;
            match settled {
                Ok(settlement) => run.count_tokens(name, false, |holds, _, _| {
                    settle(holds, &settlement, past);
                }),
                // A reconfigure removed the service: its counts went with it.
                Err(error) => leptos::logging::warn!("settle refused: {error}"),
            }
        }
        Counter::Racy(counts) => {
            TimeoutFuture::new(response).await;
            let actual = if cancel { 0 } else { actual };
            let mut copy = counts.load();
            TimeoutFuture::new(0).await;
            if actual > 0 {
                let recorded = copy.record(name, actual, engine.clock.now_ms());
                match recorded {
                    Ok(recorded) => run.note(recorded.transitions(), worker),
                    Err(error) => leptos::logging::warn!("racy record refused: {error}"),
                }
            }
            counts.store(copy);
            run.count_tokens(name, true, |holds, issued, _| {
                *issued += estimate;
                holds.settled += actual;
                holds.given_back += estimate.saturating_sub(actual);
                holds.added += actual.saturating_sub(estimate);
            });
        }
    }
}

/// Counts a settled hold: its actual, what it gave back and added, and what the tracker kept
/// beyond the actual (`estimate + added - given_back - actual`: a forfeited give-back).
/// `past`: the window the hold was counted in had ended.
fn settle(holds: &mut HoldCounts, settlement: &Settlement, past: bool) {
    holds.in_flight = holds.in_flight.saturating_sub(settlement.estimate);
    holds.settled += settlement.actual;
    holds.given_back += settlement.given_back;
    holds.added += settlement.added;
    holds.kept += (settlement.estimate + settlement.added)
        .saturating_sub(settlement.given_back + settlement.actual);
    if past {
        holds.past_window += settlement.added;
    }
}
