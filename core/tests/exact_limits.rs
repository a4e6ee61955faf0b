//! `Exact` admission of a service of several limits: every decision is one store call that
//! checks every limit's window, counted in all or in none, between trackers sharing a store, from
//! many threads, with replies lost, with the store down, and on a store that cannot check
//! several windows (refused with a clear error). The multi-process file and Redis suites are in
//! `shared.rs` and `shared_redis.rs`.

#[path = "support/two_limits.rs"]
mod two_limits;

use quota_core::{
    Admission, AdmitReply, AdmitRequest, DenyReason, Limit, ManualClock, MemoryStore, Period,
    QuotaError, QuotaTracker, ServiceConfig, Store, StoreError, SyncBatch, TrackerConfig,
};
use std::sync::{Arc, Barrier};
use std::thread;
use two_limits::{stored, tracker};

/// Noon, 10 June 2024 (UTC).
const NOON: u64 = 1_718_020_800_000;
const MINUTE: u64 = 60_000;

/// `api`: 5 a minute and 8 an hour, admitted up to each limit (no reserve, Critical at the
/// limit), `Exact`.
fn config(per_minute: u64, per_hour: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", per_minute, Period::Minute)
        .and_limit(Limit::new(per_hour, Period::Hour))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Exact)
        .build()
        .unwrap()])
}

fn denied_limit(result: Result<impl Sized, QuotaError>) -> (u64, DenyReason) {
    match result {
        Err(QuotaError::Denied { limit, reason, .. }) => (limit, reason),
        Err(other) => panic!("not a denial: {other}"),
        Ok(_) => panic!("admitted"),
    }
}

#[test]
fn a_call_is_counted_in_every_limit_or_in_none_across_trackers() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(5, 8), store.clone(), &clock);
    let b = tracker(config(5, 8), store.clone(), &clock);
    a.try_record("api", 3).unwrap();
    // The minute has 2 left: refused, and counted in neither window.
    assert_eq!(denied_limit(b.try_record("api", 3)), (5, DenyReason::Limit));
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (3, 3));
    b.try_record("api", 2).unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (5, 5));
    assert!(!a.can_call("api").unwrap(), "the minute is full");
    // The next minute: the hour has 3 left.
    clock.advance(MINUTE);
    assert!(a.can_call("api").unwrap());
    a.try_record("api", 3).unwrap();
    // The minute has room; the hour refuses, and its limit is the one named.
    assert_eq!(denied_limit(b.try_record("api", 1)), (8, DenyReason::Limit));
    assert!(!b.can_call("api").unwrap(), "the hour is full");
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (8, 8));
    // Each tracker's view holds what the store answered, in every limit; the binding limit is
    // the hour (no headroom).
    let usage = b.usage_limits("api").unwrap();
    assert_eq!(
        usage.iter().map(|u| (u.limit, u.used)).collect::<Vec<_>>(),
        [(5, 3), (8, 8)]
    );
    assert_eq!(b.usage("api").unwrap().limit, 8);
    // `record_call` counts in both whatever the limits say.
    a.record_call("api", 2).unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (10, 10));
}

#[test]
fn many_threads_on_many_trackers_admit_exactly_up_to_the_binding_limit() {
    for (per_minute, per_hour, binding) in [(1_000_u64, 300_u64, 300_u64), (250, 2_000, 250)] {
        let store = MemoryStore::new();
        let clock = ManualClock::new(NOON);
        let trackers: Vec<Arc<QuotaTracker>> = (0..4)
            .map(|_| Arc::new(tracker(config(per_minute, per_hour), store.clone(), &clock)))
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
        assert_eq!(admitted, binding, "{per_minute}/min, {per_hour}/h");
        for tracker in &trackers {
            tracker.flush().unwrap();
        }
        assert_eq!(stored(&store, "minute"), binding);
        assert_eq!(stored(&store, "hour"), binding);
    }
}

#[test]
fn a_record_call_whose_reply_was_lost_counts_once_in_every_limit() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(50, 80), store.clone(), &clock);
    // Both tries of the admission lose their reply: maybe applied. Counted in the view, held.
    store.lose_next_replies(2);
    a.record_call("api", 4).unwrap();
    let used: Vec<u64> = a
        .usage_limits("api")
        .unwrap()
        .iter()
        .map(|u| u.used)
        .collect();
    assert_eq!(used, [4, 4]);
    // The next sync resends it; the store applied it once.
    a.flush().unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (4, 4));
    let used: Vec<u64> = a
        .usage_limits("api")
        .unwrap()
        .iter()
        .map(|u| u.used)
        .collect();
    assert_eq!(used, [4, 4]);
}

#[test]
fn a_refusal_the_store_applied_anyway_is_given_back_in_every_limit() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(50, 80), store.clone(), &clock);
    store.lose_next_replies(2);
    let (_, reason) = denied_limit(a.try_record("api", 6));
    assert_eq!(reason, DenyReason::StoreUnavailable);
    // The store counted it in both windows.
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (6, 6));
    // The store is back after its back-off: the sync learns it was applied and gives it back.
    clock.advance(5_000);
    a.flush().unwrap();
    a.flush().unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (0, 0));
}

#[test]
fn with_the_store_down_try_record_is_refused_and_record_call_counts_here_in_every_limit() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(50, 80), store.clone(), &clock);
    store.set_failing(true);
    let (_, reason) = denied_limit(a.try_record("api", 1));
    assert_eq!(reason, DenyReason::StoreUnavailable);
    a.record_call("api", 7).unwrap();
    let used: Vec<u64> = a
        .usage_limits("api")
        .unwrap()
        .iter()
        .map(|u| u.used)
        .collect();
    assert_eq!(used, [7, 7]);
    store.set_failing(false);
    clock.advance(5_000);
    a.flush().unwrap();
    assert_eq!((stored(&store, "minute"), stored(&store, "hour")), (7, 7));
}

#[test]
fn a_floor_the_store_has_not_seen_refuses_here_first() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(50, 80), store.clone(), &clock);
    // The provider says 80 of the hour are used (a reset within the hour); the store is down,
    // so it does not know. Past the back-off, the call is refused here, by the hour's floor,
    // before the store is asked (which would answer `StoreUnavailable`).
    let hour_end = NOON + 3_600_000;
    store.set_failing(true);
    a.raise_used("api", 80, Some(hour_end)).unwrap();
    clock.advance(30_000);
    assert_eq!(
        denied_limit(a.try_record("api", 1)),
        (80, DenyReason::Limit)
    );
    assert_eq!(stored(&store, "hour"), 0);
    store.set_failing(false);
    a.flush().unwrap();
    assert_eq!(stored(&store, "hour"), 80);
    assert_eq!(stored(&store, "minute"), 0);
}

/// A store that keeps documents like `MemoryStore` but does not say it checks several windows
/// (a store written before they existed).
struct OneWindowStore(MemoryStore);

impl Store for OneWindowStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.0.sync(batch)
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        self.0.admit(request)
    }
}

#[test]
fn a_store_that_checks_one_window_is_refused_with_the_reason() {
    let clock = ManualClock::new(NOON);
    let error = QuotaTracker::builder(config(5, 8))
        .clock(clock.clone())
        .store(OneWindowStore(MemoryStore::new()))
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains(
            "with more than one limit needs a store that checks every window in one step"
        ),
        "{error}"
    );
    // Nor may a reconfigure make a service of several limits `Exact` on it.
    let local = TrackerConfig::new([ServiceConfig::builder("api", 5, Period::Minute)
        .and_limit(Limit::new(8, Period::Hour))
        .build()
        .unwrap()]);
    let tracker = QuotaTracker::builder(local)
        .clock(clock)
        .store(OneWindowStore(MemoryStore::new()))
        .build()
        .unwrap();
    let error = tracker.reconfigure(config(5, 8)).unwrap_err();
    assert!(
        error.to_string().contains("Store::several_windows"),
        "{error}"
    );
}
