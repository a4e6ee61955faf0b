//! The instances view: several trackers sharing one store, by deltas or by overwriting
//! snapshots.

use crate::format;
use crate::instances::{SyncMode, INSTANCES, RATE, WORKERS_PER_INSTANCE};
use crate::model::SharedCounts;
use crate::state::use_app;
use leptos::prelude::*;

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
    let status = move || state.instances_frame.with(|f| f.status.as_str());
    let names = Memo::new(move |_| {
        state.instances_frame.with(|f| {
            f.services
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        })
    });
    let total = move |f: fn(&SharedCounts) -> u64| {
        move || {
            state
                .instances_frame
                .with(|frame| frame.services.iter().map(f).sum::<u64>().to_string())
        }
    };
    let any_lost = move || {
        state
            .instances_frame
            .with(|f| f.services.iter().any(|s| s.lost() > 0))
    };
    let explanation = move || match mode.get() {
        SyncMode::Delta => {
            "Delta sync (the store protocol): after each call an instance sends the calls it \
             recorded since its last sync; the store adds them and answers with the shared \
             totals. Nothing is lost."
        }
        SyncMode::Snapshot => {
            "Snapshot saves (demonstration of the old protocol): after each call an instance \
             writes its whole view over the store, erasing what the others wrote since it \
             loaded. The shared total loses calls."
        }
    };
    let views = move || {
        state.instances_frame.with(|f| {
            f.views
                .iter()
                .enumerate()
                .map(|(instance, used)| {
                    let sees = f
                        .services
                        .iter()
                        .zip(used)
                        .map(|(service, used)| format!("{} {used}", service.name))
                        .collect::<Vec<_>>()
                        .join(" · ");
                    view! {
                        <li data-testid=format!("instances-view-{}", instance + 1)>
                            <strong>{format!("Instance {}", instance + 1)}</strong>
                            " sees " {sees}
                        </li>
                    }
                })
                .collect_view()
        })
    };
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
                    on:click=move |_| state.start_instances()
                >
                    "Start instances"
                </button>
                <button
                    type="button"
                    data-testid="instances-pause"
                    on:click=move |_| state.pause_instances()
                >
                    "Pause"
                </button>
                <button
                    type="button"
                    data-testid="instances-reset"
                    on:click=move |_| state.reset_instances(mode.get_untracked())
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
                        prop:value=move || mode.get().as_str()
                        on:change=move |ev| {
                            match event_target_value(&ev).parse::<SyncMode>() {
                                Ok(mode) => state.reset_instances(mode),
                                Err(error) => state.reject_input(error),
                            }
                        }
                    >
                        <option value="delta">"delta sync"</option>
                        <option value="snapshot">"snapshot saves (demo)"</option>
                    </select>
                </div>
            </div>
            <p class="hint">{explanation}</p>
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Service"</th>
                        <th scope="col">"Issued"</th>
                        <th scope="col">"Stored"</th>
                        <th scope="col">"Lost"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || names.get() key=|name| name.clone() let:name>
                        <SharedRow name=name/>
                    </For>
                </tbody>
                <tfoot>
                    <tr class:lost=any_lost>
                        <th scope="row">"All services"</th>
                        <td data-testid="instances-issued-total">{total(|s| s.issued)}</td>
                        <td data-testid="instances-stored-total">{total(|s| s.stored)}</td>
                        <td data-testid="instances-lost-total">{total(SharedCounts::lost)}</td>
                    </tr>
                </tfoot>
            </table>
            <ul class="instance-views">{views}</ul>
        </section>
    }
}

/// One service's row: issued by all instances, the store's total, lost.
#[component]
fn SharedRow(name: String) -> impl IntoView {
    let state = use_app();
    let key = name.clone();
    let counts = Memo::new(move |_| {
        state.instances_frame.with(|frame| {
            frame
                .service(&key)
                .map_or((0, 0, 0), |s| (s.issued, s.stored, s.lost()))
        })
    });
    view! {
        <tr class:lost={move || counts.get().2 > 0}>
            <th scope="row">{name.clone()}</th>
            <td data-testid=format!("instances-issued-{name}")>{move || counts.get().0.to_string()}</td>
            <td data-testid=format!("instances-stored-{name}")>{move || counts.get().1.to_string()}</td>
            <td data-testid=format!("instances-lost-{name}")>{move || counts.get().2.to_string()}</td>
        </tr>
    }
}
