//! Every level change, newest first.

use crate::format;
use crate::model::{Cause, Timeline, TimelineEntry};
use crate::state::use_app;
use leptos::prelude::*;

/// The transition timeline: time, service, from -> to and who caused it, one entry per level
/// change; critical and exhausted entries are highlighted. Keeps the latest
/// [`Timeline::CAPACITY`] entries.
#[component]
pub fn TransitionTimeline() -> impl IntoView {
    let state = use_app();
    let summary = move || {
        state.timeline.with(|t| match t.dropped() {
            0 => format!("{} level changes", t.total()),
            dropped => format!(
                "{} level changes; showing the latest {} ({dropped} older ones dropped)",
                t.total(),
                Timeline::CAPACITY
            ),
        })
    };
    let entries = move || {
        state
            .timeline
            .with(|t| t.entries().cloned().collect::<Vec<_>>())
    };
    view! {
        <section class="panel timeline" aria-labelledby="timeline-heading">
            <h2 id="timeline-heading">"Transitions"</h2>
            <p class="hint">{summary}</p>
            <ol data-testid="timeline" class="entries">
                <For each=entries key=|entry| entry.id let:entry>
                    <Entry entry=entry/>
                </For>
            </ol>
        </section>
    }
}

/// One timeline entry.
#[component]
fn Entry(entry: TimelineEntry) -> impl IntoView {
    let critical = entry.is_critical();
    let t = entry.transition;
    let cause = match entry.cause {
        Cause::Worker(n) => format!("worker {n}"),
        Cause::WindowReset => "window reset".to_owned(),
    };
    view! {
        <li
            data-testid="transition"
            data-service=t.service.clone()
            data-from=t.from.as_str()
            data-to=t.to.as_str()
            class=format!("entry to-{}", t.to)
            class:critical=critical
        >
            <time>{format::time_of_day(t.at_ms)}</time>
            " "
            <strong>{t.service.clone()}</strong>
            " "
            <span class="levels">{format!("{} → {}", t.from, t.to)}</span>
            " "
            <span class="detail">{format!("at {} / {} · {cause}", t.used, t.limit)}</span>
        </li>
    }
}
