//! Metrics (feature `metrics`): exact values after known sequences, read back from a Prometheus
//! recorder installed for the test's own threads only (`metrics::with_local_recorder`), nothing
//! emitted on the plain recording path, exact counts across threads, and a recorder that panics.

#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/timeout.rs"]
mod timeout;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use prometheus::value;
use quota_core::{
    deny_reason_label, Admission, DenyReason, Limit, ManualClock, MemoryStore, Period, QuotaError,
    QuotaTracker, ReducedRatePolicy, ServiceConfig, SyncPolicy, TrackerConfig,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

const JUNE_10: u64 = 1_718_000_000_000;
/// A service name with the characters Prometheus text must escape.
const ODD: &str = "we\"ird\\name\nx";

fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

fn scrape(handle: &PrometheusHandle) -> BTreeMap<String, f64> {
    prometheus::samples(&handle.render())
}

/// `service`'s four gauges: used, limit, remaining, level.
fn gauges(samples: &BTreeMap<String, f64>, service: &str) -> [Option<f64>; 4] {
    [
        "quota_used",
        "quota_limit",
        "quota_remaining",
        "quota_level",
    ]
    .map(|name| value(samples, name, &[("service", service)]))
}

fn transitions(samples: &BTreeMap<String, f64>, service: &str, to: &str) -> Option<f64> {
    value(
        samples,
        "quota_transitions_total",
        &[("service", service), ("to", to)],
    )
}

fn denied(samples: &BTreeMap<String, f64>, service: &str, reason: &str) -> Option<f64> {
    value(
        samples,
        "quota_denied_total",
        &[("service", service), ("reason", reason)],
    )
}

/// The counters a tracker of `services` registers when it is built, each at 0 in `samples`
/// (`quota_saves_total` and `quota_save_failures_total` only `with_store`): the samples that
/// are not exactly that (empty when all are).
fn all_counters_at_zero(
    samples: &BTreeMap<String, f64>,
    services: &[&str],
    with_store: bool,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut expected = 0;
    for service in services {
        for to in ["normal", "warning", "critical", "exhausted"] {
            expected += 1;
            if transitions(samples, service, to) != Some(0.0) {
                wrong.push(format!("transitions {service} {to}"));
            }
        }
        for reason in [
            "critical",
            "reserve",
            "limit",
            "reduced_rate",
            "store_unavailable",
            "waiting",
        ] {
            expected += 1;
            if denied(samples, service, reason) != Some(0.0) {
                wrong.push(format!("denied {service} {reason}"));
            }
        }
        expected += 1;
        if value(samples, "quota_given_back_total", &[("service", service)]) != Some(0.0) {
            wrong.push(format!("given back {service}"));
        }
    }
    for name in ["quota_saves_total", "quota_save_failures_total"] {
        let sample = value(samples, name, &[]);
        if with_store {
            expected += 1;
            if sample != Some(0.0) {
                wrong.push(name.to_owned());
            }
        } else if sample.is_some() {
            wrong.push(format!("{name} without a store"));
        }
    }
    let counters = samples.keys().filter(|k| k.contains("_total")).count();
    if counters != expected {
        wrong.push(format!("{counters} counter series, not {expected}"));
    }
    wrong
}

/// A scrape right after `build()` shows every counter of every service at 0: 4 transition
/// series (one per level) and 5 denial series (one per reason) each, and the sync counters
/// with a store; the first denial then reads 1 in a series that was already there.
#[test]
fn every_counter_is_there_at_zero_from_the_start() {
    let (recorder, handle) = recorder();
    metrics::with_local_recorder(&recorder, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = QuotaTracker::builder(TrackerConfig::defaults())
            .clock(clock.clone())
            .build()
            .unwrap();
        let s = scrape(&handle);
        let services = ["tiingo", "finnhub", "sendgrid"];
        assert_eq!(
            all_counters_at_zero(&s, &services, false),
            Vec::<String>::new()
        );
        assert_eq!(
            s.keys()
                .filter(|k| k.starts_with("quota_denied_total"))
                .count(),
            18
        );
        tracker.record_call("finnhub", 48).unwrap();
        tracker.try_record("finnhub", 1).unwrap_err();
        let s = scrape(&handle);
        assert_eq!(denied(&s, "finnhub", "critical"), Some(1.0));
        assert_eq!(denied(&s, "finnhub", "reserve"), Some(0.0));
        // One transition, from normal straight to critical.
        assert_eq!(transitions(&s, "finnhub", "warning"), Some(0.0));
        assert_eq!(transitions(&s, "finnhub", "critical"), Some(1.0));
        assert_eq!(transitions(&s, "finnhub", "exhausted"), Some(0.0));
        assert_eq!(denied(&s, "tiingo", "critical"), Some(0.0));

        // With a store, the sync counters too; a second tracker of the same services adds
        // nothing to the counts (its series are the first one's).
        let with_store = QuotaTracker::builder(TrackerConfig::defaults())
            .clock(clock)
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let s = scrape(&handle);
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(0.0));
        assert_eq!(value(&s, "quota_save_failures_total", &[]), Some(0.0));
        assert_eq!(denied(&s, "finnhub", "critical"), Some(1.0));
        drop(with_store);
    });
}

#[test]
fn a_known_sequence_gives_exact_values() {
    let (recorder, handle) = recorder();
    metrics::with_local_recorder(&recorder, || {
        let clock = ManualClock::new(JUNE_10);
        let store = MemoryStore::new();
        let config = TrackerConfig::new([
            ServiceConfig::new("search", 10, Period::Minute),
            ServiceConfig::new(ODD, 100, Period::Day),
        ]);
        let policy = SyncPolicy {
            interval_ms: 3_600_000,
            force_on_critical: true,
            reduced_rate: ReducedRatePolicy {
                enter_after_failures: 2,
                leave_after_successes: 1,
                fraction: 0.25,
            },
            flush_timeout_ms: 0,
        };
        let tracker = QuotaTracker::builder(config)
            .clock(clock.clone())
            .store(store.clone())
            .sync_policy(policy)
            .build()
            .unwrap();

        // Built: every gauge, every counter at 0 (its series there before anything happened).
        let s = scrape(&handle);
        assert_eq!(
            all_counters_at_zero(&s, &["search", ODD], true),
            Vec::<String>::new()
        );
        assert_eq!(
            gauges(&s, "search"),
            [Some(0.0), Some(10.0), Some(10.0), Some(0.0)]
        );
        assert_eq!(
            gauges(&s, ODD),
            [Some(0.0), Some(100.0), Some(100.0), Some(0.0)]
        );
        assert_eq!(value(&s, "quota_reduced_rate", &[]), Some(0.0));
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(0.0));
        assert_eq!(value(&s, "quota_save_failures_total", &[]), Some(0.0));
        let help = handle.render();
        assert!(help.contains("# HELP quota_level The service's level: 0 normal"));

        // Plain recording sets nothing; a refresh does.
        tracker.record_call("search", 3).unwrap();
        assert_eq!(
            value(&scrape(&handle), "quota_used", &[("service", "search")]),
            Some(0.0)
        );
        tracker.publish_metrics();
        let s = scrape(&handle);
        assert_eq!(
            gauges(&s, "search"),
            [Some(3.0), Some(10.0), Some(7.0), Some(0.0)]
        );

        // Warning at 5: the transition sets the gauges, no refresh needed.
        tracker.record_call("search", 2).unwrap();
        let s = scrape(&handle);
        assert_eq!(transitions(&s, "search", "warning"), Some(1.0));
        assert_eq!(
            gauges(&s, "search"),
            [Some(5.0), Some(10.0), Some(5.0), Some(1.0)]
        );
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(0.0));

        // Critical at 8: counted, and the forced sync is a save (which refreshes the gauges).
        tracker.record_call("search", 3).unwrap();
        tracker.record_call(ODD, 25).unwrap();
        let s = scrape(&handle);
        assert_eq!(transitions(&s, "search", "critical"), Some(1.0));
        assert_eq!(
            gauges(&s, "search"),
            [Some(8.0), Some(10.0), Some(2.0), Some(2.0)]
        );
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(1.0));
        // The odd name's 25 calls were plain: not seen until the next refresh.
        assert_eq!(gauges(&s, ODD)[0], Some(0.0));

        // Denied at Critical, twice.
        for _ in 0..2 {
            let error = tracker.try_record("search", 1).unwrap_err();
            assert!(matches!(
                error,
                QuotaError::Denied {
                    reason: DenyReason::Critical,
                    ..
                }
            ));
        }
        let s = scrape(&handle);
        assert_eq!(denied(&s, "search", "critical"), Some(2.0));

        // Two failed syncs: counted, and reduced-rate mode starts.
        store.fail_next(2);
        assert!(tracker.flush().is_err());
        let s = scrape(&handle);
        assert_eq!(value(&s, "quota_save_failures_total", &[]), Some(1.0));
        assert_eq!(value(&s, "quota_reduced_rate", &[]), Some(0.0));
        assert!(tracker.flush().is_err());
        let s = scrape(&handle);
        assert_eq!(value(&s, "quota_save_failures_total", &[]), Some(2.0));
        assert_eq!(value(&s, "quota_reduced_rate", &[]), Some(1.0));
        // The refresh after each sync, failed or not, saw the odd name's calls.
        assert_eq!(
            gauges(&s, ODD),
            [Some(25.0), Some(100.0), Some(75.0), Some(0.0)]
        );

        // Reduced rate: 25 of 100 allowed, all used.
        let error = tracker.try_record(ODD, 1).unwrap_err();
        assert!(matches!(
            error,
            QuotaError::Denied {
                reason: DenyReason::ReducedRate,
                ..
            }
        ));
        // 8 + 5 passes the limit: the rule that refuses priority calls as well is named.
        let error = tracker.try_record("search", 5).unwrap_err();
        assert!(matches!(
            error,
            QuotaError::Denied {
                reason: DenyReason::Limit,
                ..
            }
        ));
        let s = scrape(&handle);
        assert_eq!(denied(&s, ODD, "reduced_rate"), Some(1.0));
        assert_eq!(denied(&s, "search", "limit"), Some(1.0));
        assert_eq!(denied(&s, "search", "critical"), Some(2.0));

        // A sync that works: counted, reduced rate over (one success is enough here).
        tracker.flush().unwrap();
        let s = scrape(&handle);
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(2.0));
        assert_eq!(value(&s, "quota_save_failures_total", &[]), Some(2.0));
        assert_eq!(value(&s, "quota_reduced_rate", &[]), Some(0.0));
        assert_eq!(
            gauges(&s, "search"),
            [Some(8.0), Some(10.0), Some(2.0), Some(2.0)]
        );

        // The next minute: the refresh rolls the window over; the reset is a transition too.
        clock.advance(60_000);
        tracker.publish_metrics();
        let s = scrape(&handle);
        assert_eq!(transitions(&s, "search", "normal"), Some(1.0));
        assert_eq!(
            gauges(&s, "search"),
            [Some(0.0), Some(10.0), Some(10.0), Some(0.0)]
        );
        assert_eq!(
            gauges(&s, ODD),
            [Some(25.0), Some(100.0), Some(75.0), Some(0.0)]
        );

        // Exhausted by record_call (which always records): level 3, remaining 0. The window
        // moved, so this call also syncs (the store may hold other instances' calls there).
        tracker.record_call("search", 12).unwrap();
        let s = scrape(&handle);
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(3.0));
        assert_eq!(transitions(&s, "search", "exhausted"), Some(1.0));
        assert_eq!(
            gauges(&s, "search"),
            [Some(12.0), Some(10.0), Some(0.0), Some(3.0)]
        );
        tracker.try_record("search", 1).unwrap_err();
        assert_eq!(denied(&scrape(&handle), "search", "limit"), Some(2.0));

        // The eleven metrics of the contract, and no other.
        let names: std::collections::BTreeSet<String> = scrape(&handle)
            .into_keys()
            .map(|k| k.split('{').next().unwrap().to_owned())
            .collect();
        let expected = [
            "quota_denied_total",
            "quota_given_back_total",
            "quota_level",
            "quota_limit",
            "quota_reduced_rate",
            "quota_remaining",
            "quota_save_failures_total",
            "quota_saves_total",
            "quota_transitions_total",
            "quota_unresolved_calls",
            "quota_used",
        ];
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            expected
        );
        drop(tracker);
    });
    // The last sync on drop is counted (the program may scrape after shutting a tracker down).
    let s = scrape(&handle);
    assert_eq!(value(&s, "quota_saves_total", &[]), Some(4.0));
}

#[test]
fn shared_gauges_show_the_trackers_view() {
    let clock = ManualClock::new(JUNE_10);
    let store = MemoryStore::new();
    let config = || TrackerConfig::new([ServiceConfig::new("mail", 100, Period::Day)]);
    let build = |admission: Option<Admission>| {
        let config = match admission {
            None => config(),
            Some(admission) => {
                TrackerConfig::new([ServiceConfig::builder("mail", 100, Period::Day)
                    .admission(admission)
                    .build()
                    .unwrap()])
            }
        };
        QuotaTracker::builder(config)
            .clock(clock.clone())
            .store(store.clone())
            .sync_policy(SyncPolicy {
                interval_ms: 3_600_000,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap()
    };
    // Another instance's calls, synced before this one starts.
    let other = build(None);
    other.record_call("mail", 10).unwrap();
    other.flush().unwrap();

    let (recorder, handle) = recorder();
    metrics::with_local_recorder(&recorder, || {
        let tracker = build(None);
        let used = |handle: &PrometheusHandle| {
            value(&scrape(handle), "quota_used", &[("service", "mail")])
        };
        // The load's total.
        assert_eq!(used(&handle), Some(10.0));
        tracker.record_call("mail", 5).unwrap();
        tracker.publish_metrics();
        assert_eq!(used(&handle), Some(15.0)); // last synced total + local
        other.record_call("mail", 1).unwrap();
        other.flush().unwrap();
        tracker.publish_metrics();
        assert_eq!(used(&handle), Some(15.0)); // not synced yet: this tracker does not know
        tracker.flush().unwrap();
        assert_eq!(used(&handle), Some(16.0)); // the sync's refresh

        // Exact admission asks the store: while it is down, try_record is denied.
        let exact = build(Some(Admission::Exact));
        store.set_failing(true);
        let error = exact.try_record("mail", 1).unwrap_err();
        assert!(matches!(
            error,
            QuotaError::Denied {
                reason: DenyReason::StoreUnavailable,
                ..
            }
        ));
        store.set_failing(false);
        let s = scrape(&handle);
        assert_eq!(denied(&s, "mail", "store_unavailable"), Some(1.0));
        assert_eq!(value(&s, "quota_denied_total", &[]), None);
    });
}

/// Counts every call into the recorder.
#[derive(Default)]
struct CountingRecorder {
    calls: AtomicUsize,
}

impl CountingRecorder {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.count();
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.count();
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.count();
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        self.count();
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        self.count();
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        self.count();
        Histogram::noop()
    }
}

#[test]
fn the_plain_recording_path_emits_nothing() {
    let recorder = CountingRecorder::default();
    let clock = ManualClock::new(JUNE_10);
    let store = MemoryStore::new();
    let config = || {
        TrackerConfig::new([
            ServiceConfig::new("a", 1_000_000, Period::Day),
            ServiceConfig::new("b", 1_000_000, Period::Day),
        ])
    };
    let plain = QuotaTracker::new_with_clock(config(), clock.clone()).unwrap();
    let stored = QuotaTracker::builder(config())
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        for tracker in [&plain, &stored] {
            let b = tracker.service("b").unwrap();
            for _ in 0..1_000 {
                tracker.record_call("a", 1).unwrap();
                tracker.try_record("a", 1).unwrap();
                b.record(1).unwrap();
                b.try_record(1).unwrap();
                clock.advance(1);
            }
        }
        assert_eq!(recorder.calls(), 0);
        // The same recorder sees what is not the plain path: a transition, then a sync.
        plain.record_call("a", 500_000).unwrap();
        let after_transition = recorder.calls();
        assert!(after_transition > 0);
        stored.flush().unwrap();
        assert!(recorder.calls() > after_transition);
    });
    assert_eq!(store.syncs(), 2, "the load and the flush only");
}

#[test]
fn counts_are_exact_across_threads() {
    const THREADS: usize = 8;
    const TRIES: usize = 250;
    let (recorder, handle) = recorder();
    let clock = ManualClock::new(JUNE_10);
    let tracker = QuotaTracker::new_with_clock(
        TrackerConfig::new([ServiceConfig::new("api", 1_000, Period::Day)]),
        clock,
    )
    .unwrap();
    let admitted = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                metrics::with_local_recorder(&recorder, || {
                    for _ in 0..TRIES {
                        if tracker.try_record("api", 1).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
        }
    });
    // Admitted below Critical (800 of 1000), every other try denied at Critical.
    assert_eq!(admitted.load(Ordering::Relaxed), 800);
    metrics::with_local_recorder(&recorder, || tracker.publish_metrics());
    let s = scrape(&handle);
    assert_eq!(
        denied(&s, "api", "critical"),
        Some((THREADS * TRIES - 800) as f64)
    );
    assert_eq!(transitions(&s, "api", "warning"), Some(1.0));
    assert_eq!(transitions(&s, "api", "critical"), Some(1.0));
    assert_eq!(
        gauges(&s, "api"),
        [Some(800.0), Some(1000.0), Some(200.0), Some(2.0)]
    );
}

/// Panics on every call.
struct PanickingRecorder;

impl Recorder for PanickingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("recorder down");
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("recorder down");
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("recorder down");
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        panic!("recorder down");
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        panic!("recorder down");
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        panic!("recorder down");
    }
}

#[test]
fn a_panicking_recorder_changes_nothing() {
    let store = MemoryStore::new();
    metrics::with_local_recorder(&PanickingRecorder, || {
        let tracker = QuotaTracker::builder(TrackerConfig::new([ServiceConfig::new(
            "api",
            10,
            Period::Day,
        )]))
        .clock(ManualClock::new(JUNE_10))
        .store(store.clone())
        // One try per flush: the test fails one on purpose.
        .sync_policy(SyncPolicy {
            flush_timeout_ms: 0,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
        let recorded = tracker.record_call("api", 8).unwrap();
        assert_eq!(
            recorded.transition().unwrap().to,
            quota_core::Level::Critical
        );
        assert!(matches!(
            tracker.try_record("api", 1),
            Err(QuotaError::Denied {
                reason: DenyReason::Critical,
                ..
            })
        ));
        tracker.publish_metrics();
        store.fail_next(1);
        assert!(tracker.flush().is_err());
        tracker.flush().unwrap();
        assert_eq!(tracker.usage("api").unwrap().used, 8);
        assert_eq!(tracker.stats().saves, 2); // the forced save at Critical and the flush
    });
}

#[test]
fn deny_reasons_have_distinct_stable_labels() {
    let reasons = [
        DenyReason::Critical,
        DenyReason::Reserve,
        DenyReason::Limit,
        DenyReason::ReducedRate,
        DenyReason::StoreUnavailable,
        DenyReason::Waiting,
    ];
    let labels: Vec<&str> = reasons.iter().map(|r| deny_reason_label(*r)).collect();
    assert_eq!(
        labels,
        [
            "critical",
            "reserve",
            "limit",
            "reduced_rate",
            "store_unavailable",
            "waiting"
        ]
    );
}

/// Records one call on the tracker's `audit` service for every call into the recorder.
struct ReentrantRecorder {
    tracker: OnceLock<Arc<QuotaTracker>>,
    calls: AtomicUsize,
}

impl ReentrantRecorder {
    fn reenter(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(tracker) = self.tracker.get() {
            tracker.record_call("audit", 1).unwrap();
            // A read and a refresh from inside, too (each takes every service's lock).
            tracker.snapshot();
        }
    }
}

impl Recorder for ReentrantRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        self.reenter();
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        self.reenter();
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn a_recorder_that_calls_back_into_the_tracker_neither_deadlocks_nor_loses_a_call() {
    timeout::within(30, || {
        let recorder = ReentrantRecorder {
            tracker: OnceLock::new(),
            calls: AtomicUsize::new(0),
        };
        let store = MemoryStore::new();
        let tracker = Arc::new(
            QuotaTracker::builder(TrackerConfig::new([
                ServiceConfig::new("api", 10, Period::Day),
                ServiceConfig::new("audit", u64::MAX, Period::Day),
            ]))
            .clock(ManualClock::new(JUNE_10))
            .store(store.clone())
            // One try per flush: the test fails one on purpose.
            .sync_policy(SyncPolicy {
                flush_timeout_ms: 0,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap(),
        );
        recorder.tracker.set(Arc::clone(&tracker)).unwrap();
        metrics::with_local_recorder(&recorder, || {
            // A transition (and the forced sync at Critical), denials, a failed sync, refreshes.
            tracker.record_call("api", 8).unwrap();
            for _ in 0..3 {
                tracker.try_record("api", 1).unwrap_err();
            }
            store.fail_next(1);
            tracker.flush().unwrap_err();
            tracker.flush().unwrap();
            tracker.publish_metrics();
        });
        let calls = recorder.calls.load(Ordering::SeqCst) as u64;
        assert!(calls > 0);
        assert_eq!(tracker.usage("api").unwrap().used, 8);
        // Every call into the recorder recorded one call, none lost.
        assert_eq!(tracker.usage("audit").unwrap().used, calls);
        // And the store has them all.
        tracker.flush().unwrap();
        let restarted = QuotaTracker::builder(tracker.config())
            .clock(ManualClock::new(JUNE_10))
            .store(store.clone())
            .build()
            .unwrap();
        assert_eq!(restarted.usage("api").unwrap().used, 8);
        assert_eq!(restarted.usage("audit").unwrap().used, calls);
    });
}

/// Flushes its tracker for every metric the tracker registers (a sync per call into the
/// recorder, each of which the tracker reports through the recorder again).
struct FlushingRecorder {
    tracker: OnceLock<Arc<QuotaTracker>>,
    calls: AtomicUsize,
}

impl FlushingRecorder {
    fn reenter(&self) {
        // Bounded, so that a failure is an assertion and not a stack overflow.
        if self.calls.fetch_add(1, Ordering::SeqCst) > 10_000 {
            return;
        }
        if let Some(tracker) = self.tracker.get() {
            tracker.record_call("api", 1).unwrap();
            tracker.flush().unwrap();
        }
    }
}

impl Recorder for FlushingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        self.reenter();
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        self.reenter();
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn a_recorder_that_flushes_the_tracker_from_every_call_comes_to_an_end() {
    // Each save is reported (a counter, the gauges), each report flushes: the tracker must
    // not report the saves its own reports caused from inside those reports (a recursion
    // without end), yet lose none of them (the next report carries them).
    timeout::within(30, || {
        let recorder = FlushingRecorder {
            tracker: OnceLock::new(),
            calls: AtomicUsize::new(0),
        };
        let store = MemoryStore::new();
        let tracker = Arc::new(
            QuotaTracker::builder(TrackerConfig::new([ServiceConfig::new(
                "api",
                u64::MAX,
                Period::Day,
            )]))
            .clock(ManualClock::new(JUNE_10))
            .store(store.clone())
            .build()
            .unwrap(),
        );
        recorder.tracker.set(Arc::clone(&tracker)).unwrap();
        metrics::with_local_recorder(&recorder, || {
            tracker.flush().unwrap();
            tracker.publish_metrics();
        });
        let calls = recorder.calls.load(Ordering::SeqCst) as u64;
        assert!(calls <= 100, "{calls} calls into the recorder");
        assert_eq!(tracker.usage("api").unwrap().used, calls);
        tracker.flush().unwrap();
        let restarted = QuotaTracker::builder(tracker.config())
            .clock(ManualClock::new(JUNE_10))
            .store(store)
            .build()
            .unwrap();
        assert_eq!(restarted.usage("api").unwrap().used, calls);
    });
}

/// Sums the increments of `quota_denied_total`, and for every counter the tracker registers
/// makes one more call on the tracker's denied service (a denial per call into the recorder).
struct DenyingRecorder {
    tracker: OnceLock<Arc<QuotaTracker>>,
    calls: AtomicUsize,
    denied: Arc<std::sync::atomic::AtomicU64>,
}

struct Sum(Arc<std::sync::atomic::AtomicU64>);

impl metrics::CounterFn for Sum {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, _: u64) {}
}

impl Recorder for DenyingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        // Bounded, so that a failure is an assertion and not a stack overflow.
        if self.calls.fetch_add(1, Ordering::SeqCst) < 100 {
            if let Some(tracker) = self.tracker.get() {
                tracker.try_record("api", 1).unwrap_err();
            }
        }
        if key.name() == "quota_denied_total" {
            Counter::from_arc(Arc::new(Sum(Arc::clone(&self.denied))))
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn a_recorder_that_is_denied_from_every_call_comes_to_an_end_and_every_denial_is_counted() {
    timeout::within(30, || {
        let recorder = DenyingRecorder {
            tracker: OnceLock::new(),
            calls: AtomicUsize::new(0),
            denied: Arc::default(),
        };
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(
                TrackerConfig::new([ServiceConfig::new("api", 1, Period::Day)]),
                ManualClock::new(JUNE_10),
            )
            .unwrap(),
        );
        tracker.record_call("api", 1).unwrap();
        recorder.tracker.set(Arc::clone(&tracker)).unwrap();
        metrics::with_local_recorder(&recorder, || {
            tracker.try_record("api", 1).unwrap_err();
            let calls = recorder.calls.load(Ordering::SeqCst);
            assert!(calls < 10, "{calls} nested calls into the recorder");
            // The denials made from inside the recorder are counted by the next report.
            tracker.publish_metrics();
        });
        let calls = recorder.calls.load(Ordering::SeqCst) as u64;
        // Every denial (the first, and one per counter registered) counted exactly once; the
        // last registration's denial waits for the next report.
        assert_eq!(recorder.denied.load(Ordering::SeqCst), calls);
    });
}

#[test]
fn shadow_mode_counts_what_it_would_have_denied() {
    let (recorder, handle) = recorder();
    metrics::with_local_recorder(&recorder, || {
        let beta = ServiceConfig::builder("beta", 10, Period::Day)
            .enforce(false)
            .build()
            .unwrap();
        let config = TrackerConfig::new([beta, ServiceConfig::new("prod", 10, Period::Day)]);
        let tracker =
            QuotaTracker::new_with_clock(config, quota_core::ManualClock::new(JUNE_10)).unwrap();
        let shadow = |s: &BTreeMap<String, f64>, service, reason| {
            value(
                s,
                "quota_shadow_denied_total",
                &[("service", service), ("reason", reason)],
            )
        };
        let s = scrape(&handle);
        assert_eq!(shadow(&s, "beta", "critical"), Some(0.0), "registered at 0");
        assert_eq!(
            shadow(&s, "prod", "critical"),
            None,
            "only shadow services have it"
        );
        for _ in 0..12 {
            tracker.try_record("beta", 1).unwrap();
        }
        tracker.try_record_priority("beta", 1).unwrap();
        let s = scrape(&handle);
        // Calls 9 and 10 pass the Critical stop (8); 11 and 12 the limit; the priority call
        // (the 13th) the limit too.
        assert_eq!(shadow(&s, "beta", "critical"), Some(2.0));
        assert_eq!(shadow(&s, "beta", "limit"), Some(3.0));
        assert_eq!(
            denied(&s, "beta", "critical"),
            Some(0.0),
            "nothing was denied"
        );
        assert_eq!(denied(&s, "beta", "limit"), Some(0.0));
        tracker.publish_metrics();
        assert_eq!(
            gauges(&scrape(&handle), "beta")[0],
            Some(13.0),
            "counted past the limit"
        );
    });
}

/// The rendered lines of `text` that are samples of `service` (comments skipped), in order.
fn lines_of(text: &str, service: &str) -> Vec<String> {
    let label = format!("service=\"{service}\"");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains(&label))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// A service of two limits: its own gauges (the binding limit, at the highest level) and each
/// limit's, labelled `limit`, and its transitions per limit; a service of one limit beside it
/// keeps its unlabelled series only.
#[test]
fn a_service_of_two_limits_has_gauges_and_transitions_per_limit() {
    let (recorder, handle) = recorder();
    metrics::with_local_recorder(&recorder, || {
        // 2024-06-10 00:10 UTC.
        let clock = ManualClock::new(1_717_977_600_000 + 600_000);
        let tiingo = ServiceConfig::builder("tiingo", 50, Period::Hour)
            .and_limit(Limit::new(1_000, Period::Day))
            .warn_threshold(0.5)
            .critical_threshold(0.9)
            .build()
            .unwrap();
        let config = TrackerConfig::new([tiingo, ServiceConfig::new("search", 10, Period::Minute)]);
        let tracker = QuotaTracker::new_with_clock(config, clock.clone()).unwrap();
        let zero_transitions = |limit: &str| {
            ["critical", "exhausted", "normal", "warning"].map(|to| {
                format!(
                    "quota_transitions_total{{service=\"tiingo\",to=\"{to}\",limit=\"{limit}\"}} 0"
                )
            })
        };
        let mut expected: Vec<String> = [
            "quota_denied_total{service=\"tiingo\",reason=\"critical\"} 0",
            "quota_denied_total{service=\"tiingo\",reason=\"limit\"} 0",
            "quota_denied_total{service=\"tiingo\",reason=\"reduced_rate\"} 0",
            "quota_denied_total{service=\"tiingo\",reason=\"reserve\"} 0",
            "quota_denied_total{service=\"tiingo\",reason=\"store_unavailable\"} 0",
            "quota_denied_total{service=\"tiingo\",reason=\"waiting\"} 0",
            "quota_given_back_total{service=\"tiingo\"} 0",
            "quota_level{service=\"tiingo\"} 0",
            "quota_level{service=\"tiingo\",limit=\"day\"} 0",
            "quota_level{service=\"tiingo\",limit=\"hour\"} 0",
            "quota_limit{service=\"tiingo\"} 50",
            "quota_limit{service=\"tiingo\",limit=\"day\"} 1000",
            "quota_limit{service=\"tiingo\",limit=\"hour\"} 50",
            "quota_remaining{service=\"tiingo\"} 50",
            "quota_remaining{service=\"tiingo\",limit=\"day\"} 1000",
            "quota_remaining{service=\"tiingo\",limit=\"hour\"} 50",
            "quota_used{service=\"tiingo\"} 0",
            "quota_used{service=\"tiingo\",limit=\"day\"} 0",
            "quota_used{service=\"tiingo\",limit=\"hour\"} 0",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain(zero_transitions("day"))
        .chain(zero_transitions("hour"))
        .collect();
        expected.sort();
        assert_eq!(lines_of(&handle.render(), "tiingo"), expected);
        // The service of one limit: no `limit` label anywhere.
        let search = lines_of(&handle.render(), "search");
        assert_eq!(search.len(), 15, "{search:#?}");
        assert!(
            search.iter().all(|line| !line.contains("limit=")),
            "{search:#?}"
        );

        // 45 calls: the hour's Critical level (45 of 50), the day's Normal (45 of 1,000).
        tracker.record_call("tiingo", 45).unwrap();
        tracker.publish_metrics();
        let s = scrape(&handle);
        let limit_gauges = |s: &BTreeMap<String, f64>, limit: &str| {
            [
                "quota_used",
                "quota_limit",
                "quota_remaining",
                "quota_level",
            ]
            .map(|name| value(s, name, &[("service", "tiingo"), ("limit", limit)]))
        };
        let limit_transitions = |s: &BTreeMap<String, f64>, limit: &str| {
            ["normal", "warning", "critical", "exhausted"].map(|to| {
                value(
                    s,
                    "quota_transitions_total",
                    &[("service", "tiingo"), ("to", to), ("limit", limit)],
                )
            })
        };
        let some = |values: [f64; 4]| values.map(Some);
        assert_eq!(gauges(&s, "tiingo"), some([45.0, 50.0, 5.0, 2.0]));
        assert_eq!(limit_gauges(&s, "hour"), some([45.0, 50.0, 5.0, 2.0]));
        assert_eq!(limit_gauges(&s, "day"), some([45.0, 1_000.0, 955.0, 0.0]));
        assert_eq!(limit_transitions(&s, "hour"), some([0.0, 0.0, 1.0, 0.0]));
        assert_eq!(limit_transitions(&s, "day"), some([0.0; 4]));
        assert_eq!(
            transitions(&s, "tiingo", "critical"),
            None,
            "per limit only"
        );

        // The provider says 2 remain of the day: the day's Critical level. The transition
        // sets the day's gauges; the service's own (now the day's, 2 of headroom against the
        // hour's 5) wait for the refresh.
        let day_end = 1_717_977_600_000 + 86_400_000;
        tracker.raise_used("tiingo", 998, Some(day_end)).unwrap();
        let s = scrape(&handle);
        assert_eq!(limit_gauges(&s, "day"), some([998.0, 1_000.0, 2.0, 2.0]));
        assert_eq!(limit_transitions(&s, "day"), some([0.0, 0.0, 1.0, 0.0]));
        assert_eq!(gauges(&s, "tiingo"), some([45.0, 50.0, 5.0, 2.0]));
        tracker.publish_metrics();
        let s = scrape(&handle);
        assert_eq!(gauges(&s, "tiingo"), some([998.0, 1_000.0, 2.0, 2.0]));
        assert_eq!(limit_gauges(&s, "hour"), some([45.0, 50.0, 5.0, 2.0]));

        // The next hour: the hour's count resets (a transition to normal of the hour alone);
        // the service stays at the day's Critical level.
        clock.advance(3_600_000);
        tracker.publish_metrics();
        let s = scrape(&handle);
        assert_eq!(limit_gauges(&s, "hour"), some([0.0, 50.0, 50.0, 0.0]));
        assert_eq!(limit_transitions(&s, "hour"), some([1.0, 0.0, 1.0, 0.0]));
        assert_eq!(limit_gauges(&s, "day"), some([998.0, 1_000.0, 2.0, 2.0]));
        assert_eq!(gauges(&s, "tiingo"), some([998.0, 1_000.0, 2.0, 2.0]));
        // The rendered text of the service, every series in it but the counters still at 0.
        let mut expected: Vec<String> = [
            "quota_level{service=\"tiingo\"} 2",
            "quota_level{service=\"tiingo\",limit=\"day\"} 2",
            "quota_level{service=\"tiingo\",limit=\"hour\"} 0",
            "quota_limit{service=\"tiingo\"} 1000",
            "quota_limit{service=\"tiingo\",limit=\"day\"} 1000",
            "quota_limit{service=\"tiingo\",limit=\"hour\"} 50",
            "quota_remaining{service=\"tiingo\"} 2",
            "quota_remaining{service=\"tiingo\",limit=\"day\"} 2",
            "quota_remaining{service=\"tiingo\",limit=\"hour\"} 50",
            "quota_used{service=\"tiingo\"} 998",
            "quota_used{service=\"tiingo\",limit=\"day\"} 998",
            "quota_used{service=\"tiingo\",limit=\"hour\"} 0",
            "quota_transitions_total{service=\"tiingo\",to=\"critical\",limit=\"day\"} 1",
            "quota_transitions_total{service=\"tiingo\",to=\"critical\",limit=\"hour\"} 1",
            "quota_transitions_total{service=\"tiingo\",to=\"normal\",limit=\"hour\"} 1",
        ]
        .map(str::to_owned)
        .into_iter()
        .collect();
        expected.sort();
        let rendered: Vec<String> = lines_of(&handle.render(), "tiingo")
            .into_iter()
            .filter(|line| !(line.contains("_total{") && line.ends_with(" 0")))
            .collect();
        assert_eq!(rendered, expected);
    });
}

/// `quota_given_back_total` counts what holds gave back: settled below the estimate, or
/// cancelled; a settle above it gives nothing back.
#[test]
fn given_back_counts_what_holds_return() {
    let (recorder, handle) = recorder();
    metrics::with_local_recorder(&recorder, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = QuotaTracker::builder(TrackerConfig::defaults())
            .clock(clock.clone())
            .build()
            .unwrap();
        let given_back = || {
            value(
                &scrape(&handle),
                "quota_given_back_total",
                &[("service", "sendgrid")],
            )
        };
        assert_eq!(given_back(), Some(0.0));
        tracker.hold("sendgrid", 10).unwrap().settle(3).unwrap();
        tracker.hold("sendgrid", 5).unwrap().cancel().unwrap();
        tracker.hold("sendgrid", 5).unwrap().settle(9).unwrap();
        assert_eq!(given_back(), Some(12.0));
        assert_eq!(tracker.usage("sendgrid").unwrap().used, 12);
    });
}
