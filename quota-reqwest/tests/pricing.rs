//! Priced requests (`QuotaRules::price`, `counted_statuses`) against a real HTTP server on
//! 127.0.0.1 that reports the tokens each request used in a header (`x-echo-x-tokens: 120`
//! comes back as `x-tokens: 120`): held at an estimate, settled from the response, given back
//! when the request never left or its status is not counted.

#[path = "support/api.rs"]
mod api;
#[path = "../examples/priced.rs"]
mod priced;

use api::Api;
use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::{BoxError, QuotaExceeded, QuotaLayer, QuotaMiddleware, QuotaRules};
use reqwest_middleware::ClientBuilder;
use std::sync::Arc;
use tower::{Layer as _, Service as _, ServiceExt as _};

const NOW: u64 = 1_718_000_000_000;

fn tokens(limit: u64) -> Arc<QuotaTracker> {
    let llm = ServiceConfig::builder("llm-tokens", limit, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let config = TrackerConfig::new([llm]);
    Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap())
}

/// The tokens the response reports in `x-tokens`.
fn reported(_: http::StatusCode, headers: &http::HeaderMap) -> Option<u64> {
    headers.get("x-tokens")?.to_str().ok()?.parse().ok()
}

fn client(middleware: QuotaMiddleware) -> reqwest_middleware::ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

fn used(tracker: &QuotaTracker) -> u64 {
    tracker.usage("llm-tokens").unwrap().used
}

#[tokio::test]
async fn a_priced_request_is_held_at_its_estimate_and_settled_at_what_the_response_reports() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price("llm-tokens", 2_000, reported)
        .unwrap();
    let client = client(middleware);
    client
        .get(&api.url)
        .header("x-echo-x-tokens", "1234")
        .send()
        .await
        .unwrap();
    assert_eq!(used(&tracker), 1_234);
    // More than the estimate: the excess is counted too.
    client
        .get(&api.url)
        .header("x-echo-x-tokens", "2500")
        .send()
        .await
        .unwrap();
    assert_eq!(used(&tracker), 3_734);
    // A response that does not say keeps the estimate.
    client.get(&api.url).send().await.unwrap();
    assert_eq!(used(&tracker), 5_734);
    // The estimate no longer fits: refused before sending, nothing counted.
    client.get(&api.url).send().await.unwrap();
    client.get(&api.url).send().await.unwrap();
    let error = client.get(&api.url).send().await.unwrap_err();
    assert!(QuotaExceeded::find(&error).is_some(), "{error}");
    assert_eq!((api.received(), used(&tracker)), (5, 9_734));
}

#[tokio::test]
async fn a_request_that_never_connects_gives_its_hold_back_and_other_failures_keep_it() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price("llm-tokens", 500, reported)
        .unwrap();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .with(middleware)
    .build();
    // Nothing listens on port 9 of 127.0.0.1 (discard): the connection is refused.
    let refused = client
        .get("http://127.0.0.1:9/v1")
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "{refused}");
    assert_eq!(used(&tracker), 0);
    // A timeout after the request left: it may have reached the provider.
    let late = client
        .get(&api.url)
        .header("x-echo-delay-ms", "1000")
        .send()
        .await
        .unwrap_err();
    assert!(late.is_timeout(), "{late}");
    assert_eq!(used(&tracker), 500);
}

#[tokio::test]
async fn only_the_counted_statuses_are_counted() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .counted_statuses("llm-tokens", [200..=299, 429..=429])
        .unwrap();
    let client = client(middleware);
    for status in ["200", "201", "400", "500", "503"] {
        client
            .get(&api.url)
            .header("x-echo-status", status)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(used(&tracker), 2);
    // A 429 is counted (and raises the count to the limit, as always).
    let error = client
        .get(&api.url)
        .header("x-echo-status", "429")
        .send()
        .await
        .unwrap_err();
    assert!(QuotaExceeded::find(&error).is_some());
    assert_eq!(used(&tracker), 10_000);
    assert_eq!(api.received(), 6);
}

#[tokio::test]
async fn priced_and_counted_statuses_together_and_a_settle_that_panics_keeps_the_estimate() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price("llm-tokens", 300, |status, headers| {
            if status == http::StatusCode::IM_A_TEAPOT {
                panic!("a settle closure that panics");
            }
            reported(status, headers)
        })
        .unwrap()
        .counted_statuses("llm-tokens", [200..=299, 418..=418])
        .unwrap();
    let client = client(middleware);
    let send = |status: &'static str, tokens: &'static str| {
        client
            .get(&api.url)
            .header("x-echo-status", status)
            .header("x-echo-x-tokens", tokens)
            .send()
    };
    send("200", "40").await.unwrap();
    send("500", "40").await.unwrap(); // not counted: given back
    send("418", "40").await.unwrap(); // the closure panics: the estimate stays
    assert_eq!(used(&tracker), 340);
}

/// The tower layer over a reqwest client: a connection error (a `reqwest::Error` that
/// `is_connect`, by default) gives the hold back; a classifier of its own decides otherwise.
#[tokio::test]
async fn the_layer_gives_a_hold_back_for_the_errors_its_classifier_names() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price("llm-tokens", 700, reported)
        .unwrap();
    let reqwest_client = reqwest::Client::new();
    let inner = tower::service_fn(move |request: http::Request<reqwest::Body>| {
        let client = reqwest_client.clone();
        async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            Ok::<_, reqwest::Error>(http::Response::from(response))
        }
    });
    let get = |url: &str, tokens: &str| {
        http::Request::get(url)
            .header("x-echo-x-tokens", tokens)
            .body(reqwest::Body::from(""))
            .unwrap()
    };
    let mut service = QuotaLayer::new(rules.clone()).layer(inner.clone());
    service
        .ready()
        .await
        .unwrap()
        .call(get(&api.url, "90"))
        .await
        .unwrap();
    assert_eq!(used(&tracker), 90);
    let error = service
        .ready()
        .await
        .unwrap()
        .call(get("http://127.0.0.1:9/v1", "90"))
        .await
        .unwrap_err();
    assert!(error.downcast_ref::<reqwest::Error>().is_some());
    assert_eq!(used(&tracker), 90);
    // A classifier that calls nothing a connection error: the hold stays.
    let mut strict = QuotaLayer::new(rules)
        .connect_errors(|_: &BoxError| false)
        .layer(inner);
    strict
        .ready()
        .await
        .unwrap()
        .call(get("http://127.0.0.1:9/v1", "90"))
        .await
        .unwrap_err();
    assert_eq!(used(&tracker), 790);
}

#[test]
fn the_example_runs_and_the_readme_shows_it_as_it_is() {
    priced::main().unwrap();
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/priced.rs");
    let marker = "<!-- quota-reqwest/examples/priced.rs -->\n```rust,ignore\n";
    let at = readme.find(marker).expect("the README shows the example") + marker.len();
    assert!(
        readme[at..].starts_with(example),
        "README.md differs from examples/priced.rs"
    );
}

/// OpenAI's per-unit headers, each mapped to its service: every counted response raises both
/// services to `limit - remaining`, in the limit whose window holds the refill time.
#[tokio::test]
async fn per_unit_headers_raise_each_service_they_are_mapped_to() {
    let api = Api::start().await;
    let requests = ServiceConfig::builder("openai-requests", 500, Period::Minute)
        .and_limit(quota_core::Limit::new(10_000, Period::Day))
        .build()
        .unwrap();
    let tokens = ServiceConfig::new("openai-tokens", 30_000, Period::Minute);
    let config = TrackerConfig::new([requests, tokens]);
    // 20 s into a minute.
    let tracker =
        Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW + 20_000)).unwrap());
    let client = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .route(|_| Some("openai-requests"))
            .unit_headers(
                "openai-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            )
            .unwrap()
            .unit_headers(
                "openai-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            )
            .unwrap(),
    );
    let limits = |name: &str| -> Vec<u64> {
        tracker
            .usage_limits(name)
            .unwrap()
            .iter()
            .map(|u| u.used)
            .collect()
    };
    client
        .get(&api.url)
        .header("x-echo-x-ratelimit-remaining-requests", "490")
        .header("x-echo-x-ratelimit-reset-requests", "120ms")
        .header("x-echo-x-ratelimit-remaining-tokens", "26000")
        .header("x-echo-x-ratelimit-reset-tokens", "8s")
        .send()
        .await
        .unwrap();
    // Requests: 1 counted, raised to 500 - 490 in the minute (120 ms fits in a minute).
    assert_eq!(limits("openai-requests"), vec![10, 1]);
    assert_eq!(limits("openai-tokens"), vec![4_000]);
    // A refill longer than a minute goes to the day's limit; a bad reset is ignored.
    client
        .get(&api.url)
        .header("x-echo-x-ratelimit-remaining-requests", "9000")
        .header("x-echo-x-ratelimit-reset-requests", "6m0s")
        .header("x-echo-x-ratelimit-remaining-tokens", "1")
        .header("x-echo-x-ratelimit-reset-tokens", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(limits("openai-requests"), vec![11, 1_000]);
    assert_eq!(limits("openai-tokens"), vec![4_000]);
    let bad =
        QuotaMiddleware::new(Arc::clone(&tracker)).unit_headers("openai-tokens", "no\nline", "x");
    assert_eq!(
        bad.unwrap_err().to_string(),
        "invalid config: service \"openai-tokens\": remaining must be an HTTP header name (got \"no\\nline\")"
    );
}
