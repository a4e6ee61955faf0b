//! The async API: every twin answers what its blocking twin answers, and no store call ever
//! runs on the thread that polls it (checked by a store that notes each call's thread), in
//! every admission; counts stay exact across the I/O threads.

#[path = "support/where_store.rs"]
mod where_store;

use quota_core::{
    Admission, Period, QuotaError, QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig,
};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use where_store::{WhereStore, CALLER};

fn tracker(store: &WhereStore, admission: Admission, limit: u64) -> Arc<QuotaTracker> {
    let api = ServiceConfig::builder("api", limit, Period::Hour)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(admission)
        .build()
        .unwrap();
    let other = ServiceConfig::new("other", 1_000_000, Period::Hour);
    let policy = SyncPolicy {
        interval_ms: 1,
        ..SyncPolicy::default()
    };
    Arc::new(
        QuotaTracker::builder(TrackerConfig::new([api, other]))
            .store(store.clone())
            .sync_policy(policy)
            .build()
            .unwrap(),
    )
}

/// Runs `work` on a current-thread runtime on a thread named [`CALLER`].
fn on_caller<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::Builder::new()
        .name(CALLER.into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
                .block_on(work)
        })
        .unwrap()
        .join()
        .unwrap()
}

fn admissions() -> [Admission; 3] {
    [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 7 },
    ]
}

#[test]
fn no_async_call_touches_the_store_on_its_callers_thread_and_counts_stay_exact() {
    for admission in admissions() {
        let store = WhereStore::default();
        let tracker = tracker(&store, admission, 1_000_000);
        let caller = Arc::clone(&tracker);
        let counted = on_caller(async move {
            let mut counted = 0;
            for i in 0..300u64 {
                caller.try_record_async("api", 1).await.unwrap();
                caller.record_call_async("api", 2).await.unwrap();
                caller.try_record_priority_async("api", 1).await.unwrap();
                assert!(caller.can_call_async("api").await.unwrap());
                let hold = match i % 2 == 0 {
                    true => caller.hold_priority_async("api", 10).await.unwrap(),
                    false => caller.hold_async("api", 10).await.unwrap(),
                };
                hold.settle_async(i % 5).await.unwrap();
                let hold = caller.hold_async("api", 3).await.unwrap();
                hold.cancel_async().await.unwrap();
                let many = [("api", 1), ("other", 4)];
                match i % 2 == 0 {
                    true => caller.try_record_many_async(&many).await.unwrap(),
                    false => caller.try_record_many_priority_async(&many).await.unwrap(),
                };
                counted += 1 + 2 + 1 + i % 5 + 1;
                if i % 50 == 0 {
                    caller.flush_async().await.unwrap();
                }
            }
            caller.raise_used_async("other", 10, None).await.unwrap();
            caller.close().await.unwrap();
            counted
        });
        let used = tracker.usage("api").unwrap().used;
        flushed_to(&tracker, &store, counted + 300 * 4);
        drop(tracker);
        assert_eq!(
            store.on_caller(),
            0,
            "{admission:?}: a store call on the caller"
        );
        assert!(!store.threads.lock().unwrap().is_empty());
        assert_eq!(store.total(), counted + 300 * 4, "{admission:?}: the store");
        // The view may count given-back calls again (a sync cut before a settle and answered
        // after it): an over-count only.
        assert!(
            used >= counted,
            "{admission:?}: the view {used} < {counted}"
        );
    }
}

#[test]
fn eight_tasks_admit_exactly_the_limit_through_a_slow_store_at_once() {
    for admission in [Admission::Exact, Admission::Leased { block: 5 }] {
        let store = WhereStore::default();
        *store.slow.lock().unwrap() = Duration::from_millis(2);
        let tracker = tracker(&store, admission, 300);
        let caller = Arc::clone(&tracker);
        let admitted = on_caller(async move {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let tracker = Arc::clone(&caller);
                    tokio::spawn(async move {
                        let mut admitted = 0u64;
                        for _ in 0..60 {
                            match tracker.try_record_async("api", 1).await {
                                Ok(_) => admitted += 1,
                                Err(QuotaError::Denied { .. }) => {}
                                Err(other) => panic!("{other}"),
                            }
                        }
                        admitted
                    })
                })
                .collect();
            let mut admitted = 0;
            for task in tasks {
                admitted += task.await.unwrap();
            }
            caller.close().await.unwrap();
            admitted
        });
        flushed_to(&tracker, &store, 300);
        drop(tracker);
        assert_eq!(admitted, 300, "{admission:?}: 480 asked of 300");
        assert_eq!(store.total(), 300, "{admission:?}: stored == admitted");
        assert_eq!(store.on_caller(), 0);
        assert!(
            store.most_in_flight.load(Ordering::SeqCst) >= 2,
            "{admission:?}: the tasks' store calls overlapped"
        );
    }
}

/// Flushes until the store holds `total` (for up to 10 s): a block the background syncer
/// leased ahead while `close` flushed comes back with the next flush.
fn flushed_to(tracker: &QuotaTracker, store: &WhereStore, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.total() != total && Instant::now() < deadline {
        tracker.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn local_calls_and_bad_input_answer_at_the_first_poll_with_typed_errors() {
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 10);
    let Poll::Ready(Err(QuotaError::UnknownService(name))) =
        poll_once(tracker.try_record_async("nope", 1))
    else {
        panic!("an unknown service is an error at once");
    };
    assert_eq!(name, "nope");
    assert!(matches!(
        poll_once(tracker.record_call_async("api", 0)),
        Poll::Ready(Err(QuotaError::InvalidCount { .. }))
    ));
    assert!(matches!(
        poll_once(tracker.try_record_many_async(&[("api", 1), ("api", 1)])),
        Poll::Ready(Err(QuotaError::InvalidCount { .. }))
    ));
    // A `Local` service needs no store: answered at once, on this thread, as the blocking
    // twin answers.
    let Poll::Ready(Ok(recorded)) = poll_once(tracker.try_record_async("other", 10)) else {
        panic!("a local call is answered at the first poll");
    };
    assert_eq!(recorded.usage.used, 10);
    let Poll::Ready(Err(QuotaError::Denied { reason, used, .. })) =
        poll_once(tracker.try_record_async("other", 1_000_000))
    else {
        panic!("a local refusal is answered at the first poll");
    };
    let Err(QuotaError::Denied {
        reason: blocking, ..
    }) = tracker.try_record("other", 1_000_000)
    else {
        panic!("refused");
    };
    assert_eq!((reason, used), (blocking, 10));
    // An `Exact` one goes to an I/O thread: pending at first.
    assert!(poll_once(tracker.try_record_async("api", 1)).is_pending());
    assert_eq!(store.on_caller(), 0);
}

#[test]
fn a_hold_admitted_for_a_caller_that_left_goes_back() {
    let store = WhereStore::default();
    let tracker = tracker(&store, Admission::Exact, 100);
    store.closed.store(true, Ordering::SeqCst);
    // Queued behind the closed store, then dropped before its answer.
    drop(tracker.hold_async("api", 40));
    let waiting = tracker.hold_async("api", 30);
    store.closed.store(false, Ordering::SeqCst);
    let hold = on_caller(waiting).unwrap();
    hold.settle(30).unwrap();
    // The dropped call's hold was admitted, then cancelled on its I/O thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tracker.flush().unwrap();
        if store.total() == 30 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(store.total(), 30);
    // The view may count the 40 again until the window ends: a sync cut before the cancel
    // and answered after it reads them back (never lowered), an over-count only.
    assert!(tracker.usage("api").unwrap().used >= 30);
}

#[path = "../examples/async_calls.rs"]
mod example;

/// The README's async example is `core/examples/async_calls.rs`, byte for byte, and runs.
#[test]
fn the_readme_example_runs_and_is_the_file() {
    example::main().unwrap();
    let file = include_str!("../examples/async_calls.rs");
    let readme = include_str!("../../README.md");
    let marker = "<!-- core/examples/async_calls.rs -->\n```rust,ignore\n";
    let at = readme.find(marker).expect("the README shows the example") + marker.len();
    assert!(readme[at..].starts_with(file), "the README's copy differs");
}
