//! The instances view: several trackers sharing one store, by deltas or by overwriting
//! snapshots.

use super::run_buttons::StatusOf;
use super::{Columns, CountsTable, RunButtons};
use crate::dynamic::{on_change, on_click, text};
use crate::format;
use crate::instances::{INSTANCES, RATE, WORKERS_PER_INSTANCE};
use crate::settings::SyncMode;
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
    // Read from the frame, not a memo: a `Memo<SyncMode>` was its own copy of the memo code.
    let mode = move || state.instances_frame().with(|f| f.mode);
    let status: StatusOf = std::sync::Arc::new(move || state.instances_frame().with(|f| f.status));
    let explanation = text(move || {
        match mode() {
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
    let rows = Memo::new(move |_| {
        state.instances_frame().with(|f| {
            f.services
                .iter()
                .map(|s| (s.name.clone(), vec![s.issued, s.stored, s.lost()]))
                .collect::<Vec<_>>()
        })
    });
    // What each instance sees: one text per instance.
    let sees = move |instance: usize| {
        text(move || {
            state.instances_frame().with(|f| {
                let used = f.views.get(instance).map_or(&[][..], Vec::as_slice);
                f.services
                    .iter()
                    .zip(used)
                    .map(|(service, used)| format!("{} {used}", service.name))
                    .collect::<Vec<_>>()
                    .join(" · ")
            })
        })
    };
    // Why the stored totals pass the limits, once one does.
    let past_limits = text(move || {
        state.instances_frame().with(|f| {
            let past = f
                .services
                .iter()
                .filter(|s| s.stored > s.limit)
                .map(|s| format!("{} {} of {}", s.name, s.stored, s.limit))
                .collect::<Vec<_>>();
            if past.is_empty() {
                String::new()
            } else {
                format!(
                    "Past the limit ({}): expected here. The instances count every call with \
                     record_call, which never refuses one; this view shows what the shared \
                     store keeps, not admission (the simulation above shows admission, with \
                     try_record).",
                    past.join(", ")
                )
            }
        })
    });
    // What the last mode switch did, until the next switch or reset.
    let notice = RwSignal::new(String::new());
    let switch_mode = move |mode: SyncMode| {
        let kept_running = state.set_instances_mode(mode);
        let name = match mode {
            SyncMode::Delta => "delta sync",
            SyncMode::Snapshot => "snapshot saves",
        };
        notice.set(format!(
            "Switched to {name}: a new, empty store, so every count starts from zero{}",
            if kept_running {
                "; the instances kept running."
            } else {
                ". Start instances to run them."
            }
        ));
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
                     with the simulation's mix, call sizes and seed, and counts every call \
                     (record_call, past the limits too). Their clock stands still, so each \
                     service's calls land in one window.",
                    format::rate(f64::from(RATE))
                )}
            </p>
            <RunButtons
                status=status
                label="Run the instances"
                start_labels=["Start instances", "Instances running", "Resume instances"]
                status_label="Instances: "
                prefix="instances-"
                start=on_click(move |_| state.start_instances())
                pause=on_click(move |_| state.pause_instances())
                reset=on_click(move |_| {
                    notice.set(String::new());
                    state.reset_instances(state.instances_frame().with_untracked(|f| f.mode));
                })
            />
            <div class="fields">
                <div class="field">
                    <label for="instances-mode">"How they share the store"</label>
                    <select
                        id="instances-mode"
                        data-testid="instances-mode"
                        prop:value=text(move || mode().as_str().to_owned())
                        on:change=on_change(move |ev| {
                            match event_target_value(&ev).parse::<SyncMode>() {
                                Ok(mode) => switch_mode(mode),
                                Err(error) => notice.set(error),
                            }
                        })
                    >
                        <option value="delta">"delta sync"</option>
                        <option value="snapshot">"snapshot saves (demo)"</option>
                    </select>
                </div>
            </div>
            <p class="notice" role="status" data-testid="instances-notice">{text(move || notice.get())}</p>
            <p class="hint">{explanation}</p>
            <table>
                <CountsTable prefix="instances-" columns=COLUMNS rows=rows/>
            </table>
            <p class="hint past-limit" data-testid="instances-past-limit">{past_limits}</p>
            <ul class="instance-views">
                {(0..INSTANCES)
                    .map(|instance| {
                        let n = instance + 1;
                        view! {
                            <li data-testid=format!("instances-view-{n}")>
                                <strong>{format!("Instance {n}")}</strong>
                                " sees "
                                {sees(instance)}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
}

/// The instances' table's columns: issued by all instances, the store's total and lost.
const COLUMNS: Columns = &[("Issued", "issued"), ("Stored", "stored"), ("Lost", "lost")];
