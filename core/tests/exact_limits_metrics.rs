//! `Exact` admission of a service of several limits with a metrics recorder that calls back
//! into the tracker (as `metrics.rs`' `ReentrantRecorder` does for the other paths): a denial
//! is reported with no lock of the tracker held.

#[path = "support/timeout.rs"]
mod timeout;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use quota_core::{
    Admission, DenyReason, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker,
    ServiceConfig, TrackerConfig,
};
use std::sync::{Arc, OnceLock};

/// Noon, 10 June 2024 (UTC): the start of an hour.
const NOON: u64 = 1_718_020_800_000;
const HOUR: u64 = 3_600_000;

/// Reads the tracker's `api` service on every counter it is asked to register.
struct ReadingRecorder {
    tracker: OnceLock<Arc<QuotaTracker>>,
}

impl Recorder for ReadingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        if let Some(tracker) = self.tracker.get() {
            tracker.usage("api").unwrap();
        }
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn tracker(store: &MemoryStore, clock: &ManualClock) -> Arc<QuotaTracker> {
    let api = ServiceConfig::builder("api", 50, Period::Minute)
        .and_limit(Limit::new(80, Period::Hour))
        .reserve_fraction(0.0)
        .critical_threshold(1.0)
        .admission(Admission::Exact)
        .build()
        .unwrap();
    let tracker = QuotaTracker::builder(TrackerConfig::new([api]))
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    Arc::new(tracker)
}

fn reason(result: Result<impl Sized, QuotaError>) -> DenyReason {
    match result {
        Err(QuotaError::Denied { reason, .. }) => reason,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("admitted"),
    }
}

#[test]
fn a_denial_by_the_store_is_reported_with_no_lock_held() {
    timeout::within(20, || {
        let recorder = ReadingRecorder {
            tracker: OnceLock::new(),
        };
        let (store, clock) = (MemoryStore::new(), ManualClock::new(NOON));
        let tracker = tracker(&store, &clock);
        recorder.tracker.set(Arc::clone(&tracker)).unwrap();
        metrics::with_local_recorder(&recorder, || {
            tracker.record_call("api", 50).unwrap();
            assert_eq!(reason(tracker.try_record("api", 1)), DenyReason::Limit);
        });
    });
}

/// A call refused by a floor the store has not seen yet is refused before the store is asked;
/// its denial (reported to the recorder, user code that may read the tracker) is built once the
/// service's lock is released (a second acquisition on the same thread would never return).
#[test]
fn a_denial_by_a_floor_is_reported_with_no_lock_held() {
    timeout::within(20, || {
        let recorder = ReadingRecorder {
            tracker: OnceLock::new(),
        };
        let (store, clock) = (MemoryStore::new(), ManualClock::new(NOON));
        let tracker = tracker(&store, &clock);
        recorder.tracker.set(Arc::clone(&tracker)).unwrap();
        metrics::with_local_recorder(&recorder, || {
            // The provider says the hour is full; the store does not know yet (the syncs the
            // raise asks for fail), and its back-off is over.
            store.set_failing(true);
            tracker.raise_used("api", 80, Some(NOON + HOUR)).unwrap();
            store.set_failing(false);
            clock.advance(30_000);
            assert_eq!(
                store.state().unwrap().windows().count(),
                0,
                "not in the store"
            );
            assert_eq!(reason(tracker.try_record("api", 1)), DenyReason::Limit);
        });
    });
}
