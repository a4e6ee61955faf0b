//! Every level change, newest first.

use crate::dynamic::text;
use crate::format;
use crate::markup::escape;
use crate::model::{Cause, Timeline, TimelineEntry};
use crate::state::use_app;
use leptos::html::Ol;
use leptos::prelude::*;
use std::fmt::Write;

/// The transition timeline: time, service, from -> to and who caused it, one entry per level
/// change; critical and exhausted entries are highlighted. Keeps the latest
/// [`Timeline::CAPACITY`] entries.
///
/// The entries are markup (see [`crate::markup`]) added to the top of the list as they come,
/// the oldest taken off the bottom: at the fastest speeds dozens arrive on every frame, and
/// redrawing the whole list each time doubled the page's rendering work.
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
    let list = NodeRef::<Ol>::new();
    // The value: the id of the newest entry the list shows. Kept until the component goes.
    let effect = RenderEffect::new(move |shown: Option<Option<u64>>| {
        let shown = shown.flatten();
        match list.get() {
            Some(list) => state.timeline.with(|timeline| show(&list, timeline, shown)),
            None => shown,
        }
    });
    on_cleanup(move || drop(effect));
    view! {
        <section class="panel timeline" aria-labelledby="timeline-heading">
            <h2 id="timeline-heading">"Transitions"</h2>
            <p class="hint">{summary}</p>
            <ol data-testid="timeline" class="entries" node_ref=list></ol>
        </section>
    }
}

/// Makes `list`, which shows the entries up to the one with id `shown`, show `timeline`'s
/// entries; returns the id of the newest one. The entries newer than `shown` go in at the top
/// and the ones the timeline dropped come off the bottom; when `shown` is not in the timeline
/// any more (it was cleared, or dropped all the entries the list shows) the list is redrawn.
fn show(list: &web_sys::Element, timeline: &Timeline, shown: Option<u64>) -> Option<u64> {
    let mut html = String::new();
    let mut kept = false;
    for entry in timeline.entries() {
        if Some(entry.id) == shown {
            kept = true;
            break;
        }
        entry_markup(&mut html, entry);
    }
    if !kept {
        list.set_inner_html(&html);
    } else if list.insert_adjacent_html("afterbegin", &html).is_ok() {
        let len = timeline.entries().count() as u32;
        while let Some(oldest) = list
            .last_element_child()
            .filter(|_| list.child_element_count() > len)
        {
            oldest.remove();
        }
    } else {
        // Never for "afterbegin"; if it were, the list would show everything again.
        return show(list, timeline, None);
    }
    timeline.entries().next().map(|entry| entry.id)
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
