//! Transition observers: each change once, in order, after the lock, panics contained.

use quota_core::{
    Level, ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig, Transition,
};
use std::sync::{Arc, Mutex};

const JUNE_10: u64 = 1_718_000_000_000;
const JULY_1: u64 = 1_719_792_000_000;

fn tracker(clock: &ManualClock) -> Arc<QuotaTracker> {
    let config = TrackerConfig::new([
        ServiceConfig::new("a", 10, Period::Month),
        ServiceConfig::new("b", 100, Period::Minute),
    ]);
    Arc::new(QuotaTracker::new_with_clock(config, clock.clone()).unwrap())
}

fn collect(tracker: &QuotaTracker) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

fn levels(seen: &Mutex<Vec<Transition>>) -> Vec<(String, Level, Level)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|t| (t.service.to_string(), t.from, t.to))
        .collect()
}

#[test]
fn every_change_reaches_every_observer_once_in_order() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    let first = collect(&tracker);
    let second = collect(&tracker);
    for _ in 0..12 {
        tracker.record_call("a", 1).unwrap();
    }
    let expected = vec![
        ("a".to_owned(), Level::Normal, Level::Warning),
        ("a".to_owned(), Level::Warning, Level::Critical),
        ("a".to_owned(), Level::Critical, Level::Exhausted),
    ];
    assert_eq!(levels(&first), expected);
    assert_eq!(levels(&second), expected);
    let t = &first.lock().unwrap()[1];
    assert_eq!((t.used, t.limit, t.at_ms), (8, 10, JUNE_10));
}

#[test]
fn a_big_count_jumps_levels_in_one_transition() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    let seen = collect(&tracker);
    let recorded = tracker.record_call("a", 9).unwrap();
    let transition = recorded.transition().unwrap();
    assert_eq!(
        (transition.from, transition.to),
        (Level::Normal, Level::Critical)
    );
    assert_eq!(levels(&seen).len(), 1);
}

#[test]
fn window_reset_is_reported_downwards_exactly_once() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    tracker.record_call("a", 9).unwrap();
    let seen = collect(&tracker);
    clock.set(JULY_1 - 1);
    assert_eq!(tracker.usage("a").unwrap().used, 9);
    assert!(seen.lock().unwrap().is_empty());
    clock.set(JULY_1);
    let usage = tracker.usage("a").unwrap();
    assert_eq!((usage.used, usage.window_start_ms), (0, JULY_1));
    tracker.snapshot();
    tracker.can_call("a").unwrap();
    tracker.record_call("a", 1).unwrap();
    assert_eq!(
        levels(&seen),
        vec![("a".to_owned(), Level::Critical, Level::Normal)]
    );
    assert_eq!(seen.lock().unwrap()[0].at_ms, JULY_1);
}

#[test]
fn reset_then_record_reports_both_changes_reset_first() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    tracker.record_call("a", 10).unwrap();
    let seen = collect(&tracker);
    clock.set(JULY_1 + 5);
    let recorded = tracker.record_call("a", 8).unwrap();
    let reset = recorded.reset.unwrap();
    let own = recorded.recorded.unwrap();
    assert_eq!((reset.from, reset.to), (Level::Exhausted, Level::Normal));
    assert_eq!((own.from, own.to), (Level::Normal, Level::Critical));
    assert_eq!(
        levels(&seen),
        vec![
            ("a".to_owned(), Level::Exhausted, Level::Normal),
            ("a".to_owned(), Level::Normal, Level::Critical),
        ]
    );

    // A reset with no further change is the call's transition.
    clock.set(JULY_1 + 31 * 86_400_000);
    let recorded = tracker.record_call("a", 1).unwrap();
    assert_eq!(recorded.transition().unwrap().to, Level::Normal);
    assert_eq!(recorded.reset.unwrap().to, Level::Normal);
    assert!(recorded.recorded.is_none());
}

#[test]
fn observers_run_outside_the_lock_and_may_call_back() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (sink, inner) = (Arc::clone(&seen), Arc::clone(&tracker));
    tracker.on_transition(move |t| {
        // Reading (and even recording) from inside an observer must not deadlock.
        let used = inner.usage(&t.service).unwrap().used;
        inner.snapshot();
        if t.to == Level::Warning {
            inner.record_call(&t.service, 3).unwrap(); // causes warning -> critical
        }
        sink.lock().unwrap().push((t.to, used));
    });
    tracker.record_call("a", 5).unwrap();
    // The nested change is delivered after the outer one, before the outer call returns.
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Level::Warning, 5), (Level::Critical, 8)]
    );
    assert_eq!(tracker.usage("a").unwrap().used, 8);
}

#[test]
fn a_panicking_observer_is_contained() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    tracker.on_transition(|_| panic!("observer bug"));
    let seen = collect(&tracker);
    let recorded = tracker.record_call("a", 5).unwrap();
    assert_eq!(recorded.usage.used, 5);
    assert_eq!(levels(&seen).len(), 1);
    // Nothing is poisoned: the tracker keeps working, observers keep running.
    tracker.record_call("a", 3).unwrap();
    tracker.record_call("b", 1).unwrap();
    assert_eq!(tracker.snapshot().total_used(), 9);
    assert_eq!(levels(&seen).len(), 2);
}

#[test]
fn unsubscribe_stops_delivery() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = tracker(&clock);
    let seen = Arc::new(Mutex::new(0));
    let sink = Arc::clone(&seen);
    let id = tracker.on_transition(move |_| *sink.lock().unwrap() += 1);
    tracker.record_call("a", 5).unwrap();
    assert!(tracker.unsubscribe(id));
    assert!(!tracker.unsubscribe(id));
    tracker.record_call("a", 5).unwrap();
    assert_eq!(*seen.lock().unwrap(), 1);
}

#[test]
fn minute_windows_roll_over_on_the_minute() {
    let clock = ManualClock::new(JUNE_10); // 06:13:20 UTC
    let tracker = tracker(&clock);
    tracker.record_call("b", 90).unwrap();
    let usage = tracker.usage("b").unwrap();
    assert_eq!(usage.window_start_ms, JUNE_10 - 20_000);
    assert_eq!(usage.reset_at_ms, JUNE_10 + 40_000);
    clock.advance(39_999);
    assert_eq!(tracker.usage("b").unwrap().used, 90);
    clock.advance(1);
    let usage = tracker.usage("b").unwrap();
    assert_eq!((usage.used, usage.total_recorded), (0, 90));
    // A clock that goes backwards does not reopen the old window.
    clock.set(JUNE_10);
    assert_eq!(tracker.record_call("b", 1).unwrap().usage.used, 1);
}
