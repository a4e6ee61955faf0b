//! The reserve (issue 12): normal admission (`try_record`, `can_call`) stops at the Critical
//! level or at `limit - reserve`, whichever comes first; priority admission
//! (`try_record_priority`) may go on to the limit; reduced-rate mode caps both. Locally, and in
//! shared `Exact` and `Leased` admission on `MemoryStore`, `FileStore` and (feature `redis`)
//! `RedisStore`.

use proptest::prelude::*;
use quota_core::{
    Admission, DenyReason, FileStore, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker,
    ServiceConfig, Store, SyncPolicy, TrackerConfig,
};
use std::sync::{Arc, Barrier};
use std::thread;

const JUNE_10: u64 = 1_718_000_000_000;

/// `api`: `limit` calls a day, Critical at `critical`, `reserve` held back.
fn config(limit: u64, critical: f64, reserve: f64, admission: Admission) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", limit, Period::Day)
        .warn_threshold(0.5_f64.min(critical))
        .critical_threshold(critical)
        .reserve_fraction(reserve)
        .admission(admission)
        .build()
        .unwrap()])
}

fn tracker(config: TrackerConfig, store: Option<Box<dyn Store>>) -> QuotaTracker {
    let builder = QuotaTracker::builder(config).clock(ManualClock::new(JUNE_10));
    match store {
        Some(store) => builder.boxed_store(store),
        None => builder,
    }
    .build()
    .unwrap()
}

/// The reason of a denial; panics on anything else.
fn reason<T: std::fmt::Debug>(result: Result<T, QuotaError>) -> DenyReason {
    match result {
        Err(QuotaError::Denied { reason, .. }) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// The stored total of every window of `api` (after a flush).
fn stored(store: &MemoryStore) -> u64 {
    store.state().unwrap().windows().map(|w| w.total).sum()
}

/// Calls `call` on each tracker in turn, one call each, until every tracker is denied once in
/// a row; the calls admitted and the reasons of the last denials.
fn drain(
    trackers: &[QuotaTracker],
    call: impl Fn(&QuotaTracker) -> Result<(), QuotaError>,
) -> (u64, Vec<DenyReason>) {
    let mut admitted = 0;
    loop {
        let mut reasons = Vec::new();
        for tracker in trackers {
            match call(tracker) {
                Ok(()) => admitted += 1,
                Err(QuotaError::Denied { reason, .. }) => reasons.push(reason),
                Err(other) => panic!("{other}"),
            }
        }
        if reasons.len() == trackers.len() {
            return (admitted, reasons);
        }
    }
}

/// Two trackers on one store (one for `Local`, which does not admit across instances):
/// normal calls stop at exactly `limit - reserve` with `Reserve`, priority calls take exactly
/// the reserve and stop with `Limit`, and the store holds every call once.
fn the_reserve_is_held_back(
    admission: Admission,
    store: Option<Box<dyn Store + 'static>>,
    second: Option<Box<dyn Store + 'static>>,
) -> u64 {
    // Critical at 0.95 (95), the reserve from 90: the reserve comes first.
    let config = config(100, 0.95, 0.1, admission);
    let mut trackers = vec![tracker(config.clone(), store)];
    if let Some(second) = second {
        trackers.push(tracker(config, Some(second)));
    }
    let (normal, reasons) = drain(&trackers, |t| t.try_record("api", 1).map(|_| ()));
    assert_eq!(
        normal, 90,
        "{admission:?}: normal calls stop at limit - reserve"
    );
    assert!(
        reasons.iter().all(|&r| r == DenyReason::Reserve),
        "{admission:?}: {reasons:?}"
    );
    for tracker in &trackers {
        assert!(!tracker.can_call("api").unwrap(), "{admission:?}");
        assert_eq!(tracker.reserve_allocation("api").unwrap(), 10);
    }
    let denied = trackers[0].try_record("api", 1).unwrap_err();
    assert!(
        denied.to_string().ends_with("reserve held back"),
        "{admission:?}: {denied}"
    );
    // More than the reserve at once: over the limit even for a priority call.
    assert_eq!(
        reason(trackers[0].try_record_priority("api", 11)),
        DenyReason::Limit,
        "{admission:?}"
    );
    let (priority, reasons) = drain(&trackers, |t| {
        t.service("api").unwrap().try_record_priority(1).map(|_| ())
    });
    assert_eq!(
        priority, 10,
        "{admission:?}: priority calls take the reserve"
    );
    assert!(
        reasons.iter().all(|&r| r == DenyReason::Limit),
        "{admission:?}: {reasons:?}"
    );
    assert_eq!(reason(trackers[0].try_record("api", 1)), DenyReason::Limit);
    for tracker in &trackers {
        tracker.flush().unwrap();
        assert_eq!(tracker.usage("api").unwrap().used, 100, "{admission:?}");
    }
    normal + priority
}

#[test]
fn local_admission_holds_the_reserve_back() {
    assert_eq!(the_reserve_is_held_back(Admission::Local, None, None), 100);
    let store = MemoryStore::new();
    assert_eq!(
        the_reserve_is_held_back(Admission::Local, Some(Box::new(store.clone())), None),
        100
    );
    assert_eq!(stored(&store), 100);
}

#[test]
fn exact_and_leased_admission_hold_the_reserve_back_on_a_memory_store() {
    for admission in [
        Admission::Exact,
        Admission::Leased { block: 7 },
        Admission::Leased { block: 1_000 },
    ] {
        let store = MemoryStore::new();
        let total = the_reserve_is_held_back(
            admission,
            Some(Box::new(store.clone())),
            Some(Box::new(store.clone())),
        );
        assert_eq!((total, stored(&store)), (100, 100), "{admission:?}");
    }
}

#[test]
fn exact_and_leased_admission_hold_the_reserve_back_on_a_file_store() {
    for admission in [Admission::Exact, Admission::Leased { block: 7 }] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.json");
        let total = the_reserve_is_held_back(
            admission,
            Some(Box::new(FileStore::new(&path))),
            Some(Box::new(FileStore::new(&path))),
        );
        assert_eq!(total, 100, "{admission:?}");
        let state = FileStore::new(&path).state().unwrap();
        let stored: u64 = state.windows().map(|w| w.total).sum();
        assert_eq!(stored, 100, "{admission:?}");
    }
}

#[test]
fn a_lease_never_hands_normal_calls_the_reserve() {
    // A block far larger than the quota: the grant stops at limit - reserve.
    let store = MemoryStore::new();
    let config = config(100, 1.0, 0.2, Admission::Leased { block: 500 });
    let a = tracker(config.clone(), Some(Box::new(store.clone())));
    a.try_record("api", 1).unwrap();
    assert_eq!(
        stored(&store),
        80,
        "the block is the headroom below the reserve"
    );
    let b = tracker(config, Some(Box::new(store.clone())));
    assert_eq!(reason(b.try_record("api", 1)), DenyReason::Reserve);
    assert!(!b.can_call("api").unwrap());
    // b's priority call goes to the store under the priority rule, and takes no block.
    b.try_record_priority("api", 5).unwrap();
    assert_eq!(stored(&store), 85);
    assert_eq!(reason(b.try_record("api", 1)), DenyReason::Reserve);
    // a spends its block (79 more) at in-process speed, and no more.
    for _ in 0..79 {
        a.try_record("api", 1).unwrap();
    }
    assert_eq!(reason(a.try_record("api", 1)), DenyReason::Reserve);
    a.try_record_priority("api", 15).unwrap();
    assert_eq!(reason(a.try_record_priority("api", 1)), DenyReason::Limit);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(stored(&store), 100);
}

#[test]
fn critical_before_the_reserve_is_named_critical_in_every_mode() {
    for admission in [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 3 },
    ] {
        let store = MemoryStore::new();
        // The defaults: Critical at 80, the reserve from 90.
        let t = tracker(config(100, 0.8, 0.1, admission), Some(Box::new(store)));
        t.try_record("api", 79).unwrap();
        // A normal call may reach the Critical level, not pass it.
        assert_eq!(
            reason(t.try_record("api", 2)),
            DenyReason::Critical,
            "{admission:?}"
        );
        t.try_record("api", 1).unwrap();
        assert_eq!(
            reason(t.try_record("api", 1)),
            DenyReason::Critical,
            "{admission:?}"
        );
        let error = t.try_record("api", 1).unwrap_err().to_string();
        assert_eq!(
            error, "denied: 1 call(s) to \"api\" not allowed at 80 of 100 used: critical level",
            "{admission:?}"
        );
        t.try_record_priority("api", 20).unwrap();
        assert_eq!(t.usage("api").unwrap().used, 100, "{admission:?}");
    }
}

#[test]
fn reduced_rate_caps_priority_calls_too() {
    for admission in [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 4 },
    ] {
        let store = MemoryStore::new();
        let clock = ManualClock::new(JUNE_10);
        let t = QuotaTracker::builder(config(100, 0.8, 0.1, admission))
            .clock(clock.clone())
            .store(store.clone())
            .sync_policy(SyncPolicy {
                interval_ms: 1_000_000,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap();
        t.try_record("api", 20).unwrap();
        t.flush().unwrap();
        // Three failed syncs turn reduced rate on: 25 calls of 100 (the default fraction).
        store.set_failing(true);
        for _ in 0..3 {
            assert!(t.flush().is_err());
        }
        assert!(t.is_reduced_rate());
        // The store is back, the back-off over; reduced rate lasts until 5 good syncs.
        store.set_failing(false);
        clock.advance(60_000);
        assert_eq!(
            reason(t.try_record_priority("api", 6)),
            DenyReason::ReducedRate,
            "{admission:?}: 20 + 6 > 25"
        );
        t.try_record_priority("api", 5).unwrap();
        for priority in [false, true] {
            let result = if priority {
                t.try_record_priority("api", 1)
            } else {
                t.try_record("api", 1)
            };
            assert_eq!(reason(result), DenyReason::ReducedRate, "{admission:?}");
        }
        assert!(t.is_reduced_rate());
        t.flush().unwrap();
        assert_eq!(stored(&store), 25, "{admission:?}");
    }
}

/// Eight threads on one tracker (`Local`) or eight trackers on one store (`Exact`, `Leased`):
/// first normal calls only, then normal and priority calls mixed. Normal admission stops at
/// exactly `limit - reserve`; priority admission takes exactly the reserve; nothing more.
fn eight_threads(admission: Admission) {
    const LIMIT: u64 = 2_000;
    // Critical at 95 %, the reserve (10 %) from 1_800.
    let config = config(LIMIT, 0.95, 0.1, admission);
    let store = MemoryStore::new();
    let trackers: Vec<Arc<QuotaTracker>> = match admission {
        Admission::Local => {
            // One tracker shared by the eight threads.
            let one = Arc::new(tracker(config, None));
            (0..8).map(|_| Arc::clone(&one)).collect()
        }
        _ => (0..8)
            .map(|_| Arc::new(tracker(config.clone(), Some(Box::new(store.clone())))))
            .collect(),
    };
    let run = |mixed: bool| -> (u64, u64) {
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = trackers
            .iter()
            .enumerate()
            .map(|(i, tracker)| {
                let (tracker, barrier) = (Arc::clone(tracker), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let (mut normal, mut priority) = (0u64, 0u64);
                    for call in 0..400u64 {
                        if mixed && (call + i as u64).is_multiple_of(2) {
                            match tracker.try_record_priority("api", 1) {
                                Ok(r) => {
                                    assert!(r.usage.used <= LIMIT);
                                    priority += 1;
                                }
                                Err(e) => assert_eq!(reason::<()>(Err(e)), DenyReason::Limit),
                            }
                        } else {
                            match tracker.try_record("api", 1) {
                                Ok(r) => {
                                    assert!(r.usage.used <= 1_800, "{}", r.usage.used);
                                    normal += 1;
                                }
                                Err(e) => {
                                    // Critical once priority calls passed 95 %.
                                    let why = reason::<()>(Err(e));
                                    assert!(
                                        matches!(
                                            why,
                                            DenyReason::Reserve
                                                | DenyReason::Critical
                                                | DenyReason::Limit
                                        ),
                                        "{why:?}"
                                    );
                                }
                            }
                        }
                    }
                    (normal, priority)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(n, p), (a, b)| (n + a, p + b))
    };
    // 3_200 normal tries for 1_800 calls.
    assert_eq!(run(false), (1_800, 0), "{admission:?}");
    // Then mixed: 1_600 priority tries for the 200 calls of the reserve, none for normal.
    assert_eq!(run(true), (0, 200), "{admission:?}");
    for tracker in &trackers {
        tracker.flush().unwrap();
    }
    assert_eq!(
        trackers[0].usage("api").unwrap().used,
        LIMIT,
        "{admission:?}"
    );
    if admission != Admission::Local {
        assert_eq!(stored(&store), LIMIT, "{admission:?}");
    }
}

#[test]
fn eight_threads_mixing_normal_and_priority_calls_locally_count_exactly() {
    eight_threads(Admission::Local);
}

#[test]
fn eight_trackers_mixing_normal_and_priority_calls_exactly_count_exactly() {
    eight_threads(Admission::Exact);
}

#[test]
fn eight_trackers_mixing_normal_and_priority_calls_leased_count_exactly() {
    eight_threads(Admission::Leased { block: 16 });
}

/// Mixed from the start, on one tracker: every admitted call got its own count, so the counts
/// returned are exactly 1..=limit; normal ones never passed 1_800.
#[test]
fn eight_threads_mixed_from_the_start_take_each_call_once() {
    let tracker = Arc::new(tracker(config(2_000, 0.95, 0.1, Admission::Local), None));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let (tracker, barrier) = (Arc::clone(&tracker), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut seen = Vec::new();
                for call in 0..600u64 {
                    let priority = (call + i) % 3 == 0;
                    let result = if priority {
                        tracker.try_record_priority("api", 1)
                    } else {
                        tracker.try_record("api", 1)
                    };
                    if let Ok(recorded) = result {
                        seen.push((recorded.usage.used, priority));
                    }
                }
                seen
            })
        })
        .collect();
    let mut seen: Vec<(u64, bool)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seen.sort_unstable();
    let counts: Vec<u64> = seen.iter().map(|&(used, _)| used).collect();
    assert_eq!(counts, (1..=2_000).collect::<Vec<_>>());
    assert!(seen
        .iter()
        .all(|&(used, priority)| priority || used <= 1_800));
}

/// Integer percentages of limits that are multiples of 20: thresholds and reserves are whole.
fn rules() -> impl Strategy<Value = (u64, u64, u64)> {
    (1..=10u64, 1..=20u64, 0..=19u64)
        .prop_map(|(k, critical, reserve)| (k * 20, critical * 5, reserve * 5))
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Normal(u64),
    Priority(u64),
    Record(u64),
}

fn op(limit: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..=limit / 4 + 1).prop_map(Op::Normal),
        3 => (1..=limit / 4 + 1).prop_map(Op::Priority),
        1 => (1..=limit / 10 + 1).prop_map(Op::Record),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Normal admission never passes `min(critical, limit - reserve)`, priority admission
    /// never passes the limit, each admits exactly what the model says, and the reason names
    /// the rule the model names; `Local`, and `Exact` on a memory store, alike.
    #[test]
    fn admission_follows_the_model(
        (limit, critical_pct, reserve_pct) in rules(),
        exact in any::<bool>(),
        ops in (1..=200u64).prop_flat_map(|k| prop::collection::vec(op(k * 20), 1..60)),
    ) {
        let critical_at = limit * critical_pct / 100;
        let reserve = limit * reserve_pct / 100;
        let normal_cap = critical_at.min(limit - reserve);
        let admission = if exact { Admission::Exact } else { Admission::Local };
        let config = config(limit, critical_pct as f64 / 100.0, reserve_pct as f64 / 100.0, admission);
        let t = tracker(config, exact.then(|| Box::new(MemoryStore::new()) as Box<dyn Store>));
        prop_assert_eq!(t.reserve_allocation("api").unwrap(), reserve);
        let mut used = 0u64;
        for op in ops {
            let (result, count, cap) = match op {
                Op::Normal(n) => (t.try_record("api", n), n, normal_cap),
                Op::Priority(n) => (t.try_record_priority("api", n), n, limit),
                Op::Record(n) => {
                    used += n;
                    prop_assert_eq!(t.record_call("api", n).unwrap().usage.used, used);
                    continue;
                }
            };
            match result {
                Ok(recorded) => {
                    prop_assert!(used + count <= cap, "{op:?} admitted at {used}");
                    used += count;
                    prop_assert_eq!(recorded.usage.used, used);
                    prop_assert!(used <= cap);
                }
                Err(QuotaError::Denied { used: seen, reason, .. }) => {
                    prop_assert!(used + count > cap, "{op:?} denied at {used}");
                    prop_assert_eq!(seen, used);
                    let expected = if used + count > limit {
                        DenyReason::Limit
                    } else if limit - reserve < critical_at && used < critical_at {
                        DenyReason::Reserve
                    } else {
                        DenyReason::Critical
                    };
                    prop_assert_eq!(reason, expected, "{:?} at {}", op, used);
                }
                Err(other) => prop_assert!(false, "{other}"),
            }
            prop_assert_eq!(t.can_call("api").unwrap(), used < normal_cap);
        }
    }
}

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use crate::redis_server::Server;

    #[test]
    fn exact_and_leased_admission_hold_the_reserve_back_on_redis() {
        let server = Server::start();
        for (i, admission) in [Admission::Exact, Admission::Leased { block: 7 }]
            .into_iter()
            .enumerate()
        {
            let prefix = format!("reserve{i}");
            let store = || Box::new(server.store().prefix(&prefix)) as Box<dyn Store>;
            let total = the_reserve_is_held_back(admission, Some(store()), Some(store()));
            assert_eq!(total, 100, "{admission:?}");
            let t = tracker(config(100, 0.95, 0.1, admission), Some(store()));
            assert_eq!(
                t.usage("api").unwrap().used,
                100,
                "the server holds every call once"
            );
            assert_eq!(reason(t.try_record_priority("api", 1)), DenyReason::Limit);
        }
    }

    #[test]
    fn eight_trackers_on_redis_mixing_normal_and_priority_calls_count_exactly() {
        let server = Server::start();
        let trackers: Vec<Arc<QuotaTracker>> = (0..8)
            .map(|_| {
                Arc::new(tracker(
                    config(400, 0.95, 0.1, Admission::Exact),
                    Some(Box::new(server.store())),
                ))
            })
            .collect();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = trackers
            .iter()
            .enumerate()
            .map(|(i, tracker)| {
                let (tracker, barrier) = (Arc::clone(tracker), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let (mut normal, mut priority) = (0u64, 0u64);
                    for call in 0..100u64 {
                        if (call + i as u64).is_multiple_of(2) {
                            priority += u64::from(tracker.try_record_priority("api", 1).is_ok());
                        } else {
                            normal += u64::from(tracker.try_record("api", 1).is_ok());
                        }
                    }
                    (normal, priority)
                })
            })
            .collect();
        let (normal, priority) = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(n, p), (a, b)| (n + a, p + b));
        // 800 tries for 400 calls: every call taken, normal ones only below the reserve.
        assert_eq!(normal + priority, 400);
        assert!(normal <= 360, "{normal}");
        let t = tracker(
            config(400, 0.95, 0.1, Admission::Exact),
            Some(Box::new(server.store())),
        );
        assert_eq!(t.usage("api").unwrap().used, 400);
    }
}

#[test]
fn bad_priority_calls_are_typed_errors_and_change_nothing() {
    for admission in [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 5 },
    ] {
        let store = MemoryStore::new();
        let t = tracker(
            config(100, 1.0, 0.1, admission),
            Some(Box::new(store.clone())),
        );
        t.try_record_priority("api", 3).unwrap();
        assert!(matches!(
            t.try_record_priority("api", 0),
            Err(QuotaError::InvalidCount { count: 0, .. })
        ));
        assert!(matches!(
            t.service("api").unwrap().try_record_priority(0),
            Err(QuotaError::InvalidCount { count: 0, .. })
        ));
        assert_eq!(
            t.try_record_priority("nope", 1).unwrap_err(),
            QuotaError::UnknownService("nope".into())
        );
        // A count no quota holds: refused, not counted, nothing overflows (past the counter's
        // range, `InvalidCount` where the step sees it, a denial where a store does).
        assert!(matches!(
            t.try_record_priority("api", u64::MAX),
            Err(QuotaError::InvalidCount { .. }
                | QuotaError::Denied {
                    reason: DenyReason::Limit,
                    ..
                })
        ));
        assert_eq!(
            reason(t.try_record_priority("api", u64::MAX - 3)),
            DenyReason::Limit
        );
        // (A `Leased` view counts its block in hand: the flush gives it back.)
        t.flush().unwrap();
        assert_eq!(t.usage("api").unwrap().used, 3, "{admission:?}");
        assert_eq!(stored(&store), 3, "{admission:?}");
    }
}
