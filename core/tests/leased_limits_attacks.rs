//! Hostile review of `Leased` admission of several limits: limits rolling at different times
//! (an hour in UTC and a day in Asia/Kolkata, which rolls at 18:30 UTC, mid-hour), a clock
//! moved from another thread while many threads on several trackers lease, and the store
//! holding exactly what was admitted, in every window, once every tracker flushed.

#[path = "support/two_limits.rs"]
mod two_limits;

use quota_core::{
    Admission, Limit, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, TrackerConfig,
    WindowSpec,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use two_limits::{stored, tracker, windows};

/// 18:29:30 UTC, 10 June 2024: half a minute before the Kolkata day ends, mid UTC hour.
const BEFORE_KOLKATA_MIDNIGHT: u64 = 1_718_020_800_000 + (6 * 60 + 29) * 60_000 + 30_000;
const MINUTE: u64 = 60_000;
const KOLKATA_DAY: &str = "day@Asia/Kolkata";

/// `api`: `per_hour` a UTC hour and `per_day` a Kolkata day, admitted up to each limit,
/// leased in blocks of `block`.
fn hour_and_kolkata_day(per_hour: u64, per_day: u64, block: u64) -> TrackerConfig {
    let day = WindowSpec::new(Period::Day)
        .timezone("Asia/Kolkata")
        .unwrap();
    TrackerConfig::new([ServiceConfig::builder("api", per_hour, Period::Hour)
        .and_limit(Limit::new(per_day, day))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block })
        .build()
        .unwrap()])
}

fn minute_and_hour(per_minute: u64, per_hour: u64, block: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", per_minute, Period::Minute)
        .and_limit(Limit::new(per_hour, Period::Hour))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block })
        .build()
        .unwrap()])
}

fn views(tracker: &QuotaTracker) -> Vec<u64> {
    let limits = tracker.usage_limits("api").unwrap();
    limits.iter().map(|u| u.used).collect()
}

/// The day moves on, the hour does not: the block's rest goes back to the old day and the
/// still-current hour (whose view falls by it), and the store holds what was admitted in
/// each window.
#[test]
fn a_day_rolling_mid_hour_gives_the_block_back_to_the_old_day_and_the_current_hour() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(BEFORE_KOLKATA_MIDNIGHT);
    let a = tracker(hour_and_kolkata_day(100, 100, 10), store.clone(), &clock);
    for _ in 0..3 {
        a.try_record("api", 1).unwrap();
    }
    assert_eq!(views(&a), [10, 10], "the block is counted in both views");
    clock.advance(MINUTE); // 18:30:30: a new Kolkata day, the same UTC hour
    a.try_record("api", 1).unwrap();
    a.flush().unwrap();
    assert_eq!(stored(&store, "hour"), 4);
    let days: Vec<u64> = windows(&store, KOLKATA_DAY).iter().map(|w| w.1).collect();
    assert_eq!(days, [3, 1], "3 calls in the old day, 1 in the new one");
    assert_eq!(views(&a), [4, 1]);
}

/// The same roll, but a read rolls the day over first (a `usage`, a metrics scrape, a sync):
/// the next call queues the old block's give-back (7 calls, lowering the hour's view to 3) and
/// leases at once, before any sync sends it. The lease's reply still counts the 7 in the hour;
/// the view leaves out give-backs not sent yet, so it does not count them twice.
#[test]
fn a_block_given_back_in_a_still_current_window_is_not_counted_twice_in_its_view() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(BEFORE_KOLKATA_MIDNIGHT);
    let a = tracker(hour_and_kolkata_day(12, 100, 10), store.clone(), &clock);
    for _ in 0..3 {
        a.try_record("api", 1).unwrap();
    }
    clock.advance(MINUTE);
    // A read rolls the day over (and syncs: the give-back is not queued yet).
    assert_eq!(views(&a), [10, 0]);
    a.try_record("api", 1).unwrap();
    a.flush().unwrap();
    assert_eq!(stored(&store, "hour"), 4, "the store is right");
    assert_eq!(
        views(&a)[0],
        4,
        "the hour's view counts the give-back twice"
    );
    // The hour has 8 left: this tracker may use them.
    let admitted = (0..8).filter(|_| a.try_record("api", 1).is_ok()).count();
    assert_eq!(admitted, 8);
}

/// Many threads on four trackers sharing one store while another thread moves the clock
/// across minutes (every minute is a new block, the hour stays): no minute and no hour ever
/// holds more than its limit, and after every flush the store holds exactly what was
/// admitted, summed over the minutes and in the hour.
#[test]
fn threads_leasing_while_the_clock_crosses_minutes_never_pass_a_limit_nor_lose_a_call() {
    for (per_minute, per_hour, block) in [(40_u64, 10_000_u64, 8_u64), (1_000, 150, 16)] {
        let store = MemoryStore::new();
        let clock = ManualClock::new(1_718_020_800_000);
        let trackers: Vec<Arc<QuotaTracker>> = (0..4)
            .map(|_| {
                let config = minute_and_hour(per_minute, per_hour, block);
                Arc::new(tracker(config, store.clone(), &clock))
            })
            .collect();
        let start = Arc::new(Barrier::new(9));
        let stop = Arc::new(AtomicBool::new(false));
        // Each worker's count of calls done: the clock moves on only once every worker has
        // finished a call since its last move, so no call's clock reading is more than a
        // step old (a reading a whole window old is a backward jump: see the bug below).
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
        let mover = {
            let (clock, start, stop, done) = (
                clock.clone(),
                Arc::clone(&start),
                Arc::clone(&stop),
                Arc::clone(&done),
            );
            thread::spawn(move || {
                start.wait();
                // 12 minutes in steps of 15 s, all in one hour.
                for _ in 0..48 {
                    let seen: Vec<u64> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
                    while done
                        .iter()
                        .zip(&seen)
                        .any(|(d, &s)| d.load(Ordering::SeqCst) < s + 2)
                    {
                        thread::yield_now();
                    }
                    clock.advance(15_000);
                }
                stop.store(true, Ordering::SeqCst);
            })
        };
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let tracker = Arc::clone(&trackers[i % 4]);
                let (start, stop, done) =
                    (Arc::clone(&start), Arc::clone(&stop), Arc::clone(&done));
                thread::spawn(move || {
                    start.wait();
                    let mut admitted = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        if tracker.try_record("api", 1).is_ok() {
                            admitted += 1;
                        }
                        if admitted % 7 == 3 {
                            let _ = tracker.usage_limits("api");
                        }
                        done[i].fetch_add(1, Ordering::SeqCst);
                    }
                    admitted
                })
            })
            .collect();
        mover.join().unwrap();
        let admitted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        for tracker in &trackers {
            tracker.flush().unwrap();
        }
        let minutes = windows(&store, "minute");
        for (start, total) in &minutes {
            assert!(*total <= per_minute, "the minute at {start} holds {total}");
        }
        // Ended minutes are pruned from the store after a grace: those left hold no more than
        // was admitted, the hour exactly that.
        let in_minutes: u64 = minutes.iter().map(|w| w.1).sum();
        assert!(
            in_minutes <= admitted,
            "{in_minutes} in minutes of {admitted}"
        );
        assert!(stored(&store, "hour") <= per_hour);
        assert_eq!(
            stored(&store, "hour"),
            admitted,
            "{per_minute}/min, {per_hour}/h"
        );
    }
}

/// KNOWN BUG, not fixed yet (it predates several limits; see the closing note of issue 18):
/// the clock goes back more than a window (an NTP step, or a call whose clock reading is a
/// whole window old when it takes the lock: a thread stalled over a second with a per-second
/// limit) and forward again. `align` (rules/align.rs) carries the view's count into the
/// window it lands in as `carried`, and `Ledger::book` makes it `unacked`: calls to sync as
/// deltas. Under shared admission the view's count is the *store's* (leases, admissions): the
/// next sync adds it again. 5 calls leave 25 in the minutes (9 under `Exact`; one limit alike).
#[test]
#[ignore = "bug: a backward clock jump syncs a leased view's count as deltas (store counts it twice)"]
fn a_clock_jumping_back_and_forth_does_not_count_leased_calls_twice() {
    let store = MemoryStore::new();
    let five_past = 1_718_020_800_000 + 5 * MINUTE;
    let clock = ManualClock::new(five_past + 10_000);
    let a = tracker(minute_and_hour(40, 1_000, 10), store.clone(), &clock);
    for _ in 0..3 {
        a.try_record("api", 1).unwrap();
    }
    clock.set(five_past - 2 * MINUTE + 10_000); // back two minutes
    a.try_record("api", 1).unwrap();
    clock.set(five_past + 20_000); // and forward again
    a.try_record("api", 1).unwrap();
    a.flush().unwrap();
    let minutes: u64 = windows(&store, "minute").iter().map(|w| w.1).sum();
    assert_eq!((minutes, stored(&store, "hour")), (5, 5));
}

/// Lost replies everywhere: a lease applied whose reply is lost, a give-back applied whose
/// reply is lost, then the store down for a while; resent, each counts once. The store ends
/// holding exactly what was admitted.
#[test]
fn lost_lease_and_give_back_replies_count_once() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(1_718_020_800_000);
    let a = tracker(minute_and_hour(100, 1_000, 10), store.clone(), &clock);
    let mut admitted = 0;
    a.try_record("api", 1).unwrap();
    admitted += 1;
    // The next lease is applied, its reply lost: the call is refused (the store failed).
    for _ in 0..9 {
        a.try_record("api", 1).unwrap();
        admitted += 1;
    }
    store.lose_next_replies(1);
    assert!(a.try_record("api", 1).is_err());
    assert_eq!(stored(&store, "hour"), 20, "the lost lease was applied");
    // After the back-off: the lost lease is resent (granted again, given back), blocks flow.
    clock.advance(5_000);
    for _ in 0..5 {
        if a.try_record("api", 1).is_ok() {
            admitted += 1;
        }
    }
    // A give-back whose reply is lost, then a store that refuses everything for a while.
    store.lose_next_replies(1);
    let _ = a.flush();
    store.set_failing(true);
    clock.advance(5_000);
    let _ = a.try_record("api", 1);
    let _ = a.flush();
    store.set_failing(false);
    clock.advance(5_000);
    for _ in 0..4 {
        if a.try_record("api", 1).is_ok() {
            admitted += 1;
        }
    }
    a.flush().unwrap();
    assert_eq!(a.stats().unresolved_ops, 0);
    let minutes: u64 = windows(&store, "minute").iter().map(|w| w.1).sum();
    assert_eq!((minutes, stored(&store, "hour")), (admitted, admitted));
}

/// `can_call` takes a block (counted in both windows) and a flush gives it back; with the
/// store down it answers `false` and takes nothing.
#[test]
fn can_call_leases_in_every_window_and_the_flush_returns_it() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(1_718_020_800_000);
    let a = tracker(minute_and_hour(100, 1_000, 10), store.clone(), &clock);
    assert!(a.can_call("api").unwrap());
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (10, 10));
    a.flush().unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (0, 0));
    store.set_failing(true);
    assert!(!a.can_call("api").unwrap());
    assert!(a.try_record("api", 1).is_err());
    a.record_call("api", 2).unwrap();
    store.set_failing(false);
    clock.advance(5_000);
    a.flush().unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (2, 2));
}
