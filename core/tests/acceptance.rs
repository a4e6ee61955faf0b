//! The original tracker's acceptance scenarios, ported: concurrent calls for different
//! services must never overwrite each other.

use quota_core::{Level, ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use std::sync::{Arc, Barrier};
use std::thread;

const NOW: u64 = 1_718_000_000_000; // 2024-06-10, mid-month

fn tracker(services: &[(&str, u64)]) -> Arc<QuotaTracker> {
    let config = TrackerConfig::new(
        services
            .iter()
            .map(|&(name, limit)| ServiceConfig::new(name, limit, Period::Month)),
    );
    Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap())
}

fn used(tracker: &QuotaTracker, service: &str) -> u64 {
    tracker.usage(service).unwrap().used
}

#[test]
fn hundred_threads_per_service_on_two_services_lose_nothing() {
    let tracker = tracker(&[("a", 1_000), ("b", 1_000)]);
    let barrier = Arc::new(Barrier::new(200));
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let (tracker, barrier) = (Arc::clone(&tracker), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let service = if i % 2 == 0 { "a" } else { "b" };
                tracker.record_call(service, 1).unwrap();
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(used(&tracker, "a"), 100);
    assert_eq!(used(&tracker, "b"), 100);
}

#[test]
fn fifty_recorded_then_fifty_concurrent_make_exactly_a_hundred() {
    let tracker = tracker(&[("a", 1_000)]);
    tracker.record_call("a", 50).unwrap();
    thread::scope(|scope| {
        for _ in 0..50 {
            scope.spawn(|| tracker.record_call("a", 1).unwrap());
        }
    });
    assert_eq!(used(&tracker, "a"), 100);
}

#[test]
fn recorders_and_checkers_together_keep_exact_totals() {
    let tracker = tracker(&[("a", 1_000_000)]);
    let barrier = Barrier::new(4);
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..5_000 {
                    tracker.record_call("a", 1).unwrap();
                }
            });
        }
        for _ in 0..2 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..5_000 {
                    assert!(tracker.can_call("a").unwrap());
                }
            });
        }
    });
    assert_eq!(used(&tracker, "a"), 10_000);
}

#[test]
fn fifty_threads_of_twenty_calls_released_together_make_a_thousand() {
    let tracker = tracker(&[("a", 10_000)]);
    let barrier = Barrier::new(50);
    thread::scope(|scope| {
        for _ in 0..50 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..20 {
                    tracker.record_call("a", 1).unwrap();
                }
            });
        }
    });
    assert_eq!(used(&tracker, "a"), 1_000);
}

#[test]
fn four_hundred_calls_to_tiingo_are_critical() {
    let tracker =
        QuotaTracker::new_with_clock(TrackerConfig::defaults(), ManualClock::new(NOW)).unwrap();
    for _ in 0..399 {
        tracker.record_call("tiingo", 1).unwrap();
    }
    assert_eq!(tracker.usage("tiingo").unwrap().level(), Level::Warning);
    let recorded = tracker.record_call("tiingo", 1).unwrap();
    let usage = &recorded.usage;
    assert_eq!((usage.used, usage.limit, usage.remaining), (400, 500, 100));
    assert_eq!(usage.level(), Level::Critical);
    assert!(usage.is_critical() && usage.is_warning());
    assert_eq!(usage.percent_used(), 80.0);
    let transition = recorded.transition().expect("crossing 400 is a transition");
    assert_eq!(
        (transition.from, transition.to),
        (Level::Warning, Level::Critical)
    );
    assert!(!tracker.can_call("tiingo").unwrap());
}

#[test]
fn defaults_and_reserve() {
    let tracker = QuotaTracker::with_defaults();
    let names: Vec<_> = tracker
        .snapshot()
        .services()
        .iter()
        .map(|usage| (usage.name.to_string(), usage.limit, usage.period))
        .collect();
    assert_eq!(
        names,
        [
            ("tiingo".to_owned(), 500, Period::Month),
            ("finnhub".to_owned(), 60, Period::Minute),
            ("sendgrid".to_owned(), 100, Period::Day),
        ]
    );
    assert_eq!(tracker.reserve_allocation("tiingo").unwrap(), 50);
    assert_eq!(tracker.reserve_allocation("finnhub").unwrap(), 6);
    assert_eq!(tracker.reserve_allocation("sendgrid").unwrap(), 10);
}
