//! Issued, denied, recorded and lost units per service, for the current mode.

use super::{Columns, CountsTable, Rows};
use crate::dynamic::text;
use crate::model::{ServiceView, Unit};
use crate::settings::CallMode;
use crate::state::{use_app, AppState};
use leptos::prelude::*;
use quota_core::sim::Mode;

/// A table of units issued by the workers, denied by the tracker (`try_record` refused them:
/// a careful client never sends them), recorded by the counter (summed across windows) and
/// lost (issued - denied - recorded), per service and in total (of the services counted in
/// calls), each service with its unit. A token service's row counts tokens: issued estimates,
/// denied estimates, recorded tokens and lost (what its holds say the counter should hold,
/// minus what it recorded); below the table, its holds' identity, checked on every frame (see
/// [`HoldCounts`](crate::model::HoldCounts)): each term, and the difference of its two sides.
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
    let rows = rows_of(state, false, |s| {
        vec![s.issued, s.denied, s.recorded(), s.lost()]
    });
    let holds = rows_of(state, true, hold_row);
    view! {
        <section class="panel counters" aria-labelledby="counters-heading">
            <h2 id="counters-heading">"Issued, denied, recorded, lost"</h2>
            <p class="hint">{explanation}</p>
            <table>
                <CountsTable prefix="" columns=COLUMNS rows=rows unit_of=unit_of/>
            </table>
            <table class="identity">
                <caption>
                    "Tokens held: issued + added = denied + settled + given back + in flight + \
                     kept (off by 0 while it holds)"
                </caption>
                <CountsTable prefix="holds-" columns=HOLD_COLUMNS rows=holds/>
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

/// Each service's counts as `counts` makes them (none while the frame lacks it), in config
/// order; with `tokens`, of the token services only. One memo type for both tables.
fn rows_of(state: AppState, tokens: bool, counts: fn(&ServiceView) -> Vec<u64>) -> Rows {
    Memo::new(move |_| {
        state.frame().with(|frame| {
            state.config().with(|config| {
                config
                    .services
                    .iter()
                    .filter(|service| !tokens || Unit::of(&service.name) == Unit::Tokens)
                    .map(|service| {
                        let counts = frame.service(&service.name).map(counts);
                        (service.name.clone(), counts.unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
            })
        })
    })
}

fn unit_of(name: &str) -> &'static str {
    Unit::of(name).as_str()
}

/// The identity table's columns, the last the difference of its two sides.
const HOLD_COLUMNS: Columns = &[
    ("Issued", "issued"),
    ("Added", "added"),
    ("Denied", "denied"),
    ("Settled", "settled"),
    ("Given back", "given-back"),
    ("In flight", "in-flight"),
    ("Kept", "kept"),
    ("Off by", "off"),
];

/// A token service's row of the identity table.
fn hold_row(s: &ServiceView) -> Vec<u64> {
    let h = s.holds;
    let (left, right) = (
        s.issued + h.added,
        s.denied + h.settled + h.given_back + h.in_flight + h.kept,
    );
    vec![
        s.issued,
        h.added,
        s.denied,
        h.settled,
        h.given_back,
        h.in_flight,
        h.kept,
        left.abs_diff(right),
    ]
}
