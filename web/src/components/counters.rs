//! Issued, denied, recorded and lost units per service, for the current mode.

use super::{Columns, CountsTable};
use crate::dynamic::text;
use crate::model::{ServiceView, Unit};
use crate::settings::CallMode;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::sim::Mode;

/// A table of units issued by the workers, denied by the tracker (`try_record` refused them:
/// a careful client never sends them), recorded by the counter (summed across windows) and
/// lost (issued - denied - recorded), per service and in total (of the services counted in
/// calls), each service with its unit. A token service's row counts tokens: issued estimates,
/// denied estimates, recorded tokens and lost (what its holds say the counter should hold,
/// minus what it recorded); below the table, its holds' identity, checked on every frame (see
/// [`HoldCounts`]).
#[component]
pub fn Counters() -> impl IntoView {
    let state = use_app();
    let call_mode = move || state.settings().with(|s| s.call_mode);
    let explanation = text(move || {
        match (state.frame().with(|f| f.mode), call_mode()) {
            (Mode::Locked, CallMode::Try) => {
                "Locked mode: the tracker counts each call in one atomic step (its lock, or a \
                 compare-and-swap when only the count changes), so nothing is lost. \
                 The workers ask try_record first: a call it refuses is denied, never sent. \
                 Token calls hold an estimate and settle the response's count."
            }
            (Mode::Locked, CallMode::Count) => {
                "Locked mode: the tracker counts each call in one atomic step (its lock, or a \
                 compare-and-swap when only the count changes), so nothing is lost. \
                 The workers use record_call (count only): every call is sent and counted, past \
                 the limit too. Token calls still hold (a hold is an admission)."
            }
            (Mode::Racy, _) => {
                "Racy mode (demonstration): workers copy the whole state, wait, and write it \
                 back, overwriting each other's calls. Token calls hold nothing: each counts \
                 its tokens the racy way once its response is in."
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
                <CountsTable prefix="" columns=COLUMNS rows=rows unit_of=unit_of/>
            </table>
            <For
                each=move || {
                    state
                        .config()
                        .with(|config| {
                            config
                                .services
                                .iter()
                                .filter(|s| Unit::of(&s.name) == Unit::Tokens)
                                .map(|s| s.name.clone())
                                .collect::<Vec<_>>()
                        })
                }
                key=|name| name.clone()
                let:name
            >
                {identity(name)}
            </For>
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

fn unit_of(name: &str) -> &'static str {
    Unit::of(name).as_str()
}

/// The identity of token service `name`'s holds, with each term's number (test ids
/// `holds-<term>-<name>`) and whether it holds (`identity-<name>`: "holds" or "broken").
fn identity(name: String) -> impl IntoView {
    let state = use_app();
    let key = name.clone();
    let service = Memo::new(move |_| state.frame().with(|frame| frame.service(&key).cloned()));
    let id = name.clone();
    let term = move |label: &'static str, stem: &'static str, f: fn(&ServiceView) -> u64| {
        view! {
            <span class="term">
                {label}
                " "
                <span data-testid=format!("holds-{stem}-{id}")>
                    {text(move || service.with(|s| s.as_ref().map_or(0, f).to_string()))}
                </span>
            </span>
        }
    };
    let check = text(move || {
        let holds = service.with(|s| s.as_ref().is_none_or(ServiceView::identity_holds));
        if holds { "holds" } else { "broken" }.to_owned()
    });
    view! {
        <p class="identity" data-testid=format!("identity-row-{name}")>
            <strong>{name.clone()}</strong>
            " (tokens): "
            {term("issued", "issued", |s| s.issued)}
            " + "
            {term("added", "added", |s| s.holds.added)}
            " = "
            {term("denied", "denied", |s| s.denied)}
            " + "
            {term("settled", "settled", |s| s.holds.settled)}
            " + "
            {term("given back", "given-back", |s| s.holds.given_back)}
            " + "
            {term("in flight", "in-flight", |s| s.holds.in_flight)}
            " + "
            {term("kept", "kept", |s| s.holds.kept)}
            " — "
            <span class="check" data-testid=format!("identity-{name}")>{check}</span>
        </p>
    }
}
