//! `QuotaTracker::reconfigure`: services added, removed and changed while the tracker runs,
//! without losing a count, with each level change delivered once, and with removed services'
//! handles and ids never pointing at another service.

use quota_core::{
    Admission, Level, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker, ServiceConfig,
    Snapshot, SyncPolicy, TrackerConfig, Transition,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

const JUNE_10: u64 = 1_718_000_000_000;

fn config(services: &[(&str, u64)]) -> TrackerConfig {
    TrackerConfig::new(
        services
            .iter()
            .map(|&(name, limit)| ServiceConfig::new(name, limit, Period::Day)),
    )
}

fn tracker(services: &[(&str, u64)]) -> QuotaTracker {
    QuotaTracker::new_with_clock(config(services), ManualClock::new(JUNE_10)).unwrap()
}

/// A tracker on `store` that syncs only when told (flush) or on Critical.
fn stored(store: &MemoryStore, config: TrackerConfig) -> QuotaTracker {
    QuotaTracker::builder(config)
        .clock(ManualClock::new(JUNE_10))
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            force_on_critical: false,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap()
}

/// The store's total of `service`'s windows of `period`.
fn stored_total(store: &MemoryStore, service: &str, period: Period) -> u64 {
    store
        .state()
        .unwrap()
        .windows()
        .filter(|w| w.service == service && w.spec.as_period() == Some(period))
        .map(|w| w.total)
        .sum()
}

/// Every transition the observers receive.
fn observe(tracker: &QuotaTracker) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

fn names(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .services()
        .iter()
        .map(|u| u.name.to_string())
        .collect()
}

fn unknown<T: std::fmt::Debug>(result: Result<T, QuotaError>) -> bool {
    matches!(result, Err(QuotaError::UnknownService(_)))
}

#[test]
fn adds_removes_and_changes_and_lists_the_new_config_in_its_order() {
    let tracker = tracker(&[("a", 100), ("b", 100), ("c", 100)]);
    tracker.record_call("a", 10).unwrap();
    tracker.record_call("b", 20).unwrap();
    let done = tracker
        .reconfigure(config(&[("d", 5), ("b", 200), ("a", 100)]))
        .unwrap();
    assert_eq!(done.added, ["d"]);
    assert_eq!(done.removed, ["c"]);
    assert_eq!(done.changed, ["b"]);
    assert_eq!(names(&tracker.snapshot()), ["d", "b", "a"]);
    assert_eq!(
        tracker.config(),
        config(&[("d", 5), ("b", 200), ("a", 100)])
    );
    assert_eq!(tracker.usage("a").unwrap().used, 10);
    let b = tracker.usage("b").unwrap();
    assert_eq!((b.used, b.limit), (20, 200));
    assert_eq!(tracker.record_call("d", 2).unwrap().usage.used, 2);
    assert!(unknown(tracker.record_call("c", 1)));
    // The same config again changes nothing.
    let again = tracker
        .reconfigure(config(&[("d", 5), ("b", 200), ("a", 100)]))
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn a_removed_service_answers_unknown_service_by_name_handle_and_id() {
    let tracker = tracker(&[("a", 100), ("b", 100)]);
    let b = tracker.service("b").unwrap();
    let id = b.id();
    b.record(3).unwrap();
    tracker.reconfigure(config(&[("a", 100)])).unwrap();
    assert!(unknown(tracker.record_call("b", 1)));
    assert!(unknown(tracker.try_record("b", 1)));
    assert!(unknown(tracker.usage("b")));
    assert!(unknown(tracker.can_call("b")));
    assert!(unknown(tracker.raise_used("b", 50, None)));
    assert!(unknown(tracker.service("b")));
    assert!(unknown(b.record(1)));
    assert!(unknown(b.try_record(1)));
    assert!(unknown(b.try_record_priority(1)));
    assert!(unknown(b.record_remaining(1)));
    assert!(unknown(b.raise_used(50, None)));
    assert!(!b.can_call());
    assert_eq!(b.usage().used, 3, "the usage as it was removed");
    assert!(tracker.service_by_id(id).is_none());
    assert_eq!(names(&tracker.snapshot()), ["a"]);
}

#[test]
fn a_name_added_again_is_a_new_service_and_old_handles_still_fail() {
    let tracker = tracker(&[("a", 100), ("b", 100)]);
    let old = tracker.service("b").unwrap();
    old.record(7).unwrap();
    tracker.reconfigure(config(&[("a", 100)])).unwrap();
    let done = tracker
        .reconfigure(config(&[("a", 100), ("b", 100)]))
        .unwrap();
    assert_eq!(done.added, ["b"]);
    let new = tracker.service("b").unwrap();
    assert_ne!(new.id(), old.id());
    assert!(unknown(old.record(1)));
    assert!(tracker.service_by_id(old.id()).is_none());
    assert_eq!(tracker.service_by_id(new.id()).unwrap().name(), "b");
    // A new service: fresh counts, reached by name and by its new handle.
    assert_eq!(tracker.record_call("b", 1).unwrap().usage.used, 1);
    assert_eq!(new.record(1).unwrap().usage.used, 2);
    assert_eq!(old.name(), "b");
    // Removed and added once more: a third position.
    tracker.reconfigure(config(&[("a", 100)])).unwrap();
    assert!(unknown(new.record(1)));
    tracker
        .reconfigure(config(&[("b", 100), ("a", 100)]))
        .unwrap();
    let third = tracker.service("b").unwrap();
    assert!(third.id() != old.id() && third.id() != new.id());
    assert_eq!(tracker.record_call("b", 4).unwrap().usage.used, 4);
}

#[test]
fn a_lower_limit_changes_the_level_at_once_with_one_transition() {
    let tracker = tracker(&[("a", 100)]);
    let a = tracker.service("a").unwrap();
    tracker.record_call("a", 60).unwrap();
    let seen = observe(&tracker);
    // 60 of 70: Critical (0.8 x 70 = 56).
    tracker.reconfigure(config(&[("a", 70)])).unwrap();
    let usage = a.usage();
    assert_eq!(
        (usage.used, usage.limit, usage.level()),
        (60, 70, Level::Critical)
    );
    assert!(a.try_record(1).is_err(), "normal calls stop at Critical");
    // 60 of 50: Exhausted.
    tracker.reconfigure(config(&[("a", 50)])).unwrap();
    assert_eq!(a.usage().level(), Level::Exhausted);
    // Raised back: one transition down, to Warning (60 of 100).
    tracker.reconfigure(config(&[("a", 100)])).unwrap();
    assert_eq!(a.usage().level(), Level::Warning);
    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to, t.used, t.limit))
        .collect();
    assert_eq!(
        seen,
        [
            (Level::Warning, Level::Critical, 60, 70),
            (Level::Critical, Level::Exhausted, 60, 50),
            (Level::Exhausted, Level::Warning, 60, 100),
        ]
    );
    // The fast path counts under the new rules: 79 is still Warning, 80 is Critical.
    assert!(a.record(19).unwrap().recorded.is_none());
    assert_eq!(a.record(1).unwrap().recorded.unwrap().to, Level::Critical);
}

#[test]
fn thresholds_reserve_and_shadow_mode_change_in_place() {
    let tracker = tracker(&[("a", 100)]);
    tracker.record_call("a", 50).unwrap();
    let seen = observe(&tracker);
    let strict = ServiceConfig::builder("a", 100, Period::Day)
        .warn_threshold(0.3)
        .critical_threshold(0.5)
        .reserve_fraction(0.4)
        .build()
        .unwrap();
    tracker.reconfigure(TrackerConfig::new([strict])).unwrap();
    assert_eq!(tracker.usage("a").unwrap().level(), Level::Critical);
    assert_eq!(tracker.reserve_allocation("a").unwrap(), 40);
    assert!(tracker.try_record("a", 1).is_err());
    let shadow = ServiceConfig::builder("a", 100, Period::Day)
        .warn_threshold(0.3)
        .critical_threshold(0.5)
        .enforce(false)
        .build()
        .unwrap();
    tracker.reconfigure(TrackerConfig::new([shadow])).unwrap();
    let admitted = tracker.try_record("a", 1).unwrap();
    assert!(admitted.shadow_denied.is_some());
    assert_eq!(admitted.usage.used, 51);
    assert_eq!(seen.lock().unwrap().len(), 1, "Warning -> Critical, once");
}

#[test]
fn a_changed_window_starts_fresh_and_the_old_windows_calls_reach_the_store() {
    let store = MemoryStore::new();
    let tracker = stored(&store, config(&[("a", 100)]));
    let a = tracker.service("a").unwrap();
    a.record(90).unwrap(); // Exhausted? no: Critical (90 of 100)
    let seen = observe(&tracker);
    let hourly = TrackerConfig::new([ServiceConfig::new("a", 10, Period::Hour)]);
    assert_eq!(tracker.reconfigure(hourly).unwrap().changed, ["a"]);
    let usage = a.usage();
    assert_eq!(
        (usage.used, usage.period, usage.total_recorded),
        (0, Period::Hour, 90)
    );
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .map(|t| (t.from, t.to))
            .collect::<Vec<_>>(),
        [(Level::Critical, Level::Normal)]
    );
    a.record(3).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored_total(&store, "a", Period::Day), 90);
    assert_eq!(stored_total(&store, "a", Period::Hour), 3);
    assert_eq!(a.usage().used, 3);
}

#[test]
fn a_changed_window_while_a_sync_was_lost_still_delivers_every_call() {
    let store = MemoryStore::new();
    let tracker = stored(&store, config(&[("a", 100)]));
    tracker.record_call("a", 5).unwrap();
    store.set_failing(true);
    assert!(tracker.flush().is_err());
    tracker.record_call("a", 2).unwrap();
    let hourly = TrackerConfig::new([ServiceConfig::new("a", 100, Period::Hour)]);
    tracker.reconfigure(hourly).unwrap();
    tracker.record_call("a", 1).unwrap();
    store.set_failing(false);
    tracker.flush().unwrap();
    assert_eq!(stored_total(&store, "a", Period::Day), 7);
    assert_eq!(stored_total(&store, "a", Period::Hour), 1);
}

#[test]
fn a_removed_services_unsynced_calls_reach_the_store() {
    let store = MemoryStore::new();
    let tracker = stored(&store, config(&[("a", 100), ("b", 100)]));
    tracker.record_call("b", 4).unwrap();
    tracker.flush().unwrap();
    tracker.record_call("b", 5).unwrap();
    tracker.reconfigure(config(&[("a", 100)])).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored_total(&store, "b", Period::Day), 9);
    // Nothing is sent twice.
    tracker.flush().unwrap();
    assert_eq!(stored_total(&store, "b", Period::Day), 9);
}

#[test]
fn an_added_service_reads_the_stores_total_at_the_next_sync() {
    let store = MemoryStore::new();
    let other = stored(&store, config(&[("maps", 100)]));
    other.record_call("maps", 12).unwrap();
    other.flush().unwrap();
    let tracker = stored(&store, config(&[("a", 100)]));
    tracker
        .reconfigure(config(&[("a", 100), ("maps", 100)]))
        .unwrap();
    tracker.record_call("maps", 1).unwrap(); // the next call syncs (due at once)
    tracker.flush().unwrap();
    assert_eq!(tracker.usage("maps").unwrap().used, 13);
    assert_eq!(stored_total(&store, "maps", Period::Day), 13);
}

#[test]
fn leased_to_local_gives_the_block_back_first() {
    let store = MemoryStore::new();
    let leased = ServiceConfig::builder("llm", 1_000, Period::Day)
        .admission(Admission::Leased { block: 50 })
        .build()
        .unwrap();
    let tracker = stored(&store, TrackerConfig::new([leased]));
    for _ in 0..3 {
        tracker.try_record("llm", 1).unwrap();
    }
    assert_eq!(
        stored_total(&store, "llm", Period::Day),
        50,
        "one block leased"
    );
    let local = TrackerConfig::new([ServiceConfig::new("llm", 1_000, Period::Day)]);
    tracker.reconfigure(local).unwrap();
    assert_eq!(tracker.usage("llm").unwrap().used, 3);
    tracker.try_record("llm", 2).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored_total(&store, "llm", Period::Day), 5);
    // And back to Exact: decided by the store.
    let exact = ServiceConfig::builder("llm", 1_000, Period::Day)
        .admission(Admission::Exact)
        .build()
        .unwrap();
    tracker.reconfigure(TrackerConfig::new([exact])).unwrap();
    tracker.try_record("llm", 1).unwrap();
    assert_eq!(stored_total(&store, "llm", Period::Day), 6);
}

#[test]
fn an_invalid_config_changes_nothing() {
    let tracker = tracker(&[("a", 100), ("b", 100)]);
    let b = tracker.service("b").unwrap();
    b.record(3).unwrap();
    let before = tracker.config();
    let duplicate = config(&[("a", 50), ("a", 60)]);
    let zero = config(&[("a", 0)]);
    let exact = TrackerConfig::new([ServiceConfig::builder("a", 10, Period::Day)
        .admission(Admission::Exact)
        .build()
        .unwrap()]);
    for (round, bad) in [duplicate, zero, TrackerConfig::default(), exact]
        .into_iter()
        .enumerate()
    {
        let error = tracker.reconfigure(bad).unwrap_err();
        assert!(matches!(error, QuotaError::InvalidConfig { .. }), "{error}");
        assert_eq!(tracker.config(), before);
        assert_eq!(b.record(1).unwrap().usage.used, 4 + round as u64);
    }
    assert_eq!(b.usage().used, 7);
    assert_eq!(tracker.usage("a").unwrap().limit, 100);
}

/// The "done when": 8 threads record by name and by handle on three services that
/// stay and one that comes and goes, while another thread reconfigures over and over
/// (limits and thresholds toggled, the fourth service removed and added). No count is lost
/// (the services that stay end with `used` equal to their admitted calls, in one window; the
/// store holds every admitted call of each, the one that came and went included), every
/// transition reaches the observer once (each service's transitions chain from Normal to the
/// final level), and a removed service's handle answers `UnknownService` once the removal
/// returned.
#[test]
fn reconfigure_racing_eight_recording_threads_loses_no_count() {
    const STAY: [&str; 3] = ["a", "b", "c"];
    let store = MemoryStore::new();
    let configure = |round: u64| {
        let limit = if round.is_multiple_of(2) {
            40_000
        } else {
            2_000
        };
        let mut services: Vec<ServiceConfig> = STAY
            .iter()
            .map(|name| {
                ServiceConfig::builder(*name, limit, Period::Day)
                    .warn_threshold(if round.is_multiple_of(3) { 0.3 } else { 0.5 })
                    .critical_threshold(if round.is_multiple_of(4) { 0.6 } else { 0.9 })
                    .build()
                    .unwrap()
            })
            .collect();
        if round.is_multiple_of(2) {
            services.push(ServiceConfig::new("x", 1_000_000, Period::Day));
        }
        TrackerConfig::new(services)
    };
    let tracker = Arc::new(stored(&store, configure(0)));
    let seen = observe(&tracker);
    let ok: Arc<HashMap<&str, AtomicU64>> = Arc::new(
        STAY.iter()
            .chain(&["x"])
            .map(|name| (*name, AtomicU64::new(0)))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (tracker, ok, stop) = (Arc::clone(&tracker), Arc::clone(&ok), Arc::clone(&stop));
            thread::spawn(move || {
                let mut call = 0u64;
                while !stop.load(Ordering::Relaxed) || call < 2_000 {
                    call += 1;
                    let name = ["a", "b", "c", "x"][(call + worker) as usize % 4];
                    let result = match call % 4 {
                        0 => tracker.record_call(name, 1).map(|_| ()),
                        1 => tracker.try_record(name, 1).map(|_| ()),
                        2 => tracker
                            .service(name)
                            .and_then(|service| service.record(1))
                            .map(|_| ()),
                        _ => tracker
                            .service(name)
                            .and_then(|service| service.record_remaining(1))
                            .map(|_| ()),
                    };
                    match result {
                        Ok(()) => {
                            ok[name].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(QuotaError::UnknownService(_)) => assert_eq!(name, "x"),
                        Err(QuotaError::Denied { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    for round in 1..=200 {
        let held = tracker.service("x").ok();
        tracker.reconfigure(configure(round)).unwrap();
        if let Some(x) = held.filter(|_| !round.is_multiple_of(2)) {
            assert!(unknown(x.record(1)), "x was removed in round {round}");
            assert!(tracker.service_by_id(x.id()).is_none());
        }
        if round.is_multiple_of(50) {
            tracker.flush().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    tracker.flush().unwrap();
    let snapshot = tracker.snapshot();
    let seen = seen.lock().unwrap();
    for name in STAY {
        let admitted = ok[name].load(Ordering::Relaxed);
        let usage = snapshot.service(name).unwrap();
        assert_eq!(usage.used, admitted, "{name}: used");
        assert_eq!(usage.total_recorded, admitted, "{name}: total");
        assert_eq!(
            stored_total(&store, name, Period::Day),
            admitted,
            "{name}: stored"
        );
        let mine: Vec<_> = seen.iter().filter(|t| &*t.service == name).collect();
        let mut level = Level::Normal;
        for t in &mine {
            assert_eq!(t.from, level, "{name}: transitions chain: {mine:?}");
            level = t.to;
        }
        assert_eq!(
            level,
            usage.level(),
            "{name}: the last transition is the level now"
        );
    }
    assert_eq!(
        stored_total(&store, "x", Period::Day),
        ok["x"].load(Ordering::Relaxed),
        "x: every admitted call of every incarnation is in the store"
    );
}
