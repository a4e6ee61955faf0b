//! The tracker's store: the outage switch, reduced-rate mode, the sync stats and the store
//! events.

use crate::engine::{CallMode, SYNC_INTERVAL_MS};
use crate::format;
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::sim::Mode;
use quota_core::{StoreEvent, StoreStats, SyncPolicy};

/// The "Store sync" panel: a switch that makes every sync fail, whether reduced-rate
/// mode is on, the tracker's [`StoreStats`], and a log of reduced-rate mode starting and
/// ending. Racy mode has no store: the switch is disabled there.
#[component]
pub fn StorePanel() -> impl IntoView {
    let state = use_app();
    let policy = SyncPolicy::default().reduced_rate;
    let racy = Memo::new(move |_| state.frame.with(|f| f.mode == Mode::Racy));
    let stats = Memo::new(move |_| state.frame.with(|f| f.store.clone().unwrap_or_default()));
    let outage = Memo::new(move |_| state.frame.with(|f| f.outage));
    let number = move |f: fn(&StoreStats) -> u64| move || stats.with(f).to_string();
    let reduced = move || stats.with(|s| s.reduced_rate);
    let hint = move || {
        if racy.get() {
            "Racy mode has no store: the demonstration keeps its state in memory only, so \
             nothing is saved and the outage switch applies to locked mode only."
                .to_owned()
        } else {
            format!(
                "The tracker syncs its new calls to this browser's localStorage every {} s of \
                 simulated time, at once when a service enters critical, and on pause; the page \
                 saves its own counters, config and simulated time right after each good sync. \
                 A reload continues from the last good sync; Reset clears it.",
                SYNC_INTERVAL_MS as f64 / 1_000.0
            )
        }
    };
    let rule = move || {
        let workers = match state.settings.with(|s| s.call_mode) {
            CallMode::Try => "The workers ask try_record, so their calls are reduced too.",
            CallMode::Count => "The workers use record_call (count only), which always counts.",
        };
        format!(
            "After {} failed syncs in a row the tracker allows each service only {} % of its \
             limit (can_call, try_record); after {} good syncs in a row, the full limit again. \
             {workers}",
            policy.enter_after_failures,
            policy.fraction * 100.0,
            policy.leave_after_successes
        )
    };
    let entries = move || {
        state
            .store_log
            .with(|log| log.entries().cloned().collect::<Vec<_>>())
    };
    view! {
        <section class="panel store" aria-labelledby="store-heading">
            <h2 id="store-heading">"Store sync"</h2>
            <p class="hint">{hint}</p>
            <div class="store-row">
                <label class="switch">
                    <input
                        type="checkbox"
                        id="store-outage"
                        data-testid="store-outage"
                        prop:checked=move || outage.get()
                        prop:disabled=move || racy.get()
                        on:change=move |ev| state.set_outage(event_target_checked(&ev))
                    />
                    " Store outage (every sync fails)"
                </label>
                <p class="reduced" class:on=reduced role="status">
                    "Reduced rate: "
                    <strong data-testid="reduced-rate">
                        {move || if reduced() { "on" } else { "off" }}
                    </strong>
                </p>
            </div>
            <p class="hint">{rule}</p>
            <dl class="stats">
                <Stat label="Syncs" id="stats-saves" value=number(|s| s.saves)/>
                <Stat label="Sync failures" id="stats-save-failures" value=number(|s| s.save_failures)/>
                <Stat label="Forced (critical)" id="stats-forced-saves" value=number(|s| s.forced_saves)/>
                <Stat label="Coalesced" id="stats-coalesced-saves" value=number(|s| s.coalesced_saves)/>
                <Stat
                    label="Failures in a row"
                    id="stats-consecutive-failures"
                    value=number(|s| u64::from(s.consecutive_failures))
                />
                <Stat
                    label="Successes in a row"
                    id="stats-consecutive-successes"
                    value=number(|s| u64::from(s.consecutive_successes))
                />
                <Stat label="Reads at start" id="stats-loads" value=number(|s| s.loads)/>
                <Stat label="Read failures" id="stats-load-failures" value=number(|s| s.load_failures)/>
            </dl>
            <p class="last-error">
                "Last error: "
                <span data-testid="stats-last-error">
                    {move || stats.with(|s| s.last_error.clone().unwrap_or_else(|| "none".to_owned()))}
                </span>
            </p>
            <h3 id="store-events-heading">"Store events"</h3>
            <ol data-testid="store-events" class="entries" aria-labelledby="store-events-heading">
                <For each=entries key=|(id, _)| *id let:entry>
                    <StoreEventEntry event=entry.1/>
                </For>
            </ol>
            <p class="hint" class:hidden=move || state.store_log.with(|l| l.entries().next().is_some())>
                "None yet: turn the outage on while the workers run."
            </p>
        </section>
    }
}

/// One labelled number of the stats list.
#[component]
fn Stat(
    label: &'static str,
    id: &'static str,
    value: impl Fn() -> String + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <div class="stat">
            <dt>{label}</dt>
            <dd data-testid=id>{value}</dd>
        </div>
    }
}

/// One store event: reduced-rate mode on or off, when, and why.
#[component]
fn StoreEventEntry(event: StoreEvent) -> impl IntoView {
    let (kind, at_ms, what, why) = match event {
        StoreEvent::ReducedRateEntered {
            at_ms,
            consecutive_failures,
            error,
        } => (
            "entered",
            at_ms,
            "reduced rate on",
            format!("after {consecutive_failures} failed syncs in a row ({error})"),
        ),
        StoreEvent::ReducedRateLeft {
            at_ms,
            consecutive_successes,
        } => (
            "left",
            at_ms,
            "reduced rate off",
            format!("after {consecutive_successes} good syncs in a row"),
        ),
    };
    view! {
        <li data-testid="store-event" data-kind=kind class=format!("entry store-{kind}")>
            <time>{format::time_of_day(at_ms)}</time>
            " "
            <strong>{what}</strong>
            " "
            <span class="detail">{why}</span>
        </li>
    }
}
