//! Every level change, newest first.

use crate::dynamic::text;
use crate::format;
use crate::markup::escape;
use crate::model::{Cause, Timeline, TimelineEntry};
use crate::state::use_app;
use leptos::prelude::*;
use std::fmt::Write;

/// The transition timeline: time, service, from -> to and who caused it, one entry per level
/// change; critical and exhausted entries are highlighted. Keeps the latest
/// [`Timeline::CAPACITY`] entries. The entries are drawn as markup (see [`crate::markup`]).
#[component]
pub fn TransitionTimeline() -> impl IntoView {
    let state = use_app();
    let summary = text(move || {
        state.timeline.with(|t| match t.dropped() {
            0 => format!("{} level changes", t.total()),
            dropped => format!(
                "{} level changes; showing the latest {} ({dropped} older ones dropped)",
                t.total(),
                Timeline::CAPACITY
            ),
        })
    });
    let entries = text(move || {
        state.timeline.with(|t| {
            let mut html = String::new();
            t.entries().for_each(|entry| entry_markup(&mut html, entry));
            html
        })
    });
    view! {
        <section class="panel timeline" aria-labelledby="timeline-heading">
            <h2 id="timeline-heading">"Transitions"</h2>
            <p class="hint">{summary}</p>
            <ol data-testid="timeline" class="entries" inner_html=entries></ol>
        </section>
    }
}

/// One timeline entry, as an `<li>`.
fn entry_markup(html: &mut String, entry: &TimelineEntry) {
    let t = &entry.transition;
    let service = escape(&t.service);
    let cause = match entry.cause {
        Cause::Worker(n) => format!("worker {n}"),
        Cause::WindowReset => "window reset".to_owned(),
    };
    let _ = write!(
        html,
        "<li data-testid=\"transition\" data-service=\"{service}\" data-from=\"{}\" \
         data-to=\"{}\" class=\"entry to-{}{}\"><time>{}</time> <strong>{service}</strong> \
         <span class=\"levels\">{} → {}</span> <span class=\"detail\">at {} / {} · {cause}</span>\
         </li>",
        t.from,
        t.to,
        t.to,
        if entry.is_critical() { " critical" } else { "" },
        format::time_of_day(t.at_ms),
        t.from,
        t.to,
        t.used,
        t.limit
    );
}
