//! `raise_used`: a count reported from outside (a provider's remaining-calls header, a 429)
//! raises `used` as a floor, never as calls: alone, and across trackers sharing a
//! `MemoryStore`, a `FileStore` and (feature `redis`) a real `redis-server`, where the floor is
//! synced as a maximum, so nothing is counted twice and no delta is lost.

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use quota_core::{
    Admission, DenyReason, FileStore, Level, ManualClock, MemoryStore, Period, QuotaError,
    QuotaTracker, ServiceConfig, Store, SyncPolicy, TrackerConfig, Transition,
};
use std::sync::{Arc, Mutex};

/// 2024-06-10 06:13:20 UTC, mid-day.
const JUNE_10: u64 = 1_718_000_000_000;
const DAY: u64 = 86_400_000;
const DAY_START: u64 = JUNE_10 / DAY * DAY;
const DAY_END: u64 = DAY_START + DAY;

fn config(limit: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", limit, Period::Day)
        .warn_threshold(0.5)
        .critical_threshold(0.8)
        .build()
        .unwrap()])
}

/// A tracker on `store` that syncs only when told (flush) or on entering Critical.
fn shared(limit: u64, clock: &ManualClock, store: impl Store + 'static) -> QuotaTracker {
    QuotaTracker::builder(config(limit))
        .clock(clock.clone())
        .store(store)
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            // One try per flush: these tests fail syncs on purpose and look at each.
            flush_timeout_ms: 0,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap()
}

#[test]
fn a_raise_is_a_floor_in_the_current_window_only() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = QuotaTracker::new_with_clock(config(100), clock.clone()).unwrap();
    tracker.record_call("api", 10).unwrap();
    // The window is (start, end]: a reset at its end is ours, at its start is the last one's.
    for outside in [
        DAY_START,
        DAY_START - 1,
        DAY_END + 1,
        DAY_END + DAY,
        0,
        u64::MAX,
    ] {
        let raised = tracker.raise_used("api", 90, Some(outside)).unwrap();
        assert!(!raised.applied, "{outside}");
        assert_eq!(raised.usage.used, 10, "{outside}");
        assert_eq!(raised.recorded, None);
    }
    let raised = tracker.raise_used("api", 30, Some(DAY_END)).unwrap();
    assert!(raised.applied);
    assert_eq!(raised.usage.used, 30);
    assert_eq!(
        raised.usage.total_recorded, 10,
        "a floor is not calls recorded"
    );
    let raised = tracker.raise_used("api", 20, Some(DAY_START + 1)).unwrap();
    assert!(
        raised.applied,
        "a lower report is taken in, and changes nothing"
    );
    assert_eq!(raised.usage.used, 30);
    assert_eq!(tracker.raise_used("api", 31, None).unwrap().usage.used, 31);
    // Calls after a raise add to it.
    assert_eq!(tracker.record_call("api", 2).unwrap().usage.used, 33);
    // A raise to the limit denies try_record, as calls would.
    tracker.raise_used("api", 100, None).unwrap();
    assert!(matches!(
        tracker.try_record("api", 1),
        Err(QuotaError::Denied {
            used: 100,
            limit: 100,
            ..
        })
    ));
    // The next window starts from 0: the raise rolls the window over first, and a report
    // with yesterday's reset is ignored.
    clock.advance(DAY);
    let raised = tracker.raise_used("api", 100, Some(DAY_END)).unwrap();
    assert!(!raised.applied);
    assert_eq!(raised.usage.used, 0);
    assert_eq!(raised.reset.map(|t| t.to), Some(Level::Normal));
}

#[test]
fn a_raise_moves_levels_and_reaches_the_observers() {
    let tracker = QuotaTracker::new_with_clock(config(100), ManualClock::new(JUNE_10)).unwrap();
    let seen: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let _subscription = tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    let raised = tracker.raise_used("api", 85, None).unwrap();
    let transition = raised.recorded.clone().unwrap();
    assert_eq!(
        (transition.from, transition.to),
        (Level::Normal, Level::Critical)
    );
    assert_eq!(transition.used, 85);
    assert_eq!(*seen.lock().unwrap(), vec![transition]);
    // The handle does the same.
    let handle = tracker.service("api").unwrap();
    let exhausted = handle.raise_used(100, Some(DAY_END)).unwrap();
    assert_eq!(exhausted.recorded.map(|t| t.to), Some(Level::Exhausted));
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Nothing changes, nothing is delivered.
    handle.raise_used(50, None).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn bad_raises_are_typed_errors_and_change_nothing() {
    let tracker = QuotaTracker::new_with_clock(config(100), ManualClock::new(JUNE_10)).unwrap();
    tracker.record_call("api", 3).unwrap();
    assert!(matches!(
        tracker.raise_used("nope", 5, None),
        Err(QuotaError::UnknownService(name)) if name == "nope"
    ));
    for huge in [(1u64 << 62) + 1, u64::MAX] {
        assert!(matches!(
            tracker.raise_used("api", huge, None),
            Err(QuotaError::InvalidCount { count, .. }) if count == huge
        ));
    }
    assert_eq!(tracker.usage("api").unwrap().used, 3);
    // 2^62 itself is a valid floor (the store's cap); a call after it still counts.
    tracker.raise_used("api", 1 << 62, None).unwrap();
    assert_eq!(
        tracker.record_call("api", 1).unwrap().usage.used,
        (1 << 62) + 1
    );
}

/// Two trackers on one store: calls on both, then one raises. Both end at the floor plus the
/// calls made after it, with no call counted twice or lost, through a lost reply too.
fn two_trackers_share_a_raise(make: impl Fn() -> Box<dyn Store>) {
    let clock = ManualClock::new(JUNE_10);
    let a = shared(1_000, &clock, make());
    let b = shared(1_000, &clock, make());
    a.record_call("api", 5).unwrap();
    b.record_call("api", 3).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    // The provider saw our 8 calls and 12 from elsewhere: 20 used. A delta would make it 28.
    a.raise_used("api", 20, Some(DAY_END)).unwrap();
    // Calls after the raise, before the sync: on top of the floor.
    a.record_call("api", 4).unwrap();
    assert_eq!(a.usage("api").unwrap().used, 24);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(a.usage("api").unwrap().used, 24);
    assert_eq!(b.usage("api").unwrap().used, 24);
    // More calls on both: plain deltas on top.
    b.record_call("api", 2).unwrap();
    a.record_call("api", 1).unwrap();
    b.flush().unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(a.usage("api").unwrap().used, 27);
    assert_eq!(b.usage("api").unwrap().used, 27);
    // A floor below the stored total changes nothing anywhere.
    b.raise_used("api", 10, None).unwrap();
    b.flush().unwrap();
    a.flush().unwrap();
    assert_eq!(a.usage("api").unwrap().used, 27);
    assert_eq!(b.usage("api").unwrap().used, 27);
    // A raise into Critical syncs at once (no flush): B sees it on its next sync.
    let raised = b.raise_used("api", 900, None).unwrap();
    assert_eq!(raised.recorded.map(|t| t.to), Some(Level::Critical));
    a.flush().unwrap();
    assert_eq!(a.usage("api").unwrap().used, 900);
    // Stats: no sync failed.
    assert_eq!(a.stats().consecutive_failures, 0);
    assert_eq!(b.stats().consecutive_failures, 0);
}

#[test]
fn trackers_sharing_a_memory_store_see_a_raise_as_a_maximum() {
    let store = MemoryStore::new();
    two_trackers_share_a_raise(|| Box::new(store.clone()));
}

#[test]
fn trackers_sharing_a_file_store_see_a_raise_as_a_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    two_trackers_share_a_raise(|| Box::new(FileStore::new(&path)));
}

#[test]
fn a_raise_whose_reply_was_lost_is_resent_and_applied_once() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let a = shared(1_000, &clock, store.clone());
    let b = shared(1_000, &clock, store.clone());
    a.record_call("api", 2).unwrap();
    a.raise_used("api", 10, None).unwrap();
    a.record_call("api", 1).unwrap();
    store.lose_next_replies(1);
    assert!(a.flush().is_err(), "the reply was lost");
    // Meanwhile B's calls arrive.
    b.record_call("api", 5).unwrap();
    b.flush().unwrap();
    assert_eq!(b.usage("api").unwrap().used, 16, "max(2 + 1, 11) + 5");
    // A resends the same batch: its deltas are skipped, its floor (11) is below 16.
    a.flush().unwrap();
    assert_eq!(a.usage("api").unwrap().used, 16);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(b.usage("api").unwrap().used, 16);
}

#[test]
fn a_raise_not_yet_synced_when_the_window_ends_goes_to_its_window() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let a = shared(1_000, &clock, store.clone());
    a.record_call("api", 1).unwrap();
    a.raise_used("api", 40, None).unwrap();
    a.record_call("api", 2).unwrap();
    clock.advance(DAY);
    a.record_call("api", 3).unwrap();
    a.flush().unwrap();
    let state = store.state().unwrap();
    let totals: Vec<(u64, u64)> = state.windows().map(|w| (w.start_ms, w.total)).collect();
    assert_eq!(totals, vec![(DAY_START, 42), (DAY_START + DAY, 3)]);
    // A tracker that starts now sees today's 3 only.
    let b = shared(1_000, &clock, store.clone());
    assert_eq!(b.usage("api").unwrap().used, 3);
}

#[test]
fn concurrent_raises_and_calls_lose_nothing() {
    // Threads record and raise at once on two trackers; in the end the store holds at
    // least every call, and exactly max(floors, calls) since every floor here is below the
    // calls counted when it was raised (each thread raises to what its tracker already saw).
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let trackers = [
        Arc::new(shared(1_000_000, &clock, store.clone())),
        Arc::new(shared(1_000_000, &clock, store.clone())),
    ];
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let tracker = Arc::clone(&trackers[i % 2]);
            std::thread::spawn(move || {
                for n in 0..500 {
                    tracker.record_call("api", 1).unwrap();
                    if n % 50 == 0 {
                        let used = tracker.usage("api").unwrap().used;
                        tracker.raise_used("api", used, None).unwrap();
                        tracker.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for tracker in &trackers {
        tracker.flush().unwrap();
    }
    for tracker in &trackers {
        tracker.flush().unwrap();
        assert_eq!(tracker.usage("api").unwrap().used, 4_000);
    }
}

#[cfg(feature = "redis")]
#[test]
fn trackers_sharing_redis_see_a_raise_as_a_maximum() {
    let server = redis_server::Server::start();
    two_trackers_share_a_raise(|| Box::new(server.store()));
}

#[test]
fn a_raise_forfeits_a_leased_block_instead_of_spending_it() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .admission(Admission::Leased { block: 10 })
        .build()
        .unwrap()]);
    let leased = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    leased.try_record("api", 1).unwrap(); // takes a block of 10: 9 left in hand
    assert_eq!(leased.usage("api").unwrap().used, 10);
    // The provider says the quota is spent (a 429): the 9 in hand must not be spent.
    leased.raise_used("api", 100, None).unwrap();
    assert!(matches!(
        leased.try_record("api", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::Limit | DenyReason::Critical,
            ..
        })
    ));
    leased.flush().unwrap();
    // The floor reached the store, and no give-back took it below.
    let other = shared(100, &clock, store.clone());
    assert_eq!(other.usage("api").unwrap().used, 100);
    drop(leased);
    assert_eq!(shared(100, &clock, store).usage("api").unwrap().used, 100);
}

#[test]
fn an_observer_may_raise_from_inside_a_delivery() {
    // Re-entry: the observer of a raise raises again on the same service (no lock is held
    // while observers run, so this neither deadlocks nor loses the second transition).
    let tracker =
        Arc::new(QuotaTracker::new_with_clock(config(100), ManualClock::new(JUNE_10)).unwrap());
    let seen: Arc<Mutex<Vec<Level>>> = Arc::default();
    let (sink, inner) = (Arc::clone(&seen), Arc::downgrade(&tracker));
    let _subscription = tracker.on_transition(move |t| {
        sink.lock().unwrap().push(t.to);
        if t.to == Level::Warning {
            if let Some(tracker) = inner.upgrade() {
                tracker.raise_used("api", 100, None).unwrap();
            }
        }
    });
    tracker.raise_used("api", 60, None).unwrap();
    assert_eq!(*seen.lock().unwrap(), [Level::Warning, Level::Exhausted]);
    assert_eq!(tracker.usage("api").unwrap().used, 100);
}

#[test]
fn calls_admitted_by_the_store_after_a_raise_stay_on_top_of_it() {
    // Exact admission: every call is added in the store, and the floor reaches the store only
    // with the next sync. Calls admitted in between must not be absorbed by the floor.
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .admission(Admission::Exact)
        .build()
        .unwrap()]);
    let exact = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        exact.try_record("api", 1).unwrap();
    }
    // The sync the raise asks for fails: the floor is not in the store yet.
    store.fail_next(1);
    exact.raise_used("api", 20, None).unwrap();
    assert_eq!(exact.stats().consecutive_failures, 1);
    // Past the back-off.
    clock.advance(1_000);
    // Admitted by the store at 6 (it has not seen the floor): counted as 21 here, and the
    // sync after it sends the floor as 21, not the 20 of the batch that failed.
    assert_eq!(exact.try_record("api", 1).unwrap().usage.used, 21);
    assert_eq!(exact.try_record("api", 1).unwrap().usage.used, 22);
    exact.flush().unwrap();
    let other = shared(100, &clock, store.clone());
    assert_eq!(other.usage("api").unwrap().used, 22, "max(5 + 2, 20 + 2)");
    assert_eq!(exact.usage("api").unwrap().used, 22);
}

#[test]
fn a_block_leased_before_the_floor_reaches_the_store_never_takes_the_total_below_it() {
    // The floor is not in the store yet (its sync failed) when the next call leases a new
    // block: the store adds the block under the floor, which then absorbs it. The block's
    // unused calls must not take `used`, here or in the store, below the floor plus the call
    // spent.
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .admission(Admission::Leased { block: 10 })
        .build()
        .unwrap()]);
    let leased = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    store.fail_next(1);
    leased.raise_used("api", 50, None).unwrap();
    assert_eq!(
        leased.stats().consecutive_failures,
        1,
        "the floor's sync failed"
    );
    clock.advance(1_000); // past the back-off
    assert_eq!(
        leased.try_record("api", 1).unwrap().usage.used,
        60,
        "50 + the block"
    );
    leased.flush().unwrap();
    // The floor (50 + the block, 60) reached the store after the block was granted (the
    // call's sync), so the store forfeits the 9 unused calls: it cannot tell which calls a
    // floor stands on (another instance's floor may have absorbed them). Never below the floor
    // plus the call spent (51); an over-count by the unused calls.
    assert_eq!(leased.usage("api").unwrap().used, 60);
    assert_eq!(leased.stats().forfeited_calls, 9);
    let other = shared(100, &clock, store.clone());
    assert_eq!(other.usage("api").unwrap().used, 60);
    drop(leased);
    assert_eq!(shared(100, &clock, store).usage("api").unwrap().used, 60);
}

/// A tracker on `store` with one service of `admission` (limit 100, Critical at the limit,
/// no reserve) that syncs only when told, on entering Critical, or after a raise.
fn admitting(clock: &ManualClock, store: &MemoryStore, admission: Admission) -> QuotaTracker {
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(admission)
        .build()
        .unwrap()]);
    QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap()
}

#[test]
fn a_floor_not_in_the_store_yet_still_stops_shared_admission() {
    // A 429 (a floor at the limit) whose sync failed: the store still holds 5, but the
    // provider said the quota is spent. Neither an `Exact` admission nor a new leased block
    // may admit a call past the floor before the floor reaches the store.
    for admission in [Admission::Leased { block: 10 }, Admission::Exact] {
        let store = MemoryStore::new();
        let clock = ManualClock::new(JUNE_10);
        let tracker = admitting(&clock, &store, admission);
        tracker.record_call("api", 5).unwrap();
        tracker.flush().unwrap();
        store.fail_next(1);
        tracker.raise_used("api", 95, None).unwrap();
        assert_eq!(tracker.stats().consecutive_failures, 1, "{admission:?}");
        clock.advance(1_000); // past the back-off
                              // 95 + 6 would pass the limit: denied, though the store alone would admit it.
        let denied = tracker.try_record_priority("api", 6).unwrap_err();
        assert!(
            matches!(
                denied,
                QuotaError::Denied {
                    reason: DenyReason::Limit,
                    used: 95,
                    ..
                }
            ),
            "{admission:?}: {denied:?}"
        );
        assert_eq!(
            tracker.try_record("api", 5).unwrap().usage.used,
            100,
            "{admission:?}"
        );
        assert!(tracker.try_record("api", 1).is_err(), "{admission:?}");
        tracker.flush().unwrap();
        drop(tracker);
        let other = shared(100, &clock, store.clone());
        assert_eq!(other.usage("api").unwrap().used, 100, "{admission:?}");
    }
}

/// A `MemoryStore` whose syncs wait while `hold` is set (admissions and leases do not).
struct SlowSyncs {
    inner: MemoryStore,
    hold: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// Set once a sync waits.
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

impl Store for SlowSyncs {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        let (held, wake) = &*self.hold;
        let mut held = held.lock().unwrap();
        while *held {
            self.waiting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            held = wake.wait(held).unwrap();
        }
        drop(held);
        self.inner.sync(batch)
    }
    fn admit(
        &self,
        request: &quota_core::AdmitRequest,
    ) -> Result<quota_core::AdmitReply, quota_core::StoreError> {
        self.inner.admit(request)
    }
    fn lease(
        &self,
        request: &quota_core::LeaseRequest,
    ) -> Result<quota_core::LeaseReply, quota_core::StoreError> {
        self.inner.lease(request)
    }
    fn give_back(&self, request: &quota_core::GiveBack) -> Result<u64, quota_core::StoreError> {
        self.inner.give_back(request)
    }
}

#[test]
fn threads_racing_for_the_calls_left_under_a_floor_not_in_the_store_take_at_most_those() {
    // A slow sync holds the save lock, so the floor of 90 stays out of the store while 8
    // threads race for the 10 calls it leaves: `Exact` admits exactly 10, `Leased` at most
    // 10 (a block in another thread's hand may go back unspent), and `used` is the floor plus
    // exactly the calls admitted, here and in the store.
    for admission in [Admission::Exact, Admission::Leased { block: 3 }] {
        let inner = MemoryStore::new();
        let hold = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clock = ManualClock::new(JUNE_10);
        let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .admission(admission)
            .build()
            .unwrap()]);
        let tracker = Arc::new(
            QuotaTracker::builder(config)
                .clock(clock.clone())
                .store(SlowSyncs {
                    inner: inner.clone(),
                    hold: Arc::clone(&hold),
                    waiting: Arc::clone(&waiting),
                })
                .sync_policy(SyncPolicy {
                    interval_ms: 3_600_000,
                    ..SyncPolicy::default()
                })
                .build()
                .unwrap(),
        );
        tracker.record_call("api", 5).unwrap();
        tracker.flush().unwrap();
        *hold.0.lock().unwrap() = true;
        let flusher = {
            let tracker = Arc::clone(&tracker);
            std::thread::spawn(move || tracker.flush().unwrap())
        };
        // The flush holds the save lock once its sync waits.
        while !waiting.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        tracker.raise_used("api", 90, None).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let tracker = Arc::clone(&tracker);
                std::thread::spawn(move || {
                    (0..5)
                        .filter(|_| {
                            if i % 2 == 0 {
                                tracker.try_record("api", 1).is_ok()
                            } else {
                                tracker.try_record_priority("api", 1).is_ok()
                            }
                        })
                        .count() as u64
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        *hold.0.lock().unwrap() = false;
        hold.1.notify_all();
        flusher.join().unwrap();
        if admission == Admission::Exact {
            assert_eq!(admitted, 10);
        } else {
            assert!((1..=10).contains(&admitted), "{admission:?}: {admitted}");
        }
        tracker.flush().unwrap();
        assert_eq!(
            tracker.usage("api").unwrap().used,
            90 + admitted,
            "{admission:?}"
        );
        drop(tracker);
        let other = shared(100, &clock, inner.clone());
        assert_eq!(
            other.usage("api").unwrap().used,
            90 + admitted,
            "{admission:?}"
        );
    }
}

/// A `MemoryStore` whose admissions, once applied, wait before replying while `hold` is set.
struct SlowAdmitReplies {
    inner: MemoryStore,
    hold: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// Set once an admission waits.
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

impl Store for SlowAdmitReplies {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        self.inner.sync(batch)
    }
    fn admit(
        &self,
        request: &quota_core::AdmitRequest,
    ) -> Result<quota_core::AdmitReply, quota_core::StoreError> {
        let reply = self.inner.admit(request);
        let (held, wake) = &*self.hold;
        let mut held = held.lock().unwrap();
        while *held {
            self.waiting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            held = wake.wait(held).unwrap();
        }
        reply
    }
}

#[test]
fn a_call_admitted_before_the_floor_arrives_but_taken_in_after_its_ack_is_not_absorbed() {
    // The store admits a call (adding it), then the floor's batch arrives and is acknowledged
    // before the admission's reply is taken in: the floor absorbed the call, so the floor
    // must go again with it on top.
    for force in [false, true] {
        let inner = MemoryStore::new();
        let hold = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clock = ManualClock::new(JUNE_10);
        let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .admission(Admission::Exact)
            .build()
            .unwrap()]);
        let tracker = Arc::new(
            QuotaTracker::builder(config)
                .clock(clock.clone())
                .store(SlowAdmitReplies {
                    inner: inner.clone(),
                    hold: Arc::clone(&hold),
                    waiting: Arc::clone(&waiting),
                })
                .sync_policy(SyncPolicy {
                    interval_ms: 3_600_000,
                    ..SyncPolicy::default()
                })
                .build()
                .unwrap(),
        );
        inner.fail_next(1);
        tracker.raise_used("api", 40, None).unwrap();
        clock.advance(1_000); // past the back-off
        *hold.0.lock().unwrap() = true;
        let caller = {
            let tracker = Arc::clone(&tracker);
            std::thread::spawn(move || {
                if force {
                    tracker.record_call("api", 1).map(|r| r.usage.used)
                } else {
                    tracker.try_record("api", 1).map(|r| r.usage.used)
                }
            })
        };
        while !waiting.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // The admission is in the store; the floor's batch goes and is acknowledged.
        tracker.flush().unwrap();
        *hold.0.lock().unwrap() = false;
        hold.1.notify_all();
        assert_eq!(caller.join().unwrap().unwrap(), 41, "force {force}");
        tracker.flush().unwrap();
        drop(tracker);
        let other = shared(100, &clock, inner.clone());
        assert_eq!(other.usage("api").unwrap().used, 41, "force {force}");
    }
}

/// A `MemoryStore` whose next `fail` syncs fail (admissions, leases and give-backs do not).
#[derive(Clone)]
struct FailingSyncs {
    inner: MemoryStore,
    fail: Arc<std::sync::atomic::AtomicU64>,
}

impl Store for FailingSyncs {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        let failing = self
            .fail
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if failing {
            return Err(quota_core::StoreError::Injected);
        }
        self.inner.sync(batch)
    }
    fn admit(
        &self,
        request: &quota_core::AdmitRequest,
    ) -> Result<quota_core::AdmitReply, quota_core::StoreError> {
        self.inner.admit(request)
    }
    fn lease(
        &self,
        request: &quota_core::LeaseRequest,
    ) -> Result<quota_core::LeaseReply, quota_core::StoreError> {
        self.inner.lease(request)
    }
    fn give_back(&self, request: &quota_core::GiveBack) -> Result<u64, quota_core::StoreError> {
        self.inner.give_back(request)
    }
}

#[test]
fn unused_calls_of_a_block_leased_under_a_pending_floor_come_off_that_floor_when_given_back() {
    // The block leased while the floor is not in the store is added to the floor whole; its
    // unused calls given back (on flush, in the same sync as the floor) must come off the
    // floor too, or the floor would put them back.
    let inner = MemoryStore::new();
    let store = FailingSyncs {
        inner: inner.clone(),
        fail: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let clock = ManualClock::new(JUNE_10);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block: 10 })
        .build()
        .unwrap()]);
    let leased = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    store.fail.store(2, std::sync::atomic::Ordering::SeqCst);
    leased.raise_used("api", 50, None).unwrap();
    clock.advance(1_000); // past the back-off
    assert_eq!(
        leased.try_record("api", 1).unwrap().usage.used,
        60,
        "50 + the block"
    );
    assert_eq!(
        leased.stats().consecutive_failures,
        2,
        "the floor is still not in the store"
    );
    leased.flush().unwrap();
    assert_eq!(leased.usage("api").unwrap().used, 51);
    let other = shared(100, &clock, inner.clone());
    assert_eq!(
        other.usage("api").unwrap().used,
        51,
        "the floor and the call spent"
    );
}

#[test]
fn a_raise_while_an_admission_is_in_flight_does_not_absorb_it() {
    // The store has added the call when the provider's count arrives and its floor is synced
    // and acknowledged; the admission's answer is taken in after: the floor must go again
    // with the call on top.
    let inner = MemoryStore::new();
    let hold = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clock = ManualClock::new(JUNE_10);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Exact)
        .build()
        .unwrap()]);
    let tracker = Arc::new(
        QuotaTracker::builder(config)
            .clock(clock.clone())
            .store(SlowAdmitReplies {
                inner: inner.clone(),
                hold: Arc::clone(&hold),
                waiting: Arc::clone(&waiting),
            })
            .build()
            .unwrap(),
    );
    *hold.0.lock().unwrap() = true;
    let caller = {
        let tracker = Arc::clone(&tracker);
        std::thread::spawn(move || tracker.try_record("api", 1).map(|r| r.usage.used))
    };
    while !waiting.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::yield_now();
    }
    tracker.raise_used("api", 40, None).unwrap(); // synced at once
    assert_eq!(tracker.stats().saves, 1);
    *hold.0.lock().unwrap() = false;
    hold.1.notify_all();
    assert_eq!(caller.join().unwrap().unwrap(), 41);
    tracker.flush().unwrap();
    drop(tracker);
    assert_eq!(shared(100, &clock, inner).usage("api").unwrap().used, 41);
}

/// A `MemoryStore` that, in each sync, raises its own tracker's count (a store calling back:
/// re-entry from inside a sync) and panics on the sync after that.
struct RaisingStore {
    inner: MemoryStore,
    tracker: Arc<Mutex<std::sync::Weak<QuotaTracker>>>,
    syncs: std::sync::atomic::AtomicU64,
}

impl Store for RaisingStore {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        let n = self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tracker = self.tracker.lock().unwrap().upgrade();
        if let Some(tracker) = tracker {
            match n {
                1 => {
                    let raised = tracker.raise_used("api", 30, None).unwrap();
                    assert_eq!(raised.usage.used, 30);
                    // A flush from inside the tracker's own sync is refused, not a deadlock.
                    assert!(tracker.flush().is_err());
                }
                2 => panic!("a store that panics"),
                _ => {}
            }
        }
        self.inner.sync(batch)
    }
}

#[test]
fn a_store_that_raises_from_inside_its_sync_and_then_panics_loses_nothing() {
    let inner = MemoryStore::new();
    let slot = Arc::new(Mutex::new(std::sync::Weak::new()));
    let clock = ManualClock::new(JUNE_10);
    let tracker = Arc::new(
        QuotaTracker::builder(config(100))
            .clock(clock.clone())
            .store(RaisingStore {
                inner: inner.clone(),
                tracker: Arc::clone(&slot),
                syncs: std::sync::atomic::AtomicU64::new(0),
            })
            .sync_policy(SyncPolicy {
                flush_timeout_ms: 0,
                interval_ms: 3_600_000,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap(),
    );
    *slot.lock().unwrap() = Arc::downgrade(&tracker);
    tracker.record_call("api", 5).unwrap();
    tracker.flush().unwrap(); // sync 1 raises to 30 from inside; its batch has the 5
    tracker.record_call("api", 1).unwrap();
    assert!(tracker.flush().is_err(), "sync 2 panics: a failed sync");
    clock.advance(1_000);
    tracker.flush().unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 31);
    drop(tracker);
    assert_eq!(shared(100, &clock, inner).usage("api").unwrap().used, 31);
}

#[test]
fn a_lease_whose_reply_was_lost_under_a_pending_floor_is_not_absorbed_by_it() {
    // The store grants the block (adding it) but the reply is lost; the floor then reaches
    // the store, which absorbs the block. The retried lease gets the same block: it must be
    // counted on top of the floor, here and in the store.
    let inner = MemoryStore::new();
    let store = FailingSyncs {
        inner: inner.clone(),
        fail: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let clock = ManualClock::new(JUNE_10);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block: 10 })
        .build()
        .unwrap()]);
    let leased = QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    store.fail.store(1, std::sync::atomic::Ordering::SeqCst);
    leased.raise_used("api", 50, None).unwrap(); // its sync fails
    clock.advance(1_000);
    inner.lose_next_replies(1);
    assert!(matches!(
        leased.try_record("api", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::StoreUnavailable,
            ..
        })
    ));
    leased.flush().unwrap(); // the floor reaches the store
    clock.advance(1_000);
    assert_eq!(
        leased.try_record("api", 1).unwrap().usage.used,
        60,
        "50 + the block"
    );
    leased.flush().unwrap();
    assert_eq!(leased.usage("api").unwrap().used, 51);
    drop(leased);
    assert_eq!(shared(100, &clock, inner).usage("api").unwrap().used, 51);
}
