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

/// BUG (core/src/tracker/shared/exact_limits.rs, `ask_limits`): a call refused by a floor the
/// store has not seen yet builds its error with `slot.denied(..)` *inside* the service's lock
/// (`let asking = match past_floor { Some(..) => Err(slot.denied(..)), .. }; drop(guard);`).
/// `ServiceSlot::denied` says "Call it with no lock held": with feature `metrics` it reports
/// the denial to the recorder, user code, which may call back into the tracker; a read of the
/// same service takes the same (non-reentrant) lock again on the same thread: a deadlock. The
/// one-limit path (`exact_update` / `ask_under_floor`) returns the floor seen and builds the
/// error after the lock. Fix: carry `(at, seen, reason)` out of the locked block and call
/// `slot.denied` after `drop(guard)`.
#[test]
#[ignore = "bug: a floor refusal reports its denial to the recorder under the service's lock"]
fn a_denial_by_a_floor_is_reported_with_no_lock_held() {
    timeout::within(20, || {
        let recorder = ReadingRecorder {
            tracker: OnceLock::new(),
        };
        let (store, clock) = (MemoryStore::new(), ManualClock::new(NOON));
        let tracker = tracker(&store, &clock);
        recorder.tracker.set(Arc::clone(&tracker)).unwrap();
        metrics::with_local_recorder(&recorder, || {
            // The provider says the hour is full; the store does not know yet (the sync the
            // raise asks for fails), and its back-off is over.
            store.fail_next(1);
            tracker.raise_used("api", 80, Some(NOON + HOUR)).unwrap();
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
