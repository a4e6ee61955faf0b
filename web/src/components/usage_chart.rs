//! Usage over time per service, as an SVG line chart with the threshold lines.

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
#[component]
pub fn UsageChart() -> impl IntoView {
    let state = use_app();
    let lines = move || {
        state.history.with(|history| {
            history
                .services
                .iter()
                .enumerate()
                .map(|(service, line)| {
                    let len = history.samples().len();
                    let points = history
                        .samples()
                        .enumerate()
                        .filter_map(|(i, sample)| {
                            sample
                                .get(service)
                                .map(|&f| format!("{:.1},{:.1}", x(i, len), y(f)))
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    view! {
                        <polyline
                            class="series"
                            points=points
                            stroke=colour(service)
                            data-service=line.name.clone()
                        ></polyline>
                    }
                })
                .collect_view()
        })
    };
    let thresholds = move || {
        state.config.with(|config| {
            let mut marks: Vec<(f64, &'static str)> = Vec::new();
            for service in &config.services {
                for mark in [
                    (service.warn_threshold, "warn"),
                    (service.critical_threshold, "critical"),
                ] {
                    if !marks.iter().any(|(f, _)| (f - mark.0).abs() < 1e-9) {
                        marks.push(mark);
                    }
                }
            }
            marks
                .into_iter()
                .map(|(fraction, kind)| {
                    let at = y(fraction);
                    view! {
                        <line
                            class=format!("threshold {kind}")
                            x1=LEFT
                            x2=WIDTH - RIGHT
                            y1=at
                            y2=at
                        ></line>
                        <text class=format!("threshold-label {kind}") x=WIDTH - RIGHT - 4.0 y=at - 3.0 text-anchor="end">
                            {format!("{kind} {:.0}%", fraction * 100.0)}
                        </text>
                    }
                })
                .collect_view()
        })
    };
    let legend = move || {
        state.config.with(|config| {
            config
                .services
                .iter()
                .enumerate()
                .map(|(i, service)| {
                    view! {
                        <li>
                            <span class="swatch" style:background=colour(i) aria-hidden="true"></span>
                            {service.name.clone()}
                        </li>
                    }
                })
                .collect_view()
        })
    };
    let span = move || {
        let len = state.history.with(|h| h.samples().len());
        let seconds = len.saturating_sub(1) as f64 * History::INTERVAL_MS / 1_000.0;
        format!("{seconds:.0} s ago")
    };
    let axis = [0.0, 0.5, 1.0].map(|fraction| {
        view! {
            <line class="grid" x1=LEFT x2=WIDTH - RIGHT y1=y(fraction) y2=y(fraction)></line>
            <text class="axis" x=LEFT - 6.0 y=y(fraction) + 4.0 text-anchor="end">
                {format!("{:.0}%", fraction * 100.0)}
            </text>
        }
    });
    view! {
        <section class="panel chart" aria-labelledby="chart-heading">
            <h2 id="chart-heading">"Usage over time"</h2>
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                role="img"
                aria-labelledby="chart-heading chart-description"
                data-testid="usage-chart"
            >
                <desc id="chart-description">
                    "Percent of each service's limit used, over the last minute of running, with \
                     dashed lines at the warning and critical thresholds."
                </desc>
                {axis}
                {thresholds}
                {lines}
                <text class="axis" x=LEFT y=HEIGHT - 6.0>{span}</text>
                <text class="axis" x=WIDTH - RIGHT y=HEIGHT - 6.0 text-anchor="end">"now"</text>
            </svg>
            <ul class="legend">{legend}</ul>
        </section>
    }
}
