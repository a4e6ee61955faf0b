//! One service's card: usage, bar with thresholds, level, period and countdown to reset.

use crate::format;
use crate::model::ServiceView;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::Level;

/// The card of service `name`: used / limit / remaining, a bar with the warn and critical
/// markers, the level as a word and a colour, the period and the time until the window resets.
#[component]
pub fn ServiceCard(
    /// The service's name, as configured.
    name: String,
) -> impl IntoView {
    let state = use_app();
    let key = name.clone();
    let service: Memo<Option<ServiceView>> =
        Memo::new(move |_| state.frame.with(|frame| frame.service(&key).cloned()));
    let read = move |f: fn(&ServiceView) -> String| {
        move || service.with(|s| s.as_ref().map(f).unwrap_or_default())
    };
    let level =
        Memo::new(move |_| service.with(|s| s.as_ref().map_or(Level::Normal, |s| s.usage.level())));
    let fill = move || {
        service.with(|s| {
            s.as_ref()
                .map_or(0.0, |s| s.usage.percent_used().clamp(0.0, 100.0))
        })
    };
    let marker = move |f: fn(&ServiceView) -> f64| {
        move || service.with(|s| format!("{}%", s.as_ref().map_or(0.0, f) * 100.0))
    };
    let countdown = move || {
        let at = state.frame.with(|f| f.at_ms);
        service.with(|s| {
            s.as_ref()
                .map(|s| format::countdown(s.usage.reset_at_ms.saturating_sub(at)))
                .unwrap_or_default()
        })
    };
    let heading = format!("card-heading-{name}");
    view! {
        <article
            class=move || format!("card level-{}", level.get())
            data-testid=format!("card-{name}")
            aria-labelledby=heading.clone()
        >
            <header class="card-header">
                <h3 id=heading.clone()>{name.clone()}</h3>
                <span class="badge">
                    <span class="badge-icon" aria-hidden="true">
                        {move || icon(level.get())}
                    </span>
                    <span data-testid=format!("level-{name}")>
                        {move || level.get().as_str()}
                    </span>
                </span>
            </header>
            <p class="usage">
                <span class="used" data-testid=format!("used-{name}")>
                    {read(|s| s.usage.used.to_string())}
                </span>
                " / "
                <span data-testid=format!("limit-{name}")>{read(|s| s.usage.limit.to_string())}</span>
                " used · "
                <span data-testid=format!("remaining-{name}")>
                    {read(|s| s.usage.remaining.to_string())}
                </span>
                " left"
            </p>
            <div
                class="bar"
                role="meter"
                aria-label=format!("{name} quota used")
                aria-valuemin="0"
                aria-valuemax=read(|s| s.usage.limit.to_string())
                aria-valuenow=read(|s| s.usage.used.min(s.usage.limit).to_string())
            >
                <div class="bar-fill" style:width=move || format!("{}%", fill())></div>
                <div
                    class="bar-marker warn"
                    title="warning threshold"
                    style:left=marker(|s| s.usage.warn_threshold)
                ></div>
                <div
                    class="bar-marker critical"
                    title="critical threshold"
                    style:left=marker(|s| s.usage.critical_threshold)
                ></div>
            </div>
            <p class="period">
                "per " <span data-testid=format!("period-{name}")>{read(|s| s.usage.period.to_string())}</span>
                " · resets in " <span data-testid=format!("reset-{name}")>{countdown}</span>
            </p>
        </article>
    }
}

/// A symbol beside the level word (never the only signal).
fn icon(level: Level) -> &'static str {
    match level {
        Level::Normal => "●",
        Level::Warning => "▲",
        Level::Critical => "◆",
        Level::Exhausted => "■",
    }
}
