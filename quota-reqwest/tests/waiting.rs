//! `Counting::WaitBefore`: requests the tracker denies wait for capacity (the window's end,
//! calls given back) instead of failing, through the middleware and the layer, against a real
//! HTTP server on 127.0.0.1.

#[path = "support/api.rs"]
mod api;

use api::Api;
use quota_core::{DenyReason, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::{
    BoxError, Counting, Exceeded, QuotaExceeded, QuotaLayer, QuotaMiddleware, QuotaRules,
};
use reqwest_middleware::ClientBuilder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::{Service as _, ServiceExt as _};

/// `api`: `limit` calls per `period`, normal calls up to the limit (no reserve), system clock.
fn tracker(limit: u64, period: Period) -> Arc<QuotaTracker> {
    let api = ServiceConfig::builder("api", limit, period)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    Arc::new(QuotaTracker::new(TrackerConfig::new([api])).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_over_the_limit_wait_for_the_next_windows_and_all_get_through() {
    let api = Api::start().await;
    let tracker = tracker(10, Period::Second);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .host("127.0.0.1", "api")
                .unwrap()
                .counting("api", Counting::WaitBefore(Duration::from_secs(20)))
                .unwrap(),
        )
        .build();
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), api.url.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    let response = client.get(&url).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // 24 requests at 10 a second: at least two window ends passed.
    assert!(started.elapsed() >= Duration::from_millis(1_000));
    assert_eq!(api.received(), 24, "every request was sent once");
    assert!(tracker.usage("api").unwrap().used <= 10);
}

#[tokio::test]
async fn a_request_that_does_not_fit_in_time_fails_unsent_with_the_reason_and_when() {
    let api = Api::start().await;
    let tracker = tracker(2, Period::Day);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .route(|_| Some("api"))
                .counting("api", Counting::WaitBefore(Duration::from_millis(200)))
                .unwrap(),
        )
        .build();
    client.get(&api.url).send().await.unwrap();
    client.get(&api.url).send().await.unwrap();
    let started = Instant::now();
    let error = client.get(&api.url).send().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
    let error = QuotaExceeded::find(&error).unwrap();
    assert_eq!(error.reason, Exceeded::Denied(DenyReason::Limit));
    assert_eq!((error.used, error.limit), (2, 2));
    let reset_at = tracker.usage("api").unwrap().reset_at_ms;
    let retry_after = error.retry_after.expect("the day's end");
    let expected = reset_at - tracker.now_ms();
    assert!(
        retry_after.as_millis() as u64 <= expected + 1_000
            && retry_after.as_millis() as u64 + 1_000 >= expected
    );
    assert_eq!(api.received(), 2, "the third was never sent");
    assert_eq!(tracker.usage("api").unwrap().used, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_waits_too() {
    let api = Api::start().await;
    let tracker = tracker(2, Period::Second);
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .host("127.0.0.1", "api")
        .unwrap()
        .counting("api", Counting::WaitBefore(Duration::from_secs(10)))
        .unwrap();
    let client = reqwest::Client::new();
    let inner = tower::service_fn(move |request: http::Request<reqwest::Body>| {
        let client = client.clone();
        async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            Ok::<_, BoxError>(http::Response::from(response))
        }
    });
    let mut service = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(rules))
        .service(inner);
    for _ in 0..5 {
        let request = http::Request::get(&api.url)
            .body(reqwest::Body::from(""))
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(api.received(), 5);
}

/// A priced service (held at an estimate, settled from the response) waits for its hold too:
/// two requests of 6 tokens over a limit of 10 a second, the second held in the next second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priced_request_waits_for_its_hold_and_settles() {
    let api = Api::start().await;
    let tracker = tracker(10, Period::Second);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .host("127.0.0.1", "api")
                .unwrap()
                .counting("api", Counting::WaitBefore(Duration::from_secs(10)))
                .unwrap()
                .price("api", 6, |_, _| Some(5))
                .unwrap(),
        )
        .build();
    let first_window = tracker.usage("api").unwrap().reset_at_ms;
    for _ in 0..2 {
        let response = client.get(&api.url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(api.received(), 2);
    let usage = tracker.usage("api").unwrap();
    // Each settled at 5: the second was held in a later second than the first (6 + 6 > 10).
    assert!(
        usage.reset_at_ms > first_window,
        "the second waited for the next second"
    );
    assert_eq!(usage.used, 5);
}
