//! Loom model checks of the real tracker (its primitives come from `crate::locks`).
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

/// A tracker of one service `a` (`limit` a day) that syncs to a `MemoryStore`.
fn stored_tracker(limit: u64) -> (Arc<QuotaTracker>, MemoryStore) {
    let store = MemoryStore::new();
    let config = TrackerConfig::new([ServiceConfig::new("a", limit, Period::Day)]);
    let tracker = QuotaTracker::builder(config)
        .clock(ManualClock::new(NOW))
        .store(store.clone())
        .build()
        .unwrap();
    (Arc::new(tracker), store)
}

/// Every window's total in the store.
fn stored_total(store: &MemoryStore) -> u64 {
    store.state().unwrap().windows().map(|w| w.total).sum()
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
        let (tracker, store) = stored_tracker(10);
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            other.record_call("a", 8).unwrap(); // enters Critical: a forced save
        });
        tracker.flush().unwrap();
        handle.join().unwrap();
        assert_eq!(stored_total(&store), 8);
    });
}

/// The fast path (one swap on the service's word) against a lock holder reading the same
/// service: every fast call lands in the locked state exactly once, and a read sees the calls
/// in program order.
#[test]
fn loom_fast_calls_and_a_locked_read_lose_nothing() {
    loom::model(|| {
        let tracker = tracker(&[("a", 100)]);
        tracker.record_call("a", 1).unwrap(); // publishes the word: later calls are fast
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            let first = other.record_call("a", 1).unwrap().usage.used;
            let second = other.record_call("a", 1).unwrap().usage.used;
            assert!(first < second);
        });
        let seen = tracker.usage("a").unwrap();
        assert!((1..=3).contains(&seen.used), "{}", seen.used);
        assert_eq!(seen.total_recorded, seen.used);
        handle.join().unwrap();
        let after = tracker.usage("a").unwrap();
        assert_eq!((after.used, after.total_recorded), (3, 3));
    });
}

/// Two fast callers on one service and a third that takes the lock (a `try_record` that
/// would cross the Warning threshold): each call's result is a distinct count, and the final
/// count is their sum.
#[test]
fn loom_fast_and_locked_calls_on_one_service_count_exactly() {
    loom::model(|| {
        let tracker = tracker(&[("a", 10)]);
        tracker.record_call("a", 1).unwrap();
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || other.record_call("a", 1).unwrap().usage.used);
        // 1 + 4 = 5 is the Warning threshold (0.5 x 10): this one takes the lock, unless the
        // other call came first (then 2 + 4 = 6, still a level change).
        let mine = tracker.try_record("a", 4).unwrap().usage.used;
        let theirs = handle.join().unwrap();
        let mut counts = [mine, theirs];
        counts.sort_unstable();
        assert!(counts == [2, 6] || counts == [5, 6], "{counts:?}");
        assert_eq!(tracker.usage("a").unwrap().used, 6);
    });
}

/// A fast call racing a window's end: the call counts in the window its clock reading
/// belongs to (or, a moment late, in the next one), never in both and never lost.
#[test]
fn loom_a_fast_call_racing_a_roll_over_counts_once() {
    loom::model(|| {
        let clock = ManualClock::new(NOW);
        let config = TrackerConfig::new([ServiceConfig::new("a", 100, Period::Day)]);
        let tracker = Arc::new(QuotaTracker::new_with_clock(config, clock.clone()).unwrap());
        tracker.record_call("a", 5).unwrap();
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            let usage = other.record_call("a", 1).unwrap().usage;
            (usage.used, usage.window_start_ms)
        });
        clock.advance(86_400_000);
        let mine = tracker.record_call("a", 1).unwrap();
        let (theirs, their_window) = handle.join().unwrap();
        let after = tracker.usage("a").unwrap();
        assert_eq!(after.total_recorded, 7, "every call counted once");
        // The other call read the clock before the day ended (counted in the old window: 6,
        // which the roll-over left behind) or after (counted in the new one); its answer
        // names the window it counted in.
        let new_window = after.window_start_ms;
        match theirs {
            6 => {
                assert_eq!((mine.usage.used, after.used), (1, 1));
                assert_eq!(their_window, new_window - 86_400_000);
            }
            _ => {
                assert_eq!(after.used, 2);
                assert_eq!(their_window, new_window);
            }
        }
    });
}

/// The fast path with a store: calls counted without the lock are booked for the store when
/// a lock holder (here a flush) takes them in; the store ends with every call exactly once.
#[test]
fn loom_fast_calls_reach_the_store_exactly_once() {
    loom::model(|| {
        let (tracker, store) = stored_tracker(100);
        tracker.record_call("a", 1).unwrap();
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            other.record_call("a", 2).unwrap();
        });
        tracker.flush().unwrap();
        handle.join().unwrap();
        tracker.flush().unwrap();
        assert_eq!(stored_total(&store), 3);
    });
}

/// A lock holder that moves the window but leaves the count as it was (a roll-over at 0): the
/// word's epoch alone tells a fast call that loaded the word before it that the window it
/// read is gone. The call's answer names the window its count is in.
#[test]
fn loom_a_fast_call_racing_a_roll_over_that_keeps_the_count_answers_its_window() {
    loom::model(|| {
        let clock = ManualClock::new(NOW);
        let config = TrackerConfig::new([ServiceConfig::new("a", 100, Period::Day)]);
        let tracker = Arc::new(QuotaTracker::new_with_clock(config, clock.clone()).unwrap());
        let old_window = tracker.usage("a").unwrap().window_start_ms; // publishes 0
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            let usage = other.record_call("a", 1).unwrap().usage;
            (usage.used, usage.window_start_ms)
        });
        clock.advance(86_400_000);
        let rolled = tracker.usage("a").unwrap(); // rolls over; the count stays 0 or 1
        let (theirs, their_window) = handle.join().unwrap();
        let after = tracker.usage("a").unwrap();
        assert_eq!(after.total_recorded, 1);
        assert_eq!(theirs, 1);
        assert_eq!(rolled.window_start_ms, old_window + 86_400_000);
        if their_window == old_window {
            // Counted before the roll-over: the new window starts empty.
            assert_eq!(after.used, 0);
        } else {
            assert_eq!(their_window, after.window_start_ms);
            assert_eq!(after.used, 1);
        }
    });
}

/// A record racing a reconfigure that doubles the limit: the count is kept whichever comes
/// first, and the observer receives each level change once, chained from the level before to
/// the level after (record first: Warning -> Critical under 10, then Critical -> Normal under
/// 20; reconfigure first: Warning -> Normal, and the record changes nothing).
#[test]
fn loom_a_record_racing_a_reconfigure_loses_no_count_and_reports_once() {
    loom::model(|| {
        let tracker = tracker(&[("a", 10)]);
        tracker.record_call("a", 7).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Transition>::new()));
        let sink = std::sync::Arc::clone(&seen);
        tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            other.record_call("a", 1).unwrap();
        });
        let doubled = TrackerConfig::new([ServiceConfig::new("a", 20, Period::Day)]);
        tracker.reconfigure(doubled).unwrap();
        handle.join().unwrap();
        let usage = tracker.usage("a").unwrap();
        assert_eq!((usage.used, usage.limit), (8, 20));
        let seen = seen.lock().unwrap().clone();
        let mut level = Level::Warning;
        for t in &seen {
            assert_eq!(t.from, level, "{seen:?}");
            level = t.to;
        }
        assert_eq!(level, Level::Normal, "{seen:?}");
        assert!(seen.len() <= 2, "{seen:?}");
    });
}

#[test]
fn loom_two_threads_admitted_across_two_limits_never_pass_either() {
    loom::model(|| {
        // 10 a day and 5 an hour: normal admission stops at 4 an hour (Critical, 80%).
        let service = ServiceConfig::builder("a", 10, Period::Day)
            .and_limit(crate::Limit::new(5, Period::Hour))
            .build()
            .unwrap();
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(TrackerConfig::new([service]), ManualClock::new(NOW))
                .unwrap(),
        );
        tracker.record_call("a", 2).unwrap();
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || other.try_record("a", 2).is_ok());
        let mine = tracker.try_record("a", 2).is_ok();
        let theirs = handle.join().unwrap();
        // Exactly one of the two fits under the hour's 4: counted in both windows, the other
        // in neither.
        assert!(mine ^ theirs, "one admitted, not {mine} and {theirs}");
        let used: Vec<u64> = tracker
            .usage_limits("a")
            .unwrap()
            .iter()
            .map(|usage| usage.used)
            .collect();
        assert_eq!(used, [4, 4]);
    });
}

#[test]
fn loom_a_settle_racing_fast_calls_counts_exactly_here_and_in_the_store() {
    loom::model(|| {
        let (tracker, store) = stored_tracker(100);
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || {
            other.record_call("a", 1).unwrap();
        });
        // Held at 5, settled at 2: 3 given back while the other thread counts on the fast path.
        let hold = tracker.hold("a", 5).unwrap();
        hold.settle(2).unwrap();
        handle.join().unwrap();
        assert_eq!(tracker.usage("a").unwrap().used, 3);
        tracker.flush().unwrap();
        assert_eq!(stored_total(&store), 3);
    });
}

#[test]
fn loom_try_record_many_is_all_or_nothing_against_a_racing_record() {
    loom::model(|| {
        // Normal calls stop at 8 (Critical, 0.8 x 10): `b` has room for one more call.
        let tracker = tracker(&[("a", 10), ("b", 10)]);
        tracker.record_call("b", 7).unwrap();
        let other = Arc::clone(&tracker);
        let handle = thread::spawn(move || other.try_record("b", 1).is_ok());
        let both = tracker.try_record_many(&[("a", 1), ("b", 1)]).is_ok();
        let single = handle.join().unwrap();
        // Exactly one of the two takes `b`'s last call; `a` is counted only with it.
        assert!(both != single);
        assert_eq!(tracker.usage("a").unwrap().used, u64::from(both));
        assert_eq!(tracker.usage("b").unwrap().used, 8);
    });
}
