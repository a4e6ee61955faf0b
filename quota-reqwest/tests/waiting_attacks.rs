//! Hostile review of `Counting::WaitBefore`.

#[path = "support/api.rs"]
mod api;

use api::Api;
use quota_core::{DenyReason, Period, QuotaError, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::{Counting, QuotaExceeded, QuotaLayer, QuotaMiddleware, QuotaRules};
use reqwest_middleware::ClientBuilder;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower::{Service as _, ServiceExt as _};

fn tracker(limit: u64, period: Period) -> Arc<QuotaTracker> {
    let api = ServiceConfig::builder("api", limit, period)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    Arc::new(QuotaTracker::new(TrackerConfig::new([api])).unwrap())
}

/// W1: `WaitBefore(Duration::MAX)` ("wait as long as it takes") panics on the first denied
/// request: `Instant::now() + Duration::MAX` in `QuotaRules::before`.
#[tokio::test]
async fn w1_wait_before_duration_max_waits_without_panicking() {
    let api = Api::start().await;
    let tracker = tracker(1, Period::Day);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .route(|_| Some("api"))
                .counting("api", Counting::WaitBefore(Duration::MAX))
                .unwrap(),
        )
        .build();
    client.get(&api.url).send().await.unwrap();
    let url = api.url.clone();
    let second = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_millis(300), client.get(&url).send()).await
    })
    .await;
    assert!(
        second.is_ok(),
        "the request task panicked: {:?}",
        second.err()
    );
}

/// An inner service with one slot, as `tower::limit::ConcurrencyLimit(1)`: `poll_ready`
/// reserves it for the clone that was made ready; the call's future (or dropping that clone)
/// gives it back.
struct OneSlot {
    shared: Arc<Mutex<(bool, Vec<Waker>)>>,
    holding: bool,
}

impl Clone for OneSlot {
    fn clone(&self) -> Self {
        OneSlot {
            shared: Arc::clone(&self.shared),
            holding: false,
        }
    }
}

fn release(shared: &Mutex<(bool, Vec<Waker>)>) {
    let mut s = shared.lock().unwrap();
    s.0 = false;
    s.1.drain(..).for_each(Waker::wake);
}

impl Drop for OneSlot {
    fn drop(&mut self) {
        if self.holding {
            release(&self.shared);
        }
    }
}

struct Released(Arc<Mutex<(bool, Vec<Waker>)>>);
impl Drop for Released {
    fn drop(&mut self) {
        release(&self.0);
    }
}

impl tower::Service<http::Request<String>> for OneSlot {
    type Response = http::Response<String>;
    type Error = quota_reqwest::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.holding {
            return Poll::Ready(Ok(()));
        }
        let mut s = self.shared.lock().unwrap();
        if s.0 {
            s.1.push(cx.waker().clone());
            return Poll::Pending;
        }
        s.0 = true;
        self.holding = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<String>) -> Self::Future {
        assert!(self.holding, "called without poll_ready");
        self.holding = false;
        let slot = Released(Arc::clone(&self.shared));
        Box::pin(async move {
            let _slot = slot;
            Ok(http::Response::new(String::from("ok")))
        })
    }
}

/// W2: the layer moves the clone whose `poll_ready` reserved inner capacity into a future
/// that first waits (up to `max`) for quota: a request of a service without any quota rule
/// waits behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_the_layer_releases_the_inner_readiness_while_it_waits() {
    let tracker = tracker(1, Period::Day);
    tracker.record_call("api", 1).unwrap();
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .host("api.test", "api")
        .unwrap()
        .counting("api", Counting::WaitBefore(Duration::from_secs(2)))
        .unwrap();
    let inner = OneSlot {
        shared: Arc::new(Mutex::new((false, Vec::new()))),
        holding: false,
    };
    let mut limited = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(rules))
        .service(inner);
    let mut free = limited.clone();
    let request = |uri: &str| http::Request::get(uri).body(String::new()).unwrap();
    let waiting = limited
        .ready()
        .await
        .unwrap()
        .call(request("http://api.test/"));
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let other = tokio::time::timeout(Duration::from_millis(500), async {
        free.ready()
            .await
            .unwrap()
            .call(request("http://other.test/"))
            .await
    })
    .await;
    let _ = waiting.await;
    assert!(
        other.is_ok(),
        "an unlimited request waited {:?} for the slot a waiting request kept",
        started.elapsed()
    );
}

/// Held: a request dropped while it waits counts nothing, leaves the queue clean, and calls
/// given back later are not taken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_a_request_dropped_while_waiting_counts_nothing_and_leaves_no_queue() {
    let api = Api::start().await;
    let tracker = tracker(2, Period::Day);
    let held = tracker.hold("api", 1).unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .route(|_| Some("api"))
                .counting("api", Counting::WaitBefore(Duration::from_secs(60)))
                .unwrap(),
        )
        .build();
    client.get(&api.url).send().await.unwrap();
    let dropped =
        tokio::time::timeout(Duration::from_millis(100), client.get(&api.url).send()).await;
    assert!(dropped.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.cancel().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tracker.usage("api").unwrap().used,
        1,
        "nothing admitted for it"
    );
    assert_eq!(api.received(), 1);
    tracker.try_record("api", 1).unwrap(); // not Denied(Waiting)
    match tracker.try_record("api", 1) {
        Err(QuotaError::Denied { reason, .. }) => assert_eq!(reason, DenyReason::Limit),
        other => panic!("{other:?}"),
    }
}

/// Held: a priced service does not wait (documented), and fails at once with a retry_after.
#[tokio::test]
async fn h2_a_priced_service_with_wait_before_waits_for_its_hold() {
    let api = Api::start().await;
    let tracker = tracker(10, Period::Day);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .route(|_| Some("api"))
                .counting("api", Counting::WaitBefore(Duration::from_millis(300)))
                .unwrap()
                .price("api", 8, |_, _| Some(8))
                .unwrap(),
        )
        .build();
    client.get(&api.url).send().await.unwrap();
    // 8 of the day's 10 used: a second hold of 8 waits, then fails unsent with when.
    let started = Instant::now();
    let error = client.get(&api.url).send().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    assert!(QuotaExceeded::find(&error).unwrap().retry_after.is_some());
    assert_eq!(api.received(), 1);
    assert_eq!(tracker.usage("api").unwrap().used, 8);
}
