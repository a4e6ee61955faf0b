//! Issued, denied, recorded and lost units per service, for the current mode.

use super::{Columns, CountsTable};
use crate::dynamic::text;
use crate::settings::CallMode;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::sim::Mode;

/// A table of units issued by the workers, denied by the tracker (`try_record` refused them:
/// a careful client never sends them), recorded by the counter (summed across windows) and
/// lost (issued - denied - recorded), per service and in total.
#[component]
pub fn Counters() -> impl IntoView {
    let state = use_app();
    let call_mode = move || state.settings().with(|s| s.call_mode);
    let explanation = text(move || {
        match (state.frame().with(|f| f.mode), call_mode()) {
            (Mode::Locked, CallMode::Try) => {
                "Locked mode: the tracker counts each call in one atomic step (its lock, or a \
                 compare-and-swap when only the count changes), so nothing is lost. \
                 The workers ask try_record first: a call it refuses is denied, never sent."
            }
            (Mode::Locked, CallMode::Count) => {
                "Locked mode: the tracker counts each call in one atomic step (its lock, or a \
                 compare-and-swap when only the count changes), so nothing is lost. \
                 The workers use record_call (count only): every call is sent and counted, past \
                 the limit too."
            }
            (Mode::Racy, _) => {
                "Racy mode (demonstration): workers copy the whole state, wait, and write it \
                 back, overwriting each other's calls."
            }
        }
        .to_owned()
    });
    let rows = Memo::new(move |_| {
        state.frame().with(|frame| {
            state.config().with(|config| {
                config
                    .services
                    .iter()
                    .map(|service| {
                        let counts = frame.service(&service.name).map_or(vec![0; 4], |s| {
                            vec![s.issued, s.denied, s.recorded(), s.lost()]
                        });
                        (service.name.clone(), counts)
                    })
                    .collect::<Vec<_>>()
            })
        })
    });
    view! {
        <section class="panel counters" aria-labelledby="counters-heading">
            <h2 id="counters-heading">"Issued, denied, recorded, lost"</h2>
            <p class="hint">{explanation}</p>
            <table>
                <CountsTable prefix="" columns=COLUMNS rows=rows/>
            </table>
        </section>
    }
}

/// The counters table's columns: issued, denied, recorded and lost.
const COLUMNS: Columns = &[
    ("Issued", "issued"),
    ("Denied", "denied"),
    ("Recorded", "recorded"),
    ("Lost", "lost"),
];
