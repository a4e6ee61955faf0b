//! A hostile review's attacks on the async API (`core/src/tracker/nonblocking`): a call queued
//! behind a hung one, reconfigures between `Local` and `Exact` while calls run in place, 64
//! tasks, panicking wakers and stores, drops at every point, `close` twice, observers.

#[path = "support/where_store.rs"]
mod where_store;

use quota_core::{
    Admission, Period, QuotaError, QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig,
};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use where_store::{WhereStore, CALLER};

fn config(admission: Admission, limit: u64) -> TrackerConfig {
    let api = ServiceConfig::builder("api", limit, Period::Hour)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(admission)
        .build()
        .unwrap();
    let other = ServiceConfig::new("other", 1_000_000, Period::Hour);
    TrackerConfig::new([api, other])
}

fn tracker(store: &WhereStore, admission: Admission, limit: u64) -> Arc<QuotaTracker> {
    let policy = SyncPolicy {
        interval_ms: 1,
        ..SyncPolicy::default()
    };
    Arc::new(
        QuotaTracker::builder(config(admission, limit))
            .store(store.clone())
            .sync_policy(policy)
            .build()
            .unwrap(),
    )
}

/// A waker that unparks a thread.
struct Unpark(std::thread::Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Blocks on `future` for up to `limit`: `None` if it is not ready by then.
fn wait_for<F: Future>(future: F, limit: Duration) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let deadline = Instant::now() + limit;
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

fn io_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "quota-io")
        .count()
}

/// Serializes the tests of this file: one counts the process's I/O threads, which every other
/// test's tracker starts.
static THREADS: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------
// Defect: `submit` counts an idle thread that was already notified for an earlier job as
// idle still, so a second job queued at once starts no thread: it waits behind the first
// (here: a store call that hangs) although fewer than 8 threads run.

#[test]
fn a_call_queued_right_after_another_is_not_stuck_behind_it() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let tracker = Arc::new(QuotaTracker::new(config(Admission::Local, 100)).unwrap());
    let mut stuck = 0;
    for _ in 0..100 {
        // One I/O thread, idle.
        wait_for(tracker.run_async(|_| ()), Duration::from_secs(5))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (release, hung) = mpsc::channel::<()>();
        // A job that hangs (a store call that never answers), then one that does not.
        let first = tracker.run_async(move |_| {
            let _ = hung.recv();
        });
        let second = tracker.run_async(|_| 7);
        let answered = wait_for(second, Duration::from_secs(2));
        release.send(()).unwrap();
        wait_for(first, Duration::from_secs(5)).unwrap().unwrap();
        if answered.is_none() {
            stuck += 1;
            break;
        }
    }
    assert_eq!(
        stuck, 0,
        "a call waited 2 s behind a hung one, with 1 of 8 threads running"
    );
}

// ---------------------------------------------------------------------------------------
// Defect: `update_in_place` (and `hold_async`, `try_record_many_async`, until_ready) decide
// "no store I/O" from the settings read before the call, then run the blocking call, which
// reads the settings again: a reconfigure from `Local` to `Exact` in between makes the
// caller's thread ask the store.

/// Flips `api` between `Local` and `Exact` on another thread while `calls` runs on the
/// caller's thread (for up to 8 s or until a store call runs there): the store calls made
/// on the caller's thread.
fn store_calls_on_caller_while_flipping(
    calls: impl Fn(&Arc<QuotaTracker>, &WhereStore) -> usize + Send + 'static,
) -> usize {
    let store = WhereStore::default();
    let counted = Arc::new(AtomicUsize::new(0));
    let tracker = tracker(&store, Admission::Local, 1_000_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (tracker, stop) = (Arc::clone(&tracker), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut exact = false;
            while !stop.load(Ordering::SeqCst) {
                exact = !exact;
                let admission = if exact {
                    Admission::Exact
                } else {
                    Admission::Local
                };
                tracker
                    .reconfigure(config(admission, 1_000_000_000))
                    .unwrap();
            }
        })
    };
    let caller = Arc::clone(&tracker);
    let seen = store.clone();
    let mine = Arc::clone(&counted);
    let deadline = Instant::now() + Duration::from_secs(8);
    std::thread::Builder::new()
        .name(CALLER.into())
        .spawn(move || {
            while Instant::now() < deadline && mine.load(Ordering::SeqCst) == 0 {
                for _ in 0..200 {
                    let found = calls(&caller, &seen);
                    mine.fetch_add(found, Ordering::SeqCst);
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    flipper.join().unwrap();
    counted.load(Ordering::SeqCst)
}

#[test]
fn a_reconfigure_to_exact_never_puts_a_record_on_the_callers_thread() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let on_caller = store_calls_on_caller_while_flipping(|tracker, store| {
        let before = store.on_caller();
        // Only the answers made at once matter (pending ones run elsewhere).
        let _ = wait_for(tracker.try_record_async("api", 1), Duration::from_secs(5));
        store.on_caller() - before
    });
    assert_eq!(on_caller, 0, "store calls on the caller's thread");
}

#[test]
fn a_reconfigure_to_exact_never_puts_a_hold_on_the_callers_thread() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let on_caller = store_calls_on_caller_while_flipping(|tracker, store| {
        let before = store.on_caller();
        let hold = tracker.hold_async("api", 2);
        if let Some(Ok(hold)) = wait_for(hold, Duration::from_secs(5)) {
            drop(hold); // keeps its estimate: no settlement
        }
        store.on_caller() - before
    });
    assert_eq!(on_caller, 0, "store calls on the caller's thread");
}

#[test]
fn a_reconfigure_to_local_never_puts_a_settlement_on_the_callers_thread() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let on_caller = store_calls_on_caller_while_flipping(|tracker, store| {
        // Held on an I/O thread while `Exact` (pending at its first poll, so not the
        // race above), then settled while the settings may say `Local`.
        let mut hold = tracker.hold_async("api", 3);
        if wait_for(&mut hold, Duration::ZERO).is_some() {
            return 0;
        }
        let Some(Ok(hold)) = wait_for(hold, Duration::from_secs(5)) else {
            return 0;
        };
        let before = store.on_caller();
        let _ = wait_for(hold.settle_async(1), Duration::from_secs(5));
        store.on_caller() - before
    });
    assert_eq!(on_caller, 0, "store calls on the caller's thread");
}

// ---------------------------------------------------------------------------------------
// Passing attacks, kept as regression tests.

/// 64 tasks (8 threads x 8 tasks) race for a limit of 500 through Exact and Leased on a
/// memory store: exactly the limit admitted, stored == admitted, never over.
#[test]
fn sixty_four_tasks_admit_exactly_the_limit() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    for admission in [Admission::Exact, Admission::Leased { block: 7 }] {
        let store = WhereStore::default();
        *store.slow.lock().unwrap() = Duration::from_micros(200);
        let tracker = tracker(&store, admission, 500);
        let admitted = Arc::new(AtomicU64::new(0));
        // Holds admitted: each gives 1 back, maybe after the last call was refused for it.
        let held = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (tracker, admitted) = (Arc::clone(&tracker), Arc::clone(&admitted));
                let held = Arc::clone(&held);
                std::thread::Builder::new()
                    .name(CALLER.into())
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        runtime.block_on(async move {
                            let tasks: Vec<_> = (0..8)
                                .map(|i| {
                                    let (tracker, admitted) =
                                        (Arc::clone(&tracker), Arc::clone(&admitted));
                                    let held = Arc::clone(&held);
                                    tokio::spawn(async move {
                                        for j in 0..20u64 {
                                            let answer = if (i + j) % 3 == 0 {
                                                match tracker.hold_async("api", 2).await {
                                                    Ok(hold) => {
                                                        held.fetch_add(1, Ordering::SeqCst);
                                                        hold.settle_async(1).await.map(|_| 1)
                                                    }
                                                    Err(error) => Err(error),
                                                }
                                            } else {
                                                tracker.try_record_async("api", 1).await.map(|_| 1)
                                            };
                                            match answer {
                                                Ok(n) => {
                                                    admitted.fetch_add(n, Ordering::SeqCst);
                                                }
                                                Err(QuotaError::Denied { .. }) => {}
                                                Err(other) => panic!("{other}"),
                                            }
                                            let used = tracker.usage("api").unwrap().used;
                                            assert!(used <= 500 + 7, "over the limit: {used}");
                                        }
                                    })
                                })
                                .collect();
                            for task in tasks {
                                task.await.unwrap();
                            }
                        })
                    })
                    .unwrap()
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let admitted = admitted.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.total() != admitted && Instant::now() < deadline {
            tracker.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(admitted <= 500, "{admission:?}: admitted {admitted}");
        if admission == Admission::Exact {
            // A call refused at 499 or more of 500 (1,280 asked): only give-backs that came
            // after it leave room unused, one per hold at most.
            let held = held.load(Ordering::SeqCst);
            assert!(
                admitted + held >= 499,
                "{admission:?}: admitted only {admitted} ({held} holds)"
            );
        }
        assert_eq!(store.total(), admitted, "{admission:?}: stored == admitted");
        assert_eq!(
            store.on_caller(),
            0,
            "{admission:?}: store calls on the caller"
        );
    }
}

/// A waker that panics: the answer is in place all the same, the I/O thread lives on.
#[test]
fn a_panicking_waker_neither_loses_the_answer_nor_kills_the_thread() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    struct Panics;
    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a waker that panics");
        }
    }
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 100);
    for _ in 0..3 {
        let waker = Waker::from(Arc::new(Panics));
        let mut call = tracker.try_record_async("api", 1);
        assert!(Pin::new(&mut call)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let recorded = wait_for(call, Duration::from_secs(5))
            .expect("answered")
            .unwrap();
        assert!(recorded.usage.used >= 1);
    }
    assert_eq!(
        wait_for(tracker.run_async(|_| 3), Duration::from_secs(5))
            .unwrap()
            .unwrap(),
        3
    );
    use std::pin::Pin;
}

/// Polled again after its answer: pending, no panic; dropped at any point: calls stay
/// counted once.
#[test]
fn polls_after_ready_and_drops_at_every_point_count_once() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 1_000);
    let mut call = tracker.try_record_async("api", 1);
    let answered = wait_for(&mut call, Duration::from_secs(5)).unwrap();
    assert!(answered.is_ok());
    assert!(wait_for(&mut call, Duration::from_millis(50)).is_none());
    drop(call);
    // Dropped before it runs (the store held), after it ran but before a poll, polled once.
    store.closed.store(true, Ordering::SeqCst);
    drop(tracker.try_record_async("api", 2));
    let unpolled = tracker.try_record_async("api", 4);
    let mut polled = tracker.try_record_async("api", 8);
    assert!(wait_for(&mut polled, Duration::from_millis(10)).is_none());
    store.closed.store(false, Ordering::SeqCst);
    let done = tracker.run_async(|_| ());
    wait_for(tracker.flush_async(), Duration::from_secs(5))
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(unpolled);
    drop(polled);
    drop(done);
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.total() != 15 && Instant::now() < deadline {
        tracker.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(store.total(), 15);
    assert_eq!(tracker.usage("api").unwrap().used, 15);
}

/// A store that panics in an I/O job answers an error, and the pool goes on.
#[test]
fn a_store_that_panics_answers_an_error() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 100);
    let answer = wait_for(
        tracker.run_async(|_| -> u64 { panic!("a job that panics") }),
        Duration::from_secs(5),
    )
    .expect("answered");
    assert!(matches!(answer, Err(QuotaError::Store(_))));
    let recorded = wait_for(tracker.try_record_async("api", 1), Duration::from_secs(5));
    assert!(recorded.unwrap().is_ok());
}

/// Dropping the last `Arc` with calls queued behind a slow one: nothing hangs, the queued
/// ones are answered (an error), counts are not doubled, and the I/O threads end.
#[test]
fn dropping_the_last_arc_with_calls_queued_ends_everything() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let store = WhereStore::default();
    *store.slow.lock().unwrap() = Duration::from_millis(30);
    let tracker = tracker(&store, Admission::Exact, 1_000);
    let calls: Vec<_> = (0..40)
        .map(|_| tracker.record_call_async("api", 1))
        .collect();
    let holds: Vec<_> = (0..4).map(|_| tracker.hold_async("api", 5)).collect();
    drop(tracker);
    let mut ok = 0;
    for call in calls {
        if wait_for(call, Duration::from_secs(10))
            .expect("answered")
            .is_ok()
        {
            ok += 1;
        }
    }
    for hold in holds {
        if let Ok(hold) = wait_for(hold, Duration::from_secs(10)).expect("answered") {
            wait_for(hold.settle_async(5), Duration::from_secs(10))
                .unwrap()
                .unwrap();
            ok += 5;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(12);
    while io_threads() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(io_threads(), 0, "I/O threads left");
    assert_eq!(store.total(), ok, "stored == answered Ok");
}

/// `close` twice and concurrently with calls, from several `Arc`s.
#[test]
fn close_twice_and_beside_calls() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 1_000);
    let calls: Vec<_> = (0..20)
        .map(|_| tracker.try_record_async("api", 1))
        .collect();
    let (a, b) = (Arc::clone(&tracker), Arc::clone(&tracker));
    let closes = [a.close(), b.close()];
    for close in closes {
        wait_for(close, Duration::from_secs(5)).unwrap().unwrap();
    }
    for call in calls {
        wait_for(call, Duration::from_secs(5)).unwrap().unwrap();
    }
    let later = wait_for(tracker.try_record_async("api", 1), Duration::from_secs(5));
    assert!(later.unwrap().is_ok());
    wait_for(tracker.close(), Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(store.total(), 21);
}

/// An observer that makes async calls (on the caller's thread for a `Local` service, on an
/// I/O thread for an `Exact` one): no deadlock, counted.
#[test]
fn async_calls_from_an_observer() {
    let _threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 10);
    let weak = Arc::downgrade(&tracker);
    let made = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&made);
    let _subscription = tracker.on_transition(move |_| {
        if let Some(tracker) = weak.upgrade() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(tracker.record_call_async("other", 1));
            drop(tracker.try_record_async("api", 1));
        }
    });
    let caller = Arc::clone(&tracker);
    std::thread::Builder::new()
        .name(CALLER.into())
        .spawn(move || {
            for _ in 0..15 {
                let _ = wait_for(caller.try_record_async("api", 1), Duration::from_secs(5))
                    .expect("no deadlock");
            }
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(made.load(Ordering::SeqCst) > 0, "transitions seen");
    assert_eq!(store.on_caller(), 0);
    assert!(tracker.usage("api").unwrap().used <= 10);
}
