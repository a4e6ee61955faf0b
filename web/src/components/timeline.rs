//! Every level change, newest first.

use crate::dynamic::text;
use crate::format;
use crate::model::{Cause, Timeline, TimelineEntry};
use crate::state::use_app;
use leptos::prelude::*;

/// The transition timeline: time, service, from -> to, the limit (used / limit per window: a
/// service of several limits changes level per limit) and who caused it, one entry per level
/// change; critical and exhausted entries are highlighted. Keeps the latest
/// [`Timeline::CAPACITY`] entries.
///
/// The list is a fixed set of up to [`Timeline::CAPACITY`] `<li>` elements whose texts and
/// attributes are rewritten in place when entries come (newest first, so each moves down a
/// place): no elements are made or dropped once the list is full. (A list keyed by entry
/// id, `<For>`, made elements for every new entry, and at the fastest speeds its rows'
/// bookkeeping grew the `.wasm` memory by about 2 MiB a minute.) While the page runs its
/// frames the list is told of new entries at most every
/// [`TIMELINE_INTERVAL_MS`](crate::state::TIMELINE_INTERVAL_MS) (the count above it is exact).
#[component]
pub fn TransitionTimeline() -> impl IntoView {
    let state = use_app();
    let summary = text(move || {
        state.timeline().with(|t| match t.dropped() {
            0 => format!("{} level changes", t.total()),
            dropped => format!(
                "{} level changes; showing the latest {} ({dropped} older ones dropped)",
                t.total(),
                Timeline::CAPACITY
            ),
        })
    });
    view! {
        <section class="panel timeline" aria-labelledby="timeline-heading">
            <h2 id="timeline-heading">"Transitions"</h2>
            <p class="hint">{summary}</p>
            <ol data-testid="timeline" class="entries">
                {move || {
                    state
                        .timeline()
                        .with(|t| t.entries().map(entry_view).collect::<Vec<_>>())
                }}
            </ol>
        </section>
    }
}

/// One timeline entry, as an `<li>`.
fn entry_view(entry: &TimelineEntry) -> impl IntoView {
    let t = &entry.transition;
    let cause = match entry.cause {
        Cause::Worker(n) => format!("worker {n}"),
        Cause::WindowReset => "window reset".to_owned(),
        Cause::Config => "config change".to_owned(),
    };
    let class = format!(
        "entry to-{}{}",
        t.to,
        if entry.is_critical() { " critical" } else { "" }
    );
    view! {
        <li
            data-testid="transition"
            data-service=t.service.to_string()
            data-from=t.from.to_string()
            data-to=t.to.to_string()
            data-window=t.window.key()
            class=class
        >
            <time>{format::time_of_day(t.at_ms)}</time>
            " "
            <strong>{t.service.to_string()}</strong>
            " "
            <span class="levels">{format!("{} → {}", t.from, t.to)}</span>
            " "
            <span class="detail">
                {format!("at {} / {} per {} · {cause}", t.used, t.limit, t.window)}
            </span>
        </li>
    }
}
