//! Issued, denied, recorded and lost units per service, for the current mode.

use crate::engine::CallMode;
use crate::model::ServiceView;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::sim::Mode;

/// A table of units issued by the workers, denied by the tracker (`try_record` refused them:
/// a careful client never sends them), recorded by the counter (summed across windows) and
/// lost (issued - denied - recorded), per service and in total.
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
    let call_mode = move || state.settings.with(|s| s.call_mode);
    let explanation = move || match (state.frame.with(|f| f.mode), call_mode()) {
        (Mode::Locked, CallMode::Try) => {
            "Locked mode: every call goes through the tracker's lock, so nothing is lost. The \
             workers ask try_record first: a call it refuses is denied, never sent."
        }
        (Mode::Locked, CallMode::Count) => {
            "Locked mode: every call goes through the tracker's lock, so nothing is lost. The \
             workers use record_call (count only): every call is sent and counted, past the \
             limit too."
        }
        (Mode::Racy, _) => {
            "Racy mode (demonstration): workers copy the whole state, wait, and write it back, \
             overwriting each other's calls."
        }
    };
    view! {
        <section class="panel counters" aria-labelledby="counters-heading">
            <h2 id="counters-heading">"Issued, denied, recorded, lost"</h2>
            <p class="hint">{explanation}</p>
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Service"</th>
                        <th scope="col">"Issued"</th>
                        <th scope="col">"Denied"</th>
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
                        <td data-testid="denied-total">{total(|s| s.denied)}</td>
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
            frame.service(&key).map_or((0, 0, 0, 0), |s| {
                (s.issued, s.denied, s.recorded(), s.lost())
            })
        })
    });
    view! {
        <tr class:lost={move || counts.get().3 > 0}>
            <th scope="row">{name.clone()}</th>
            <td data-testid=format!("issued-{name}")>{move || counts.get().0.to_string()}</td>
            <td data-testid=format!("denied-{name}")>{move || counts.get().1.to_string()}</td>
            <td data-testid=format!("recorded-{name}")>{move || counts.get().2.to_string()}</td>
            <td data-testid=format!("lost-{name}")>{move || counts.get().3.to_string()}</td>
        </tr>
    }
}
