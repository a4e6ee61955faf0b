//! The page: every component, laid out.

use crate::components::{
    ConfigEditor, Controls, Counters, Footer, InstancesPanel, ServiceCards, StorePanel,
    TransitionTimeline, UsageChart,
};
use crate::state::AppState;
use leptos::prelude::*;
use quota_core::TrackerConfig;

/// The dashboard, on the default services (tiingo, finnhub, sendgrid), ready to start.
#[component]
pub fn App() -> impl IntoView {
    let state = match AppState::new(TrackerConfig::defaults()) {
        Ok(state) => state,
        Err(error) => unreachable!("the default config is valid: {error}"),
    };
    state.provide().run_frames();
    state.sync_on_page_hide();
    view! {
        <header class="page-header">
            <h1>"Quota dashboard"</h1>
            <p class="lede">
                "Simulated workers call three rate-limited APIs. Watch each quota fill up, cross "
                "its warning and critical thresholds and reset with its window — then switch to "
                "racy mode to see the lost updates the lock prevents, or let three instances "
                "share one store to see why they send deltas. Counts are saved in this browser: "
                "a reload continues where you were."
            </p>
        </header>
        <main class="layout">
            <Controls/>
            <ServiceCards/>
            <div class="column">
                <Counters/>
                <UsageChart/>
                <StorePanel/>
            </div>
            <div class="column">
                <TransitionTimeline/>
                <ConfigEditor/>
                <InstancesPanel/>
            </div>
        </main>
        <Footer/>
    }
}
