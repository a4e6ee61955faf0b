//! Holds (`hold`, `settle`, `cancel`) and several services in one step (`try_record_many`,
//! `hold_many`) of `Local` services: counts, levels, windows, stores and threads.

#[path = "support/two_limits.rs"]
mod two_limits;

use quota_core::{
    Admission, Level, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker,
    ServiceConfig, TrackerConfig,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use two_limits::{stored, tracker, windows};

/// A seeded splitmix64: the threads' random estimates and actuals, the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `low..=high` for a test.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

const START: u64 = 1_700_000_080_000; // 40 s into a minute, 15 into an hour

fn llm(limit: u64) -> ServiceConfig {
    ServiceConfig::builder("llm", limit, Period::Minute)
        .warn_threshold(0.5)
        .critical_threshold(0.9)
        .reserve_fraction(0.0)
        .build()
        .unwrap()
}

fn local(config: impl IntoIterator<Item = ServiceConfig>) -> (QuotaTracker, ManualClock) {
    let clock = ManualClock::new(START);
    let tracker = QuotaTracker::new_with_clock(TrackerConfig::new(config), clock.clone()).unwrap();
    (tracker, clock)
}

#[test]
fn settling_below_the_estimate_gives_the_difference_back() {
    let (tracker, _) = local([llm(10_000)]);
    let hold = tracker.hold("llm", 2_000).unwrap();
    assert_eq!(hold.estimate(), 2_000);
    assert_eq!(hold.service(), "llm");
    assert_eq!(tracker.usage("llm").unwrap().used, 2_000);
    let settled = hold.settle(1_234).unwrap();
    assert_eq!(
        (
            settled.estimate,
            settled.actual,
            settled.given_back,
            settled.added,
            settled.used
        ),
        (2_000, 1_234, 766, 0, 1_234)
    );
    assert_eq!(tracker.usage("llm").unwrap().used, 1_234);
}

#[test]
fn settling_above_the_estimate_adds_the_excess_even_past_the_limit() {
    let (tracker, _) = local([llm(1_000)]);
    let hold = tracker.hold("llm", 800).unwrap();
    let settled = hold.settle(1_500).unwrap();
    assert_eq!(
        (settled.given_back, settled.added, settled.used),
        (0, 700, 1_500)
    );
    let usage = tracker.usage("llm").unwrap();
    assert_eq!((usage.used, usage.level()), (1_500, Level::Exhausted));
    // Admission still refuses past the limit.
    assert!(matches!(
        tracker.hold("llm", 1),
        Err(QuotaError::Denied { .. })
    ));
}

#[test]
fn cancel_gives_everything_back_and_a_dropped_hold_keeps_its_estimate() {
    let (tracker, _) = local([llm(1_000)]);
    let cancelled = tracker.hold("llm", 300).unwrap().cancel().unwrap();
    assert_eq!(
        (cancelled.actual, cancelled.given_back, cancelled.used),
        (0, 300, 0)
    );
    drop(tracker.hold("llm", 200).unwrap());
    assert_eq!(tracker.usage("llm").unwrap().used, 200);
    // Settling at the estimate changes nothing.
    let same = tracker.hold("llm", 100).unwrap().settle(100).unwrap();
    assert_eq!((same.given_back, same.added, same.used), (0, 0, 300));
}

#[test]
fn a_hold_is_admitted_by_the_rules_of_try_record() {
    let config = ServiceConfig::builder("llm", 100, Period::Minute)
        .critical_threshold(1.0)
        .reserve_fraction(0.1)
        .build()
        .unwrap();
    let (tracker, _) = local([config]);
    let _first = tracker.hold("llm", 90).unwrap();
    let refused = tracker.hold("llm", 1).unwrap_err();
    assert!(
        matches!(refused, QuotaError::Denied { used: 90, .. }),
        "{refused}"
    );
    // The reserve is for priority holds.
    let priority = tracker.hold_priority("llm", 10).unwrap();
    assert_eq!(tracker.usage("llm").unwrap().used, 100);
    priority.cancel().unwrap();
    assert!(matches!(
        tracker.hold("llm", 0),
        Err(QuotaError::InvalidCount { count: 0, .. })
    ));
    assert!(matches!(
        tracker.hold("nope", 1),
        Err(QuotaError::UnknownService(_))
    ));
}

#[test]
fn a_give_back_moves_the_level_down_once_and_observers_hear_it_once() {
    let (tracker, _) = local([llm(1_000)]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tracker.on_transition(move |t| log.lock().unwrap().push((t.from, t.to)));
    let hold = tracker.hold("llm", 850).unwrap(); // Normal -> Warning
    hold.settle(100).unwrap(); // Warning -> Normal
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Level::Normal, Level::Warning),
            (Level::Warning, Level::Normal)
        ]
    );
    assert_eq!(tracker.usage("llm").unwrap().level(), Level::Normal);
}

#[test]
fn a_hold_settled_after_its_window_ended_leaves_the_new_window_alone() {
    let (tracker, clock) = local([llm(1_000)]);
    let hold = tracker.hold("llm", 500).unwrap();
    clock.advance(60_000);
    tracker.record_call("llm", 7).unwrap();
    let settled = hold.settle(100).unwrap();
    assert_eq!((settled.given_back, settled.used), (400, 7));
    let late = tracker.hold("llm", 10).unwrap();
    clock.advance(60_000);
    assert_eq!(late.settle(900).unwrap().used, 0);
    assert_eq!(tracker.usage("llm").unwrap().used, 0);
}

#[test]
fn a_service_of_several_limits_settles_in_every_limit() {
    let config = ServiceConfig::builder("llm", 10_000, Period::Minute)
        .and_limit(Limit::new(100_000, Period::Hour))
        .build()
        .unwrap();
    let (tracker, clock) = local([config]);
    let used = |t: &QuotaTracker| -> Vec<u64> {
        t.usage_limits("llm")
            .unwrap()
            .iter()
            .map(|u| u.used)
            .collect()
    };
    let hold = tracker.hold("llm", 2_000).unwrap();
    assert_eq!(used(&tracker), vec![2_000, 2_000]);
    hold.settle(500).unwrap();
    assert_eq!(used(&tracker), vec![500, 500]);
    // The minute ends, the hour goes on: only the hour's count is corrected in process.
    let hold = tracker.hold("llm", 1_000).unwrap();
    clock.advance(30_000);
    hold.settle(3_000).unwrap();
    assert_eq!(used(&tracker), vec![0, 3_500]);
}

fn shared(name: &str, admission: Admission) -> ServiceConfig {
    ServiceConfig::builder(name, 10_000, Period::Minute)
        .admission(admission)
        .build()
        .unwrap()
}

#[test]
fn an_exact_hold_is_admitted_by_the_store_and_settled_there() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let config = || TrackerConfig::new([shared("llm", Admission::Exact)]);
    let a = tracker(config(), Arc::clone(&store), &clock);
    let b = tracker(config(), Arc::clone(&store), &clock);
    let hold = a.hold("llm", 7_500).unwrap();
    assert_eq!(stored(&store, "minute"), 7_500);
    // The other instance sees the estimate at once: normal admission stops at 8,000.
    assert!(matches!(
        b.try_record("llm", 600),
        Err(QuotaError::Denied { used: 7_500, .. })
    ));
    let settled = hold.settle(2_000).unwrap();
    assert_eq!((settled.given_back, settled.used), (5_500, 2_000));
    a.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 2_000);
    b.try_record("llm", 600).unwrap();
    // Above the estimate: the excess is recorded, past any cap.
    a.hold("llm", 100).unwrap().settle(9_000).unwrap();
    a.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 11_600);
    assert_eq!(a.stats().forfeited_calls, 0);
}

/// `Leased`: a hold spends the block in hand; what it does not use goes back through the
/// store (never into the block: the block may not be the one it spent from, or may since have
/// been given back, forfeited or granted after a raise elsewhere).
#[test]
fn a_leased_hold_gives_back_through_the_store() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let config = TrackerConfig::new([shared("llm", Admission::Leased { block: 1_000 })]);
    let tracker = tracker(config, Arc::clone(&store), &clock);
    let hold = tracker.hold("llm", 400).unwrap();
    assert_eq!(stored(&store, "minute"), 1_000); // the block
    let settled = hold.settle(150).unwrap();
    assert_eq!(settled.given_back, 250);
    tracker.flush().unwrap();
    // The 250 went back, and the flush gave the block's 600 unspent back.
    assert_eq!(stored(&store, "minute"), 150);
    assert_eq!(tracker.usage("llm").unwrap().used, 150);
    let hold = tracker.hold("llm", 300).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 450);
    hold.cancel().unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 150);
    assert_eq!(tracker.stats().forfeited_calls, 0);
}

#[test]
fn try_record_many_gives_a_store_admission_back_when_a_local_service_refuses() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let config = TrackerConfig::new([shared("requests", Admission::Exact), llm(1_000)]);
    let tracker = tracker(config, Arc::clone(&store), &clock);
    let refused = tracker
        .try_record_many(&[("requests", 1), ("llm", 950)])
        .unwrap_err();
    assert!(matches!(refused, QuotaError::Denied { .. }), "{refused}");
    assert_eq!(tracker.usage("requests").unwrap().used, 0);
    tracker.flush().unwrap();
    let stored_requests = |store: &MemoryStore| -> u64 {
        store
            .state()
            .unwrap()
            .windows()
            .filter(|w| w.service == "requests")
            .map(|w| w.total)
            .sum()
    };
    assert_eq!(stored_requests(&store), 0);
    let both = tracker.hold_many(&[("llm", 500), ("requests", 2)]).unwrap();
    assert_eq!(stored_requests(&store), 2);
    for hold in both {
        hold.settle(1).unwrap();
    }
    tracker.flush().unwrap();
    assert_eq!(stored_requests(&store), 1);
    assert_eq!(tracker.usage("llm").unwrap().used, 1);
}

#[test]
fn a_give_back_whose_reply_was_lost_is_applied_once() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let config = TrackerConfig::new([shared("llm", Admission::Exact)]);
    let tracker = tracker(config, Arc::clone(&store), &clock);
    let hold = tracker.hold("llm", 5_000).unwrap();
    store.lose_next_replies(2);
    // The settle's own sync loses its replies (applied, unanswered): resent until answered.
    hold.settle(1_000).unwrap();
    let _ = tracker.flush();
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 1_000);
    assert_eq!(tracker.stats().unresolved_ops, 0);
}

#[test]
fn a_settle_after_the_service_was_removed_fails_and_keeps_the_estimate() {
    let (tracker, _) = local([llm(100), ServiceConfig::new("other", 5, Period::Day)]);
    let hold = tracker.hold("llm", 40).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "other",
            5,
            Period::Day,
        )]))
        .unwrap();
    assert!(matches!(
        hold.settle(1),
        Err(QuotaError::UnknownService(name)) if name == "llm"
    ));
}

#[test]
fn with_a_store_only_the_actual_calls_are_stored() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let tracker = tracker(
        TrackerConfig::new([llm(10_000)]),
        Arc::clone(&store),
        &clock,
    );
    // Settled before any sync: the store never sees the estimate.
    tracker.hold("llm", 1_000).unwrap().settle(300).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 300);
    // Synced first, then settled: the difference goes back through the store.
    let hold = tracker.hold("llm", 2_000).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 2_300);
    hold.settle(1_500).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 1_800);
    assert_eq!(tracker.usage("llm").unwrap().used, 1_800);
    // Above the estimate: the excess is a delta like any call.
    tracker.hold("llm", 100).unwrap().settle(250).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 2_050);
    assert_eq!(tracker.stats().forfeited_calls, 0);
}

#[test]
fn with_a_store_a_late_settle_corrects_the_window_it_was_held_in() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let tracker = tracker(
        TrackerConfig::new([llm(10_000)]),
        Arc::clone(&store),
        &clock,
    );
    let synced = tracker.hold("llm", 1_000).unwrap();
    let unsynced = tracker.hold("llm", 500).unwrap();
    tracker.flush().unwrap();
    let more = tracker.hold("llm", 100).unwrap();
    clock.advance(60_000);
    tracker.record_call("llm", 1).unwrap();
    synced.settle(400).unwrap(); // 600 back through the store
    unsynced.settle(2_000).unwrap(); // 1,500 more in the ended minute
    more.cancel().unwrap(); // never synced: never sent
    tracker.flush().unwrap();
    let first = START - START % 60_000;
    assert_eq!(
        windows(&store, "minute"),
        vec![(first, 400 + 2_000), (first + 60_000, 1)]
    );
    assert_eq!(tracker.usage("llm").unwrap().used, 1);
}

#[test]
fn a_give_back_after_a_raise_of_its_window_is_forfeited() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let tracker = tracker(
        TrackerConfig::new([llm(10_000)]),
        Arc::clone(&store),
        &clock,
    );
    let hold = tracker.hold("llm", 1_000).unwrap();
    tracker.flush().unwrap();
    // The provider says 1,200 were used (its count holds our 1,000).
    tracker.raise_used("llm", 1_200, None).unwrap();
    tracker.flush().unwrap();
    hold.settle(100).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 1_200);
    assert_eq!(tracker.stats().forfeited_calls, 900);
}

#[test]
fn without_a_store_a_give_back_after_a_raise_is_forfeited_too() {
    let (tracker, _clock) = local([llm(10_000)]);
    let hold = tracker.hold("llm", 1_000).unwrap();
    // The provider's response said 1,200 were used (its count holds our 1,000)...
    tracker.raise_used("llm", 1_200, None).unwrap();
    // ...and its body says the call cost 100: giving 900 back would pass under its count.
    let settled = hold.settle(100).unwrap();
    assert_eq!(settled.given_back, 0);
    assert_eq!(tracker.usage("llm").unwrap().used, 1_200);
    // A hold counted after the raise gives back as usual.
    let after = tracker.hold("llm", 500).unwrap();
    assert_eq!(after.settle(200).unwrap().given_back, 300);
    assert_eq!(tracker.usage("llm").unwrap().used, 1_400);
}

#[test]
fn without_a_store_only_the_raised_limits_window_forfeits() {
    let config = ServiceConfig::builder("llm", 10_000, Period::Minute)
        .critical_threshold(0.9)
        .reserve_fraction(0.0)
        .and_limit(Limit::new(100_000, Period::Hour))
        .build()
        .unwrap();
    let (tracker, _clock) = local([config]);
    let used = |tracker: &QuotaTracker| -> Vec<u64> {
        let limits = tracker.service("llm").unwrap().usage_limits();
        limits.iter().map(|usage| usage.used).collect()
    };
    let hold = tracker.hold("llm", 1_000).unwrap();
    // A report without a reset time raises the shortest window: the minute's.
    tracker.raise_used("llm", 1_200, None).unwrap();
    assert_eq!(used(&tracker), [1_200, 1_000]);
    // The hour's window gives its 900 back; the minute's keeps the provider's count.
    assert_eq!(hold.settle(100).unwrap().given_back, 900);
    assert_eq!(used(&tracker), [1_200, 100]);
    let after = tracker.hold("llm", 500).unwrap();
    assert_eq!(after.settle(200).unwrap().given_back, 300);
    assert_eq!(used(&tracker), [1_400, 300]);
}

#[test]
fn a_lost_reply_to_a_give_back_is_resent_and_applied_once() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let tracker = tracker(
        TrackerConfig::new([llm(10_000)]),
        Arc::clone(&store),
        &clock,
    );
    let hold = tracker.hold("llm", 1_000).unwrap();
    tracker.flush().unwrap();
    hold.settle(250).unwrap();
    store.lose_next_replies(1);
    let _ = tracker.flush();
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "minute"), 250);
    assert_eq!(tracker.stats().unresolved_ops, 0);
}

/// 8 threads hold random estimates and settle random actuals at or below them, while a
/// watcher reads the count: it never passes where normal admission stops, and ends at the
/// sum of the actuals exactly.
#[test]
fn eight_threads_settling_end_at_the_sum_of_the_actuals_and_never_pass_the_cap() {
    let (tracker, _) = local([llm(500_000)]);
    let tracker = Arc::new(tracker);
    let cap = 450_000; // the critical threshold (0.9), where normal admission stops
    let actuals = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (tracker, stop) = (Arc::clone(&tracker), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let used = tracker.usage("llm").unwrap().used;
                assert!(used <= cap, "{used} passed the cap of {cap}");
                reads += 1;
            }
            reads
        })
    };
    let workers: Vec<_> = (0..8u64)
        .map(|seed| {
            let (tracker, actuals) = (Arc::clone(&tracker), Arc::clone(&actuals));
            std::thread::spawn(move || {
                let mut rng = Rng(seed);
                let (mut admitted, mut denied) = (0, 0);
                for _ in 0..4_000 {
                    let estimate = rng.between(1, 200);
                    match tracker.hold_owned("llm", estimate) {
                        Ok(hold) => {
                            admitted += 1;
                            let actual = rng.between(0, estimate);
                            hold.settle(actual).unwrap();
                            actuals.fetch_add(actual, Ordering::Relaxed);
                        }
                        Err(QuotaError::Denied { .. }) => denied += 1,
                        Err(error) => panic!("{error}"),
                    }
                    // Fast-path calls between holds: counted too, never lost.
                    if rng.next().is_multiple_of(16) && tracker.try_record("llm", 1).is_ok() {
                        actuals.fetch_add(1, Ordering::Relaxed);
                    }
                }
                (admitted, denied)
            })
        })
        .collect();
    let mut admitted = 0;
    for worker in workers {
        admitted += worker.join().unwrap().0;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    assert!(admitted > 5_000, "only {admitted} holds admitted");
    assert_eq!(
        tracker.usage("llm").unwrap().used,
        actuals.load(Ordering::Relaxed)
    );
}

/// Threads settle above and below their estimates and cancel, on a service of two limits:
/// every limit ends at the sum of the actuals.
#[test]
fn eight_threads_settling_above_and_below_are_exact_in_every_limit() {
    let config = ServiceConfig::builder("llm", u64::MAX / 4, Period::Minute)
        .and_limit(Limit::new(u64::MAX / 4, Period::Hour))
        .build()
        .unwrap();
    let (tracker, _) = local([config]);
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8u64)
            .map(|seed| {
                let tracker = &tracker;
                scope.spawn(move || {
                    let mut rng = Rng(seed);
                    let mut sum = 0;
                    for _ in 0..2_000 {
                        let hold = tracker.hold("llm", rng.between(1, 99)).unwrap();
                        if rng.next().is_multiple_of(2) {
                            hold.cancel().unwrap();
                        } else {
                            let actual = rng.between(0, 199);
                            hold.settle(actual).unwrap();
                            sum += actual;
                        }
                    }
                    sum
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let used: Vec<u64> = tracker
        .usage_limits("llm")
        .unwrap()
        .iter()
        .map(|u| u.used)
        .collect();
    assert_eq!(used, vec![total, total]);
}

#[test]
fn try_record_many_admits_all_or_none() {
    let requests = ServiceConfig::builder("openai-requests", 10, Period::Minute)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let tokens = ServiceConfig::builder("openai-tokens", 5_000, Period::Minute)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let (tracker, _) = local([requests, tokens]);
    let both = tracker
        .try_record_many(&[("openai-tokens", 2_000), ("openai-requests", 1)])
        .unwrap();
    // In the order asked.
    assert_eq!(both[0].usage.name, "openai-tokens");
    assert_eq!((both[0].usage.used, both[1].usage.used), (2_000, 1));
    let refused = tracker
        .try_record_many(&[("openai-requests", 1), ("openai-tokens", 3_001)])
        .unwrap_err();
    assert!(
        matches!(&refused, QuotaError::Denied { service, used: 2_000, limit: 5_000, .. } if &**service == "openai-tokens"),
        "{refused}"
    );
    assert_eq!(tracker.usage("openai-requests").unwrap().used, 1);
    let errors = [
        tracker.try_record_many(&[("openai-requests", 1), ("openai-requests", 1)]),
        tracker.try_record_many(&[("openai-requests", 0)]),
        tracker.try_record_many(&[("openai-requests", 1), ("nope", 1)]),
    ];
    let messages: Vec<String> = errors
        .iter()
        .map(|e| e.as_ref().unwrap_err().to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "invalid count 1 for service \"openai-requests\": the service is named twice in one call",
            "invalid count 0 for service \"openai-requests\": count must be at least 1",
            "unknown service \"nope\"",
        ]
    );
    assert!(tracker.try_record_many(&[]).unwrap().is_empty());
    assert_eq!(tracker.usage("openai-requests").unwrap().used, 1);
    // Holds of both, settled on their own.
    let holds = tracker
        .hold_many(&[("openai-requests", 1), ("openai-tokens", 1_000)])
        .unwrap();
    let [request, tokens]: [_; 2] = holds.try_into().unwrap();
    tokens.settle(10).unwrap();
    request.settle(1).unwrap();
    assert_eq!(tracker.usage("openai-tokens").unwrap().used, 2_010);
    // Priority admission may use the whole limit.
    tracker
        .try_record_many_priority(&[("openai-requests", 8), ("openai-tokens", 2_990)])
        .unwrap();
    assert_eq!(tracker.usage("openai-tokens").unwrap().used, 5_000);
}

/// 8 threads take one request and 100 tokens at once while a watcher takes snapshots (every
/// lock at once): each snapshot shows 100 tokens per request, never one counted without the
/// other, and the limits stop both together.
#[test]
fn try_record_many_is_all_or_nothing_under_contention() {
    let requests = ServiceConfig::builder("requests", 3_000, Period::Minute)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let tokens = ServiceConfig::builder("tokens", 150_050, Period::Minute)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let (tracker, _) = local([requests, tokens]);
    let stop = AtomicBool::new(false);
    let (admitted, snapshots) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let snapshot = tracker.snapshot();
                let used = |name: &str| {
                    snapshot
                        .services()
                        .iter()
                        .find(|s| s.name == name)
                        .unwrap()
                        .used
                };
                assert_eq!(used("requests") * 100, used("tokens"));
                seen += 1;
            }
            seen
        });
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut admitted = 0u64;
                    for _ in 0..1_000 {
                        match tracker.try_record_many(&[("tokens", 100), ("requests", 1)]) {
                            Ok(_) => admitted += 1,
                            Err(QuotaError::Denied { .. }) => {}
                            Err(error) => panic!("{error}"),
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        (admitted, watcher.join().unwrap())
    });
    assert!(snapshots > 0);
    // The tokens stop first: 1,500 admissions of 100 fit in 150,050.
    assert_eq!(admitted, 1_500);
    assert_eq!(tracker.usage("requests").unwrap().used, 1_500);
    assert_eq!(tracker.usage("tokens").unwrap().used, 150_000);
}

/// 8 threads hold, settle above and below, cancel and drop holds while another thread moves
/// the clock across minute after minute (and syncs): settles and cancels land in windows that
/// ended, in the batch in flight, or not synced yet. After `flush`, the store holds exactly the
/// settled actuals and the kept estimates, summed over every window, and nothing is forfeited.
#[test]
fn settles_racing_window_ends_leave_the_store_exact() {
    let clock = ManualClock::new(START);
    let store = Arc::new(MemoryStore::new());
    let tracker = tracker(
        TrackerConfig::new([llm(u64::MAX / 4)]),
        Arc::clone(&store),
        &clock,
    );
    let stop = AtomicBool::new(false);
    let owed: u64 = std::thread::scope(|scope| {
        scope.spawn(|| {
            // 4 minutes in steps of 10 s: 5 windows (a store keeps a service's last 8).
            for _ in 0..24 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                clock.advance(10_000);
                tracker.flush().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        let workers: Vec<_> = (0..8u64)
            .map(|seed| {
                let (tracker, stop) = (&tracker, &stop);
                scope.spawn(move || {
                    let mut rng = Rng(seed);
                    let mut owed = 0;
                    let mut holds = std::collections::VecDeque::new();
                    while !stop.load(Ordering::Relaxed) {
                        let estimate = rng.between(1, 50);
                        holds.push_back((tracker.hold("llm", estimate).unwrap(), estimate));
                        // Settle an older hold: often one of a window that has ended since.
                        if holds.len() > 4 {
                            let (hold, estimate) = holds.pop_front().unwrap();
                            owed += match rng.next() % 4 {
                                0 => {
                                    hold.cancel().unwrap();
                                    0
                                }
                                1 => {
                                    drop(hold);
                                    estimate
                                }
                                _ => {
                                    let actual = rng.between(0, 100);
                                    hold.settle(actual).unwrap();
                                    actual
                                }
                            };
                        }
                    }
                    for (hold, _) in holds {
                        hold.settle(1).unwrap();
                        owed += 1;
                    }
                    owed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    tracker.flush().unwrap();
    assert!(
        windows(&store, "minute").len() > 3,
        "{:?}",
        windows(&store, "minute")
    );
    assert_eq!(stored(&store, "minute"), owed);
    let stats = tracker.stats();
    assert_eq!((stats.forfeited_calls, stats.unresolved_ops), (0, 0));
}
