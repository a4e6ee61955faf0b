//! proptest: random interleavings of records and of failing and succeeding saves; after
//! recovery and a successful flush the stored counts equal the recorded counts.

use proptest::prelude::*;
use quota_core::{
    ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store, SyncPolicy, TrackerConfig,
};

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Record(usize, u64),
    TryRecord(usize, u64),
    StoreFails(bool),
    FailNext(u64),
    Advance(u64),
    Flush,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES.len(), 1..20u64).prop_map(|(s, n)| Op::Record(s, n)),
        2 => (0..NAMES.len(), 1..20u64).prop_map(|(s, n)| Op::TryRecord(s, n)),
        1 => any::<bool>().prop_map(Op::StoreFails),
        1 => (1..4u64).prop_map(Op::FailNext),
        2 => (0..2_000u64).prop_map(Op::Advance),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn stored_counts_equal_recorded_counts_after_recovery(ops in prop::collection::vec(op(), 1..80)) {
        let config = TrackerConfig::new(NAMES.map(|n| ServiceConfig::new(n, 200, Period::Month)));
        // Mid-month, so 80 x 2 s of clock moves stay in one window.
        let clock = ManualClock::new(1_718_000_000_000);
        let store = MemoryStore::new();
        let build = || {
            QuotaTracker::builder(config.clone())
                .clock(clock.clone())
                .store(store.clone())
                .sync_policy(SyncPolicy { interval_ms: 1_000, ..SyncPolicy::default() })
                .build()
                .unwrap()
        };
        let mut tracker = build();
        let mut recorded = [0u64; NAMES.len()];
        let mut durable = [0u64; NAMES.len()]; // what a restart may rely on: the last good save
        let mut pending: Option<[u64; 3]> = None; // stored counts a failed load still owes

        for op in ops {
            match op {
                Op::Record(s, n) => {
                    tracker.record_call(NAMES[s], n).unwrap();
                    recorded[s] += n;
                }
                Op::TryRecord(s, n) => {
                    if tracker.try_record(NAMES[s], n).is_ok() {
                        recorded[s] += n;
                    }
                }
                Op::StoreFails(failing) => store.set_failing(failing),
                Op::FailNext(n) => store.fail_next(n),
                Op::Advance(ms) => clock.advance(ms),
                Op::Flush => { let _ = tracker.flush(); }
                Op::Restart => {
                    // A restart keeps exactly what the store holds; if the load fails, it
                    // starts fresh and merges the stored counts in before its first save.
                    let saved = store_counts(&store).unwrap_or([0; 3]);
                    tracker = build();
                    let now: Vec<u64> = NAMES.iter().map(|n| tracker.usage(n).unwrap().used).collect();
                    if tracker.stats().load_failures == 0 {
                        prop_assert_eq!(&now[..], &saved[..]);
                        pending = None;
                    } else {
                        prop_assert_eq!(&now[..], &[0u64; 3][..]);
                        pending = Some(saved);
                    }
                    recorded.copy_from_slice(&now);
                }
            }
            let stats = tracker.stats();
            if let Some(merged) = pending.filter(|_| stats.loads > stats.load_failures) {
                for (r, m) in recorded.iter_mut().zip(merged) {
                    *r += m;
                }
                pending = None;
            }
            let live: Vec<u64> = NAMES.iter().map(|n| tracker.usage(n).unwrap().used).collect();
            prop_assert_eq!(&live[..], &recorded[..]);
            if let Some(saved) = store_counts(&store) {
                durable = saved;
            }
            let owed = pending.unwrap_or([0; 3]);
            // Nothing stored is ever more than what is live plus what is still to merge.
            prop_assert!((0..3).all(|i| durable[i] <= recorded[i] + owed[i]), "{durable:?} {recorded:?} {owed:?}");
        }
        store.set_failing(false);
        store.fail_next(0);
        prop_assert!(tracker.flush().is_ok());
        if let Some(merged) = pending {
            for (r, m) in recorded.iter_mut().zip(merged) {
                *r += m;
            }
        }
        prop_assert_eq!(store_counts(&store), Some(recorded));
        let live: Vec<u64> = NAMES.iter().map(|n| tracker.usage(n).unwrap().used).collect();
        prop_assert_eq!(&live[..], &recorded[..]);
    }
}

fn store_counts(store: &MemoryStore) -> Option<[u64; 3]> {
    // Peek without consuming injected failures.
    let state = quota_core::PersistedState::from_json(&store.raw()?).ok()?;
    let mut counts = [0; 3];
    for service in state.services {
        let index = NAMES.iter().position(|n| *n == service.name)?;
        counts[index] = service.used;
    }
    Some(counts)
}

#[allow(dead_code)]
fn assert_store_is_object_safe(_: &dyn Store) {}
