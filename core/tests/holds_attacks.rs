//! Hostile tests of holds and `try_record_many`, from a review: the block in hand, raises,
//! reconfigures, removed services, overflow, observers and clocks that call back or panic,
//! many threads over window ends.

#[path = "support/two_limits.rs"]
mod two_limits;

use quota_core::{
    Admission, Clock, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker,
    ServiceConfig, TrackerConfig,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use two_limits::{stored, tracker};

const START: u64 = 1_700_000_080_000; // 40 s into a minute

fn llm(limit: u64) -> ServiceConfig {
    ServiceConfig::builder("llm", limit, Period::Minute)
        .warn_threshold(0.5)
        .critical_threshold(0.9)
        .reserve_fraction(0.0)
        .build()
        .unwrap()
}

fn leased(block: u64) -> ServiceConfig {
    ServiceConfig::builder("llm", 10_000, Period::Minute)
        .admission(Admission::Leased { block })
        .build()
        .unwrap()
}

/// Runs `f` on a thread; fails if it takes longer than `secs` (a deadlock).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("deadlock: no answer in time")
}

/// A raise synced *before* the hold should not forfeit its give-back through the store. It
/// does today: a hold's `GiveBack` carries raise count 0 (a `Local` tracker does not learn the
/// store's raise count), so the store forfeits it in any raised window (an over-count, in
/// `forfeited_calls`; README says so). A raise not synced yet is handled (the floor is lowered).
#[test]
#[ignore = "known over-count: a hold's give-back carries raise count 0 (see README, holds)"]
fn a_raise_before_the_hold_forfeits_its_give_back() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let t = tracker(
        TrackerConfig::new([llm(10_000)]),
        Arc::clone(&store),
        &clock,
    );
    // The provider's count at the start of the minute.
    t.raise_used("llm", 100, None).unwrap();
    t.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 100);
    let hold = t.hold("llm", 1_000).unwrap();
    t.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 1_100);
    hold.settle(100).unwrap();
    t.flush().unwrap();
    // 100 (provider) + 100 (settled): the raise came before the calls were counted.
    assert_eq!(
        stored(&store, "minute"),
        200,
        "forfeited: {}",
        t.stats().forfeited_calls
    );
}

// 2. Leased: a hold spent from block B1; B1 goes back (flush); another instance raises the
// window; B2 is granted after the raise. The settle gives back *into B2*, which the store
// then takes off past the floor (B2's raise count is current): the store under-counts.
#[test]
fn a_leased_give_back_after_a_foreign_raise_never_goes_below_the_floor() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let config = || TrackerConfig::new([leased(1_000)]);
    let a = tracker(config(), Arc::clone(&store), &clock);
    let b = tracker(config(), Arc::clone(&store), &clock);
    let hold = a.hold("llm", 400).unwrap();
    a.flush().unwrap(); // B1's unused 600 go back
    assert_eq!(stored(&store, "minute"), 400);
    // The provider says 5,000 were used in this minute (its count holds a's real calls).
    b.raise_used("llm", 5_000, None).unwrap();
    b.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 5_000);
    // a takes a new block B2 (granted after the raise) for one more call.
    let one = a.hold("llm", 1).unwrap();
    assert_eq!(stored(&store, "minute"), 6_000);
    hold.settle(100).unwrap();
    one.settle(1).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    // The floor (5,000) plus the one call since.
    let total = stored(&store, "minute");
    assert!(
        total >= 5_001,
        "the store fell below the provider's floor: {total}"
    );
}

// 3. Settling far above the estimate: the excess that overflows the counter is dropped
// silently while the Settlement reports it added.
#[test]
fn a_settle_whose_excess_would_overflow_reports_what_it_added() {
    let config = ServiceConfig::builder("llm", u64::MAX, Period::Minute)
        .build()
        .unwrap();
    let clock = ManualClock::new(START);
    let t = QuotaTracker::new_with_clock(TrackerConfig::new([config]), clock).unwrap();
    t.record_call("llm", 10).unwrap();
    let hold = t.hold("llm", 1).unwrap();
    let settled = hold.settle(u64::MAX);
    match settled {
        Ok(s) => {
            assert_eq!(
                s.used,
                t.usage("llm").unwrap().used,
                "Settlement.used disagrees with usage"
            );
            assert!(
                s.added == 0 || s.used >= s.added,
                "reported {} added but used is {}",
                s.added,
                s.used
            );
        }
        Err(error) => println!("refused: {error}"),
    }
}

// 4. Observers that re-enter the tracker from the callback: hold, settle, try_record_many.
#[test]
fn an_observer_that_holds_and_settles_inside_the_callback_does_not_deadlock() {
    within(20, || {
        let clock = ManualClock::new(START);
        let t = Arc::new(
            QuotaTracker::new_with_clock(
                TrackerConfig::new([llm(1_000), ServiceConfig::new("other", 1_000, Period::Day)]),
                clock,
            )
            .unwrap(),
        );
        let weak = Arc::downgrade(&t);
        let calls = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&calls);
        t.on_transition(move |tr| {
            if c.fetch_add(1, Ordering::SeqCst) > 20 {
                return;
            }
            let t = weak.upgrade().unwrap();
            if &*tr.service == "llm" {
                let h = t.hold("other", 1).unwrap();
                h.settle(2).unwrap();
                let _ = t.try_record_many(&[("other", 1), ("llm", 1)]);
                if let Ok(h) = t.hold("llm", 1) {
                    h.cancel().unwrap();
                }
            }
        });
        let hold = t.hold("llm", 600).unwrap(); // Normal -> Warning
        hold.settle(10).unwrap(); // Warning -> Normal
        t.hold_many(&[("llm", 850), ("other", 1)])
            .unwrap()
            .into_iter()
            .for_each(|h| {
                h.cancel().unwrap();
            });
        calls.load(Ordering::SeqCst)
    });
}

// 5. A clock that panics during hold and settle: no panic reaches the caller, counts exact.
struct PanickyClock {
    inner: ManualClock,
    panic: Arc<AtomicBool>,
}

impl Clock for PanickyClock {
    fn now_ms(&self) -> u64 {
        if self.panic.load(Ordering::SeqCst) {
            panic!("clock broke");
        }
        self.inner.now_ms()
    }
}

#[test]
fn a_panicking_clock_during_hold_and_settle_is_survived() {
    let panic = Arc::new(AtomicBool::new(false));
    let clock = PanickyClock {
        inner: ManualClock::new(START),
        panic: Arc::clone(&panic),
    };
    let t = QuotaTracker::new_with_clock(TrackerConfig::new([llm(10_000)]), clock).unwrap();
    let h = t.hold("llm", 100).unwrap();
    panic.store(true, Ordering::SeqCst);
    let h2 = t.hold("llm", 50).unwrap();
    h.settle(30).unwrap();
    let many = t.try_record_many(&[("llm", 5)]).unwrap();
    assert_eq!(many[0].usage.used, 85);
    panic.store(false, Ordering::SeqCst);
    h2.settle(70).unwrap();
    assert_eq!(t.usage("llm").unwrap().used, 105);
}

// 6. Many threads, overlapping sets of Local and Exact services in different orders, with
// holds and settles: no deadlock, counts exact.
#[test]
fn many_threads_overlapping_sets_in_different_orders_do_not_deadlock() {
    within(120, || {
        let clock = ManualClock::new(START);
        let store = Arc::new(MemoryStore::new());
        let big = |name: &str, admission| {
            ServiceConfig::builder(name, 1 << 40, Period::Hour)
                .admission(admission)
                .build()
                .unwrap()
        };
        let config = TrackerConfig::new([
            big("a", Admission::Local),
            big("b", Admission::Exact),
            big("c", Admission::Local),
            big("d", Admission::Leased { block: 50 }),
            big("e", Admission::Local),
        ]);
        let t = Arc::new(tracker(config, Arc::clone(&store), &clock));
        let sets: [&[&str]; 6] = [
            &["a", "b", "c"],
            &["c", "b", "a"],
            &["e", "a"],
            &["d", "e", "c", "a"],
            &["b", "d"],
            &["a", "e", "d", "c", "b"],
        ];
        let expected: Vec<AtomicU64> = (0..5).map(|_| AtomicU64::new(0)).collect();
        let expected = Arc::new(expected);
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let t = Arc::clone(&t);
                let set = sets[i];
                let expected = Arc::clone(&expected);
                std::thread::spawn(move || {
                    for n in 0..200u64 {
                        let calls: Vec<(&str, u64)> =
                            set.iter().map(|s| (*s, 1 + (n % 3))).collect();
                        if n % 2 == 0 {
                            for (name, c) in &calls {
                                t.try_record_many(&[(name, *c)]).unwrap();
                                let idx = (name.as_bytes()[0] - b'a') as usize;
                                expected[idx].fetch_add(*c, Ordering::SeqCst);
                            }
                        } else {
                            let holds = t.hold_many(&calls).unwrap();
                            for h in holds {
                                let name = h.service().to_owned();
                                let s = h.settle(n % 5).unwrap();
                                let idx = (name.as_bytes()[0] - b'a') as usize;
                                expected[idx].fetch_add(s.actual, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        t.flush().unwrap();
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let st = store.state().unwrap();
            let total: u64 = st
                .windows()
                .filter(|w| w.service == *name)
                .map(|w| w.total)
                .sum();
            assert_eq!(total, expected[i].load(Ordering::SeqCst), "service {name}");
        }
        assert_eq!(t.stats().forfeited_calls, 0);
    });
}

// 7. Two limits: one window ended, the other did not; settle above and below.
#[test]
fn two_limits_one_ended_settle_with_a_store_is_exact() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let config = ServiceConfig::builder("llm", 10_000, Period::Minute)
        .and_limit(Limit::new(100_000, Period::Hour))
        .build()
        .unwrap();
    let t = tracker(TrackerConfig::new([config]), Arc::clone(&store), &clock);
    let a = t.hold("llm", 1_000).unwrap();
    let b = t.hold("llm", 1_000).unwrap();
    t.flush().unwrap();
    let c = t.hold("llm", 500).unwrap();
    clock.advance(30_000); // the minute ended, the hour goes on
    a.settle(200).unwrap();
    b.settle(3_000).unwrap();
    c.settle(100).unwrap();
    t.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 3_300);
    assert_eq!(stored(&store, "hour"), 3_300);
    assert_eq!(t.usage_limits("llm").unwrap()[1].used, 3_300);
    assert_eq!(t.stats().forfeited_calls, 0);
}

fn total_of(store: &MemoryStore, name: &str) -> u64 {
    store
        .state()
        .unwrap()
        .windows()
        .filter(|w| w.service == name)
        .map(|w| w.total)
        .sum()
}

/// A store of one's own that syncs but answers every give-back `Unsupported`.
struct NoGiveBacks(MemoryStore);

impl quota_core::Store for NoGiveBacks {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        self.0.sync(batch)
    }
}

#[test]
fn a_store_that_cannot_give_back_forfeits_and_moves_on() {
    let clock = ManualClock::new(START);
    let inner = MemoryStore::new();
    let t = tracker(
        TrackerConfig::new([llm(10_000)]),
        NoGiveBacks(inner.clone()),
        &clock,
    );
    let hold = t.hold("llm", 1_000).unwrap();
    t.flush().unwrap();
    hold.settle(100).unwrap();
    t.flush().unwrap();
    t.flush().unwrap();
    assert_eq!(total_of(&inner, "llm"), 1_000);
    assert_eq!(t.stats().forfeited_calls, 900);
    assert_eq!(t.stats().unresolved_ops, 0);
}

#[test]
fn settles_while_the_store_fails_are_exact_once_it_is_back() {
    for admission in [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 300 },
    ] {
        let clock = ManualClock::new(START);
        let store = MemoryStore::new();
        let config = ServiceConfig::builder("llm", 100_000, Period::Minute)
            .admission(admission)
            .build()
            .unwrap();
        let t = tracker(TrackerConfig::new([config]), store.clone(), &clock);
        let a = t.hold("llm", 1_000).unwrap();
        let b = t.hold("llm", 1_000).unwrap();
        let _ = t.flush();
        store.set_failing(true);
        let _ = t.flush();
        a.settle(10).unwrap();
        b.settle(2_500).unwrap();
        store.lose_next_replies(0);
        store.set_failing(false);
        clock.advance(1_000);
        store.lose_next_replies(3);
        for _ in 0..6 {
            let _ = t.flush();
        }
        t.flush().unwrap();
        let forfeited = t.stats().forfeited_calls;
        assert_eq!(
            total_of(&store, "llm"),
            2_510 + forfeited,
            "{admission:?}: forfeited {forfeited}"
        );
        assert_eq!(forfeited, 0, "{admission:?}");
    }
}

/// 6 threads hold/settle (above and below) and try_record while a 7th moves the clock across
/// minute ends; with a store. The store ends at the sum of what was settled plus what stayed
/// counted as forfeited.
fn racing_window_ends(admission: Admission) {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let config = ServiceConfig::builder("llm", 1 << 40, Period::Hour)
        .admission(admission)
        .build()
        .unwrap();
    let t = Arc::new(tracker(TrackerConfig::new([config]), store.clone(), &clock));
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let (clock, stop) = (clock.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            // 6 minutes at most: the store keeps the latest 8 windows.
            let mut moves = 0;
            while !stop.load(Ordering::Relaxed) && moves < 20 {
                clock.advance(10 * 60_000);
                moves += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let workers: Vec<_> = (0..6u64)
        .map(|seed| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let mut sum = 0u64;
                let mut x = seed * 7919 + 1;
                for i in 0..600u64 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let estimate = 1 + (x >> 33) % 100;
                    let actual = (x >> 17) % 200;
                    let hold = match t.hold("llm", estimate) {
                        Ok(hold) => hold,
                        Err(QuotaError::Denied { .. }) => continue,
                        Err(error) => panic!("{error}"),
                    };
                    if i % 7 == 0 {
                        let _ = t.flush();
                    }
                    if i % 5 == 0 {
                        hold.cancel().unwrap();
                    } else {
                        hold.settle(actual).unwrap();
                        sum += actual;
                    }
                    if t.try_record("llm", 1).is_ok() {
                        sum += 1;
                    }
                }
                sum
            })
        })
        .collect();
    let sum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    mover.join().unwrap();
    t.flush().unwrap();
    t.flush().unwrap();
    let forfeited = t.stats().forfeited_calls;
    let total = total_of(&store, "llm");
    assert_eq!(
        total,
        sum + forfeited,
        "{admission:?}: stored {total}, settled {sum}, forfeited {forfeited}"
    );
}

#[test]
fn racing_window_ends_local() {
    racing_window_ends(Admission::Local);
}

#[test]
fn racing_window_ends_exact() {
    racing_window_ends(Admission::Exact);
}

#[test]
fn racing_window_ends_leased() {
    racing_window_ends(Admission::Leased { block: 250 });
}

/// A hold outstanding while a reconfigure switches its admission (and back): the store ends
/// at what was settled (plus what was forfeited).
#[test]
fn settles_across_admission_switches_are_exact() {
    let all = [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 500 },
    ];
    for from in all {
        for to in all {
            for (estimate, actual) in [(1_000u64, 100u64), (100, 1_000)] {
                let clock = ManualClock::new(START);
                let store = MemoryStore::new();
                let config = |admission| {
                    TrackerConfig::new([ServiceConfig::builder("llm", 100_000, Period::Minute)
                        .admission(admission)
                        .build()
                        .unwrap()])
                };
                let t = tracker(config(from), store.clone(), &clock);
                let synced = t.hold("llm", estimate).unwrap();
                t.flush().unwrap();
                let unsynced = t.hold("llm", estimate).unwrap();
                t.reconfigure(config(to)).unwrap();
                let after = t.hold("llm", 3).unwrap(); // something in the new admission
                synced.settle(actual).unwrap();
                unsynced.settle(actual).unwrap();
                after.settle(3).unwrap();
                t.flush().unwrap();
                t.flush().unwrap();
                let forfeited = t.stats().forfeited_calls;
                let total = total_of(&store, "llm");
                assert_eq!(
                    total,
                    2 * actual + 3 + forfeited,
                    "{from:?} -> {to:?}, {estimate} -> {actual}: forfeited {forfeited}"
                );
                assert!(
                    forfeited == 0 || from != to,
                    "{from:?}: forfeited {forfeited}"
                );
                let used = t.usage("llm").unwrap().used;
                assert!(
                    used >= 2 * actual + 3,
                    "{from:?} -> {to:?}, {estimate} -> {actual}: view {used}"
                );
            }
        }
    }
}

/// A reconfigure that changes the window spec, then a settle above the estimate: where does
/// the excess go?
#[test]
fn an_excess_settled_after_the_window_spec_changed_reaches_the_old_window() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let t = tracker(TrackerConfig::new([llm(10_000)]), store.clone(), &clock);
    let hold = t.hold("llm", 100).unwrap();
    t.flush().unwrap();
    let hourly = ServiceConfig::builder("llm", 100_000, Period::Hour)
        .build()
        .unwrap();
    t.reconfigure(TrackerConfig::new([hourly])).unwrap();
    let settled = hold.settle(1_000).unwrap();
    t.flush().unwrap();
    assert_eq!(settled.added, 900);
    // The provider charged 1,000: the store holds them somewhere (the minute or the hour).
    assert_eq!(total_of(&store, "llm"), 1_000);
}

/// A raise not synced yet: its floor grows by every call booked since (the hold's estimate
/// too), but a settle below the estimate takes back the unsent calls without lowering the
/// floor, so the floor puts them back in the store: an over-count that no stat reports.
#[test]
fn a_settle_after_an_unsynced_raise_lowers_the_floor_too() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let t = tracker(TrackerConfig::new([llm(10_000)]), store.clone(), &clock);
    t.raise_used("llm", 100, None).unwrap(); // not synced yet
    let hold = t.hold("llm", 1_000).unwrap();
    let settled = hold.settle(100).unwrap();
    assert_eq!(settled.given_back, 900);
    t.flush().unwrap();
    let forfeited = t.stats().forfeited_calls;
    assert_eq!(
        (total_of(&store, "llm"), t.usage("llm").unwrap().used),
        (200 + forfeited, 200 + forfeited),
        "forfeited {forfeited}"
    );
}

/// `total_recorded` ("calls recorded since the tracker was created") keeps a cancelled
/// estimate: calls never made.
#[test]
fn total_recorded_leaves_out_what_holds_gave_back() {
    let (t, _) = {
        let clock = ManualClock::new(START);
        (
            QuotaTracker::new_with_clock(TrackerConfig::new([llm(10_000)]), clock.clone()).unwrap(),
            clock,
        )
    };
    t.hold("llm", 300).unwrap().cancel().unwrap();
    t.hold("llm", 300).unwrap().settle(100).unwrap();
    let usage = t.usage("llm").unwrap();
    assert_eq!((usage.used, usage.total_recorded), (100, 100));
}

/// `try_record_many` asks the services admitted by a store first, in the order given, then
/// the `Local` ones: of a full `Local` service first in config order and a full `Exact` one
/// after it, the `Exact` one's refusal is reported (as its docs say).
#[test]
fn try_record_many_reports_the_first_refusal_in_the_order_it_asks() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let full = |name: &str, admission| {
        ServiceConfig::builder(name, 10, Period::Minute)
            .admission(admission)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .build()
            .unwrap()
    };
    let t = tracker(
        TrackerConfig::new([full("a", Admission::Local), full("b", Admission::Exact)]),
        store.clone(),
        &clock,
    );
    t.record_call("a", 10).unwrap();
    t.record_call("b", 10).unwrap();
    let error = t.try_record_many(&[("b", 1), ("a", 1)]).unwrap_err();
    assert!(
        matches!(&error, QuotaError::Denied { service, .. } if &**service == "b"),
        "{error}"
    );
}

/// An `Exact` hold whose admission answers were lost (applied by the store): the caller is
/// refused; the store ends with nothing.
#[test]
fn an_exact_hold_whose_answers_were_lost_leaves_nothing_counted() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let config = ServiceConfig::builder("llm", 10_000, Period::Minute)
        .admission(Admission::Exact)
        .build()
        .unwrap();
    let t = tracker(TrackerConfig::new([config]), store.clone(), &clock);
    store.lose_next_replies(2);
    assert!(t.hold("llm", 500).is_err());
    clock.advance(5_000);
    for _ in 0..4 {
        let _ = t.flush();
    }
    let ok = t.hold("llm", 10).unwrap();
    ok.settle(7).unwrap();
    t.flush().unwrap();
    let forfeited = t.stats().forfeited_calls;
    assert_eq!(total_of(&store, "llm"), 7 + forfeited);
    assert_eq!(forfeited, 0);
}

/// `Leased`: a priority hold past the block (an `Exact` admission into the reserve),
/// cancelled, goes back *into the block*, which normal calls then spend: normal calls take
/// the reserve (blocks never hold it).
#[test]
fn a_cancelled_priority_hold_never_lets_normal_calls_spend_the_reserve() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let config = ServiceConfig::builder("llm", 100, Period::Minute)
        .critical_threshold(1.0)
        .reserve_fraction(0.1) // normal calls stop at 90
        .admission(Admission::Leased { block: 10 })
        .build()
        .unwrap();
    let t = tracker(TrackerConfig::new([config]), store.clone(), &clock);
    for _ in 0..90 {
        t.try_record("llm", 1).unwrap();
    }
    assert!(t.try_record("llm", 1).is_err(), "normal calls stop at 90");
    let priority = t.hold_priority("llm", 10).unwrap();
    assert_eq!(total_of(&store, "llm"), 100);
    priority.cancel().unwrap();
    // 90 normal calls made, none in the reserve: a normal call is still refused.
    let normal = t.try_record("llm", 10);
    assert!(
        normal.is_err(),
        "a normal call spent the reserve: {:?}",
        normal.map(|r| r.usage.used)
    );
}

/// `Leased`: a hold spent under a limit of 10,000; a reconfigure lowers the limit to 1,000;
/// cancelling the hold puts its 9,000 calls into the block in hand, which normal calls then
/// spend without any check: 9,000 calls admitted under a limit of 1,000.
#[test]
fn a_leased_hold_cancelled_after_the_limit_was_lowered_admits_nothing_past_it() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let config = |limit| {
        TrackerConfig::new([ServiceConfig::builder("llm", limit, Period::Minute)
            .critical_threshold(0.9)
            .reserve_fraction(0.0)
            .admission(Admission::Leased { block: 100 })
            .build()
            .unwrap()])
    };
    let t = tracker(config(10_000), store.clone(), &clock);
    let hold = t.hold("llm", 9_000).unwrap();
    t.reconfigure(config(1_000)).unwrap();
    hold.cancel().unwrap();
    let mut admitted = 0;
    while admitted < 10_000 && t.try_record("llm", 1).is_ok() {
        admitted += 1;
    }
    t.flush().unwrap();
    // At most 900 (the new critical threshold) normal calls in the minute.
    assert!(
        admitted <= 900,
        "{admitted} admitted under a limit of 1,000; stored {}",
        total_of(&store, "llm")
    );
}

#[test]
fn u64_max_everywhere_never_panics() {
    for admission in [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: u64::MAX },
        Admission::Leased { block: 1 },
    ] {
        let clock = ManualClock::new(START);
        let store = MemoryStore::new();
        let config = |name: &str| {
            ServiceConfig::builder(name, u64::MAX, Period::Minute)
                .critical_threshold(1.0)
                .reserve_fraction(0.0)
                .admission(admission)
                .and_limit(Limit::new(u64::MAX, Period::Hour))
                .build()
                .unwrap()
        };
        let one = |name: &str| {
            ServiceConfig::builder(name, u64::MAX, Period::Minute)
                .critical_threshold(1.0)
                .reserve_fraction(0.0)
                .admission(admission)
                .build()
                .unwrap()
        };
        let t = tracker(
            TrackerConfig::new([one("a"), one("b"), config("c")]),
            store.clone(),
            &clock,
        );
        let _ = t.try_record_many(&[("a", u64::MAX), ("b", u64::MAX), ("c", u64::MAX)]);
        let _ = t.try_record_many(&[("a", u64::MAX - 1), ("b", 2)]);
        if let Ok(h) = t.hold("a", u64::MAX) {
            let _ = h.settle(u64::MAX);
        }
        if let Ok(h) = t.hold("b", 1) {
            let _ = t.flush();
            let _ = h.settle(u64::MAX);
        }
        if let Ok(hs) = t.hold_many(&[("c", u64::MAX / 2), ("b", 1)]) {
            for h in hs {
                clock.advance(61_000);
                let _ = h.settle(u64::MAX);
            }
        }
        let _ = t.flush();
        let _ = t.flush();
        let _ = t.snapshot();
    }
}

#[test]
fn a_panicking_observer_during_settle_and_many_is_contained() {
    let clock = ManualClock::new(START);
    let t = QuotaTracker::new_with_clock(
        TrackerConfig::new([llm(1_000), ServiceConfig::new("other", 1_000, Period::Day)]),
        clock,
    )
    .unwrap();
    t.on_transition(|_| panic!("observer broke"));
    let h = t.hold("llm", 800).unwrap();
    h.settle(10).unwrap();
    let hs = t.hold_many(&[("llm", 800), ("other", 700)]).unwrap();
    for h in hs {
        h.cancel().unwrap();
    }
    assert_eq!(t.usage("llm").unwrap().used, 10);
}

/// Settles racing a flusher thread that loses replies now and then.
fn settles_racing_flushes(admission: Admission, two: bool) {
    settles_racing_flushes_mode(admission, two, true);
}

fn settles_racing_flushes_mode(admission: Admission, two: bool, holds: bool) {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let mut b = ServiceConfig::builder("llm", 1 << 40, Period::Hour).admission(admission);
    if two {
        b = b.and_limit(Limit::new(1 << 41, Period::Day));
    }
    let t = Arc::new(tracker(
        TrackerConfig::new([b.build().unwrap()]),
        store.clone(),
        &clock,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (t, stop, store, clock) = (
            Arc::clone(&t),
            Arc::clone(&stop),
            store.clone(),
            clock.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if n.is_multiple_of(5) {
                    store.lose_next_replies(1);
                }
                if n.is_multiple_of(40) && n < 40 * 6 {
                    clock.advance(20 * 60_000);
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = t.flush();
            }
        })
    };
    let workers: Vec<_> = (0..4u64)
        .map(|seed| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let mut sum = 0u64;
                let mut x = seed + 11;
                for _ in 0..400u64 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let estimate = 1 + (x >> 33) % 100;
                    let actual = (x >> 13) % 150;
                    if !holds {
                        match t.try_record("llm", estimate) {
                            Ok(_) => sum += estimate,
                            Err(QuotaError::Denied { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                        continue;
                    }
                    match t.hold("llm", estimate) {
                        Ok(h) => {
                            h.settle(actual).unwrap();
                            sum += actual;
                        }
                        Err(QuotaError::Denied { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                sum
            })
        })
        .collect();
    let sum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    flusher.join().unwrap();
    for _ in 0..5 {
        let _ = t.flush();
    }
    t.flush().unwrap();
    let forfeited = t.stats().forfeited_calls;
    let minute = stored(&store, "hour");
    if minute != sum + forfeited {
        eprintln!(
            "windows {:?} stats {:?} usage {:?}",
            two_limits::windows(&store, "hour"),
            t.stats(),
            t.usage("llm").unwrap().used
        );
    }
    assert_eq!(
        minute,
        sum + forfeited,
        "{admission:?} two={two} holds={holds}: minute {minute}, settled {sum}, forfeited {forfeited}, unresolved {}",
        t.stats().unresolved_ops
    );
    if two {
        let hour = stored(&store, "day");
        assert_eq!(hour, sum + forfeited, "{admission:?}: hour {hour}");
    }
}

#[test]
fn settles_racing_lossy_flushes_local() {
    settles_racing_flushes(Admission::Local, false);
    settles_racing_flushes(Admission::Local, true);
}

#[test]
fn settles_racing_lossy_flushes_exact() {
    settles_racing_flushes(Admission::Exact, false);
    settles_racing_flushes(Admission::Exact, true);
}

#[test]
fn settles_racing_lossy_flushes_leased() {
    settles_racing_flushes(Admission::Leased { block: 200 }, false);
    settles_racing_flushes(Admission::Leased { block: 200 }, true);
}

#[test]
fn try_record_racing_lossy_flushes_leased_without_holds() {
    settles_racing_flushes_mode(Admission::Leased { block: 200 }, false, false);
}

#[test]
fn try_record_racing_lossy_flushes_exact_without_holds() {
    settles_racing_flushes_mode(Admission::Exact, false, false);
}

#[test]
fn try_record_racing_lossy_flushes_local_without_holds() {
    settles_racing_flushes_mode(Admission::Local, false, false);
    settles_racing_flushes_mode(Admission::Local, true, false);
}

/// try_record_many and hold_many while a reconfigure flips one service between Local, Exact
/// and Leased: no deadlock, no panic, and the two services move together.
#[test]
fn many_racing_admission_flips_stays_all_or_none() {
    within(120, || {
        let clock = ManualClock::new(START);
        let store = MemoryStore::new();
        let config = |admission| {
            TrackerConfig::new([
                ServiceConfig::builder("req", 1 << 40, Period::Hour)
                    .admission(admission)
                    .build()
                    .unwrap(),
                ServiceConfig::builder("tok", 1 << 40, Period::Hour)
                    .build()
                    .unwrap(),
            ])
        };
        let t = Arc::new(tracker(config(Admission::Local), store.clone(), &clock));
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let (t, stop) = (Arc::clone(&t), Arc::clone(&stop));
            std::thread::spawn(move || {
                let all = [
                    Admission::Local,
                    Admission::Exact,
                    Admission::Leased { block: 30 },
                ];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    t.reconfigure(config(all[i % 3])).unwrap();
                    i += 1;
                    std::thread::yield_now();
                }
            })
        };
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    for i in 0..500u64 {
                        let calls: &[(&str, u64)] = if (i + w) % 2 == 0 {
                            &[("req", 1), ("tok", 10)]
                        } else {
                            &[("tok", 10), ("req", 1)]
                        };
                        if i % 3 == 0 {
                            let hs = t.hold_many(calls).unwrap();
                            for h in hs {
                                let e = h.estimate();
                                h.settle(e).unwrap();
                            }
                        } else {
                            t.try_record_many(calls).unwrap();
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let n: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        t.flush().unwrap();
        t.flush().unwrap();
        let forfeited = t.stats().forfeited_calls;
        assert_eq!(total_of(&store, "tok"), 10 * n);
        assert_eq!(
            total_of(&store, "req"),
            n + forfeited,
            "forfeited {forfeited}"
        );
    });
}

#[test]
fn a_service_handle_of_a_removed_shared_service_refuses_holds() {
    for admission in [
        Admission::Leased { block: 10 },
        Admission::Exact,
        Admission::Local,
    ] {
        let clock = ManualClock::new(START);
        let store = MemoryStore::new();
        let svc = ServiceConfig::builder("llm", 1_000, Period::Minute)
            .admission(admission)
            .build()
            .unwrap();
        let other = ServiceConfig::new("other", 5, Period::Day);
        let t = tracker(
            TrackerConfig::new([svc, other.clone()]),
            store.clone(),
            &clock,
        );
        let handle = t.service("llm").unwrap();
        let held = handle.hold(5).unwrap();
        t.reconfigure(TrackerConfig::new([other])).unwrap();
        let again = handle.hold(1);
        let stored_before = total_of(&store, "llm");
        let ok = matches!(again, Err(QuotaError::UnknownService(_)));
        if let Ok(h) = again {
            let _ = h.settle(1);
        }
        t.flush().unwrap();
        assert!(
            ok,
            "{admission:?}: a removed service's hold was admitted (stored {stored_before} -> {})",
            total_of(&store, "llm")
        );
        assert!(matches!(held.cancel(), Err(QuotaError::UnknownService(_))));
        assert!(matches!(
            t.try_record_many(&[("llm", 1)]),
            Err(QuotaError::UnknownService(_))
        ));
        t.flush().unwrap();
    }
}
