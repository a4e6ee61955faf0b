//! Measured throughput and frame rate.

use crate::dynamic::text;
use crate::format;
use crate::state::use_app;
use leptos::prelude::*;

/// The calls per second the workers really made and the frames per second the page really drew,
/// both measured over the last second, and the calls since the reset.
#[component]
pub fn Footer() -> impl IntoView {
    let state = use_app();
    view! {
        <footer class="page-footer">
            <p>
                <span data-testid="calls-per-second">
                    {text(move || format::rate(state.rates.get().calls_per_second))}
                </span>
                " calls/s · "
                <span data-testid="fps">
                    {text(move || format::rate(state.rates.get().frames_per_second))}
                </span>
                " frames/s · "
                <span data-testid="calls">{text(move || state.frame.with(|f| f.calls).to_string())}</span>
                " calls since reset"
            </p>
        </footer>
    }
}
