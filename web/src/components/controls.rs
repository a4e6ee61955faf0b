//! Start / pause / reset and the workload: workers, rate, mix, seed, mode, admission, speed,
//! call sizes and bursts.

use super::run_buttons::StatusOf;
use super::RunButtons;
use crate::dynamic::{flag, on_change, on_click, text, Text};
use crate::format::number;
use crate::settings::{CallMode, Settings};
use crate::state::{use_app, AppState};
use leptos::prelude::*;
use quota_core::sim::{Mode, Workload};

/// Simulated-time speeds offered, with their labels.
const SPEEDS: [(f64, &str); 4] = [
    (1.0, "1× (real time)"),
    (60.0, "60× (a minute per second)"),
    (3_600.0, "3,600× (an hour per second)"),
    (86_400.0, "86,400× (a day per second)"),
];

/// The simulation's controls. Every input takes effect on change (typing, then leaving the
/// field); an invalid value is refused with a message and the workload stays as it was.
#[component]
pub fn Controls() -> impl IntoView {
    let state = use_app();
    let settings =
        move |f: fn(&Settings) -> String| -> Text { text(move || state.settings().with(f)) };
    let status: StatusOf = std::sync::Arc::new(move || state.frame().with(|f| f.status));
    let services = Memo::new(move |_| {
        state.settings().with(|s| {
            s.workload
                .mix
                .iter()
                .map(|share| share.service.clone())
                .collect::<Vec<_>>()
        })
    });
    view! {
        <section class="panel controls" aria-labelledby="controls-heading">
            <h2 id="controls-heading">"Simulation"</h2>
            <RunButtons
                status=status
                label="Run the simulation"
                start_labels=["Start", "Running", "Resume"]
                status_label="Status: "
                prefix=""
                start=on_click(move |_| state.start())
                pause=on_click(move |_| state.pause())
                reset=on_click(move |_| state.reset())
            />
            <div class="fields">
                <div class="field">
                    <label for="mode">"Mode"</label>
                    <select
                        id="mode"
                        data-testid="mode"
                        prop:value=settings(|s| s.mode.as_str().to_owned())
                        on:change=on_change(move |ev| {
                            match event_target_value(&ev).parse::<Mode>() {
                                Ok(mode) => state.set_mode(mode),
                                Err(error) => state.reject_input(error.0),
                            }
                        })
                    >
                        <option value="locked">"locked"</option>
                        <option value="racy">"racy (demo)"</option>
                    </select>
                </div>
                <div class="field">
                    <label for="admission">"Admission"</label>
                    <select
                        id="admission"
                        data-testid="admission"
                        title="Locked mode: ask try_record first, or count every call with record_call. \
                               Racy mode always counts."
                        prop:value=settings(|s| s.call_mode.as_str().to_owned())
                        prop:disabled=flag(move || state.settings().with(|s| s.mode == Mode::Racy))
                        on:change=on_change(move |ev| {
                            match event_target_value(&ev).parse::<CallMode>() {
                                Ok(call_mode) => state.set_call_mode(call_mode),
                                Err(error) => state.reject_input(error),
                            }
                        })
                    >
                        <option value="try">"try_record"</option>
                        <option value="count">"count only"</option>
                    </select>
                </div>
                <NumberField
                    id="workers"
                    label="Workers"
                    min=1
                    max=Workload::MAX_WORKERS as u64
                    value=settings(|s| s.workload.workers.to_string())
                    apply=|w, v| w.workers = v as usize
                />
                <NumberField
                    id="rate"
                    label="Calls/s per worker"
                    min=1
                    max=u64::from(Workload::MAX_RATE)
                    value=settings(|s| s.workload.calls_per_second.to_string())
                    apply=|w, v| w.calls_per_second = v.min(u64::from(u32::MAX)) as u32
                />
                <NumberField
                    id="seed"
                    label="Seed"
                    min=0
                    max=u64::MAX
                    value=settings(|s| s.workload.seed.to_string())
                    apply=|w, v| w.seed = v
                />
                <div class="field">
                    <label for="speed">"Simulation speed"</label>
                    <select
                        id="speed"
                        data-testid="speed"
                        prop:value=settings(|s| number(s.speed))
                        on:change=on_change(move |ev| {
                            // One of the options: found by its value (no float parsing).
                            let value = event_target_value(&ev);
                            match SPEEDS.iter().find(|(speed, _)| number(*speed) == value) {
                                Some(&(speed, _)) => state.set_speed(speed),
                                None => state.reject_input("unknown speed".to_owned()),
                            }
                        })
                    >
                        {SPEEDS
                            .map(|(speed, label)| {
                                view! { <option value=number(speed)>{label}</option> }
                            })}
                    </select>
                </div>
            </div>
            <fieldset class="mix">
                <legend>"Service mix (relative weights)"</legend>
                <div class="fields">
                    <For each=move || services.get() key=|name| name.clone() let:service>
                        <WeightField service=service/>
                    </For>
                </div>
            </fieldset>
            <details class="more">
                <summary>"Call size and bursts"</summary>
                <div class="fields">
                    <NumberField
                        id="size-min"
                        label="Smallest call (units)"
                        min=1
                        max=u64::MAX
                        value=settings(|s| s.workload.size.min.to_string())
                        apply=|w, v| w.size.min = v
                    />
                    <NumberField
                        id="size-max"
                        label="Largest call (units)"
                        min=1
                        max=u64::MAX
                        value=settings(|s| s.workload.size.max.to_string())
                        apply=|w, v| w.size.max = v
                    />
                    <NumberField
                        id="burst-percent"
                        label="Burst chance (%)"
                        min=0
                        max=100
                        value=settings(|s| number(s.workload.bursts.chance * 100.0))
                        apply=|w, v| w.bursts.chance = v as f64 / 100.0
                    />
                    <NumberField
                        id="burst-length"
                        label="Burst length (calls)"
                        min=0
                        max=u64::from(Workload::MAX_BURST)
                        value=settings(|s| s.workload.bursts.length.to_string())
                        apply=|w, v| w.bursts.length = v.min(u64::from(u32::MAX)) as u32
                    />
                </div>
            </details>
            <p class="error" role="alert" data-testid="workload-error">
                {text(move || state.workload_error().get().unwrap_or_default())}
            </p>
        </section>
    }
}

/// A labelled whole-number input that changes the workload on change.
#[component]
fn NumberField(
    id: &'static str,
    label: &'static str,
    min: u64,
    max: u64,
    value: Text,
    apply: fn(&mut Workload, u64),
) -> impl IntoView {
    let state = use_app();
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                data-testid=id
                type="number"
                inputmode="numeric"
                min=min.to_string()
                max=max.to_string()
                step="1"
                prop:value=value
                on:change=on_change(move |ev| {
                    if let Some(v) = parse::<u64>(state, label, &event_target_value(&ev)) {
                        state.update_workload(|w| apply(w, v));
                    }
                })
            />
        </div>
    }
}

/// The mix weight of one service.
#[component]
fn WeightField(service: String) -> impl IntoView {
    let state = use_app();
    let id = format!("weight-{service}");
    let key = service.clone();
    let weight = text(move || {
        state.settings().with(|s| {
            s.workload
                .mix
                .iter()
                .find(|share| share.service == key)
                .map_or(0, |share| share.weight)
                .to_string()
        })
    });
    view! {
        <div class="field">
            <label for=id.clone()>{service.clone()}</label>
            <input
                id=id.clone()
                data-testid=id
                type="number"
                inputmode="numeric"
                min="0"
                max="1000"
                step="1"
                prop:value=weight
                on:change=on_change(move |ev| {
                    let Some(weight) = parse::<u32>(state, &service, &event_target_value(&ev)) else {
                        return;
                    };
                    let service = service.clone();
                    state.update_workload(move |w| {
                        if let Some(share) = w.mix.iter_mut().find(|s| s.service == service) {
                            share.weight = weight;
                        }
                    });
                })
            />
        </div>
    }
}

/// `text` as a whole number, or `None` after showing why not.
fn parse<T: std::str::FromStr>(state: AppState, what: &str, text: &str) -> Option<T> {
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => {
            state.reject_input(format!("{what}: expected a whole number (got {text:?})"));
            None
        }
    }
}
