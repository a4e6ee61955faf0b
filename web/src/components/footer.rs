//! Measured throughput and frame rate.

use crate::dynamic::text;
use crate::format;
use crate::model::Rates;
use crate::state::use_app;
use leptos::prelude::*;

/// The calls per second the workers really made (the simulation's and the instances', and
/// their sum) and the frames per second the page really drew, measured over the last second,
/// and the simulation's calls since the reset.
#[component]
pub fn Footer() -> impl IntoView {
    let state = use_app();
    // One of the rates, as the page writes a rate.
    let rate = move |of: fn(&Rates) -> f64| text(move || format::rate(of(&state.rates().get())));
    view! {
        <footer class="page-footer">
            <p>
                <span data-testid="calls-per-second">
                    {rate(|r| r.calls_per_second + r.instances_calls_per_second)}
                </span>
                " calls/s (simulation "
                <span data-testid="calls-per-second-simulation">{rate(|r| r.calls_per_second)}</span>
                " + instances "
                <span data-testid="calls-per-second-instances">
                    {rate(|r| r.instances_calls_per_second)}
                </span>
                ") · "
                <span data-testid="fps">{rate(|r| r.frames_per_second)}</span>
                " frames/s · "
                <span data-testid="calls">{text(move || state.frame().with(|f| f.calls).to_string())}</span>
                " calls since reset"
            </p>
        </footer>
    }
}
