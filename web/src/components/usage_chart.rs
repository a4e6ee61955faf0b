//! Usage over time per service, as an SVG line chart with the threshold lines.

use crate::dynamic::text;
use crate::markup::escape;
use crate::model::History;
use crate::state::use_app;
use leptos::prelude::*;
use std::fmt::Write;

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
/// The SVG's content is redrawn as markup whenever a sample is added or the config changes
/// (every line changes with each sample anyway): a few lines of text instead of a view per
/// element keeps the chart small in the `.wasm`.
#[component]
pub fn UsageChart() -> impl IntoView {
    let state = use_app();
    let plot = text(move || {
        let mut svg = String::new();
        svg.push_str(
            "<desc id=\"chart-description\">Percent of each service's limit used, over the last \
             minute of running, with dashed lines at the warning and critical thresholds.</desc>",
        );
        for fraction in [0.0, 0.5, 1.0] {
            let at = y(fraction);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{at}\" y2=\"{at}\"></line>\
                 <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}%</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                at + 4.0,
                fraction * 100.0
            );
        }
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
            for (fraction, kind) in marks {
                let at = y(fraction);
                let _ = write!(
                    svg,
                    "<line class=\"threshold {kind}\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{at}\" \
                     y2=\"{at}\"></line><text class=\"threshold-label {kind}\" x=\"{}\" \
                     y=\"{}\" text-anchor=\"end\">{kind} {:.0}%</text>",
                    WIDTH - RIGHT,
                    WIDTH - RIGHT - 4.0,
                    at - 3.0,
                    fraction * 100.0
                );
            }
        });
        state.history.with(|history| {
            let len = history.samples().len();
            for (service, line) in history.services.iter().enumerate() {
                svg.push_str("<polyline class=\"series\" points=\"");
                let mut separator = "";
                for (i, sample) in history.samples().enumerate() {
                    if let Some(&f) = sample.get(service) {
                        let _ = write!(svg, "{separator}{:.1},{:.1}", x(i, len), y(f));
                        separator = " ";
                    }
                }
                let _ = write!(
                    svg,
                    "\" stroke=\"{}\" data-service=\"{}\"></polyline>",
                    colour(service),
                    escape(&line.name)
                );
            }
            let seconds = len.saturating_sub(1) as f64 * History::INTERVAL_MS / 1_000.0;
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{LEFT}\" y=\"{}\">{seconds:.0} s ago</text>",
                HEIGHT - 6.0
            );
        });
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">now</text>",
            WIDTH - RIGHT,
            HEIGHT - 6.0
        );
        svg
    });
    let legend = text(move || {
        state.config.with(|config| {
            let mut html = String::new();
            for (i, service) in config.services.iter().enumerate() {
                let _ = write!(
                    html,
                    "<li><span class=\"swatch\" style=\"background: {}\" aria-hidden=\"true\">\
                     </span>{}</li>",
                    colour(i),
                    escape(&service.name)
                );
            }
            html
        })
    });
    view! {
        <section class="panel chart" aria-labelledby="chart-heading">
            <h2 id="chart-heading">"Usage over time"</h2>
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                role="img"
                aria-labelledby="chart-heading chart-description"
                data-testid="usage-chart"
                inner_html=plot
            ></svg>
            <ul class="legend" inner_html=legend></ul>
        </section>
    }
}
