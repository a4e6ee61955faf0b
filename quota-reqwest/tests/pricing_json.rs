//! Requests priced from their JSON body (`QuotaRules::price_json`) against a real HTTP server
//! on 127.0.0.1 that reports the tokens each request used as an LLM API does: in one JSON
//! document, in one split across many chunks, in Server-Sent Events, or not at all. The hold
//! is settled when the caller has read the body to its end, and keeps its estimate otherwise.

#[path = "support/api.rs"]
mod api;
#[path = "../examples/priced_json.rs"]
mod priced_json;

use api::Api;
use http_body_util::BodyExt as _;
use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::{BoxError, QuotaLayer, QuotaMiddleware, QuotaRules};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer as _, Service as _, ServiceExt as _};

const NOW: u64 = 1_718_000_000_000;
const USAGE: &str = "/usage/total_tokens";

fn tokens(limit: u64) -> Arc<QuotaTracker> {
    let llm = ServiceConfig::builder("llm-tokens", limit, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let config = TrackerConfig::new([llm]);
    Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap())
}

fn used(tracker: &QuotaTracker) -> u64 {
    tracker.usage("llm-tokens").unwrap().used
}

/// A client whose every request is held at `estimate` tokens and settled from its body.
fn client(
    tracker: &Arc<QuotaTracker>,
    estimate: u64,
    timeout: Option<Duration>,
) -> ClientWithMiddleware {
    let middleware = QuotaMiddleware::new(Arc::clone(tracker))
        .route(|_| Some("llm-tokens"))
        .price_json("llm-tokens", estimate, USAGE)
        .unwrap();
    let mut reqwest = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(timeout) = timeout {
        reqwest = reqwest.timeout(timeout);
    }
    ClientBuilder::new(reqwest.build().unwrap())
        .with(middleware)
        .build()
}

#[tokio::test]
async fn a_json_body_read_with_json_settles_at_the_usage_it_reports() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let client = client(&tracker, 2_000, None);
    let url = api.body_url("json", 1_234);
    let response = client.get(&url).send().await.unwrap();
    // Returned at once, held at the estimate until the body is read.
    assert_eq!(used(&tracker), 2_000);
    // The response is reqwest's as it came: URL, status, headers, connection info.
    assert_eq!(response.url().as_str(), url);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(response.remote_addr().is_some());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["total_tokens"], 1_234);
    assert_eq!(body["choices"][0]["text"], "a \"usage\": {}");
    assert_eq!(used(&tracker), 1_234);
    // More than the estimate: the excess is counted too.
    let response = client
        .get(api.body_url("json", 3_000))
        .send()
        .await
        .unwrap();
    response.bytes().await.unwrap();
    assert_eq!(used(&tracker), 4_234);
}

#[tokio::test]
async fn a_body_read_chunk_by_chunk_settles_at_its_end_and_passes_through_unchanged() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let client = client(&tracker, 2_000, None);
    let mut response = client
        .get(api.body_url("chunked", 98_765))
        .send()
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        // Not settled before the end.
        assert_eq!(used(&tracker), 2_000);
        read.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(chunks > 10, "{chunks} chunks: the number is not split");
    assert_eq!(used(&tracker), 98_765);
    let expected = r#"{"id":"chat-1","choices":[{"text":"a \"usage\": {}"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":98765}}"#;
    assert_eq!(String::from_utf8(read).unwrap(), expected);
}

#[tokio::test]
async fn an_event_stream_settles_at_the_usage_of_its_last_event_that_reports_one() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let client = client(&tracker, 2_000, None);
    let response = client.get(api.body_url("sse", 321)).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(used(&tracker), 321);
}

#[tokio::test]
async fn a_body_dropped_unread_or_read_partly_or_failing_or_silent_keeps_the_estimate() {
    let api = Api::start().await;
    let tracker = tokens(100_000);
    let client = client(&tracker, 2_000, Some(Duration::from_millis(500)));
    // Dropped unread.
    drop(client.get(api.body_url("json", 5)).send().await.unwrap());
    assert_eq!(used(&tracker), 2_000);
    // Read partly.
    let mut response = client.get(api.body_url("chunked", 5)).send().await.unwrap();
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    assert_eq!(used(&tracker), 4_000);
    // Read to the end, without usage.
    let text = client
        .get(api.body_url("missing", 5))
        .send()
        .await
        .unwrap()
        .text()
        .await;
    assert!(text.unwrap().contains("null"));
    assert_eq!(used(&tracker), 6_000);
    // Cut off midway: the body fails.
    let broken = client
        .get(api.body_url("broken", 5))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(broken.is_err());
    assert_eq!(used(&tracker), 8_000);
    // The server stops sending midway: the client's timeout fails the body.
    let hung = client
        .get(api.body_url("hang", 5))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(used(&tracker), 10_000);
    assert_eq!(api.received(), 5);
}

/// The provider's headers are taken in when the response arrives; a give-back after the floor
/// they raised is forfeited, so the count never falls below the provider's. A 429 fails the
/// call at once and keeps the estimate; a status not counted gives the hold back unread.
#[tokio::test]
async fn headers_come_before_the_body_and_a_429_or_an_uncounted_status_is_not_read() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price_json("llm-tokens", 2_000, USAGE)
        .unwrap()
        .counted_statuses("llm-tokens", [200..=299, 429..=429])
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let response = client
        .get(api.body_url("json", 100))
        .header("x-echo-x-ratelimit-remaining", "6000")
        .send()
        .await
        .unwrap();
    assert_eq!(used(&tracker), 4_000);
    response.bytes().await.unwrap();
    assert_eq!(used(&tracker), 4_000);
    // Without a raise the same settles at 100.
    let response = client.get(api.body_url("json", 100)).send().await.unwrap();
    assert_eq!(used(&tracker), 6_000);
    response.bytes().await.unwrap();
    assert_eq!(used(&tracker), 4_100);
    // Not counted: given back at once, whatever the body says.
    let response = client
        .get(api.body_url("json", 100))
        .header("x-echo-status", "500")
        .send()
        .await
        .unwrap();
    assert_eq!(used(&tracker), 4_100);
    response.bytes().await.unwrap();
    assert_eq!(used(&tracker), 4_100);
    let limited = client
        .get(api.body_url("json", 100))
        .header("x-echo-status", "429")
        .send()
        .await
        .unwrap_err();
    assert!(quota_reqwest::QuotaExceeded::find(&limited).is_some());
    assert_eq!(used(&tracker), 10_000);
}

/// OpenAI's case: the tokens service is priced from the body and raised by its per-unit
/// header; the settlement's give-back does not take it below the header's floor.
#[tokio::test]
async fn a_per_unit_floor_of_the_priced_service_holds_after_the_body_settles() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price_json("llm-tokens", 2_000, USAGE)
        .unwrap()
        .unit_headers(
            "llm-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        )
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let response = client
        .get(api.body_url("sse", 100))
        .header("x-echo-x-ratelimit-remaining-tokens", "7000")
        .header("x-echo-x-ratelimit-reset-tokens", "6m0s")
        .send()
        .await
        .unwrap();
    assert_eq!(used(&tracker), 3_000);
    response.text().await.unwrap();
    assert_eq!(used(&tracker), 3_000);
    // Below the estimate and the floor: settled at what the body says.
    let response = client.get(api.body_url("sse", 100)).send().await.unwrap();
    assert_eq!(used(&tracker), 5_000);
    response.text().await.unwrap();
    assert_eq!(used(&tracker), 3_100);
}

/// A body read after its window ended: the settlement corrects the ended window, and the
/// provider's floor of that window is not raised again in the new one.
#[tokio::test]
async fn a_body_read_after_its_window_ended_raises_nothing_in_the_new_one() {
    let api = Api::start().await;
    let clock = ManualClock::new(NOW);
    let config = TrackerConfig::new([ServiceConfig::new("llm-tokens", 10_000, Period::Day)]);
    let tracker = Arc::new(QuotaTracker::new_with_clock(config, clock.clone()).unwrap());
    let client = client(&tracker, 2_000, None);
    let response = client
        .get(api.body_url("json", 100))
        .header("x-echo-x-ratelimit-remaining", "6000")
        .send()
        .await
        .unwrap();
    assert_eq!(used(&tracker), 4_000);
    clock.advance(86_400_000);
    assert_eq!(used(&tracker), 0);
    response.bytes().await.unwrap();
    assert_eq!(used(&tracker), 0);
}

/// A provider's absurd count is its word: counted (saturating, never wrapping), no panic.
#[tokio::test]
async fn a_count_of_u64_max_is_counted_without_a_panic() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let client = client(&tracker, 2_000, None);
    let response = client
        .get(api.body_url("json", u64::MAX))
        .send()
        .await
        .unwrap();
    response.bytes().await.unwrap();
    assert_eq!(used(&tracker), u64::MAX);
    // The next request is refused before it is sent.
    assert!(client.get(api.body_url("json", 1)).send().await.is_err());
    assert_eq!(api.received(), 1);
}

#[tokio::test]
async fn a_huge_body_streams_through_and_settles() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let client = client(&tracker, 2_000, None);
    let mut response = client.get(api.body_url("huge", 777)).send().await.unwrap();
    let mut length = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        length += chunk.len();
    }
    assert!(length > 8 << 20, "{length}");
    assert_eq!(used(&tracker), 777);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_priced_requests_count_exactly_what_their_bodies_report() {
    let api = Arc::new(Api::start().await);
    let tracker = tokens(10_000_000);
    let client = client(&tracker, 5_000, None);
    let tasks: Vec<_> = (0..96u64)
        .map(|i| {
            let (api, client) = (Arc::clone(&api), client.clone());
            let actual = 1 + (i * 7_919) % 9_000;
            tokio::spawn(async move {
                let kind = ["json", "chunked", "sse"][(i % 3) as usize];
                let response = client.get(api.body_url(kind, actual)).send().await.unwrap();
                if i % 2 == 0 {
                    response.bytes().await.unwrap();
                } else {
                    let mut response = response;
                    while response.chunk().await.unwrap().is_some() {}
                }
                actual
            })
        })
        .collect();
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    assert_eq!(api.received(), 96);
    assert_eq!(used(&tracker), sum);
}

/// The tower layer over a reqwest client: a `reqwest::Body` is scanned as it is read; any
/// other body type keeps the estimate.
#[tokio::test]
async fn the_layer_settles_a_reqwest_body_and_keeps_the_estimate_for_other_bodies() {
    let api = Api::start().await;
    let tracker = tokens(10_000);
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .route(|_| Some("llm-tokens"))
        .price_json("llm-tokens", 700, USAGE)
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
    let get = |url: String| {
        http::Request::get(url)
            .body(reqwest::Body::from(""))
            .unwrap()
    };
    let mut service = QuotaLayer::new(rules.clone()).layer(inner);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get(api.body_url("chunked", 90)))
        .await
        .unwrap();
    assert_eq!(used(&tracker), 700);
    let text = reqwest::Response::from(response).text().await.unwrap();
    assert!(text.contains("\"total_tokens\":90"), "{text}");
    assert_eq!(used(&tracker), 90);
    // Boxed bodies (http-body-util's `BoxBody`, `UnsyncBoxBody`) are scanned in place too.
    let sync = |body: reqwest::Body| body.map_err(BoxError::from).boxed();
    assert_eq!(boxed(&api, &rules, 60, sync).await, (700, 60));
    let unsync = |body: reqwest::Body| body.map_err(BoxError::from).boxed_unsync();
    assert_eq!(boxed(&api, &rules, 61, unsync).await, (700, 61));
    // A body of another type cannot be wrapped: the estimate stays.
    let strings = tower::service_fn(|_: http::Request<String>| async {
        let body = r#"{"usage":{"total_tokens":5}}"#.to_owned();
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    });
    let mut service = QuotaLayer::new(rules).layer(strings);
    let request = http::Request::get("http://llm.example/v1")
        .body(String::new())
        .unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.into_body(), r#"{"usage":{"total_tokens":5}}"#);
    assert_eq!(used(&tracker), 90 + 60 + 61 + 700);
}

/// Through the layer over a reqwest client whose response bodies `boxing` turns into `B`: the
/// tokens counted once the response is back, and once its body is read (the differences).
async fn boxed<B>(
    api: &Api,
    rules: &QuotaRules,
    tokens: u64,
    boxing: fn(reqwest::Body) -> B,
) -> (u64, u64)
where
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static,
{
    let tracker = Arc::clone(rules.tracker());
    let client = reqwest::Client::new();
    let inner = tower::service_fn(move |request: http::Request<reqwest::Body>| {
        let client = client.clone();
        async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            Ok::<_, reqwest::Error>(http::Response::from(response).map(boxing))
        }
    });
    let before = used(&tracker);
    let request = http::Request::get(api.body_url("chunked", tokens))
        .body(reqwest::Body::from(""))
        .unwrap();
    let mut service = QuotaLayer::new(rules.clone()).layer(inner);
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let held = used(&tracker) - before;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        bytes.ends_with(format!(":{tokens}}}}}").as_bytes()),
        "{bytes:?}"
    );
    (held, used(&tracker) - before)
}

#[test]
fn a_pointer_that_is_not_one_is_refused() {
    let error = QuotaRules::new(tokens(10))
        .price_json("llm-tokens", 1, "usage.total_tokens")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid config: service \"llm-tokens\": pointer must be a JSON pointer: empty, or starting with `/` (got \"usage.total_tokens\")"
    );
    let error = QuotaRules::new(tokens(10)).price_json("llm-tokens", 0, USAGE);
    assert!(error.is_err());
}

#[test]
fn the_example_runs_and_the_readme_shows_it_as_it_is() {
    priced_json::main().unwrap();
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/priced_json.rs");
    let marker = "<!-- quota-reqwest/examples/priced_json.rs -->\n```rust,ignore\n";
    let at = readme.find(marker).expect("the README shows the example") + marker.len();
    assert!(
        readme[at..].starts_with(example),
        "README.md differs from examples/priced_json.rs"
    );
}
