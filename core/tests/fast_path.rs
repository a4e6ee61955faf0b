//! The counting fast path (issue 11): a call that changes nothing but the count is one atomic
//! swap beside the service's lock. These tests hammer one service from many threads while
//! other threads take its lock (reads, snapshots, flushes to a store, a clock that rolls the
//! window over) and check that every call is counted exactly once: in the tracker, in each
//! call's own answer, in the store, and in the transitions the observers see.

use quota_core::{
    Level, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker, ServiceConfig, SyncPolicy,
    TrackerConfig, Transition,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const JUNE_10: u64 = 1_718_000_000_000;
const THREADS: usize = 8;

fn api(limit: u64) -> TrackerConfig {
    TrackerConfig::new([
        ServiceConfig::builder("api", limit, Period::Day)
            .warn_threshold(0.5)
            .critical_threshold(0.8)
            .reserve_fraction(0.1)
            .build()
            .unwrap(),
        ServiceConfig::new("other", 1_000, Period::Day),
    ])
}

fn stored(store: &MemoryStore) -> u64 {
    store.state().unwrap().windows().map(|w| w.total).sum()
}

/// Runs `calls` on `THREADS` threads at once, with `meanwhile` looping on another thread
/// until they end; each thread's answers.
fn hammer<T: Send + 'static>(
    tracker: &Arc<QuotaTracker>,
    calls: impl Fn(&QuotaTracker) -> Vec<T> + Send + Sync + 'static,
    meanwhile: impl Fn(&QuotaTracker) + Send + 'static,
) -> Vec<T> {
    let calls = Arc::new(calls);
    let start = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (tracker, start, done) = (Arc::clone(tracker), Arc::clone(&start), Arc::clone(&done));
        thread::spawn(move || {
            start.wait();
            while !done.load(Ordering::Acquire) {
                meanwhile(&tracker);
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (tracker, start, calls) =
                (Arc::clone(tracker), Arc::clone(&start), Arc::clone(&calls));
            thread::spawn(move || {
                let mut answers = Vec::new();
                // Each worker waits for the others and the reader, so all run at once.
                start.wait();
                answers.extend(calls(&tracker));
                answers
            })
        })
        .collect();
    let answers = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    done.store(true, Ordering::Release);
    reader.join().unwrap();
    answers
}

#[test]
fn records_across_both_levels_with_readers_and_a_store_lose_nothing() {
    const PER_THREAD: u64 = 100_000;
    let store = MemoryStore::new();
    let transitions = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let tracker = Arc::new(
        QuotaTracker::builder(api(1_000_000))
            .clock(ManualClock::new(JUNE_10))
            .store(store.clone())
            .sync_policy(SyncPolicy::default())
            .build()
            .unwrap(),
    );
    let sink = Arc::clone(&transitions);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    let used_seen = hammer(
        &tracker,
        |tracker| {
            let api = tracker.service("api").unwrap();
            (0..PER_THREAD)
                .map(|i| match i % 3 {
                    0 => api.record(1).unwrap().usage.used,
                    1 => 1_000_000 - api.record_remaining(1).unwrap(),
                    _ => tracker.record_call("api", 1).unwrap().usage.used,
                })
                .collect()
        },
        |tracker| {
            let seen = tracker.usage("api").unwrap();
            assert_eq!(seen.used, seen.total_recorded);
            let snapshot = tracker.snapshot();
            assert!(snapshot.service("api").unwrap().used >= seen.used);
            tracker.flush().unwrap();
        },
    );
    let calls = THREADS as u64 * PER_THREAD;
    // Every call's answer is its own count: 1..=800,000, each exactly once.
    let distinct: BTreeSet<u64> = used_seen.iter().copied().collect();
    assert_eq!(distinct.len() as u64, calls);
    assert_eq!(distinct.first(), Some(&1));
    assert_eq!(distinct.last(), Some(&calls));
    let usage = tracker.usage("api").unwrap();
    assert_eq!((usage.used, usage.total_recorded), (calls, calls));
    assert_eq!(usage.level(), Level::Critical);
    tracker.flush().unwrap();
    assert_eq!(stored(&store), calls);
    let seen: Vec<(Level, u64)> = transitions
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.to, t.used))
        .collect();
    assert_eq!(
        seen,
        [(Level::Warning, 500_000), (Level::Critical, 800_000)]
    );
}

#[test]
fn try_record_admits_exactly_the_normal_cap_and_priority_the_rest() {
    // Normal calls stop at min(Critical 8,000, limit - reserve 9,000) = 8,000; priority ones
    // at the limit.
    let tracker =
        Arc::new(QuotaTracker::new_with_clock(api(10_000), ManualClock::new(JUNE_10)).unwrap());
    let admitted = hammer(
        &tracker,
        |tracker| {
            let api = tracker.service("api").unwrap();
            let mut counts = Vec::new();
            for i in 0..2_000 {
                let answer = if i % 2 == 0 {
                    api.try_record(1).map(|r| r.usage.used)
                } else {
                    api.try_record_remaining(1)
                        .map(|remaining| 10_000 - remaining)
                };
                match answer {
                    Ok(used) => counts.push(used),
                    Err(QuotaError::Denied { .. }) => {}
                    Err(other) => panic!("{other}"),
                }
            }
            while let Ok(recorded) = api.try_record_priority(1) {
                counts.push(recorded.usage.used);
            }
            counts
        },
        |tracker| {
            let _ = tracker.can_call("api").unwrap();
        },
    );
    let distinct: BTreeSet<u64> = admitted.iter().copied().collect();
    assert_eq!(admitted.len(), 10_000);
    assert_eq!(distinct, (1..=10_000).collect());
    assert_eq!(tracker.usage("api").unwrap().used, 10_000);
}

#[test]
fn a_window_rolling_over_mid_hammer_counts_every_call_in_one_window() {
    const PER_THREAD: u64 = 200_000;
    let clock = ManualClock::new(JUNE_10);
    let store = MemoryStore::new();
    let tracker = Arc::new(
        QuotaTracker::builder(api(u64::MAX / 4))
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap(),
    );
    // One day boundary, once the workers are well under way. (Several days in a row faster
    // than a worker goes from its clock reading to its count would make a reading two days
    // old look like a bogus one: clock sanity then carries calls back, an over-count by design.)
    let moved = Arc::new(AtomicBool::new(false));
    let moved_once = Arc::clone(&moved);
    hammer(
        &tracker,
        |tracker| {
            let api = tracker.service("api").unwrap();
            (0..PER_THREAD)
                .map(|_| api.record(1).unwrap().usage.used)
                .collect::<Vec<_>>()
        },
        move |tracker| {
            if !moved_once.load(Ordering::Relaxed)
                && tracker.usage("api").unwrap().used >= PER_THREAD
            {
                clock.advance(86_400_000);
                moved_once.store(true, Ordering::Relaxed);
            }
            tracker.flush().unwrap();
        },
    );
    assert!(
        moved.load(Ordering::Relaxed),
        "the window rolled over mid-hammer"
    );
    let calls = THREADS as u64 * PER_THREAD;
    assert_eq!(tracker.usage("api").unwrap().total_recorded, calls);
    tracker.flush().unwrap();
    // Each call is in exactly one stored window (whichever its clock reading belonged to).
    assert_eq!(stored(&store), calls);
}

#[test]
fn a_service_at_the_word_limit_keeps_counting_under_the_lock() {
    // 2^38 calls do not fit the fast path's count: from there every call takes the lock.
    let tracker = QuotaTracker::new_with_clock(
        TrackerConfig::new([ServiceConfig::new("big", u64::MAX, Period::Month)]),
        ManualClock::new(JUNE_10),
    )
    .unwrap();
    let big = tracker.service("big").unwrap();
    let edge = (1u64 << 38) - 2;
    big.record(edge).unwrap();
    for expected in edge + 1..edge + 6 {
        assert_eq!(big.record(1).unwrap().usage.used, expected);
    }
    assert_eq!(big.record_remaining(1).unwrap(), u64::MAX - (edge + 6));
    assert_eq!(tracker.usage("big").unwrap().total_recorded, edge + 6);
}

#[test]
fn raises_racing_fast_calls_keep_every_call_and_the_transition_chain() {
    // Floors reported from outside (raise_used, under the lock) while fast calls count: no
    // call is lost, and the transitions the observers see form one chain ending at the level
    // the service is at (a fast call that crossed a threshold would break it).
    for round in 0..10u64 {
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(api(200_000), ManualClock::new(JUNE_10)).unwrap(),
        );
        let transitions = Arc::new(Mutex::new(Vec::<Transition>::new()));
        let sink = Arc::clone(&transitions);
        tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
        hammer(
            &tracker,
            move |tracker| {
                let api = tracker.service("api").unwrap();
                for i in 0..10_000u64 {
                    api.record_remaining(1).unwrap();
                    if i % 500 == 0 {
                        // A floor a little above the count: it crosses the thresholds
                        // between other threads' fast calls.
                        let used = api.usage().used;
                        api.raise_used(used + 997 + round * 13, None).unwrap();
                    }
                }
                Vec::<()>::new()
            },
            |tracker| {
                let _ = tracker.usage("api").unwrap();
            },
        );
        let usage = tracker.usage("api").unwrap();
        assert_eq!(usage.total_recorded, THREADS as u64 * 10_000);
        let seen = transitions.lock().unwrap();
        let mut level = Level::Normal;
        for t in seen.iter() {
            assert_eq!(t.from, level, "{seen:?}");
            let at = match t.used {
                0..100_000 => Level::Normal,
                100_000..160_000 => Level::Warning,
                160_000..200_000 => Level::Critical,
                _ => Level::Exhausted,
            };
            assert_eq!(t.to, at, "{t:?}");
            level = t.to;
        }
        assert_eq!(level, usage.level(), "{seen:?} at {}", usage.used);
    }
}

#[test]
fn a_file_store_gets_every_fast_call_once() {
    let dir = std::env::temp_dir().join(format!("quota-fast-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("quota.json");
    let build = || {
        QuotaTracker::builder(api(u64::MAX / 4))
            .clock(ManualClock::new(JUNE_10))
            .store(quota_core::FileStore::new(&path))
            .build()
            .unwrap()
    };
    let tracker = Arc::new(build());
    hammer(
        &tracker,
        |tracker| {
            let api = tracker.service("api").unwrap();
            for _ in 0..10_000 {
                api.record_remaining(1).unwrap();
            }
            Vec::<()>::new()
        },
        |tracker| tracker.flush().unwrap(),
    );
    drop(tracker); // its last sync
    let calls = THREADS as u64 * 10_000;
    assert_eq!(build().usage("api").unwrap().used, calls);
    std::fs::remove_dir_all(&dir).unwrap();
}
