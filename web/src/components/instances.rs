//! The instances view: several trackers sharing one store, by deltas or by overwriting
//! snapshots.

use crate::dynamic::{on_change, on_click, text};
use crate::format;
use crate::instances::{SyncMode, INSTANCES, RATE, WORKERS_PER_INSTANCE};
use crate::markup::{escape, CountsTable};
use crate::state::use_app;
use leptos::prelude::*;
use std::fmt::Write;

/// The "Instances" section: [`INSTANCES`] simulated instances, each with its own tracker,
/// sharing one in-browser store; a switch between delta sync (the real protocol: nothing lost)
/// and snapshot saves (a demonstration of the old protocol: each instance writes its whole view
/// over the store, and calls get lost); start, pause and reset; and per service the units all
/// instances issued, the store's total (read from the store) and the difference, live, with
/// what each instance sees.
#[component]
pub fn InstancesPanel() -> impl IntoView {
    let state = use_app();
    let mode = Memo::new(move |_| state.instances_frame.with(|f| f.mode));
    let status = text(move || state.instances_frame.with(|f| f.status.as_str()).to_owned());
    let explanation = text(move || {
        match mode.get() {
            SyncMode::Delta => {
                "Delta sync (the store protocol): after each call an instance sends the calls \
                 it recorded since its last sync; the store adds them and answers with the \
                 shared totals. Nothing is lost."
            }
            SyncMode::Snapshot => {
                "Snapshot saves (demonstration of the old protocol): after each call an \
                 instance writes its whole view over the store, erasing what the others wrote \
                 since it loaded. The shared total loses calls."
            }
        }
        .to_owned()
    });
    let table = text(move || {
        state.instances_frame.with(|f| {
            SHARED.markup(
                f.services
                    .iter()
                    .map(|s| (s.name.as_str(), vec![s.issued, s.stored, s.lost()])),
            )
        })
    });
    let views = text(move || {
        state.instances_frame.with(|f| {
            let mut html = String::new();
            for (instance, used) in f.views.iter().enumerate() {
                let sees = f
                    .services
                    .iter()
                    .zip(used)
                    .map(|(service, used)| format!("{} {used}", escape(&service.name)))
                    .collect::<Vec<_>>()
                    .join(" · ");
                let n = instance + 1;
                let _ = write!(
                    html,
                    "<li data-testid=\"instances-view-{n}\"><strong>Instance {n}</strong> sees \
                     {sees}</li>"
                );
            }
            html
        })
    });
    view! {
        <section
            class="panel instances"
            aria-labelledby="instances-heading"
            data-testid="instances"
        >
            <h2 id="instances-heading">"Instances sharing one store"</h2>
            <p class="hint">
                {format!(
                    "{INSTANCES} instances of an app, each with its own tracker, share one \
                     in-browser store; each runs {WORKERS_PER_INSTANCE} workers at {} calls/s \
                     with the simulation's mix, call sizes and seed, and counts every call. \
                     Their clock stands still, so each service's calls land in one window.",
                    format::rate(f64::from(RATE))
                )}
            </p>
            <div class="buttons" role="group" aria-label="Run the instances">
                <button
                    type="button"
                    class="primary"
                    data-testid="instances-start"
                    on:click=on_click(move |_| state.start_instances())
                >
                    "Start instances"
                </button>
                <button
                    type="button"
                    data-testid="instances-pause"
                    on:click=on_click(move |_| state.pause_instances())
                >
                    "Pause"
                </button>
                <button
                    type="button"
                    data-testid="instances-reset"
                    on:click=on_click(move |_| state.reset_instances(mode.get_untracked()))
                >
                    "Reset"
                </button>
                <span class="status" role="status">
                    "Instances: " <strong data-testid="instances-status">{status}</strong>
                </span>
            </div>
            <div class="fields">
                <div class="field">
                    <label for="instances-mode">"How they share the store"</label>
                    <select
                        id="instances-mode"
                        data-testid="instances-mode"
                        prop:value=text(move || mode.get().as_str().to_owned())
                        on:change=on_change(move |ev| {
                            match event_target_value(&ev).parse::<SyncMode>() {
                                Ok(mode) => state.reset_instances(mode),
                                Err(error) => state.reject_input(error),
                            }
                        })
                    >
                        <option value="delta">"delta sync"</option>
                        <option value="snapshot">"snapshot saves (demo)"</option>
                    </select>
                </div>
            </div>
            <p class="hint">{explanation}</p>
            <table inner_html=table></table>
            <ul class="instance-views" inner_html=views></ul>
        </section>
    }
}

/// The instances' table: issued by all instances, the store's total and lost per service,
/// and their totals.
const SHARED: CountsTable = CountsTable {
    prefix: "instances-",
    columns: &[("Issued", "issued"), ("Stored", "stored"), ("Lost", "lost")],
};
