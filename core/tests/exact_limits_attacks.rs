//! Attacks on `Exact` admission of a service of several limits (a minute and an hour), through
//! real stores and real threads: many trackers racing on one store while the clock moves and
//! replies are lost, a store that hangs or panics with an answer in hand while the clock rolls
//! over or a reconfigure lands, floors racing admissions, give-backs forfeited per window, and a
//! store that claims `several_windows` but answers one window. (`exact_limits.rs` has the plain
//! cases; the store protocol's own attacks are in `exact_limits_protocol.rs`.)

#[path = "support/gate_store.rs"]
mod gate_store;
#[path = "support/timeout.rs"]
mod timeout;
#[path = "support/two_limits.rs"]
mod two_limits;

use gate_store::gate;
use quota_core::{
    Admission, AdmitReply, AdmitRequest, DenyReason, GiveBack, Limit, ManualClock, MemoryStore,
    Period, QuotaError, QuotaTracker, ServiceConfig, Store, StoreError, SyncBatch, TrackerConfig,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use two_limits::{stored, tracker, used, windows};

/// Noon, 10 June 2024 (UTC): the start of an hour.
const NOON: u64 = 1_718_020_800_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;

fn service(per_minute: u64, per_hour: u64) -> ServiceConfig {
    ServiceConfig::builder("api", per_minute, Period::Minute)
        .and_limit(Limit::new(per_hour, Period::Hour))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Exact)
        .build()
        .unwrap()
}

fn config(per_minute: u64, per_hour: u64) -> TrackerConfig {
    TrackerConfig::new([service(per_minute, per_hour)])
}

#[test]
fn trackers_racing_while_the_minute_rolls_never_pass_a_limit_and_count_exactly() {
    timeout::within(120, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(NOON);
        // 7 a minute, 40 an hour: the minute binds for the first minutes, then the hour.
        let trackers: Vec<Arc<QuotaTracker>> = (0..4)
            .map(|_| Arc::new(tracker(config(7, 40), store.clone(), &clock)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(9));
        // Calls each thread finished: the clock moves on only once every thread made progress
        // since its last move, so no reading is more than one minute stale (a reading further
        // back is a clock jump, whose count the store may hold twice: see
        // `leased_limits_attacks.rs`, the known bug of jumps under shared admission).
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let tracker = Arc::clone(&trackers[i % 4]);
                let (start, stop, done) =
                    (Arc::clone(&start), Arc::clone(&stop), Arc::clone(&done));
                thread::spawn(move || {
                    start.wait();
                    let mut admitted = 0;
                    let mut n = i as u64;
                    while !stop.load(Ordering::SeqCst) {
                        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let count = 1 + (n >> 62);
                        let result = match n >> 61 & 1 {
                            0 => tracker.try_record("api", count),
                            _ => tracker.try_record_priority("api", count),
                        };
                        if result.is_ok() {
                            admitted += count;
                        }
                        let _ = tracker.can_call("api");
                        done[i].fetch_add(1, Ordering::SeqCst);
                    }
                    admitted
                })
            })
            .collect();
        start.wait();
        let progressed = |since: &[u64]| {
            while done
                .iter()
                .zip(since)
                .any(|(d, &s)| d.load(Ordering::SeqCst) < s + 2)
            {
                thread::yield_now();
            }
        };
        // The clock moves from another thread, within the hour, while calls run: 7 minutes of
        // 7 calls would be 49, past the hour's 40.
        for _ in 0..8 {
            let since: Vec<u64> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
            thread::sleep(std::time::Duration::from_millis(20));
            progressed(&since);
            clock.advance(MINUTE);
        }
        let since: Vec<u64> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
        progressed(&since);
        stop.store(true, Ordering::SeqCst);
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        for tracker in &trackers {
            tracker.flush().unwrap();
        }
        for (start, total) in windows(&store, "minute") {
            assert!(total <= 7, "the minute at {start} holds {total}");
        }
        assert_eq!(stored(&store, "hour"), admitted);
        assert_eq!(stored(&store, "minute"), admitted);
        assert_eq!(admitted, 40, "the hour is full after 8 minutes of racing");
    });
}

#[test]
fn lost_replies_and_failures_during_a_race_end_with_the_store_counting_exactly_the_admitted() {
    timeout::within(120, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(NOON);
        let trackers: Vec<Arc<QuotaTracker>> = (0..3)
            .map(|_| Arc::new(tracker(config(60, 45), store.clone(), &clock)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let tracker = Arc::clone(&trackers[i % 3]);
                let (stop, admitted) = (Arc::clone(&stop), Arc::clone(&admitted));
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if tracker.try_record("api", 1 + i as u64 % 2).is_ok() {
                            admitted.fetch_add(1 + i as u64 % 2, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        // Replies lost (applied, unanswered) and failures (not applied), while the clock moves
        // past every back-off.
        for round in 0..30 {
            match round % 3 {
                0 => store.lose_next_replies(2),
                1 => store.fail_next(2),
                _ => {}
            }
            thread::sleep(std::time::Duration::from_millis(5));
            clock.advance(1_000);
            assert!(stored(&store, "hour") <= 45, "past the hour's limit");
        }
        stop.store(true, Ordering::SeqCst);
        for thread in threads {
            thread.join().unwrap();
        }
        // Every held admission resent, every refusal the store applied given back.
        for _ in 0..3 {
            clock.advance(10_000);
            for tracker in &trackers {
                let _ = tracker.flush();
            }
        }
        let admitted = admitted.load(Ordering::SeqCst);
        assert!(admitted <= 45);
        assert_eq!(stored(&store, "hour"), admitted);
        assert_eq!(stored(&store, "minute"), admitted);
    });
}

#[test]
fn an_answer_for_a_minute_that_ended_while_asking_counts_in_the_hour_only() {
    timeout::within(30, || {
        let (store, gate) = gate(MemoryStore::new());
        let clock = ManualClock::new(NOON + 59_000);
        let a = Arc::new(tracker(config(5, 8), store.clone(), &clock));
        gate.armed.store(true, Ordering::SeqCst);
        let asking = thread::spawn({
            let a = Arc::clone(&a);
            move || a.try_record("api", 3).map(|_| ())
        });
        gate.reached.recv().unwrap();
        // The minute rolls over between the question and the answer.
        clock.advance(2_000);
        gate.go.send(()).unwrap();
        asking.join().unwrap().unwrap();
        assert_eq!(
            used(&a),
            [0, 3],
            "the new minute is empty, the hour holds the 3"
        );
        // The new minute admits its 5 (the hour has exactly 5 left), and no more.
        a.try_record("api", 5).unwrap();
        let error = a.try_record("api", 1).unwrap_err();
        assert!(
            matches!(error, QuotaError::Denied { limit: 5, .. }),
            "{error}"
        );
        assert_eq!(
            windows(&store.inner, "minute"),
            [(NOON, 3), (NOON + MINUTE, 5)]
        );
        assert_eq!(windows(&store.inner, "hour"), [(NOON, 8)]);
        // The next hour: both roll over, only the minute's count is left behind.
        clock.set(NOON + HOUR);
        a.try_record("api", 5).unwrap();
        assert_eq!(used(&a), [5, 5]);
    });
}

#[test]
fn a_hanging_store_holds_no_lock_of_the_tracker() {
    timeout::within(30, || {
        let (store, gate) = gate(MemoryStore::new());
        let clock = ManualClock::new(NOON);
        let two = TrackerConfig::new([
            service(5, 8),
            ServiceConfig::builder("other", 10, Period::Minute)
                .admission(Admission::Exact)
                .build()
                .unwrap(),
        ]);
        let a = Arc::new(tracker(two.clone(), store.clone(), &clock));
        gate.armed.store(true, Ordering::SeqCst);
        let hung = thread::spawn({
            let a = Arc::clone(&a);
            move || a.try_record("api", 2).map(|_| ())
        });
        gate.reached.recv().unwrap();
        // The admission hangs in the store: every other call on the tracker goes on, the same
        // service's included.
        assert_eq!(used(&a), [0, 0]);
        a.try_record("api", 1).unwrap();
        a.try_record("other", 1).unwrap();
        a.record_call("api", 1).unwrap();
        assert!(a.can_call("api").unwrap());
        let _ = a.snapshot();
        a.flush().unwrap();
        a.reconfigure(two).unwrap();
        gate.go.send(()).unwrap();
        hung.join().unwrap().unwrap();
        a.flush().unwrap();
        assert_eq!(used(&a), [4, 4]);
        assert_eq!(stored(&store.inner, "hour"), 4);
    });
}

/// Panics in every admission while `panicking`; says it checks several windows.
#[derive(Clone)]
struct PanickingStore {
    inner: MemoryStore,
    panicking: Arc<AtomicBool>,
}

impl Store for PanickingStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.inner.sync(batch)
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        // Applied, then a panic: the worst case (maybe applied).
        let reply = self.inner.admit(request);
        if self.panicking.load(Ordering::SeqCst) {
            panic!("the store broke with the answer in hand");
        }
        reply
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        self.inner.give_back(request)
    }

    fn several_windows(&self) -> bool {
        true
    }
}

#[test]
fn a_store_panicking_after_applying_costs_no_call_twice_and_no_lock() {
    timeout::within(30, || {
        let store = PanickingStore {
            inner: MemoryStore::new(),
            panicking: Arc::new(AtomicBool::new(true)),
        };
        let clock = ManualClock::new(NOON);
        let a = tracker(config(50, 80), store.clone(), &clock);
        let error = a.try_record("api", 4).unwrap_err();
        assert!(
            matches!(
                error,
                QuotaError::Denied {
                    reason: DenyReason::StoreUnavailable,
                    ..
                }
            ),
            "{error}"
        );
        clock.advance(10_000);
        a.record_call("api", 3).unwrap();
        assert_eq!(used(&a), [3, 3]);
        store.panicking.store(false, Ordering::SeqCst);
        clock.advance(10_000);
        a.flush().unwrap();
        a.flush().unwrap();
        // The refused 4 given back in both windows, the recorded 3 counted once in both.
        assert_eq!(stored(&store.inner, "minute"), 3);
        assert_eq!(stored(&store.inner, "hour"), 3);
        a.try_record("api", 5).unwrap();
        assert_eq!(used(&a), [8, 8]);
    });
}

#[test]
fn a_floor_raised_while_threads_admit_never_lets_the_hour_pass_its_limit() {
    timeout::within(60, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(NOON);
        let trackers: Vec<Arc<QuotaTracker>> = (0..2)
            .map(|_| Arc::new(tracker(config(1_000, 100), store.clone(), &clock)))
            .collect();
        let start = Arc::new(Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let tracker = Arc::clone(&trackers[i % 2]);
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    (0..200)
                        .filter(|_| tracker.try_record("api", 1).is_ok())
                        .count() as u64
                })
            })
            .collect();
        start.wait();
        // The provider says 60 of the hour are used, told to one tracker mid-race.
        trackers[0]
            .raise_used("api", 60, Some(NOON + HOUR))
            .unwrap();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        for tracker in &trackers {
            tracker.flush().unwrap();
        }
        let hour = stored(&store, "hour");
        assert_eq!(hour, 100, "the hour fills to its limit, no further");
        assert!(admitted <= 100);
        for tracker in &trackers {
            tracker.flush().unwrap();
            assert_eq!(used(tracker)[1], 100);
        }
    });
}
