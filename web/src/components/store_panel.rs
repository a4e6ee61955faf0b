//! The tracker's store: the outage switch, reduced-rate mode, the sync stats and the store
//! events.

use crate::dynamic::{flag, on_change, text};
use crate::engine::SYNC_INTERVAL_MS;
use crate::format::{self, number};
use crate::settings::CallMode;
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
    // Read from the frame rather than `Memo<bool>`s (each memo type is its own copy of the memo
    // code).
    let racy = move || state.frame().with(|f| f.mode == Mode::Racy);
    // The store's stats, read from the frame: a `Memo<StoreStats>` was its own copy of the memo
    // code.
    let stats = move |value: Box<dyn Fn(&StoreStats) -> String + Send + Sync>| {
        text(move || {
            state.frame().with(|f| match &f.store {
                Some(stats) => value(stats),
                None => value(&StoreStats::default()),
            })
        })
    };
    let outage = move || state.frame().with(|f| f.outage);
    let reduced = move || {
        state
            .frame()
            .with(|f| f.store.as_ref().is_some_and(|s| s.reduced_rate))
    };
    let hint = text(move || {
        if racy() {
            "Racy mode has no store: the demonstration keeps its state in memory only, so \
             nothing is saved and the outage switch applies to locked mode only."
                .to_owned()
        } else {
            format!(
                "The tracker syncs its new calls every {} s of simulated time, at once when a \
                 service enters critical, and on pause. The page writes what it synced to this \
                 browser's localStorage, with its own counters, config and simulated time, at \
                 most twice a second (sooner when a service enters critical, at once on pause \
                 and when the page is hidden). A reload continues from the last write; Reset \
                 clears it.",
                number(SYNC_INTERVAL_MS as f64 / 1_000.0)
            )
        }
    });
    let rule = text(move || {
        let workers = match state.settings().with(|s| s.call_mode) {
            CallMode::Try => "The workers ask try_record, so their calls are reduced too.",
            CallMode::Count => "The workers use record_call (count only), which always counts.",
        };
        format!(
            "After {} failed syncs in a row the tracker allows each service only {} % of its \
             limit (can_call, try_record); after {} good syncs in a row, the full limit again. \
             {workers}",
            policy.enter_after_failures,
            number(policy.fraction * 100.0),
            policy.leave_after_successes
        )
    });
    let events = Memo::new(move |_| {
        state
            .store_log()
            .with(|log| log.entries().cloned().collect::<Vec<_>>())
    });
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
                        prop:checked=flag(outage)
                        prop:disabled=flag(racy)
                        on:change=on_change(move |ev| state.set_outage(event_target_checked(&ev)))
                    />
                    " Store outage (every sync fails)"
                </label>
                <p class="reduced" class:on=flag(reduced) role="status">
                    "Reduced rate: "
                    <strong data-testid="reduced-rate">
                        {text(move || if reduced() { "on" } else { "off" }.to_owned())}
                    </strong>
                </p>
            </div>
            <p class="hint">{rule}</p>
            <dl class="stats">
                {STATS
                    .map(|(label, id, value)| {
                        view! {
                            <div class="stat">
                                <dt>{label}</dt>
                                <dd data-testid=id>{stats(Box::new(move |s| value(s).to_string()))}</dd>
                            </div>
                        }
                    })}
            </dl>
            <p class="last-error">
                "Last error: "
                <span data-testid="stats-last-error">
                    {stats(Box::new(|s| s.last_error.clone().unwrap_or_else(|| "none".to_owned())))}
                </span>
            </p>
            <h3 id="store-events-heading">"Store events"</h3>
            <ol data-testid="store-events" class="entries" aria-labelledby="store-events-heading">
                <For each=move || events.get() key=|(id, _)| *id let:entry>
                    {event_view(&entry.1)}
                </For>
            </ol>
            <p class="hint" class:hidden=flag(move || state.store_log().with(|l| l.entries().next().is_some()))>
                "None yet: turn the outage on while the workers run."
            </p>
        </section>
    }
}

/// One number of the stats list: its label, its test id, and how it is read.
type StatRow = (&'static str, &'static str, fn(&StoreStats) -> u64);

/// The stats list.
const STATS: [StatRow; 8] = [
    ("Syncs", "stats-saves", |s| s.saves),
    ("Sync failures", "stats-save-failures", |s| s.save_failures),
    ("Forced (critical)", "stats-forced-saves", |s| {
        s.forced_saves
    }),
    ("Coalesced", "stats-coalesced-saves", |s| s.coalesced_saves),
    ("Failures in a row", "stats-consecutive-failures", |s| {
        u64::from(s.consecutive_failures)
    }),
    ("Successes in a row", "stats-consecutive-successes", |s| {
        u64::from(s.consecutive_successes)
    }),
    ("Reads at start", "stats-loads", |s| s.loads),
    ("Read failures", "stats-load-failures", |s| s.load_failures),
];

/// One store event, as an `<li>`: reduced-rate mode on or off (or the first read failed),
/// when, and why; nothing for an event this page does not know.
fn event_view(event: &StoreEvent) -> Option<impl IntoView> {
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
        StoreEvent::ReadFailed { at_ms, error } => (
            "read-failed",
            at_ms,
            "first read failed",
            format!("counting from zero until a sync succeeds ({error})"),
        ),
        // Events this page does not know yet (the enum is non-exhaustive).
        _ => return None,
    };
    Some(view! {
        <li data-testid="store-event" data-kind=kind class=format!("entry store-{kind}")>
            <time>{format::time_of_day(*at_ms)}</time>
            " "
            <strong>{what}</strong>
            " "
            <span class="detail">{why}</span>
        </li>
    })
}
