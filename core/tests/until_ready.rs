//! `until_ready`: calls that wait for capacity, served in order, exactly once, by one thread
//! that sleeps (no busy loop), waking on window ends, give-backs and reconfigures.

use quota_core::{
    Admission, DenyReason, MemoryStore, Period, QuotaError, QuotaTracker, Recorded, ServiceConfig,
    SyncPolicy, TrackerConfig, UntilReady,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A service of `limit` calls per `period`, Critical at the limit and no reserve: normal and
/// priority calls both stop at the limit.
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

/// A waker that notes the order futures were woken in.
struct Noting {
    id: usize,
    woken: Arc<Mutex<Vec<usize>>>,
}

impl Wake for Noting {
    fn wake(self: Arc<Self>) {
        self.woken.lock().unwrap().push(self.id);
    }
}

/// Polls `future` once with `waker`.
fn poll_once(
    future: &mut UntilReady,
    waker: &Waker,
) -> Poll<Result<Recorded<'static>, QuotaError>> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// Sleeps until `after_ms` into the next second, so that a test starts early in a window.
fn early_in_a_second(after_ms: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = (now.as_millis() % 1_000) as u64;
    std::thread::sleep(Duration::from_millis(1_000 - into + after_ms));
}

/// The CPU time (user + system) every `quota-waiter` thread of this process used so far, from
/// /proc: the threads that must sleep while calls wait (other tests' too, which must sleep as
/// well; the tests' own threads are not counted).
#[cfg(target_os = "linux")]
fn cpu_time() -> Duration {
    let ticks: u64 = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            if name.trim() != "quota-waiter" {
                return None;
            }
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // Fields after the command's closing parenthesis: utime and stime are the 12th
            // and 13th.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            Some(fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?)
        })
        .sum();
    // USER_HZ is 100 on every Linux the tests run on.
    Duration::from_millis(ticks * 10)
}

#[test]
fn calls_that_fit_pass_at_once_and_calls_that_never_fit_fail_at_once() {
    let tracker = tracker([service("api", 10, Period::Minute)]);
    let recorded = tracker.until_ready("api", 4, in_secs(5.0)).wait().unwrap();
    assert_eq!(recorded.usage.used, 4);
    let started = Instant::now();
    let never = tracker
        .until_ready("api", 11, in_secs(5.0))
        .wait()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "it failed at once"
    );
    match &never {
        QuotaError::NotReady {
            service,
            count,
            reason,
            ready_at_ms,
        } => {
            assert_eq!(
                (&**service, *count, *reason),
                ("api", 11, DenyReason::Limit)
            );
            assert_eq!(*ready_at_ms, None);
        }
        other => panic!("not NotReady: {other}"),
    }
    assert_eq!(
        never.to_string(),
        "not ready: 11 call(s) to \"api\" not admitted by the deadline: over the limit"
    );
    assert!(matches!(
        tracker.until_ready("nope", 1, in_secs(1.0)).wait(),
        Err(QuotaError::UnknownService(_))
    ));
    assert!(matches!(
        tracker.until_ready("api", 0, in_secs(1.0)).wait(),
        Err(QuotaError::InvalidCount { .. })
    ));
    assert_eq!(
        tracker.usage("api").unwrap().used,
        4,
        "errors record nothing"
    );
}

#[test]
fn a_deadline_gives_up_with_the_reason_and_the_window_end() {
    let tracker = tracker([service("api", 10, Period::Minute)]);
    tracker.record_call("api", 10).unwrap();
    let reset_at_ms = tracker.usage("api").unwrap().reset_at_ms;
    let started = Instant::now();
    let error = tracker
        .until_ready("api", 2, in_secs(0.3))
        .wait()
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "gave up early: {waited:?}"
    );
    match error {
        QuotaError::NotReady {
            reason,
            ready_at_ms,
            ..
        } => {
            assert_eq!(reason, DenyReason::Limit);
            assert_eq!(ready_at_ms, Some(reset_at_ms));
        }
        other => panic!("not NotReady: {other}"),
    }
    assert_eq!(tracker.usage("api").unwrap().used, 10);
    // Nothing is left queued: new calls are judged by the limit alone.
    assert!(matches!(
        tracker.try_record("api", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::Limit,
            ..
        })
    ));
}

#[test]
fn a_give_back_admits_a_waiting_call_at_once_and_queued_calls_hold_new_ones_back() {
    let tracker = tracker([service("llm", 100, Period::Hour)]);
    let held = tracker.hold("llm", 100).unwrap();
    let waiting = tracker.until_ready("llm", 30, in_secs(20.0));
    let thread = std::thread::spawn(move || waiting.wait());
    // Queued: a new normal call waits behind it, even one that fits after a give-back...
    let denied = loop {
        match tracker.try_record("llm", 1) {
            Err(QuotaError::Denied {
                reason: DenyReason::Waiting,
                ..
            }) => break true,
            Err(QuotaError::Denied { .. }) => std::thread::yield_now(),
            other => panic!("{other:?}"),
        }
    };
    assert!(denied);
    assert!(!tracker.can_call("llm").unwrap());
    assert!(matches!(
        tracker.hold("llm", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::Waiting,
            ..
        })
    ));
    // ...and records are never held back.
    tracker.record_call("llm", 1).unwrap();
    let started = Instant::now();
    let settled = held.settle(60).unwrap();
    assert_eq!(settled.given_back, 40);
    let recorded = thread.join().unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the give-back woke the waiter, not an hour's end"
    );
    assert_eq!(recorded.usage.used, 60 + 1 + 30);
    assert_eq!(tracker.usage("llm").unwrap().used, 91);
    // The queue is empty again.
    tracker.try_record("llm", 9).unwrap();
}

#[test]
fn priority_calls_pass_queued_normal_calls_but_not_queued_priority_calls() {
    let tracker = tracker([ServiceConfig::builder("api", 100, Period::Hour)
        .reserve_fraction(0.1)
        .critical_threshold(1.0)
        .build()
        .unwrap()]);
    tracker.record_call("api", 95).unwrap();
    let woken = Arc::new(Mutex::new(Vec::new()));
    let waker = Waker::from(Arc::new(Noting {
        id: 0,
        woken: Arc::clone(&woken),
    }));
    let mut normal = tracker.until_ready("api", 1, in_secs(20.0));
    assert!(
        poll_once(&mut normal, &waker).is_pending(),
        "past the reserve: queued"
    );
    // A priority call may use the reserve: a queued normal call does not hold it back.
    tracker.try_record_priority("api", 1).unwrap();
    let mut priority = tracker.until_ready_priority("api", 10, in_secs(20.0));
    assert!(
        poll_once(&mut priority, &waker).is_pending(),
        "past the limit: queued"
    );
    assert!(matches!(
        tracker.try_record_priority("api", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::Waiting,
            ..
        })
    ));
    drop(priority);
    // Its caller left: the queue lets priority calls through again (once the waiter took it
    // off).
    let deadline = in_secs(10.0);
    loop {
        match tracker.try_record_priority("api", 1) {
            Ok(_) => break,
            Err(QuotaError::Denied {
                reason: DenyReason::Waiting,
                ..
            }) if Instant::now() < deadline => std::thread::yield_now(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tracker.usage("api").unwrap().used, 97);
    drop(normal);
}

/// Many waiters of both kinds across window ends: priority ones first, then normal ones, each
/// kind in arrival order, each admitted exactly once, by a thread that sleeps between.
#[test]
fn waiters_are_served_in_order_exactly_once_across_window_ends_without_a_busy_loop() {
    const LIMIT: u64 = 10;
    const NORMAL: usize = 20;
    const PRIORITY: usize = 5;
    let tracker = tracker([service("api", LIMIT, Period::Second)]);
    early_in_a_second(20);
    tracker.record_call("api", LIMIT).unwrap();
    let woken = Arc::new(Mutex::new(Vec::new()));
    let mut futures = Vec::new();
    // Normal calls queue first, then priority calls: ids 0..20 normal, 20..25 priority.
    for id in 0..NORMAL + PRIORITY {
        let mut future = match id < NORMAL {
            true => tracker.until_ready("api", 1, in_secs(30.0)),
            false => tracker.until_ready_priority("api", 1, in_secs(30.0)),
        };
        let waker = Waker::from(Arc::new(Noting {
            id,
            woken: Arc::clone(&woken),
        }));
        assert!(
            poll_once(&mut future, &waker).is_pending(),
            "call {id} queued"
        );
        futures.push((future, waker));
    }
    #[cfg(target_os = "linux")]
    let cpu_before = cpu_time();
    let started = Instant::now();
    while woken.lock().unwrap().len() < NORMAL + PRIORITY {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "served in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = started.elapsed();
    #[cfg(target_os = "linux")]
    let cpu = cpu_time() - cpu_before;
    let mut admitted = Vec::new();
    for (id, (future, waker)) in futures.iter_mut().enumerate() {
        match poll_once(future, waker) {
            Poll::Ready(Ok(recorded)) => {
                admitted.push((recorded.usage.reset_at_ms, recorded.usage.used, id))
            }
            other => panic!("call {id}: {other:?}"),
        }
        assert!(poll_once(future, waker).is_pending(), "answered once");
    }
    // In the order they were admitted: window by window, then by the count each left.
    admitted.sort();
    let order: Vec<usize> = admitted.iter().map(|&(_, _, id)| id).collect();
    let expected: Vec<usize> = (NORMAL..NORMAL + PRIORITY).chain(0..NORMAL).collect();
    assert_eq!(order, expected);
    // Exactly once: LIMIT per window, 1, 2, ..., LIMIT in each.
    let windows: Vec<u64> = admitted.iter().map(|&(window, _, _)| window).collect();
    let mut distinct = windows.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), (NORMAL + PRIORITY).div_ceil(LIMIT as usize));
    for (at, &(_, used, _)) in admitted.iter().enumerate() {
        assert_eq!(used, at as u64 % LIMIT + 1, "admission {at}");
    }
    // The wakes came in the same order (each call was answered before the next was tried).
    assert_eq!(*woken.lock().unwrap(), expected);
    // Two window ends passed while the waiters slept: a busy loop would have burnt a core.
    #[cfg(target_os = "linux")]
    assert!(
        cpu < waited / 4,
        "the wait used {cpu:?} of CPU in {waited:?}: a busy loop"
    );
}

#[test]
fn a_removed_service_answers_its_waiters() {
    let tracker = tracker([
        service("api", 5, Period::Hour),
        service("other", 5, Period::Hour),
    ]);
    tracker.record_call("api", 5).unwrap();
    let waiting = tracker.until_ready("api", 1, in_secs(20.0));
    let thread = std::thread::spawn(move || waiting.wait());
    std::thread::sleep(Duration::from_millis(50));
    tracker
        .reconfigure(TrackerConfig::new([service("other", 5, Period::Hour)]))
        .unwrap();
    assert!(matches!(
        thread.join().unwrap(),
        Err(QuotaError::UnknownService(_))
    ));
}

#[test]
fn a_raised_limit_admits_waiting_calls_at_once() {
    let tracker = tracker([service("api", 5, Period::Hour)]);
    tracker.record_call("api", 5).unwrap();
    let waiting = tracker.until_ready("api", 3, in_secs(20.0));
    let thread = std::thread::spawn(move || waiting.wait());
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    tracker
        .reconfigure(TrackerConfig::new([service("api", 10, Period::Hour)]))
        .unwrap();
    let recorded = thread.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(recorded.usage.used, 8);
}

/// Two instances share `Exact` admission through a store: calls one cancels are noticed by
/// the other's waiter within a sync interval, and its store calls run on the waiter's thread.
#[test]
fn capacity_another_instance_frees_is_noticed_within_a_sync_interval() {
    let store = MemoryStore::new();
    let exact = || {
        ServiceConfig::builder("mail", 10, Period::Hour)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .admission(Admission::Exact)
            .build()
            .unwrap()
    };
    let build = || {
        let policy = SyncPolicy {
            interval_ms: 100,
            ..SyncPolicy::default()
        };
        Arc::new(
            QuotaTracker::builder(TrackerConfig::new([exact()]))
                .store(store.clone())
                .sync_policy(policy)
                .build()
                .unwrap(),
        )
    };
    let (a, b) = (build(), build());
    let held = a.hold("mail", 10).unwrap();
    assert!(b.try_record("mail", 1).is_err(), "the store is full");
    let waiting = b.until_ready("mail", 4, in_secs(20.0));
    let thread = std::thread::spawn(move || waiting.wait());
    std::thread::sleep(Duration::from_millis(50));
    held.settle(5).unwrap();
    a.flush().unwrap();
    let started = Instant::now();
    let recorded = thread.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // B's view never falls on a reply: it saw the store at 10 before the give-back.
    assert!(recorded.usage.used >= 9);
    b.flush().unwrap();
    a.flush().unwrap();
    assert_eq!(a.usage("mail").unwrap().used, 9);
}

/// Awaited on a current-thread runtime, the wait never blocks the executor: a ticker task
/// beside it keeps ticking while the call waits for the next window.
#[test]
fn awaiting_on_a_current_thread_runtime_never_blocks_it() {
    let tracker = tracker([service("api", 3, Period::Second)]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    early_in_a_second(20);
    tracker.record_call("api", 3).unwrap();
    let (recorded, ticks, waited) = runtime.block_on(async {
        let ticks = Arc::new(Mutex::new(0u32));
        let ticking = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            loop {
                interval.tick().await;
                *ticking.lock().unwrap() += 1;
            }
        });
        let started = Instant::now();
        let recorded = tracker.until_ready("api", 2, in_secs(10.0)).await;
        let waited = started.elapsed();
        ticker.abort();
        let ticks = *ticks.lock().unwrap();
        (recorded, ticks, waited)
    });
    let recorded = recorded.unwrap();
    assert_eq!(recorded.usage.used, 2);
    assert!(
        waited >= Duration::from_millis(500),
        "it waited for the next second"
    );
    // One tick per 10 ms while it waited (the runtime was free); a blocked executor gets 1.
    let expected = (waited.as_millis() / 10) as u32;
    assert!(ticks * 2 >= expected, "{ticks} ticks in {waited:?}");
}

/// `hold_when_ready`: the same queue, answered with a hold to settle.
#[test]
fn a_waiting_hold_is_admitted_when_calls_are_given_back_and_settles() {
    let tracker = tracker([service("llm", 1_000, Period::Hour)]);
    let running = tracker.hold("llm", 1_000).unwrap();
    let waiting = tracker.hold_when_ready("llm", 400, in_secs(20.0));
    let thread = std::thread::spawn(move || waiting.wait());
    std::thread::sleep(Duration::from_millis(50));
    assert!(matches!(
        tracker.try_record("llm", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::Waiting,
            ..
        })
    ));
    running.settle(500).unwrap();
    let hold = thread.join().unwrap().unwrap();
    assert_eq!((hold.service(), hold.estimate()), ("llm", 400));
    assert_eq!(tracker.usage("llm").unwrap().used, 900);
    let settled = hold.settle(150).unwrap();
    assert_eq!(settled.given_back, 250);
    assert_eq!(tracker.usage("llm").unwrap().used, 650);
    // Priority holds go first: a waiting normal hold of 200 and then a priority one of 300,
    // with 350 given back: the priority one takes 300 and the normal one (which alone would
    // have fit) waits for more.
    let normal = tracker.hold_when_ready("llm", 200, in_secs(20.0));
    let priority = tracker.hold_priority_when_ready("llm", 300, in_secs(20.0));
    let filler = tracker.hold("llm", 350).unwrap(); // 1,000: full
    let normal = std::thread::spawn(move || normal.wait());
    std::thread::sleep(Duration::from_millis(50));
    let priority = std::thread::spawn(move || priority.wait());
    std::thread::sleep(Duration::from_millis(50));
    filler.cancel().unwrap();
    let first = priority.join().unwrap().unwrap();
    assert_eq!(first.estimate(), 300);
    assert_eq!(tracker.usage("llm").unwrap().used, 950);
    first.cancel().unwrap(); // 300 back: now the normal one fits
    let second = normal.join().unwrap().unwrap();
    assert_eq!(second.estimate(), 200);
    assert_eq!(tracker.usage("llm").unwrap().used, 850);
}

/// A waiting hold dropped at any point keeps nothing: left in the queue, it is taken off;
/// admitted for it as it left, it is cancelled.
#[test]
fn a_waiting_hold_dropped_keeps_nothing() {
    let tracker = tracker([service("llm", 100, Period::Hour)]);
    let woken = Arc::new(Mutex::new(Vec::new()));
    let waker = Waker::from(Arc::new(Noting {
        id: 0,
        woken: Arc::clone(&woken),
    }));
    for round in 0..50 {
        let running = tracker.hold("llm", 100).unwrap();
        let mut waiting = Box::pin(tracker.hold_when_ready("llm", 60, in_secs(20.0)));
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        running.cancel().unwrap();
        // Dropped while the waiter may be admitting it, or after.
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_micros(50 * round));
        }
        drop(waiting);
        // Soon nothing is held and nothing queued.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tracker.usage("llm").unwrap().used != 0 || !tracker.can_call("llm").unwrap() {
            assert!(
                Instant::now() < deadline,
                "round {round}: a hold was kept: {:?} {:?}",
                tracker.usage("llm").unwrap().used,
                tracker.can_call("llm")
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
