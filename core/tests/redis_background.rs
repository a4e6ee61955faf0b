//! Redis behind a proxy that delays every reply by 2 s: a current-thread tokio runtime that
//! counts calls (`Local`, `sync_in_background`), awaits `until_ready` and the async API
//! (`Exact`) never blocks, and a task beside them keeps ticking every 10 ms. Real
//! `redis-server`, started here.

#[path = "support/redis_server.rs"]
mod redis_server;

use quota_core::{
    Admission, Period, QuotaTracker, RedisStore, ServiceConfig, SyncPolicy, TrackerConfig,
};
use redis_server::{Proxy, Server};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tracker(store: RedisStore, admission: Admission) -> Arc<QuotaTracker> {
    let api = ServiceConfig::builder("api", 1_000, Period::Hour)
        .admission(admission)
        .build()
        .unwrap();
    let policy = SyncPolicy {
        interval_ms: 50,
        ..SyncPolicy::default()
    };
    Arc::new(
        QuotaTracker::builder(TrackerConfig::new([api]))
            .store(store)
            .sync_policy(policy)
            .build()
            .unwrap(),
    )
}

/// Runs `work` on a current-thread runtime beside a task that ticks every 10 ms: the ticks
/// it got, and how long `work` took.
fn ticking<F: std::future::Future<Output = ()>>(work: F) -> (u64, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticking = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                ticking.fetch_add(1, Ordering::SeqCst);
            }
        });
        let started = Instant::now();
        work.await;
        let elapsed = started.elapsed();
        ticker.abort();
        (ticks.load(Ordering::SeqCst), elapsed)
    })
}

#[test]
fn counting_with_a_background_syncer_never_waits_for_a_slow_redis() {
    let server = Server::start();
    let proxy = Proxy::start(server.port);
    let store = RedisStore::new(&proxy.url())
        .unwrap()
        .response_timeout(Duration::from_secs(10));
    let tracker = tracker(store, Admission::Local);
    assert!(tracker.sync_in_background().unwrap());
    proxy.delay_ms.store(2_000, Ordering::SeqCst);
    let counting = Arc::clone(&tracker);
    let (ticks, elapsed) = ticking(async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1_500) {
            counting.record_call("api", 1).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert!(
        elapsed < Duration::from_millis(1_900),
        "a call waited: {elapsed:?}"
    );
    assert!(
        ticks * 2 >= elapsed.as_millis() as u64 / 10,
        "{ticks} ticks in {elapsed:?}"
    );
    proxy.delay_ms.store(0, Ordering::SeqCst);
    let counted = tracker.usage("api").unwrap().used;
    tracker.flush().unwrap();
    let direct = tracker_reading(&server);
    assert_eq!(direct, counted, "every call counted reached Redis once");
}

#[test]
fn awaiting_an_exact_admission_never_waits_for_a_slow_redis() {
    let server = Server::start();
    let proxy = Proxy::start(server.port);
    let store = RedisStore::new(&proxy.url())
        .unwrap()
        .response_timeout(Duration::from_secs(10));
    let tracker = tracker(store, Admission::Exact);
    proxy.delay_ms.store(2_000, Ordering::SeqCst);
    let waiting = Arc::clone(&tracker);
    let (ticks, elapsed) = ticking(async move {
        // Admitted by the store, on the waiter's thread: 2 s and more for the reply.
        let deadline = Instant::now() + Duration::from_secs(20);
        let recorded = waiting.until_ready("api", 3, deadline).await.unwrap();
        assert!(recorded.usage.used >= 3);
    });
    assert!(
        elapsed >= Duration::from_secs(2),
        "the reply came through the delay"
    );
    assert!(
        ticks * 2 >= elapsed.as_millis() as u64 / 10,
        "{ticks} ticks in {elapsed:?}"
    );
    proxy.delay_ms.store(0, Ordering::SeqCst);
    tracker.flush().unwrap();
    assert_eq!(tracker_reading(&server), 3);
}

#[test]
fn async_exact_calls_never_wait_for_a_slow_redis_on_the_executor() {
    let server = Server::start();
    let proxy = Proxy::start(server.port);
    // Two calls at once need two connections: the second opens through the delay (its
    // `PING` answers in 2 s), so the connect timeout is longer too.
    let store = RedisStore::new(&proxy.url())
        .unwrap()
        .timeout(Duration::from_secs(10));
    let tracker = tracker(store, Admission::Exact);
    proxy.delay_ms.store(2_000, Ordering::SeqCst);
    let calling = Arc::clone(&tracker);
    let (ticks, elapsed) = ticking(async move {
        // Two admissions at once (an async call starts when it is made), each a round trip
        // of 2 s and more on an I/O thread; then `close` flushes there too.
        let first = calling.try_record_async("api", 2);
        let second = calling.record_call_async("api", 3);
        assert!(first.await.unwrap().usage.used >= 2);
        assert!(second.await.unwrap().usage.used >= 3);
        calling.close().await.unwrap();
    });
    assert!(
        elapsed >= Duration::from_secs(2),
        "the replies came through the delay"
    );
    assert!(
        ticks * 2 >= elapsed.as_millis() as u64 / 10,
        "{ticks} ticks in {elapsed:?}"
    );
    proxy.delay_ms.store(0, Ordering::SeqCst);
    tracker.flush().unwrap();
    assert_eq!(tracker_reading(&server), 5);
}

/// What a fresh tracker reads from the server itself (no proxy).
fn tracker_reading(server: &Server) -> u64 {
    let reader = tracker(server.store(), Admission::Local);
    reader.usage("api").unwrap().used
}
