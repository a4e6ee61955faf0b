//! One service's card: usage, a bar per limit with thresholds, level, window and countdown to
//! reset (and the local reset time of a window in a time zone).

use crate::dynamic::{text, Text};
use crate::format::{self, number};
use crate::locks::lock;
use crate::model::{ServiceView, Unit};
use crate::state::{use_app, AppState};
use leptos::prelude::*;
use quota_core::{Level, Period, ServiceUsage, TrackerConfig, WindowSpec};
use std::sync::Mutex;

/// The card of service `name`: used / limit / remaining, a bar with the warn and critical
/// markers, the level as a word and a colour, the window in words (`day in
/// America/Los_Angeles`) and the time until it resets; for a window in a time zone, also the
/// reset's local time there (`resets 00:00 America/Los_Angeles`, formatted by the browser's
/// `Intl`).
///
/// A service of several limits (Tiingo: 50 an hour and 1,000 a day) gets one such bar per
/// limit, each headed by its window and its own used / limit, and the binding limit (the one
/// `used / limit / remaining` above describes) tagged "binding" in words.
///
/// A token service's card (see [`Unit`]) also shows the tokens its unsettled holds have in
/// flight (`used` includes those held in the current window).
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
    // Read from the service, not a memo: a `Memo<Level>` was its own copy of the memo code.
    let level = move || service.with(|s| s.as_ref().map_or(Level::Normal, |s| s.usage.level()));
    // One bar per limit the frame counts (racy mode counts the service's own only), keyed by
    // its place and whether the card has several, as `place << 1 | several` (a card going
    // from one limit to two draws its first bar again, with its head): bars are built, never
    // rebuilt. A `Memo<Vec<u64>>` and `u64` keys, as the counts tables and the editor's rows
    // have: each memo type and key type is its own copy of that code in the `.wasm`.
    let bars = Memo::new(move |_| {
        let count = service.with(|s| s.as_ref().map_or(1, ServiceView::limit_count)) as u64;
        (0..count)
            .map(|index| index << 1 | u64::from(count > 1))
            .collect::<Vec<u64>>()
    });
    let limits = {
        let name = name.clone();
        view! {
            <For each=move || bars.get() key=|bar| *bar children=move |bar| {
                limit_bar(state, &name, service, (bar >> 1) as usize, bar & 1 == 1)
            }/>
        }
    };
    let id = |part: &str| format!("{part}-{name}");
    let tokens = Unit::of(&name) == Unit::Tokens;
    view! {
        <article
            class=text(move || format!("card level-{}", level()))
            data-testid=id("card")
            // Labelled by the name itself: an id made from a name with a space would not work
            // in aria-labelledby (a list of ids), and ids may not contain spaces at all.
            aria-label=name.clone()
        >
            <header class="card-header">
                <h3>{name.clone()}</h3>
                <span class="badge">
                    <span class="badge-icon" aria-hidden="true">
                        {text(move || icon(level()).to_owned())}
                    </span>
                    <span data-testid=id("level")>
                        {text(move || level().as_str().to_owned())}
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
            // Every card has the line (one view type, not an optional one): shown for tokens.
            <p class=if tokens { "held" } else { "held none" }>
                "tokens · "
                <span data-testid=id("held")>{read(|s| s.holds.in_flight.to_string())}</span>
                " held in flight"
            </p>
            {limits}
        </article>
    }
}

/// The bar of the limit at `index` (0: the service's own) of service `name`: its window, its
/// bar with thresholds, the countdown to its reset and its local reset time. With `several`
/// limits it is headed by its window and used / limit, and tagged when it binds. Test ids:
/// `<part>-<name>` for the first limit (as a one-limit card has them), `<part>-<n>-<name>` for
/// the n-th (from 2).
fn limit_bar(
    state: AppState,
    name: &str,
    service: Memo<Option<ServiceView>>,
    index: usize,
    several: bool,
) -> impl IntoView {
    let id = |part: &str| match index {
        0 => format!("{part}-{name}"),
        _ => format!("{part}-{}-{name}", index + 1),
    };
    let usage = move |f: fn(&ServiceUsage) -> String| -> Text {
        text(move || {
            service.with(|s| {
                s.as_ref()
                    .and_then(|s| s.limit(index))
                    .map(f)
                    .unwrap_or_default()
            })
        })
    };
    let number = move |f: fn(&ServiceUsage) -> f64| -> Text {
        text(move || {
            let value = service.with(|s| s.as_ref().and_then(|s| s.limit(index)).map_or(0.0, f));
            format!("{}%", number(value))
        })
    };
    let binding =
        move || several && service.with(|s| s.as_ref().is_some_and(|s| s.binding == index));
    let reset_at = move || service.with(|s| s.as_ref()?.limit(index).map(|u| u.reset_at_ms));
    let countdown = text(move || {
        let at = state.frame().with(|f| f.at_ms);
        reset_at()
            .map(|reset| format::countdown(reset.saturating_sub(at)))
            .unwrap_or_default()
    });
    let key = name.to_owned();
    let spec = text(move || {
        state.config().with(|config| {
            window_of(config, &key, index)
                .map(ToString::to_string)
                .unwrap_or_default()
        })
    });
    // Formatted by `Intl` again only when the window ends or changes (a cache rather than a
    // memo: no new memo type in the `.wasm`).
    let key = name.to_owned();
    let shown: Mutex<Option<(u64, WindowSpec, String)>> = Mutex::new(None);
    let local_reset = text(move || {
        let at = reset_at();
        state.config().with(|config| {
            let (Some(window), Some(at)) = (window_of(config, &key, index), at) else {
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
    // The limit's own level colours its bar (the card's is the service's, the highest).
    let class = text(move || {
        let level = service.with(|s| {
            s.as_ref()
                .and_then(|s| s.limit(index))
                .map_or(Level::Normal, ServiceUsage::level)
        });
        let binding = if binding() { " binding" } else { "" };
        format!("limit limit-{level}{binding}")
    });
    let meter_label = {
        let name = name.to_owned();
        let spec = spec.clone();
        text(move || {
            if !several {
                return format!("{name} quota used");
            }
            let binding = if binding() { ", binding" } else { "" };
            format!("{name} quota used per {}{binding}", spec())
        })
    };
    let head = several.then(|| {
        view! {
            <p class="limit-head">
                <span class="limit-window" data-testid=id("period")>{spec.clone()}</span>
                " · "
                <span data-testid=id("window-used")>{usage(|u| u.used.to_string())}</span>
                " / "
                <span data-testid=id("window-limit")>{usage(|u| u.limit.to_string())}</span>
                " "
                <strong class="tag" data-testid=id("binding")>
                    {text(move || if binding() { "binding" } else { "" }.to_owned())}
                </strong>
            </p>
        }
    });
    let period = (!several).then(|| {
        view! { "per " <span data-testid=id("period")>{spec}</span> " · " }
    });
    view! {
        <div class=class data-testid=id("window")>
            {head}
            <div
                class="bar"
                role="meter"
                aria-label=meter_label
                aria-valuemin="0"
                aria-valuemax=usage(|u| u.limit.to_string())
                aria-valuenow=usage(|u| u.used.min(u.limit).to_string())
            >
                <div
                    class="bar-fill"
                    style:width=number(|u| u.percent_used().clamp(0.0, 100.0))
                ></div>
                <div
                    class="bar-marker warn"
                    title="warning threshold"
                    style:left=number(|u| u.warn_threshold * 100.0)
                ></div>
                <div
                    class="bar-marker critical"
                    title="critical threshold"
                    style:left=number(|u| u.critical_threshold * 100.0)
                ></div>
            </div>
            <p class="period">
                {period} "resets in " <span data-testid=id("reset")>{countdown}</span>
            </p>
            <p class="local-reset" data-testid=id("local-reset")>{local_reset}</p>
        </div>
    }
}

/// The window of the limit at `index` (0: its own) of service `name` in `config`.
fn window_of<'c>(config: &'c TrackerConfig, name: &str, index: usize) -> Option<&'c WindowSpec> {
    let service = config
        .services
        .iter()
        .find(|service| service.name == name)?;
    match index.checked_sub(1) {
        None => Some(&service.window),
        Some(more) => service.more_limits.get(more).map(|limit| &limit.window),
    }
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
