//! `Leased` admission of a service of several limits: one store call grants the same block in
//! every limit's window (the most every window has room for below its ceiling), the block is
//! spent while every limit stays in its window and goes back to all of them when one moves on,
//! a flush gives it back, a raise forfeits it; trackers sharing a store from many threads never
//! pass any limit. The multi-process file and Redis suites are in `shared.rs` and
//! `shared_redis.rs`.

#[path = "support/two_limits.rs"]
mod two_limits;

use quota_core::{
    Admission, DenyReason, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker,
    ServiceConfig, TrackerConfig,
};
use std::sync::{Arc, Barrier};
use std::thread;
use two_limits::{both, stored, tracker};

/// Noon, 10 June 2024 (UTC).
const NOON: u64 = 1_718_020_800_000;
const MINUTE: u64 = 60_000;

/// `api`: `per_minute` a minute and `per_hour` an hour, admitted up to each limit (no reserve,
/// Critical at the limit), leased in blocks of `block`.
fn config(per_minute: u64, per_hour: u64, block: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", per_minute, Period::Minute)
        .and_limit(Limit::new(per_hour, Period::Hour))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block })
        .build()
        .unwrap()])
}

#[test]
fn a_block_is_granted_in_every_window_and_goes_back_to_all_when_one_moves_on() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(20, 30, 8), store.clone(), &clock);
    // The first call takes a block of 8, counted in both windows at once.
    a.try_record("api", 1).unwrap();
    assert_eq!(both(&store), (8, 8));
    for _ in 0..7 {
        a.try_record("api", 1).unwrap();
    }
    assert_eq!(both(&store), (8, 8), "spent from the block: no store call");
    // The next call takes another block.
    a.try_record("api", 1).unwrap();
    assert_eq!(both(&store), (16, 16));
    // The minute moves on: the 7 unspent calls go back to both windows (the sync a moved
    // window calls for sends them), and the new minute takes a block of 8 (in the hour too):
    // the hour holds the 9 spent and that block.
    clock.advance(MINUTE);
    a.try_record("api", 1).unwrap();
    assert_eq!(stored(&store, "hour"), 9 + 8);
    // A flush sends the give-back and returns the block in hand: the store holds what was
    // spent, in every window (9 in the old minute, 1 in the new one, 10 in the hour).
    a.flush().unwrap();
    let state = store.state().unwrap();
    let minutes: Vec<u64> = state
        .windows()
        .filter(|w| w.spec.key() == "minute")
        .map(|w| w.total)
        .collect();
    assert_eq!(minutes, [9, 1]);
    assert_eq!(stored(&store, "hour"), 10);
}

#[test]
fn a_block_is_no_larger_than_the_tightest_window_has_room_for() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(100, 12, 10), store.clone(), &clock);
    let b = tracker(config(100, 12, 10), store.clone(), &clock);
    a.try_record("api", 1).unwrap(); // a holds 10 (hour: 10 of 12)
    b.try_record("api", 1).unwrap(); // b gets the 2 the hour has left
    assert_eq!(both(&store), (12, 12));
    b.try_record("api", 1).unwrap();
    let denied = b.try_record("api", 1).unwrap_err();
    assert!(
        matches!(
            denied,
            QuotaError::Denied {
                limit: 12,
                reason: DenyReason::Limit | DenyReason::Critical,
                ..
            }
        ),
        "the hour refuses: {denied}"
    );
    // a gives its unspent 9 back (its view goes down by them; b's learns the lower total in
    // the next window: it may under-admit until then, never over-admit), and a may lease
    // them again: a block of the 9 the hour has left.
    a.flush().unwrap();
    assert_eq!(both(&store), (3, 3));
    a.try_record("api", 1).unwrap();
    assert_eq!(both(&store), (12, 12));
    assert!(b.try_record("api", 1).is_err());
}

#[test]
fn many_threads_on_many_trackers_never_pass_a_limit_and_the_store_holds_what_was_admitted() {
    for (per_minute, per_hour) in [(10_000_u64, 300_u64), (250, 10_000)] {
        let store = MemoryStore::new();
        let clock = ManualClock::new(NOON);
        let trackers: Vec<Arc<QuotaTracker>> = (0..4)
            .map(|_| {
                Arc::new(tracker(
                    config(per_minute, per_hour, 16),
                    store.clone(),
                    &clock,
                ))
            })
            .collect();
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let tracker = Arc::clone(&trackers[i % 4]);
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    (0..100)
                        .filter(|_| tracker.try_record("api", 1).is_ok())
                        .count() as u64
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let binding = per_minute.min(per_hour);
        // Never more than the binding limit; at most a block per tracker stranded in hand.
        assert!(
            admitted <= binding && admitted + 4 * 16 >= binding,
            "{per_minute}/min, {per_hour}/h: admitted {admitted}"
        );
        // Every tracker gives its block back: the store holds exactly what was admitted, in
        // every window.
        for tracker in &trackers {
            tracker.flush().unwrap();
        }
        assert_eq!(both(&store), (admitted, admitted));
    }
}

#[test]
fn a_raise_forfeits_the_block_in_the_raised_window_only() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(50, 80, 10), store.clone(), &clock);
    a.try_record("api", 1).unwrap();
    assert_eq!(both(&store), (10, 10));
    // The provider says 70 of the hour are used: the block is not spent; the hour keeps its
    // 9 unspent calls (its floor may hold them), the minute gets them back.
    a.raise_used("api", 70, Some(NOON + 3_600_000)).unwrap();
    a.flush().unwrap();
    assert_eq!(both(&store), (1, 70));
    // The next call leases again, under the floor: the hour has 10 left; the flush gives the
    // block's unspent 9 back to both.
    a.try_record("api", 1).unwrap();
    a.flush().unwrap();
    assert_eq!(both(&store), (2, 71));
}

#[test]
fn a_priority_call_the_block_does_not_cover_is_one_exact_admission_in_every_window() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    // Normal calls stop at 80 % of the hour (8 of 10); priority ones may use the rest.
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Minute)
        .and_limit(Limit::new(10, Period::Hour))
        .critical_threshold(0.8)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block: 4 })
        .build()
        .unwrap()]);
    let a = tracker(config, store.clone(), &clock);
    for _ in 0..8 {
        a.try_record("api", 1).unwrap();
    }
    assert!(a.try_record("api", 1).is_err(), "normal calls stop at 8");
    a.try_record_priority("api", 2).unwrap();
    assert!(a.try_record_priority("api", 1).is_err(), "the hour is full");
    a.flush().unwrap();
    assert_eq!(both(&store), (10, 10));
}

#[test]
fn record_call_with_the_store_down_counts_here_in_every_limit() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(50, 80, 10), store.clone(), &clock);
    store.set_failing(true);
    assert!(a.try_record("api", 1).is_err());
    a.record_call("api", 3).unwrap();
    let used: Vec<u64> = a
        .usage_limits("api")
        .unwrap()
        .iter()
        .map(|u| u.used)
        .collect();
    assert_eq!(used, [3, 3]);
    store.set_failing(false);
    clock.advance(5_000);
    a.flush().unwrap();
    assert_eq!(both(&store), (3, 3));
}
