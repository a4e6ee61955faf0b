//! One service's card: usage, bar with thresholds, level, window and countdown to reset (and
//! the local reset time of a window in a time zone).

use crate::dynamic::{text, Text};
use crate::format;
use crate::locks::lock;
use crate::model::ServiceView;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::{Level, Period, TrackerConfig, WindowSpec};
use std::sync::Mutex;

/// The card of service `name`: used / limit / remaining, a bar with the warn and critical
/// markers, the level as a word and a colour, the window in words (`day in
/// America/Los_Angeles`) and the time until it resets; for a window in a time zone, also the
/// reset's local time there (`resets 00:00 America/Los_Angeles`, formatted by the browser's
/// `Intl`).
///
/// Its numbers change on nearly every frame while the workers run, so each is a reactive text
/// of its own (only the text nodes and attributes that changed are written).
#[component]
pub fn ServiceCard(
    /// The service's name, as configured.
    name: String,
) -> impl IntoView {
    let state = use_app();
    let key = name.clone();
    // Blank (`None`) while the frame has no such service.
    let service: Memo<Option<ServiceView>> =
        Memo::new(move |_| state.frame().with(|frame| frame.service(&key).cloned()));
    let read = move |f: fn(&ServiceView) -> String| -> Text {
        text(move || service.with(|s| s.as_ref().map(f).unwrap_or_default()))
    };
    let level =
        Memo::new(move |_| service.with(|s| s.as_ref().map_or(Level::Normal, |s| s.usage.level())));
    let percent = move |f: fn(&ServiceView) -> f64| -> Text {
        text(move || format!("{}%", service.with(|s| s.as_ref().map_or(0.0, f))))
    };
    let countdown = text(move || {
        let at = state.frame().with(|f| f.at_ms);
        service.with(|s| {
            s.as_ref()
                .map(|s| format::countdown(s.usage.reset_at_ms.saturating_sub(at)))
                .unwrap_or_default()
        })
    });
    let key = name.clone();
    let spec = text(move || {
        state.config().with(|config| {
            window_of(config, &key)
                .map(ToString::to_string)
                .unwrap_or_default()
        })
    });
    // Formatted by `Intl` again only when the window ends or changes (a cache rather than a
    // memo: no new memo type in the `.wasm`).
    let key = name.clone();
    let shown: Mutex<Option<(u64, WindowSpec, String)>> = Mutex::new(None);
    let local_reset = text(move || {
        let at = service.with(|s| s.as_ref().map(|s| s.usage.reset_at_ms));
        state.config().with(|config| {
            let (Some(window), Some(at)) = (window_of(config, &key), at) else {
                return String::new();
            };
            let mut shown = lock(&shown);
            match &*shown {
                Some((was_at, was, text)) if *was_at == at && was == window => text.clone(),
                _ => {
                    let text = local_reset(window, at);
                    *shown = Some((at, window.clone(), text.clone()));
                    text
                }
            }
        })
    });
    let id = |part: &str| format!("{part}-{name}");
    view! {
        <article
            class=text(move || format!("card level-{}", level.get()))
            data-testid=id("card")
            // Labelled by the name itself: an id made from a name with a space would not work
            // in aria-labelledby (a list of ids), and ids may not contain spaces at all.
            aria-label=name.clone()
        >
            <header class="card-header">
                <h3>{name.clone()}</h3>
                <span class="badge">
                    <span class="badge-icon" aria-hidden="true">
                        {text(move || icon(level.get()).to_owned())}
                    </span>
                    <span data-testid=id("level")>
                        {text(move || level.get().as_str().to_owned())}
                    </span>
                </span>
            </header>
            <p class="usage">
                <span class="used" data-testid=id("used")>
                    {read(|s| s.usage.used.to_string())}
                </span>
                " / "
                <span data-testid=id("limit")>{read(|s| s.usage.limit.to_string())}</span>
                " used · "
                <span data-testid=id("remaining")>{read(|s| s.usage.remaining.to_string())}</span>
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
                <div
                    class="bar-fill"
                    style:width=percent(|s| s.usage.percent_used().clamp(0.0, 100.0))
                ></div>
                <div
                    class="bar-marker warn"
                    title="warning threshold"
                    style:left=percent(|s| s.usage.warn_threshold * 100.0)
                ></div>
                <div
                    class="bar-marker critical"
                    title="critical threshold"
                    style:left=percent(|s| s.usage.critical_threshold * 100.0)
                ></div>
            </div>
            <p class="period">
                "per " <span data-testid=id("period")>{spec}</span>
                " · resets in " <span data-testid=id("reset")>{countdown}</span>
            </p>
            <p class="local-reset" data-testid=id("local-reset")>{local_reset}</p>
        </article>
    }
}

/// The window of service `name` in `config`.
fn window_of<'c>(config: &'c TrackerConfig, name: &str) -> Option<&'c WindowSpec> {
    config
        .services
        .iter()
        .find(|service| service.name == name)
        .map(|service| &service.window)
}

/// For a window in a time zone, when it resets at `at_ms` in the zone's local time: `resets
/// 00:00 America/Los_Angeles` (with the date, `resets Mar 15, 00:00 ...`, for windows longer
/// than a day); empty for a UTC window.
fn local_reset(window: &WindowSpec, at_ms: u64) -> String {
    let Some(zone) = window.zone() else {
        return String::new();
    };
    let longer_than_a_day = match window.period() {
        Period::Second | Period::Minute | Period::Hour => false,
        Period::Day => window.units() > 1,
        _ => true,
    };
    let time = format::local_time(at_ms, zone.name(), longer_than_a_day);
    format!("resets {time} {}", zone.name())
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
