//! Issued, recorded and lost units per service, for the current mode.

use crate::model::ServiceView;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::sim::Mode;

/// A table of units issued by the workers, recorded by the counter (summed across windows) and
/// lost (issued - recorded), per service and in total.
#[component]
pub fn Counters() -> impl IntoView {
    let state = use_app();
    let names = Memo::new(move |_| {
        state.config.with(|config| {
            config
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        })
    });
    let total = move |f: fn(&ServiceView) -> u64| {
        move || {
            state
                .frame
                .with(|frame| frame.services.iter().map(f).sum::<u64>().to_string())
        }
    };
    let any_lost = move || {
        state
            .frame
            .with(|f| f.services.iter().any(|s| s.lost() > 0))
    };
    let explanation = move || match state.frame.with(|f| f.mode) {
        Mode::Locked => {
            "Locked mode: every call goes through the tracker's lock, so nothing is lost."
        }
        Mode::Racy => {
            "Racy mode (demonstration): workers copy the whole state, wait, and write it back, \
             overwriting each other's calls."
        }
    };
    view! {
        <section class="panel counters" aria-labelledby="counters-heading">
            <h2 id="counters-heading">"Issued, recorded, lost"</h2>
            <p class="hint">{explanation}</p>
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Service"</th>
                        <th scope="col">"Issued"</th>
                        <th scope="col">"Recorded"</th>
                        <th scope="col">"Lost"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || names.get() key=|name| name.clone() let:name>
                        <CounterRow name=name/>
                    </For>
                </tbody>
                <tfoot>
                    <tr class:lost=any_lost>
                        <th scope="row">"All services"</th>
                        <td data-testid="issued-total">{total(|s| s.issued)}</td>
                        <td data-testid="recorded-total">{total(ServiceView::recorded)}</td>
                        <td data-testid="lost-total">{total(ServiceView::lost)}</td>
                    </tr>
                </tfoot>
            </table>
        </section>
    }
}

/// One service's row of the counters table.
#[component]
fn CounterRow(name: String) -> impl IntoView {
    let state = use_app();
    let key = name.clone();
    let counts = Memo::new(move |_| {
        state.frame.with(|frame| {
            frame
                .service(&key)
                .map_or((0, 0, 0), |s| (s.issued, s.recorded(), s.lost()))
        })
    });
    view! {
        <tr class:lost={move || counts.get().2 > 0}>
            <th scope="row">{name.clone()}</th>
            <td data-testid=format!("issued-{name}")>{move || counts.get().0.to_string()}</td>
            <td data-testid=format!("recorded-{name}")>{move || counts.get().1.to_string()}</td>
            <td data-testid=format!("lost-{name}")>{move || counts.get().2.to_string()}</td>
        </tr>
    }
}
