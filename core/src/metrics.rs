//! Metrics through the [`metrics`](::metrics) facade (feature `metrics`): whatever recorder the
//! program installs (a Prometheus exporter, a StatsD one, a test's) receives them.
//!
//! The list of metrics, and when they change: [`describe_metrics`].

use crate::error::DenyReason;
use crate::level::Level;
use crate::observers;
use crate::persistence::StoreEvent;
use crate::usage::Transition;
use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

thread_local! {
    /// Set while this thread reports saves and gauges (see [`report`]).
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `emit` unless this thread is inside a report already (a recorder that called back
/// into a tracker, whose sync would be reported from inside the report that caused it: with a
/// recorder that syncs on every call, a recursion without end). Then nothing is emitted, and
/// what was to be reported waits for the next report ([`Unreported`]).
pub(crate) fn report(emit: impl FnOnce()) {
    if REPORTING.with(|reporting| reporting.replace(true)) {
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REPORTING.with(|reporting| reporting.set(false));
        }
    }
    let _reset = Reset;
    emit();
}

/// Syncs a tracker ran and has not reported yet: added after each save, taken by the next
/// report (usually that save's own; a save made from inside a report waits for the next).
#[derive(Debug, Default)]
pub(crate) struct Unreported {
    synced: AtomicU64,
    failed: AtomicU64,
}

impl Unreported {
    pub(crate) fn add(&self, synced: u64, failed: u64) {
        self.synced.fetch_add(synced, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
    }

    /// Counts them (`quota_saves_total`, `quota_save_failures_total`), each once.
    pub(crate) fn report(&self) {
        saves(
            self.synced.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
        );
    }
}

/// Runs `emit`, catching a panicking recorder; the first panic of the process is logged.
fn quietly(emit: impl FnOnce()) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !observers::quietly(emit) && !LOGGED.swap(true, Ordering::Relaxed) {
        observers::quietly(|| {
            log::error!("quota: the metrics recorder panicked; ignored (logged once)")
        });
    }
}

const USED: &str = "quota_used";
const LIMIT: &str = "quota_limit";
const REMAINING: &str = "quota_remaining";
const LEVEL: &str = "quota_level";
const REDUCED_RATE: &str = "quota_reduced_rate";
const UNRESOLVED: &str = "quota_unresolved_calls";
const TRANSITIONS: &str = "quota_transitions_total";
const DENIED: &str = "quota_denied_total";
const SHADOW_DENIED: &str = "quota_shadow_denied_total";
const SAVES: &str = "quota_saves_total";
const GIVEN_BACK: &str = "quota_given_back_total";
const SAVE_FAILURES: &str = "quota_save_failures_total";

/// Registers the metrics' descriptions and units (Prometheus's `# HELP` lines) with the
/// recorder installed now. A tracker does it when it is built; call this after installing a
/// recorder if trackers were built before it. Feature `metrics`.
///
/// | metric | kind | labels | value |
/// | --- | --- | --- | --- |
/// | `quota_used` | gauge | `service` (and `limit`, see below) | calls used in the current window (shared admission: the tracker's view, the last synced total + the calls not synced yet) |
/// | `quota_limit` | gauge | `service` (and `limit`) | the window's limit |
/// | `quota_remaining` | gauge | `service` (and `limit`) | `limit - used`, at least 0 |
/// | `quota_level` | gauge | `service` (and `limit`) | 0 normal, 1 warning, 2 critical, 3 exhausted |
/// | `quota_reduced_rate` | gauge | | 1 while reduced-rate mode is on, else 0 |
/// | `quota_unresolved_calls` | gauge | | with a store: calls in operations whose outcome the store has not answered yet ([`StoreStats::unresolved_calls`](crate::StoreStats::unresolved_calls)), resent until it does |
/// | `quota_transitions_total` | counter | `service`, `to` (and `limit`) | level changes, `to` = `normal`, `warning`, `critical` or `exhausted` (a window reset is a change `to="normal"`) |
/// | `quota_denied_total` | counter | `service`, `reason` | calls refused by `try_record` or `try_record_priority` (by name or handle): `reason` = [`deny_reason_label`] |
/// | `quota_shadow_denied_total` | counter | `service`, `reason` | shadow mode ([`ServiceConfig::enforce`](crate::ServiceConfig::enforce) `false`): calls admitted that enforcing would have refused, by the same `reason` labels |
/// | `quota_saves_total` | counter | | successful syncs with the store |
/// | `quota_save_failures_total` | counter | | failed syncs |
///
/// A service of several limits ([`ServiceConfig::more_limits`](crate::ServiceConfig::more_limits):
/// 50 an hour *and* 1,000 a day) has, besides its own unlabelled gauges, which describe it as
/// [`usage`](crate::QuotaTracker::usage) does (the binding limit, at the highest level of its
/// limits), the four gauges of each of its limits, labelled `limit` with the window's
/// [`WindowSpec::key`](crate::WindowSpec::key) (`hour`, `day`, `day@America/Los_Angeles`),
/// each at that limit's own level; its `quota_transitions_total` is per limit, labelled
/// `limit` likewise (a transition is one limit's: [`Transition::window`]). A service of one
/// limit has no `limit` label anywhere: its series are what they were before services could
/// have several. The unlabelled gauges stay so that a panel or an alert on `quota_level` per
/// service works for every service alike: select them with `limit=""` (a selector without
/// `limit` matches the per-limit series too), the per-limit ones with `limit!=""`; sum the
/// transitions `by (service)` for a service's total.
///
/// When they change: the counters of every service (each `to` of `quota_transitions_total`,
/// each `reason` of `quota_denied_total`) and, with a store, the sync counters are registered
/// at 0 when the tracker is built, so a scrape shows them before anything happened; the gauges
/// of every service are set from one snapshot when the tracker is built, after every sync with
/// the store (the sync is when the shared view changes), and by
/// [`QuotaTracker::publish_metrics`](crate::QuotaTracker::publish_metrics), which an exporter
/// calls before each scrape; a service's gauges are also set when its level changes (for a
/// service of several limits, only the changed limit's: its own gauges need every limit, and
/// wait for the next refresh). The
/// counters count as things happen. Nothing is emitted on the
/// plain recording path (a `record_call` or an admitted `try_record` that changes no level and
/// triggers no sync): between scrapes `quota_used` may lag, which the refresh per scrape makes
/// up for.
///
/// `can_call` is a question, not a denial: it counts nothing. Everything is emitted outside
/// every tracker lock; transitions and store events go through the observers' outboxes (in
/// order, on the thread of some call of the tracker, as for
/// [`on_transition`](crate::QuotaTracker::on_transition)), the rest on the calling thread. A
/// recorder that panics is caught (the first panic is logged) and changes nothing the tracker
/// does. Labels carry the service's name (and a limit's window key) and
/// nothing else, so two trackers of the same service names in one process share their series:
/// the counters add up, the gauges show whichever wrote last.
pub fn describe_metrics() {
    quietly(|| {
        describe_gauge!(
            USED,
            Unit::Count,
            "Calls used in the current window (shared admission: the tracker's view)."
        );
        describe_gauge!(LIMIT, Unit::Count, "Calls allowed per window.");
        describe_gauge!(
            REMAINING,
            Unit::Count,
            "Calls left in the current window (limit - used, at least 0)."
        );
        describe_gauge!(
            LEVEL,
            "The service's level: 0 normal, 1 warning, 2 critical, 3 exhausted."
        );
        describe_gauge!(
            REDUCED_RATE,
            "1 while reduced-rate mode is on (the store failed too often), else 0."
        );
        describe_gauge!(
            UNRESOLVED,
            Unit::Count,
            "Calls in store operations whose outcome is not known yet (resent until answered)."
        );
        describe_counter!(TRANSITIONS, "Level changes, by the level changed to.");
        describe_counter!(
            DENIED,
            "Calls refused by try_record or try_record_priority, by the rule that refused."
        );
        describe_counter!(
            SHADOW_DENIED,
            "Calls shadow mode (enforce = false) admitted that enforcing would have refused."
        );
        describe_counter!(
            GIVEN_BACK,
            "Calls given back by holds settled below their estimate or cancelled."
        );
        describe_counter!(SAVES, "Successful syncs with the store.");
        describe_counter!(SAVE_FAILURES, "Failed syncs with the store.");
    });
}

/// The `reason` label of `quota_denied_total`: `critical`, `reserve`, `limit`, `reduced_rate` or
/// `store_unavailable`. Stable identifiers, unlike [`DenyReason::as_str`]'s phrases.
///
/// ```
/// use quota_core::{deny_reason_label, DenyReason};
/// assert_eq!(deny_reason_label(DenyReason::ReducedRate), "reduced_rate");
/// ```
pub fn deny_reason_label(reason: DenyReason) -> &'static str {
    // Exhaustive: a new reason is a compile error here, never an unlabelled series.
    match reason {
        DenyReason::Critical => "critical",
        DenyReason::Reserve => "reserve",
        DenyReason::Limit => "limit",
        DenyReason::ReducedRate => "reduced_rate",
        DenyReason::StoreUnavailable => "store_unavailable",
        DenyReason::Waiting => "waiting",
    }
}

/// The value of `quota_level`.
fn level_value(level: Level) -> f64 {
    match level {
        Level::Normal => 0.0,
        Level::Warning => 1.0,
        Level::Critical => 2.0,
        Level::Exhausted => 3.0,
    }
}

/// Every level, in the order of their values: the `to` labels of `quota_transitions_total`.
const LEVELS: [Level; 4] = [
    Level::Normal,
    Level::Warning,
    Level::Critical,
    Level::Exhausted,
];

/// A tracker was built: descriptions, and its counters at 0 so that a scrape shows every
/// series from the start (a rate or an alert on `quota_denied_total` needs the series before
/// the first denial): per service, `quota_transitions_total` for every level (per limit, for a
/// service of several) and `quota_denied_total` for every reason (and, in shadow mode,
/// `quota_shadow_denied_total`); with a store, the sync counters. `services`: each name,
/// whether it is in shadow mode, and its limits' window keys where it has several (empty
/// where it has one).
pub(crate) fn built<'a>(
    services: impl Iterator<Item = (&'a Arc<str>, bool, Vec<String>)>,
    has_store: bool,
) {
    describe_metrics();
    quietly(|| {
        for (service, shadow, limits) in services {
            for level in LEVELS {
                if limits.is_empty() {
                    counter!(TRANSITIONS, "service" => Arc::clone(service), "to" => level.as_str())
                        .increment(0);
                }
                for limit in &limits {
                    counter!(
                        TRANSITIONS,
                        "service" => Arc::clone(service),
                        "to" => level.as_str(),
                        "limit" => limit.clone()
                    )
                    .increment(0);
                }
            }
            counter!(GIVEN_BACK, "service" => Arc::clone(service)).increment(0);
            for reason in REASONS {
                counter!(
                    DENIED,
                    "service" => Arc::clone(service),
                    "reason" => deny_reason_label(reason)
                )
                .increment(0);
                if shadow {
                    counter!(
                        SHADOW_DENIED,
                        "service" => Arc::clone(service),
                        "reason" => deny_reason_label(reason)
                    )
                    .increment(0);
                }
            }
        }
        if has_store {
            counter!(SAVES).increment(0);
            counter!(SAVE_FAILURES).increment(0);
        }
    });
}

/// The values of one set of `quota_used`, `quota_limit`, `quota_remaining` and `quota_level`.
pub(crate) struct Gauges<'a> {
    pub(crate) service: &'a Arc<str>,
    /// `None`: the service's own series (its binding limit, at its level); `Some`: the
    /// series of one limit of a service of several, labelled `limit` with its window's key.
    pub(crate) limit_key: Option<String>,
    pub(crate) used: u64,
    pub(crate) limit: u64,
    pub(crate) level: Level,
}

fn set_gauges(gauges: &Gauges<'_>) {
    let service = || Arc::clone(gauges.service);
    let values = [
        (USED, gauges.used as f64),
        (LIMIT, gauges.limit as f64),
        (REMAINING, gauges.limit.saturating_sub(gauges.used) as f64),
        (LEVEL, level_value(gauges.level)),
    ];
    for (name, value) in values {
        match &gauges.limit_key {
            None => gauge!(name, "service" => service()).set(value),
            Some(key) => {
                gauge!(name, "service" => service(), "limit" => key.clone()).set(value);
            }
        }
    }
}

/// Sets every service's gauges and the reduced-rate gauge (a refresh).
pub(crate) fn publish<'a>(
    services: impl Iterator<Item = Gauges<'a>>,
    reduced_rate: bool,
    unresolved_calls: Option<u64>,
) {
    quietly(|| {
        for gauges in services {
            set_gauges(&gauges);
        }
        set_reduced_rate(reduced_rate);
        if let Some(calls) = unresolved_calls {
            gauge!(UNRESOLVED).set(calls as f64);
        }
    });
}

fn set_reduced_rate(on: bool) {
    gauge!(REDUCED_RATE).set(if on { 1.0 } else { 0.0 });
}

/// A level change, from the tracker's own transition observer. A service of several limits
/// has one per limit: it counts and sets that limit's series (labelled `limit`); its own
/// series (the binding limit at the highest level) needs every limit, which a transition
/// does not carry, so the next refresh sets it.
pub(crate) fn transition(t: &Transition) {
    quietly(|| {
        let service = || Arc::clone(&t.service);
        let limit_key = t.several.then(|| t.window.key());
        match &limit_key {
            None => counter!(TRANSITIONS, "service" => service(), "to" => t.to.as_str()),
            Some(key) => counter!(
                TRANSITIONS,
                "service" => service(),
                "to" => t.to.as_str(),
                "limit" => key.clone()
            ),
        }
        .increment(1);
        set_gauges(&Gauges {
            service: &t.service,
            limit_key,
            used: t.used,
            limit: t.limit,
            level: t.to,
        });
    });
}

/// A store event, from the tracker's own store-event observer.
pub(crate) fn store_event(event: &StoreEvent) {
    quietly(|| match event {
        StoreEvent::ReducedRateEntered { .. } => set_reduced_rate(true),
        StoreEvent::ReducedRateLeft { .. } => set_reduced_rate(false),
        StoreEvent::ReadFailed { .. } => {}
    });
}

/// One service's denials not counted yet, by reason: a denial is counted at once, unless it
/// happens while this thread reports (a recorder that made a denied call from inside: counted
/// from inside that report, each denial would call the recorder again, a recursion without
/// end); those are counted by the service's next denial, or the next refresh.
///
/// Shadow mode's would-be denials (`quota_shadow_denied_total`) wait the same way, in their
/// own slots.
#[derive(Debug, Default)]
pub(crate) struct Denials {
    denied: [AtomicU64; REASONS.len()],
    shadow: [AtomicU64; REASONS.len()],
}

/// Every reason, in the order of [`Denials`]' slots.
const REASONS: [DenyReason; 6] = DenyReason::ALL;

impl Denials {
    /// A call of `service` denied for `reason`: counted (only: a service hammered while
    /// denied pays one counter per call, not five metrics), with any left from before.
    pub(crate) fn deny(&self, service: &Arc<str>, reason: DenyReason) {
        self.denied[Self::slot(reason)].fetch_add(1, Ordering::Relaxed);
        report(|| self.report(service));
    }

    /// A call of `service` that shadow mode admitted although `reason` would have denied it.
    pub(crate) fn shadow(&self, service: &Arc<str>, reason: DenyReason) {
        self.shadow[Self::slot(reason)].fetch_add(1, Ordering::Relaxed);
        report(|| self.report(service));
    }

    fn slot(reason: DenyReason) -> usize {
        match reason {
            DenyReason::Critical => 0,
            DenyReason::Reserve => 1,
            DenyReason::Limit => 2,
            DenyReason::ReducedRate => 3,
            DenyReason::StoreUnavailable => 4,
            DenyReason::Waiting => 5,
        }
    }

    /// Counts the denials (and shadow denials) not counted yet (call it inside [`report`]).
    pub(crate) fn report(&self, service: &Arc<str>) {
        for (name, pending) in [(DENIED, &self.denied), (SHADOW_DENIED, &self.shadow)] {
            for (pending, reason) in pending.iter().zip(REASONS) {
                let count = pending.swap(0, Ordering::Relaxed);
                if count > 0 {
                    quietly(|| {
                        counter!(
                            name,
                            "service" => Arc::clone(service),
                            "reason" => deny_reason_label(reason)
                        )
                        .increment(count);
                    });
                }
            }
        }
    }
}

/// `calls` of `service` given back (a hold settled below its estimate, or cancelled).
pub(crate) fn given_back(service: &Arc<str>, calls: u64) {
    if calls > 0 {
        report(|| {
            quietly(|| counter!(GIVEN_BACK, "service" => Arc::clone(service)).increment(calls))
        });
    }
}

/// Syncs that ran: `synced` succeeded, `failed` failed.
pub(crate) fn saves(synced: u64, failed: u64) {
    if synced == 0 && failed == 0 {
        return;
    }
    quietly(|| {
        if synced > 0 {
            counter!(SAVES).increment(synced);
        }
        if failed > 0 {
            counter!(SAVE_FAILURES).increment(failed);
        }
    });
}
