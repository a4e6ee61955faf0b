//! The page: every component, laid out.

use crate::components::{
    ConfigEditor, Controls, Counters, Footer, InstancesPanel, ServiceCards, StorePanel,
    TransitionTimeline, UsageChart,
};
use crate::state::AppState;
use leptos::prelude::*;
use quota_core::{Limit, Period, ServiceConfig, TrackerConfig};

/// The services the simulation starts with: the providers' free plans, every limit of each,
/// so the cards show services of several limits. Tiingo allows 50 requests an hour and 1,000
/// a day (its 500 a month counts unique symbols, not requests: not a request quota), Finnhub
/// 60 a minute and 30 a second, SendGrid 100 emails a day; and an LLM's 100,000 tokens a
/// minute (`llm-tokens`, counted in tokens: its workers hold an estimate and settle what the
/// response reports, see [`Unit`](crate::model::Unit)). The core's
/// [`TrackerConfig::defaults`] (tiingo 500 a month, one limit each) stays as the README and
/// `quota.toml` show it.
///
/// The workers' rate is real time and the windows are simulated time: at 1x tiingo's hour goes
/// Critical within seconds and its day fills slowly; at 60x the hour resets every real minute
/// and the day binds after about 20 minutes.
pub fn simulation_config() -> TrackerConfig {
    let tiingo = ServiceConfig::builder("tiingo", 50, Period::Hour)
        .and_limit(Limit::new(1_000, Period::Day))
        .build();
    let finnhub = ServiceConfig::builder("finnhub", 60, Period::Minute)
        .and_limit(Limit::new(30, Period::Second))
        .build();
    let (Ok(tiingo), Ok(finnhub)) = (tiingo, finnhub) else {
        unreachable!("the simulation's services are valid");
    };
    TrackerConfig::new([
        tiingo,
        finnhub,
        ServiceConfig::new("sendgrid", 100, Period::Day),
        ServiceConfig::new("llm-tokens", 100_000, Period::Minute),
    ])
}

/// The dashboard, on the simulation's services ([`simulation_config`]), ready to start.
#[component]
pub fn App() -> impl IntoView {
    let state = match AppState::new(simulation_config()) {
        Ok(state) => state,
        Err(error) => unreachable!("the default config is valid: {error}"),
    };
    state.provide().run_frames();
    state.sync_on_page_hide();
    view! {
        <header class="page-header">
            <h1>"Quota dashboard"</h1>
            <p class="lede">
                "Simulated workers call four rate-limited APIs (an LLM's in tokens). Watch each "
                "quota fill up, cross its warning and critical thresholds and reset with its "
                "window — then switch to "
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
