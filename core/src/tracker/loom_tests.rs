//! Loom model checks of the real tracker (its primitives come from `crate::sync`).
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p quota-core --lib --release loom`.

use crate::{
    Level, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, TrackerConfig, Transition,
};
use loom::sync::Arc;
use loom::thread;

const NOW: u64 = 1_718_000_000_000;

fn tracker(services: &[(&str, u64)]) -> Arc<QuotaTracker> {
    let config = TrackerConfig::new(
        services
            .iter()
            .map(|&(name, limit)| ServiceConfig::new(name, limit, Period::Day)),
    );
    Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap())
}

#[test]
fn loom_two_threads_on_different_services_lose_no_update() {
    loom::model(|| {
        let tracker = tracker(&[("a", 100), ("b", 100)]);
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            other.record_call("b", 1).unwrap();
        });
        tracker.record_call("a", 1).unwrap();
        tracker.record_call("b", 2).unwrap();
        handle.join().unwrap();
        assert_eq!(tracker.usage("a").unwrap().used, 1);
        assert_eq!(tracker.usage("b").unwrap().used, 3);
    });
}

#[test]
fn loom_two_threads_crossing_critical_report_it_exactly_once() {
    loom::model(|| {
        let tracker = tracker(&[("a", 10)]);
        tracker.record_call("a", 7).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Transition>::new()));
        let sink = std::sync::Arc::clone(&seen);
        tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || other.record_call("a", 1).unwrap().recorded);
        let mine = tracker.record_call("a", 1).unwrap().recorded;
        let theirs = handle.join().unwrap();
        // 7 -> 8 enters Critical (0.8 x 10); 8 -> 9 changes nothing.
        let reported: Vec<_> = mine.into_iter().chain(theirs).collect();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].to, Level::Critical);
        assert_eq!(*seen.lock().unwrap(), reported);
        assert_eq!(tracker.usage("a").unwrap().used, 9);
    });
}

#[test]
fn loom_snapshot_during_records_is_never_partial() {
    loom::model(|| {
        let tracker = tracker(&[("a", 100), ("b", 100)]);
        let writer = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            writer.record_call("a", 1).unwrap();
            writer.record_call("b", 1).unwrap();
        });
        let snapshot = tracker.snapshot();
        let (a, b) = (
            snapshot.service("a").unwrap().used,
            snapshot.service("b").unwrap().used,
        );
        // Program order is a then b: a snapshot may see (0,0), (1,0) or (1,1), never (0,1).
        assert!(matches!((a, b), (0, 0) | (1, 0) | (1, 1)), "({a}, {b})");
        assert_eq!(snapshot.total_used(), a + b);
        handle.join().unwrap();
    });
}

#[test]
fn loom_transitions_of_one_service_are_delivered_in_order() {
    loom::model(|| {
        let tracker = tracker(&[("a", 10)]);
        tracker.record_call("a", 4).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Level>::new()));
        let sink = std::sync::Arc::clone(&seen);
        tracker.on_transition(move |t| sink.lock().unwrap().push(t.to));
        let other = Arc::clone(&tracker);
        // 4 -> 5 enters Warning, then the other -> 8 enters Critical, or 4 -> 7 then 7 -> 8.
        let handle = thread::spawn(move || {
            other.record_call("a", 3).unwrap();
        });
        tracker.record_call("a", 1).unwrap();
        handle.join().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&Level::Critical));
    });
}

/// The save-in-flight protocol: a forced save (entering Critical) that finds a flush in
/// flight is never dropped, whatever the interleaving: once both calls returned, the store
/// holds the recorded calls.
#[test]
fn loom_a_forced_save_that_coalesces_is_never_dropped() {
    loom::model(|| {
        let store = MemoryStore::new();
        let config = TrackerConfig::new([ServiceConfig::new("a", 10, Period::Day)]);
        let tracker = Arc::new(
            QuotaTracker::builder(config)
                .clock(ManualClock::new(NOW))
                .store(store.clone())
                .build()
                .unwrap(),
        );
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            other.record_call("a", 8).unwrap(); // enters Critical: a forced save
        });
        tracker.flush().unwrap();
        handle.join().unwrap();
        let saved = store.state().unwrap();
        assert_eq!(saved.windows().map(|w| w.total).sum::<u64>(), 8);
    });
}
