//! The middleware and the layer never run store I/O on the executor: with `Exact` services
//! on a slow store (every call 150 ms), requests counted before (`TryBefore`, priced and
//! not), after (`RecordAfter`) and failing, on a current-thread runtime beside a task that
//! ticks every 10 ms. A store that notes each call's thread proves none ran on the runtime's;
//! the counts stay exact. A real HTTP server on 127.0.0.1.

#[path = "support/api.rs"]
mod api;
#[path = "../../core/tests/support/where_store.rs"]
mod where_store;

use api::Api;
use quota_core::{Admission, Period, QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig};
use quota_reqwest::{BoxError, Counting, QuotaLayer, QuotaMiddleware, QuotaRules};
use reqwest_middleware::ClientBuilder;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::{Service as _, ServiceExt as _};
use where_store::{WhereStore, CALLER};

fn tracker(store: &WhereStore) -> Arc<QuotaTracker> {
    let service = |name: &str| {
        ServiceConfig::builder(name, 1_000, Period::Hour)
            .admission(Admission::Exact)
            .build()
            .unwrap()
    };
    let config = TrackerConfig::new([service("api"), service("llm"), service("after")]);
    let policy = SyncPolicy {
        interval_ms: 20,
        ..SyncPolicy::default()
    };
    Arc::new(
        QuotaTracker::builder(config)
            .store(store.clone())
            .sync_policy(policy)
            .build()
            .unwrap(),
    )
}

/// The tokens a response reports in `x-tokens`.
fn tokens(_: http::StatusCode, headers: &http::HeaderMap) -> Option<u64> {
    headers.get("x-tokens")?.to_str().ok()?.parse().ok()
}

/// Runs `work` on a current-thread runtime on a thread named [`CALLER`], beside a task that
/// ticks every 10 ms: the ticks it got, and how long `work` took.
fn ticking<F>(work: impl FnOnce() -> F + Send + 'static) -> (u64, Duration)
where
    F: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(CALLER.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
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
                work().await;
                let elapsed = started.elapsed();
                ticker.abort();
                (ticks.load(Ordering::SeqCst), elapsed)
            })
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Flushes until the store holds `total` (settlements run on I/O threads after the response).
fn flushed_to(tracker: &QuotaTracker, store: &WhereStore, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.total() != total && Instant::now() < deadline {
        tracker.flush().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check_ticks(ticks: u64, elapsed: Duration) {
    // A blocked executor would miss every tick for 150 ms and more per store call.
    assert!(
        ticks * 2 >= elapsed.as_millis() as u64 / 10,
        "{ticks} ticks in {elapsed:?}"
    );
}

#[test]
fn the_middleware_never_waits_for_a_slow_store_on_the_executor() {
    let store = WhereStore::default();
    let tracker = tracker(&store);
    *store.slow.lock().unwrap() = Duration::from_millis(150);
    let caller = Arc::clone(&tracker);
    let (ticks, elapsed) = ticking(move || async move {
        let api = Api::start().await;
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(
                QuotaMiddleware::new(Arc::clone(&caller))
                    .route(|info| info.path.starts_with("/v1/items").then_some("api"))
                    .route(|info| info.path.starts_with("/v1/llm").then_some("llm"))
                    .route(|info| info.path.starts_with("/v1/after").then_some("after"))
                    .price("llm", 100, tokens)
                    .unwrap()
                    .counting("after", Counting::RecordAfter)
                    .unwrap(),
            )
            .build();
        let llm = api.url.replace("/v1/items", "/v1/llm");
        let after = api.url.replace("/v1/items", "/v1/after");
        for _ in 0..3 {
            assert_eq!(client.get(&api.url).send().await.unwrap().status(), 200);
            let priced = client.get(&llm).header("x-echo-x-tokens", "30");
            assert_eq!(priced.send().await.unwrap().status(), 200);
            assert_eq!(client.get(&after).send().await.unwrap().status(), 200);
        }
        // A request that never connects: its hold goes back, off the executor.
        let nowhere = "http://127.0.0.1:9/v1/llm";
        assert!(client.get(nowhere).send().await.is_err());
        caller.flush_async().await.unwrap();
    });
    check_ticks(ticks, elapsed);
    *store.slow.lock().unwrap() = Duration::ZERO;
    // 3 counted before, 3 x 30 tokens settled, 3 counted after, the failed hold back.
    flushed_to(&tracker, &store, 3 + 90 + 3);
    assert_eq!(store.total(), 3 + 90 + 3);
    assert_eq!(store.on_caller(), 0, "a store call on the runtime's thread");
}

#[test]
fn the_layer_never_waits_for_a_slow_store_on_the_executor() {
    let store = WhereStore::default();
    let tracker = tracker(&store);
    *store.slow.lock().unwrap() = Duration::from_millis(150);
    let caller = Arc::clone(&tracker);
    let (ticks, elapsed) = ticking(move || async move {
        let inner = tower::service_fn(|_: http::Request<String>| async {
            let response = http::Response::builder()
                .header("x-tokens", "40")
                .body(String::new())
                .unwrap();
            Ok::<_, BoxError>(response)
        });
        let rules = QuotaRules::new(Arc::clone(&caller))
            .route(|info| (info.path == "/llm").then_some("llm"))
            .price("llm", 100, tokens)
            .unwrap();
        let mut service = tower::ServiceBuilder::new()
            .layer(QuotaLayer::new(rules))
            .service(inner);
        for _ in 0..3 {
            let request = http::Request::get("http://example.test/llm")
                .body(String::new())
                .unwrap();
            let ready = service.ready().await.unwrap();
            assert_eq!(ready.call(request).await.unwrap().status(), 200);
        }
        caller.flush_async().await.unwrap();
    });
    check_ticks(ticks, elapsed);
    *store.slow.lock().unwrap() = Duration::ZERO;
    flushed_to(&tracker, &store, 3 * 40);
    assert_eq!(store.total(), 120);
    assert_eq!(store.on_caller(), 0, "a store call on the runtime's thread");
}
