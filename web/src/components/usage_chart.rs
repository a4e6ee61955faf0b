//! Usage over time per service, as an SVG line chart with the threshold lines.

use crate::dynamic::text;
use crate::format::{fixed, number, push_fixed};
use crate::model::History;
use crate::state::use_app;
use leptos::prelude::*;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;
/// The top of the y axis, as a fraction of the limit (usage above it is drawn at the top).
const Y_MAX: f64 = 1.1;
/// Line colours, one per service in config order (the legend names each one).
const COLOURS: [&str; 8] = [
    "#2563eb", "#db2777", "#0d9488", "#9333ea", "#ea580c", "#4d7c0f", "#0891b2", "#a16207",
];

/// Sample `index` of `len` across the plot's width (oldest at the left, newest at the right).
fn x(index: usize, len: usize) -> f64 {
    LEFT + index as f64 * (WIDTH - LEFT - RIGHT) / len.saturating_sub(1).max(1) as f64
}

fn y(fraction: f64) -> f64 {
    let fraction = fraction.clamp(0.0, Y_MAX);
    TOP + (1.0 - fraction / Y_MAX) * (HEIGHT - TOP - BOTTOM)
}

/// The colour of the service at `index` in config order.
fn colour(index: usize) -> &'static str {
    COLOURS[index % COLOURS.len()]
}

/// Each service's `used / limit` over up to the last minute of running (sampled 4 times a
/// second, bounded), with dashed lines at the warn and critical thresholds.
///
/// The SVG's elements are made once (the grid), when the config changes (the threshold lines,
/// the series, the legend) or never again: each sample changes only each series' `points`
/// attribute and the "s ago" text, in place.
#[component]
pub fn UsageChart() -> impl IntoView {
    let state = use_app();
    // The threshold lines: one per distinct fraction, labelled by the first kind at it (as
    // [`mark_key`]s: a `Memo<Vec<u64>>` and `u64` keys, as elsewhere in the dashboard; each memo
    // and key type is its own copy of that code in the `.wasm`).
    let marks = Memo::new(move |_| {
        state.config().with(|config| {
            let mut marks: Vec<u64> = Vec::new();
            for service in &config.services {
                for (fraction, critical) in [
                    (service.warn_threshold, false),
                    (service.critical_threshold, true),
                ] {
                    if !marks
                        .iter()
                        .any(|&mark| (mark_fraction(mark) - fraction).abs() < 1e-9)
                    {
                        marks.push(mark_key(fraction, critical));
                    }
                }
            }
            marks
        })
    });
    // The series: one per service of the samples, in config order (`Memo<Vec<String>>`s, as
    // elsewhere; numbered in the lists).
    let series = Memo::new(move |_| {
        state
            .history()
            .with(|history| names_of(history.services.iter().map(|line| &line.name)))
    });
    let names = Memo::new(move |_| {
        state
            .config()
            .with(|config| names_of(config.services.iter().map(|service| &service.name)))
    });
    let ago = text(move || {
        state.history().with(|history| {
            let seconds =
                history.samples().len().saturating_sub(1) as f64 * History::INTERVAL_MS / 1_000.0;
            format!("{} s ago", fixed(seconds, 0))
        })
    });
    view! {
        <section class="panel chart" aria-labelledby="chart-heading">
            <h2 id="chart-heading">"Usage over time"</h2>
            <svg
                viewBox=format!("0 0 {} {}", number(WIDTH), number(HEIGHT))
                role="img"
                aria-labelledby="chart-heading chart-description"
                data-testid="usage-chart"
            >
                <desc id="chart-description">
                    "Percent of each service's limit used, over the last minute of running, with \
                     dashed lines at the warning and critical thresholds."
                </desc>
                {[0.0, 0.5, 1.0]
                    .map(|fraction| {
                        let at = number(y(fraction));
                        view! {
                            <line
                                class="grid"
                                x1=number(LEFT)
                                x2=number(WIDTH - RIGHT)
                                y1=at.clone()
                                y2=at
                            ></line>
                            <text
                                class="axis"
                                x=number(LEFT - 6.0)
                                y=number(y(fraction) + 4.0)
                                text-anchor="end"
                            >
                                {format!("{}%", fixed(fraction * 100.0, 0))}
                            </text>
                        }
                    })}
                <For each=move || marks.get() key=|mark| *mark let:mark>
                    {threshold(mark_fraction(mark), mark_kind(mark))}
                </For>
                <For each=move || numbered(series.get()) key=|(index, name)| format!("{index} {name}") let:line>
                    {
                        let (index, name) = line;
                        let points = text(move || {
                            state.history().with(|history| points(history, index))
                        });
                        view! {
                            <polyline
                                class="series"
                                points=points
                                stroke=colour(index)
                                data-service=name
                            ></polyline>
                        }
                    }
                </For>
                <text class="axis" x=number(LEFT) y=number(HEIGHT - 6.0)>
                    {ago}
                </text>
                <text
                    class="axis"
                    x=number(WIDTH - RIGHT)
                    y=number(HEIGHT - 6.0)
                    text-anchor="end"
                >
                    "now"
                </text>
            </svg>
            <ul class="legend">
                <For each=move || numbered(names.get()) key=|(index, name)| format!("{index} {name}") let:entry>
                    <li>
                        <span
                            class="swatch"
                            style=format!("background: {}", colour(entry.0))
                            aria-hidden="true"
                        ></span>
                        {entry.1}
                    </li>
                </For>
            </ul>
        </section>
    }
}

/// The threshold line at `fraction`, critical or warn, as one `u64`: the fraction's bits with
/// the sign bit (a threshold is above 0) set for critical. It keys the line, so a line whose
/// label changes is drawn again.
fn mark_key(fraction: f64, critical: bool) -> u64 {
    fraction.to_bits() | u64::from(critical) << 63
}

/// The fraction of a [`mark_key`].
fn mark_fraction(mark: u64) -> f64 {
    f64::from_bits(mark & !(1 << 63))
}

/// The label of a [`mark_key`].
fn mark_kind(mark: u64) -> &'static str {
    if mark >> 63 == 1 {
        "critical"
    } else {
        "warn"
    }
}

/// The names, in order.
fn names_of<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    names.cloned().collect()
}

/// Each name with its index (which picks its colour; the lists key on both, as text).
fn numbered(names: Vec<String>) -> Vec<(usize, String)> {
    names.into_iter().enumerate().collect()
}

/// The dashed line and label of a threshold at `fraction` of the limit.
fn threshold(fraction: f64, kind: &'static str) -> impl IntoView {
    let at = y(fraction);
    view! {
        <line
            class=format!("threshold {kind}")
            x1=number(LEFT)
            x2=number(WIDTH - RIGHT)
            y1=number(at)
            y2=number(at)
        ></line>
        <text
            class=format!("threshold-label {kind}")
            x=number(WIDTH - RIGHT - 4.0)
            y=number(at - 3.0)
            text-anchor="end"
        >
            {format!("{kind} {}%", fixed(fraction * 100.0, 0))}
        </text>
    }
}

/// The `points` of service `index`'s series: each sample's fraction across the plot.
fn points(history: &History, index: usize) -> String {
    let len = history.samples().len();
    let mut points = String::with_capacity(len * 12);
    for (i, sample) in history.samples().enumerate() {
        if let Some(&f) = sample.get(index) {
            if !points.is_empty() {
                points.push(' ');
            }
            push_fixed(&mut points, x(i, len), 1);
            points.push(',');
            push_fixed(&mut points, y(f), 1);
        }
    }
    points
}
