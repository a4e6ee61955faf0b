//! Hostile-user attacks on `until_ready` (a review of 0b0b74d): each numbered comment names
//! the bug the test below it found there, fixed since.

use quota_core::{
    Admission, Clock, DenyReason, Limit, MemoryStore, Period, QuotaError, QuotaTracker, Recorded,
    ServiceConfig, TrackerConfig, UntilReady,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn service(name: &str, limit: u64, period: Period) -> ServiceConfig {
    ServiceConfig::builder(name, limit, period)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap()
}

fn tracker(services: impl IntoIterator<Item = ServiceConfig>) -> Arc<QuotaTracker> {
    Arc::new(QuotaTracker::new(TrackerConfig::new(services)).unwrap())
}

fn in_secs(secs: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(secs)
}

struct Unpark(thread::Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn poll_once(f: &mut UntilReady, w: &Waker) -> Poll<Result<Recorded<'static>, QuotaError>> {
    Pin::new(f).poll(&mut Context::from_waker(w))
}

fn block_on(mut f: UntilReady) -> Result<Recorded<'static>, QuotaError> {
    let w = Waker::from(Arc::new(Unpark(thread::current())));
    loop {
        if let Poll::Ready(r) = poll_once(&mut f, &w) {
            return r;
        }
        thread::park_timeout(Duration::from_millis(50));
    }
}

fn early_in_a_second(after_ms: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = (now.as_millis() % 1_000) as u64;
    thread::sleep(Duration::from_millis(1_000 - into + after_ms));
}

fn is_waiter_thread() -> bool {
    thread::current().name() == Some("quota-waiter")
}

fn waiting_denial(r: &Result<Recorded<'_>, QuotaError>) -> bool {
    matches!(
        r,
        Err(QuotaError::Denied {
            reason: DenyReason::Waiting,
            ..
        })
    )
}

// ---------------------------------------------------------------------------------------
// 1. Exactly-once: `wait()` after a poll enqueues a second waiter; the first is admitted too.
#[test]
fn wait_after_a_poll_waits_for_the_call_it_queued_once() {
    let tracker = tracker([service("api", 10, Period::Hour)]);
    tracker.record_call("api", 10).unwrap();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut f = tracker.until_ready("api", 3, in_secs(10.0));
    assert!(poll_once(&mut f, &waker).is_pending(), "queued");
    let raiser = {
        let tracker = Arc::clone(&tracker);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            tracker
                .reconfigure(TrackerConfig::new([service("api", 100, Period::Hour)]))
                .unwrap();
        })
    };
    let recorded = f.wait().unwrap();
    raiser.join().unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        tracker.usage("api").unwrap().used,
        13,
        "one until_ready of 3 calls (answer said used={})",
        recorded.usage.used
    );
}

// 1b. `wait()` after the future completed admits again (poll-after-Ready is guarded, wait is not).
#[test]
fn wait_after_the_answer_is_an_error_and_counts_nothing_more() {
    let tracker = tracker([service("api", 10, Period::Hour)]);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut f = tracker.until_ready("api", 3, in_secs(5.0));
    assert!(matches!(poll_once(&mut f, &waker), Poll::Ready(Ok(_))));
    assert!(
        poll_once(&mut f, &waker).is_pending(),
        "poll after Ready is guarded"
    );
    let again = f.wait();
    assert!(again.is_err(), "second answer: {again:?}");
    assert_eq!(tracker.usage("api").unwrap().used, 3);
}

// ---------------------------------------------------------------------------------------
// 2. A reconfigure that lowers the cap below a queued call: it can never pass, yet stays at
//    the head until its deadline and refuses every new call with `Waiting`.
#[test]
fn a_lowered_cap_answers_a_queued_call_that_can_never_pass_at_once() {
    let tracker = tracker([service("api", 10, Period::Second)]);
    early_in_a_second(20);
    tracker.record_call("api", 10).unwrap();
    let waiting = tracker.until_ready("api", 8, in_secs(4.0));
    let started = Instant::now();
    let th = thread::spawn(move || (waiting.wait(), started.elapsed()));
    thread::sleep(Duration::from_millis(100));
    tracker
        .reconfigure(TrackerConfig::new([service("api", 4, Period::Second)]))
        .unwrap();
    thread::sleep(Duration::from_millis(1_500)); // the next second: an empty window
    assert_eq!(tracker.usage("api").unwrap().used, 0);
    let r = tracker.try_record("api", 1);
    let wedged = waiting_denial(&r);
    let (answer, took) = th.join().unwrap();
    assert!(
        !wedged,
        "an empty window refused a call with Waiting; the queued call was answered {answer:?} after {took:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. An observer runs on the waiter thread; one that waits with until_ready parks the waiter
//    on itself: every queued call stalls until that deadline + 1 s, and the nested wait fails
//    with StoreUnavailable (no store here).
#[test]
fn an_observer_on_the_waiter_thread_does_not_stall_queued_calls() {
    let tracker = tracker([
        service("a", 10, Period::Hour),
        service("b", 1, Period::Hour),
    ]);
    tracker.record_call("b", 1).unwrap();
    let held = tracker.hold("a", 10).unwrap();
    let weak = Arc::downgrade(&tracker);
    let nested = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&nested);
    tracker.on_transition(move |t| {
        if is_waiter_thread() && &*t.service == "a" {
            if let Some(tracker) = weak.upgrade() {
                let started = Instant::now();
                let r = tracker.until_ready("b", 1, in_secs(2.0)).wait();
                *sink.lock().unwrap() = Some((r.map(|r| r.usage.used), started.elapsed()));
            }
        }
    });
    let waiting = tracker.until_ready("a", 10, in_secs(20.0));
    let t1 = thread::spawn(move || {
        let r = waiting.wait();
        (r, Instant::now())
    });
    thread::sleep(Duration::from_millis(100));
    let freed = Instant::now();
    held.cancel().unwrap();
    let (r, answered) = t1.join().unwrap();
    assert!(r.is_ok());
    let nested = nested.lock().unwrap().take();
    assert!(
        answered - freed < Duration::from_secs(1),
        "admitted at once but answered after {:?}; nested wait: {nested:?}",
        answered - freed
    );
}

// 3b. A blocking wait whose deadline passes while the waiter is delivering (here a slow
//     observer; a slow store is the same): NotReady, yet the calls were recorded.
#[test]
fn wait_never_reports_not_ready_for_calls_that_were_recorded() {
    let tracker = tracker([service("a", 10, Period::Hour)]);
    let held = tracker.hold("a", 10).unwrap();
    tracker.on_transition(|_| {
        if is_waiter_thread() {
            thread::sleep(Duration::from_millis(2_500));
        }
    });
    let waiting = tracker.until_ready("a", 10, in_secs(0.3));
    let t1 = thread::spawn(move || waiting.wait());
    thread::sleep(Duration::from_millis(100));
    held.cancel().unwrap(); // admitted at ~0.1 s, before the deadline
    let r = t1.join().unwrap();
    thread::sleep(Duration::from_millis(2_000));
    let used = tracker.usage("a").unwrap().used;
    assert!(
        r.is_ok() || used == 0,
        "answer {r:?} but used = {used} (NotReady says nothing was recorded)"
    );
}

// ---------------------------------------------------------------------------------------
// 4. A panic on the waiter thread (here a waker; the unguarded log::debug! in `serve` with a
//    panicking logger is the same) kills it for good: later waiters are never served, and the
//    abandoned one leaks `ServiceSlot::waiting`, so the service refuses normal calls forever.
struct Bomb;
impl Wake for Bomb {
    fn wake(self: Arc<Self>) {
        panic!("waker bug");
    }
}

#[test]
fn a_panicking_waker_does_not_stop_the_waiter_thread() {
    let tracker = tracker([service("api", 10, Period::Hour)]);
    let held = tracker.hold("api", 10).unwrap();
    let mut f = tracker.until_ready("api", 1, in_secs(20.0));
    assert!(poll_once(&mut f, &Waker::from(Arc::new(Bomb))).is_pending());
    held.cancel().unwrap(); // the waiter admits it, wakes the bomb, and dies
    thread::sleep(Duration::from_millis(300));
    drop(f);
    tracker.record_call("api", 9).unwrap(); // full again (10 of 10)
    let started = Instant::now();
    let r = tracker.until_ready("api", 1, in_secs(0.5)).wait();
    println!("after the panic: {r:?} in {:?}", started.elapsed());
    tracker
        .reconfigure(TrackerConfig::new([service("api", 1_000, Period::Hour)]))
        .unwrap();
    thread::sleep(Duration::from_millis(1_500));
    let r = tracker.try_record("api", 1);
    assert!(
        !waiting_denial(&r),
        "nothing waits, capacity 990, yet: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. With a store, an awaited call never tries on the caller's thread: it always queues
//    (even a Local service with capacity to spare), and while it sits in the queue every
//    try_record / can_call of the service is refused with `Waiting`.
#[test]
fn with_a_store_a_local_call_that_fits_is_recorded_at_once() {
    let tracker = Arc::new(
        QuotaTracker::builder(TrackerConfig::new([service(
            "api",
            1_000_000,
            Period::Hour,
        )]))
        .store(MemoryStore::new())
        .build()
        .unwrap(),
    );
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let (mut pending, mut spurious) = (0, 0);
    for _ in 0..100 {
        let mut f = tracker.until_ready("api", 1, in_secs(5.0));
        match poll_once(&mut f, &waker) {
            Poll::Pending => {
                pending += 1;
                if waiting_denial(&tracker.try_record("api", 1)) {
                    spurious += 1;
                }
                block_on(f).unwrap();
            }
            Poll::Ready(answer) => {
                answer.unwrap();
            }
        }
    }
    let used = tracker.usage("api").unwrap().used;
    assert_eq!(
        spurious, 0,
        "{pending}/100 futures pending at 0.01% usage; {spurious} try_record refused (used {used})"
    );
}

// ---------------------------------------------------------------------------------------
// 6. A clock that is not the system's, standing 1 ms before a window end: the waiter retries
//    every millisecond until the deadline (a store round trip each time with Exact).
struct Counting {
    now: AtomicU64,
    reads: Arc<AtomicU64>,
}
impl Clock for Counting {
    fn now_ms(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.now.load(Ordering::Relaxed)
    }
}

#[test]
fn a_lagging_clock_before_a_window_end_makes_no_busy_loop() {
    let reads = Arc::new(AtomicU64::new(0));
    let clock = Counting {
        now: AtomicU64::new(1_718_000_040_000 - 1), // a minute's end - 1 ms
        reads: Arc::clone(&reads),
    };
    let tracker = Arc::new(
        QuotaTracker::new_with_clock(
            TrackerConfig::new([service("api", 10, Period::Minute)]),
            clock,
        )
        .unwrap(),
    );
    tracker.record_call("api", 10).unwrap();
    let before = reads.load(Ordering::Relaxed);
    let r = tracker.until_ready("api", 1, in_secs(2.0)).wait();
    let reads = reads.load(Ordering::Relaxed) - before;
    assert!(r.is_err());
    assert!(
        reads < 100,
        "{reads} clock reads in a 2 s wait: a 1 ms retry loop"
    );
}

// ---------------------------------------------------------------------------------------
// 7. A far deadline ("wait as long as it takes") panics in `wait`: `deadline + RECHECK`.
fn latest_instant() -> Instant {
    let now = Instant::now();
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match now.checked_add(Duration::from_secs(mid)) {
            Some(_) => lo = mid,
            None => hi = mid - 1,
        }
    }
    now + Duration::from_secs(lo)
}

#[test]
fn a_far_deadline_does_not_panic() {
    let tracker = tracker([service("api", 10, Period::Hour)]);
    tracker.record_call("api", 10).unwrap();
    let deadline = latest_instant();
    let raiser = {
        let tracker = Arc::clone(&tracker);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            tracker
                .reconfigure(TrackerConfig::new([service("api", 20, Period::Hour)]))
                .unwrap();
        })
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tracker.until_ready("api", 1, deadline).wait()
    }));
    raiser.join().unwrap();
    assert!(r.is_ok(), "wait panicked");
}

// ---------------------------------------------------------------------------------------
// Checks that pass (kept as regression tests).

/// 8 threads x 100 queued futures, 200 calls a second: every call answered, admitted once,
/// never more than the limit per window; the queue empties and lets calls through again.
#[test]
fn many_threads_exact_counts() {
    const LIMIT: u64 = 200;
    let tracker = tracker([service("api", LIMIT, Period::Second)]);
    tracker.record_call("api", LIMIT).unwrap();
    let per_window = Arc::new(Mutex::new(
        std::collections::BTreeMap::<u64, Vec<u64>>::new(),
    ));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let tracker = Arc::clone(&tracker);
            let per_window = Arc::clone(&per_window);
            thread::spawn(move || {
                let waker = Waker::from(Arc::new(Unpark(thread::current())));
                let mut futures: Vec<Option<UntilReady>> = (0..100)
                    .map(|i| {
                        Some(match i % 10 {
                            0 => tracker.until_ready_priority("api", 1, in_secs(60.0)),
                            _ => tracker.until_ready("api", 1, in_secs(60.0)),
                        })
                    })
                    .collect();
                let mut left = futures.len();
                while left > 0 {
                    for slot in futures.iter_mut() {
                        if let Some(f) = slot {
                            if let Poll::Ready(r) = poll_once(f, &waker) {
                                let r = r.unwrap();
                                per_window
                                    .lock()
                                    .unwrap()
                                    .entry(r.usage.reset_at_ms)
                                    .or_default()
                                    .push(r.usage.used);
                                *slot = None;
                                left -= 1;
                            }
                        }
                    }
                    thread::park_timeout(Duration::from_millis(100));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let per_window = per_window.lock().unwrap();
    let total: usize = per_window.values().map(Vec::len).sum();
    assert_eq!(total, 800);
    for (window, used) in per_window.iter() {
        let mut used = used.clone();
        used.sort();
        let expected: Vec<u64> = (1..=used.len() as u64).collect();
        assert_eq!(used, expected, "window {window}");
        assert!(used.len() as u64 <= LIMIT);
    }
    tracker.try_record("api", 1).ok(); // not Waiting
    assert!(!waiting_denial(&tracker.try_record("api", 1)));
}

/// Futures dropped before a poll, while queued, after their answer: the queue lets calls
/// through again (no leak in `waiting`).
#[test]
fn drops_at_every_point_leave_no_waiting_behind() {
    let tracker = tracker([ServiceConfig::builder("api", 10, Period::Second)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .and_limit(Limit::new(15, Period::Minute))
        .build()
        .unwrap()]);
    tracker.record_call("api", 10).unwrap();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    drop(tracker.until_ready("api", 1, in_secs(5.0))); // never polled
    let mut queued: Vec<UntilReady> = (0..20)
        .map(|i| match i % 2 {
            0 => tracker.until_ready("api", 1, in_secs(5.0)),
            _ => tracker.until_ready_priority("api", 1, in_secs(5.0)),
        })
        .collect();
    for f in &mut queued {
        assert!(poll_once(f, &waker).is_pending());
    }
    // Drop every other one while queued, the rest after the waiter may have answered.
    let mut kept = Vec::new();
    for (i, f) in queued.into_iter().enumerate() {
        if i % 3 == 0 {
            drop(f);
        } else {
            kept.push(f);
        }
    }
    thread::sleep(Duration::from_millis(1_500));
    drop(kept);
    thread::sleep(Duration::from_millis(300));
    // The minute's limit (15) is reached; Waiting must not be the reason.
    let r = tracker.try_record("api", 1);
    assert!(!waiting_denial(&r), "{r:?}");
}

/// `Leased` with a store: awaited on a current-thread runtime; the other instance's give-back
/// is noticed; counts add up.
#[test]
fn leased_with_a_store() {
    let store = MemoryStore::new();
    let leased = || {
        ServiceConfig::builder("mail", 10, Period::Hour)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .admission(Admission::Leased { block: 2 })
            .build()
            .unwrap()
    };
    let build = || {
        Arc::new(
            QuotaTracker::builder(TrackerConfig::new([leased()]))
                .store(store.clone())
                .build()
                .unwrap(),
        )
    };
    let (a, b) = (build(), build());
    a.try_record("mail", 10).unwrap();
    a.flush().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let b2 = Arc::clone(&b);
    let r = rt.block_on(async move {
        let f = b2.until_ready("mail", 1, in_secs(3.0));
        f.await
    });
    assert!(r.is_err(), "store full: {r:?}");
    b.flush().unwrap();
    a.flush().unwrap();
    assert_eq!(a.usage("mail").unwrap().used, 10);
}

/// The tracker's last reference dropped on the waiter thread (a waker that drops its future),
/// with a store to flush: Drop runs there, the waiter thread ends, nothing hangs.
#[test]
fn the_tracker_dropped_on_the_waiter_thread() {
    struct Dropper(Mutex<Option<UntilReady>>, Mutex<Option<String>>);
    impl Wake for Dropper {
        fn wake(self: Arc<Self>) {
            let tid = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            *self.1.lock().unwrap() = Some(tid.split(' ').next().unwrap().to_string());
            drop(self.0.lock().unwrap().take());
        }
    }
    let tracker = Arc::new(
        QuotaTracker::builder(TrackerConfig::new([service("api", 10, Period::Hour)]))
            .store(MemoryStore::new())
            .build()
            .unwrap(),
    );
    tracker.record_call("api", 10).unwrap();
    let mut f = tracker.until_ready("api", 1, in_secs(5.0));
    let dropper = Arc::new(Dropper(Mutex::new(None), Mutex::new(None)));
    assert!(poll_once(&mut f, &Waker::from(Arc::clone(&dropper))).is_pending());
    *dropper.0.lock().unwrap() = Some(f);
    tracker
        .reconfigure(TrackerConfig::new([service("api", 20, Period::Hour)]))
        .unwrap();
    drop(tracker); // the future (inside the waker) holds the last one
    thread::sleep(Duration::from_millis(1_000));
    let tid = dropper.1.lock().unwrap().clone().expect("woken");
    assert!(
        !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists(),
        "the waiter thread {tid} still runs"
    );
}

/// A give-back racing the refusal and the enqueue: never lost (each wait ends well before the
/// 1 s recheck).
#[test]
fn a_give_back_racing_the_enqueue_is_never_lost() {
    for i in 0..200u64 {
        let tracker = tracker([service("api", 10, Period::Hour)]);
        let held = tracker.hold_owned("api", 10).unwrap();
        let t = Arc::clone(&tracker);
        let started = Instant::now();
        let th = thread::spawn(move || t.until_ready("api", 1, in_secs(5.0)).wait());
        for _ in 0..(i % 20) * 50 {
            std::hint::spin_loop();
        }
        held.cancel().unwrap();
        th.join().unwrap().unwrap();
        // A lost wake-up is seen by the one-second recheck: well past 900 ms.
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "round {i}: {:?}",
            started.elapsed()
        );
    }
}

/// Shadow mode: never queues; a call queued before a switch to shadow passes at once.
#[test]
fn shadow_mode() {
    let shadow = || {
        ServiceConfig::builder("api", 10, Period::Hour)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .enforce(false)
            .build()
            .unwrap()
    };
    let tracker = tracker([service("api", 10, Period::Hour)]);
    tracker.record_call("api", 10).unwrap();
    let waiting = tracker.until_ready("api", 5, in_secs(10.0));
    let th = thread::spawn(move || waiting.wait());
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    tracker.reconfigure(TrackerConfig::new([shadow()])).unwrap();
    assert_eq!(th.join().unwrap().unwrap().usage.used, 15);
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(
        tracker
            .until_ready("api", 50, in_secs(1.0))
            .wait()
            .unwrap()
            .usage
            .used,
        65
    );
}
