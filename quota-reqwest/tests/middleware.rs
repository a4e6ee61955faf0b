//! The middleware and the layer against a real HTTP server on 127.0.0.1 that counts the
//! requests it receives, and answers with the status and headers each request asks for
//! (`x-echo-status: 429`, `x-echo-retry-after: 30`: a header `x-echo-NAME` comes back as
//! `NAME`; `x-echo-delay-ms: 500` answers half a second late).

#[path = "support/api.rs"]
mod api;
#[path = "../examples/reqwest_quota.rs"]
mod example;

use api::Api;
use axum::http::HeaderValue;
use quota_core::{
    Admission, DenyReason, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker,
    ServiceConfig, TrackerConfig,
};
use quota_reqwest::{
    BoxError, Counting, Exceeded, QuotaExceeded, QuotaLayer, QuotaMiddleware, QuotaRules,
    RoutePanicked,
};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service as _, ServiceExt as _};

/// 2024-06-10 06:13:20 UTC.
const NOW: u64 = 1_718_000_000_000;
const DAY: u64 = 86_400_000;
/// The end of NOW's day window.
const DAY_END: u64 = NOW / DAY * DAY + DAY;

fn service(limit: u64, critical: f64) -> ServiceConfig {
    ServiceConfig::builder("api", limit, Period::Day)
        .warn_threshold(critical.min(0.5))
        .critical_threshold(critical)
        // No reserve: normal admission stops at the Critical level alone.
        .reserve_fraction(0.0)
        .build()
        .unwrap()
}

fn tracker(limit: u64, critical: f64) -> Arc<QuotaTracker> {
    let config = TrackerConfig::new([service(limit, critical)]);
    Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap())
}

fn client(middleware: QuotaMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

fn exceeded(error: &reqwest_middleware::Error) -> QuotaExceeded {
    QuotaExceeded::find(error)
        .unwrap_or_else(|| panic!("not a quota error: {error}"))
        .clone()
}

/// 8 tasks send `per_task` requests each; returns (answered, denied).
async fn eight_tasks(client: &ClientWithMiddleware, url: &str, per_task: u64) -> (u64, u64) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let (mut answered, mut denied) = (0, 0);
                for _ in 0..per_task {
                    match client.get(&url).send().await {
                        Ok(response) => {
                            assert_eq!(response.status(), 200);
                            answered += 1;
                        }
                        Err(error) => {
                            let error = exceeded(&error);
                            assert_eq!(error.service, "api");
                            assert_eq!(error.reason, Exceeded::Denied(DenyReason::Limit));
                            assert_eq!(error.limit, 50);
                            assert_eq!(error.used, 50);
                            assert_eq!(
                                error.retry_after,
                                Some(Duration::from_millis(DAY_END - NOW))
                            );
                            denied += 1;
                        }
                    }
                }
                (answered, denied)
            })
        })
        .collect();
    let (mut answered, mut denied) = (0, 0);
    for task in tasks {
        let (a, d) = task.await.unwrap();
        answered += a;
        denied += d;
    }
    (answered, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_eight_tasks_the_server_receives_exactly_what_the_tracker_admitted() {
    let api = Api::start().await;
    let tracker = tracker(50, 1.0);
    let client = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .host("127.0.0.1", "api")
            .unwrap(),
    );
    let (answered, denied) = eight_tasks(&client, &api.url, 20).await;
    assert_eq!((answered, denied), (50, 110));
    assert_eq!(api.received(), 50, "denied requests were never sent");
    assert_eq!(tracker.usage("api").unwrap().used, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_critical_level_stops_sending_before_the_limit() {
    let api = Api::start().await;
    let tracker = tracker(50, 0.8);
    let client = client(QuotaMiddleware::new(Arc::clone(&tracker)).route(|_| Some("api")));
    for _ in 0..40 {
        client.get(&api.url).send().await.unwrap();
    }
    let error = exceeded(&client.get(&api.url).send().await.unwrap_err());
    assert_eq!(error.reason, Exceeded::Denied(DenyReason::Critical));
    assert_eq!((error.used, error.limit), (40, 50));
    assert_eq!(
        error.to_string(),
        "quota of \"api\" exceeded: 40 of 50 calls used, not sent (critical level); \
         retry after 64000.000 s"
    );
    assert_eq!(api.received(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_after_sends_everything_and_counts_every_response() {
    let api = Api::start().await;
    let tracker = tracker(50, 1.0);
    let client = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .host("127.0.0.1", "api")
            .unwrap()
            .counting("api", Counting::RecordAfter)
            .unwrap(),
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), api.url.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    client.get(&url).send().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(api.received(), 80);
    assert_eq!(
        tracker.usage("api").unwrap().used,
        80,
        "record_call always records"
    );
}

#[tokio::test]
async fn requests_no_rule_names_are_sent_uncounted_and_unknown_names_are_errors() {
    let api = Api::start().await;
    let tracker = tracker(50, 1.0);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .host("api.example.invalid", "api")
        .unwrap()
        .route(|request| request.path.starts_with("/v2").then_some("nope"));
    assert!(matches!(
        QuotaMiddleware::new(Arc::clone(&tracker)).host("h", "missing"),
        Err(QuotaError::UnknownService(name)) if name == "missing"
    ));
    let client = client(middleware);
    client.get(&api.url).send().await.unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 0);
    assert_eq!(api.received(), 1);
    let v2 = api.url.replace("/v1/", "/v2/");
    let error = client.get(&v2).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("{error}");
    };
    assert!(matches!(
        inner.downcast_ref::<QuotaError>(),
        Some(QuotaError::UnknownService(name)) if name == "nope"
    ));
    assert_eq!(api.received(), 1, "not sent");
}

#[tokio::test]
async fn the_first_added_rule_that_names_a_service_wins() {
    let api = Api::start().await;
    let mail_path = api.url.replace("/v1/items", "/mail");
    let config = TrackerConfig::new([
        service(100, 1.0),
        ServiceConfig::new("mail", 100, Period::Day),
    ]);
    let tracker = Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap());
    let route = |request: &quota_reqwest::RequestInfo<'_>| {
        request.path.starts_with("/mail").then_some("mail")
    };
    // The host first: it takes /mail too (the README's warning).
    let host_first = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .host("127.0.0.1", "api")
            .unwrap()
            .route(route),
    );
    host_first.get(&mail_path).send().await.unwrap();
    let used = |name| tracker.usage(name).unwrap().used;
    assert_eq!((used("api"), used("mail")), (1, 0));
    // The route first: /mail counts against mail, the rest against the host's service.
    let route_first = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .route(route)
            .host("127.0.0.1", "api")
            .unwrap(),
    );
    route_first.get(&mail_path).send().await.unwrap();
    route_first.get(&api.url).send().await.unwrap();
    assert_eq!((used("api"), used("mail")), (2, 1));
    assert_eq!(api.received(), 3);
}

/// A client counting every request to the API against `api` (limit 100).
fn counted(tracker: &Arc<QuotaTracker>, counting: Counting) -> ClientWithMiddleware {
    client(
        QuotaMiddleware::new(Arc::clone(tracker))
            .route(|_| Some("api"))
            .counting("api", counting)
            .unwrap(),
    )
}

async fn send(
    client: &ClientWithMiddleware,
    url: &str,
    echo: &[(&str, &str)],
) -> Result<(), QuotaExceeded> {
    let mut request = client.get(url);
    for (name, value) in echo {
        request = request.header(format!("x-echo-{name}"), *value);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) => Err(exceeded(&error)),
    }
}

#[tokio::test]
async fn remaining_headers_raise_used_as_a_floor_in_our_window_only() {
    let api = Api::start().await;
    for counting in [Counting::TryBefore, Counting::RecordAfter] {
        let tracker = tracker(100, 0.9);
        let client = counted(&tracker, counting);
        let used = || tracker.usage("api").unwrap().used;
        let until_end = ((DAY_END - NOW) / 1000).to_string();
        // Seconds until our window's end: ours. 30 remain of 100, so 70 used.
        send(
            &client,
            &api.url,
            &[
                ("x-ratelimit-remaining", "30"),
                ("x-ratelimit-reset", &until_end),
            ],
        )
        .await
        .unwrap();
        assert_eq!(used(), 70, "{counting:?}");
        // The same count again: a floor, not added (the provider counted our calls too).
        send(
            &client,
            &api.url,
            &[
                ("x-ratelimit-remaining", "29"),
                ("x-ratelimit-reset", &until_end),
            ],
        )
        .await
        .unwrap();
        assert_eq!(used(), 71);
        // Epoch seconds, rounded up past our end by under the slack: still ours.
        let epoch = (DAY_END / 1000 + 1).to_string();
        send(
            &client,
            &api.url,
            &[
                ("x-ratelimit-remaining", "25"),
                ("x-ratelimit-reset", &epoch),
            ],
        )
        .await
        .unwrap();
        assert_eq!(used(), 75);
        // A reset in tomorrow's window (epoch ms, or seconds from now): not our window.
        let tomorrow = (DAY_END + 3_600_000).to_string();
        send(
            &client,
            &api.url,
            &[
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset", &tomorrow),
            ],
        )
        .await
        .unwrap();
        let past_end = ((DAY_END - NOW) / 1000 + 3600).to_string();
        send(
            &client,
            &api.url,
            &[("ratelimit-remaining", "1"), ("ratelimit-reset", &past_end)],
        )
        .await
        .unwrap();
        assert_eq!(used(), 77, "ignored; only our own two calls counted");
        // The IETF family, no reset: taken as our window's.
        send(&client, &api.url, &[("ratelimit-remaining", "20")])
            .await
            .unwrap();
        assert_eq!(used(), 80);
        // Malformed values are ignored, never a failure.
        for bad in ["-1", "1.5", "lots", "", "18446744073709551616"] {
            send(
                &client,
                &api.url,
                &[("x-ratelimit-remaining", bad), ("ratelimit-remaining", bad)],
            )
            .await
            .unwrap();
        }
        send(
            &client,
            &api.url,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "never"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(used(), 86, "six calls, no raise");
        // More remaining than our limit: nothing to raise.
        send(&client, &api.url, &[("x-ratelimit-remaining", "1000")])
            .await
            .unwrap();
        assert_eq!(used(), 87);
    }
}

#[tokio::test]
async fn require_reset_ignores_counts_without_a_reset() {
    let api = Api::start().await;
    let tracker = tracker(100, 0.9);
    let client = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .route(|_| Some("api"))
            .require_reset(true)
            .reset_slack(Duration::ZERO),
    );
    send(&client, &api.url, &[("ratelimit-remaining", "10")])
        .await
        .unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 1);
    // With no slack a reset a second past our end is not ours.
    let epoch = (DAY_END / 1000 + 1).to_string();
    send(
        &client,
        &api.url,
        &[
            ("x-ratelimit-remaining", "10"),
            ("x-ratelimit-reset", &epoch),
        ],
    )
    .await
    .unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 2);
}

#[tokio::test]
async fn a_429_raises_used_to_the_limit_and_reports_retry_after_as_a_delay() {
    let api = Api::start().await;
    let tracker = tracker(100, 0.9);
    let client = counted(&tracker, Counting::TryBefore);
    send(&client, &api.url, &[]).await.unwrap();
    let error = send(
        &client,
        &api.url,
        &[("status", "429"), ("retry-after", "30")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        QuotaExceeded {
            service: "api".into(),
            used: 100,
            limit: 100,
            retry_after: Some(Duration::from_secs(30)),
            reason: Exceeded::TooManyRequests,
        }
    );
    assert_eq!(
        error.to_string(),
        "\"api\" answered 429 Too Many Requests: 100 of 100 calls used; retry after 30.000 s"
    );
    assert_eq!(api.received(), 2);
    // Without Retry-After, the delay is the time until the provider's reset.
    let other = self::tracker(100, 0.9);
    let error = send(
        &counted(&other, Counting::RecordAfter),
        &api.url,
        &[("status", "429"), ("ratelimit-reset", "7")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (error.used, error.retry_after),
        (100, Some(Duration::from_secs(7)))
    );
    assert_eq!(api.received(), 3);
    // Now denied before sending.
    let denied = send(&client, &api.url, &[]).await.unwrap_err();
    assert_eq!(denied.reason, Exceeded::Denied(DenyReason::Limit));
    assert_eq!(api.received(), 3);
}

#[tokio::test]
async fn a_429_for_another_window_is_reported_but_counts_nothing() {
    let api = Api::start().await;
    let tracker = tracker(100, 0.9);
    let client = counted(&tracker, Counting::RecordAfter);
    // The 429's count resets tomorrow, past our window: it is reported, and `used` only
    // counts the call.
    let error = send(
        &client,
        &api.url,
        &[
            ("status", "429"),
            (
                "ratelimit-reset",
                &((DAY_END - NOW) / 1000 + 60).to_string(),
            ),
            ("retry-after", "Mon, 10 Jun 2024 06:14:20 GMT"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(error.reason, Exceeded::TooManyRequests);
    assert_eq!(error.used, 1);
    assert_eq!(
        error.retry_after,
        Some(Duration::from_secs(60)),
        "an HTTP-date, 60 s on"
    );
    assert_eq!(tracker.usage("api").unwrap().used, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trackers_sharing_a_store_admit_exactly_the_limit_between_them() {
    // Two processes' worth of clients, each with its own tracker, on one store (Exact
    // admission): the server receives exactly the limit.
    let api = Api::start().await;
    let store = MemoryStore::new();
    let config = TrackerConfig::new([ServiceConfig::builder("api", 50, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Exact)
        .build()
        .unwrap()]);
    let make = || {
        Arc::new(
            QuotaTracker::builder(config.clone())
                .clock(ManualClock::new(NOW))
                .store(store.clone())
                .build()
                .unwrap(),
        )
    };
    let (a, b) = (make(), make());
    let client_a = counted(&a, Counting::TryBefore);
    let client_b = counted(&b, Counting::TryBefore);
    let (run_a, run_b) = tokio::join!(
        eight_tasks(&client_a, &api.url, 10),
        eight_tasks(&client_b, &api.url, 10)
    );
    assert_eq!(run_a.0 + run_b.0, 50);
    assert_eq!(run_a.1 + run_b.1, 110);
    assert_eq!(api.received(), 50);
}

// ---------------------------------------------------------------------------------------------
// The tower layer: around a service that sends through a plain reqwest client.

type Inner = tower::util::BoxCloneService<
    http::Request<reqwest::Body>,
    http::Response<reqwest::Body>,
    BoxError,
>;

fn sender() -> Inner {
    let client = reqwest::Client::new();
    Inner::new(tower::service_fn(
        move |request: http::Request<reqwest::Body>| {
            let client = client.clone();
            async move {
                let request = reqwest::Request::try_from(request)?;
                let response = client.execute(request).await?;
                Ok::<_, BoxError>(http::Response::from(response))
            }
        },
    ))
}

fn get(url: &str, echo: &[(&str, &str)]) -> http::Request<reqwest::Body> {
    let mut request = http::Request::get(url);
    for (name, value) in echo {
        request = request.header(format!("x-echo-{name}"), *value);
    }
    request.body(reqwest::Body::from("")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_layer_admits_exactly_the_limit_across_eight_tasks() {
    let api = Api::start().await;
    let tracker = tracker(50, 1.0);
    let layer = QuotaLayer::new(
        QuotaRules::new(Arc::clone(&tracker))
            .host("127.0.0.1", "api")
            .unwrap(),
    );
    let service = tower::ServiceBuilder::new().layer(layer).service(sender());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (mut service, url) = (service.clone(), api.url.clone());
            tokio::spawn(async move {
                let (mut answered, mut denied) = (0u64, 0u64);
                for _ in 0..20 {
                    match service.ready().await.unwrap().call(get(&url, &[])).await {
                        Ok(_) => answered += 1,
                        Err(error) => {
                            let error = QuotaExceeded::find_boxed(&error).unwrap();
                            assert_eq!(error.reason, Exceeded::Denied(DenyReason::Limit));
                            denied += 1;
                        }
                    }
                }
                (answered, denied)
            })
        })
        .collect();
    let (mut answered, mut denied) = (0, 0);
    for task in tasks {
        let (a, d) = task.await.unwrap();
        answered += a;
        denied += d;
    }
    assert_eq!((answered, denied), (50, 110));
    assert_eq!(api.received(), 50);
}

#[tokio::test]
async fn the_layer_takes_in_headers_and_429s_like_the_middleware() {
    let api = Api::start().await;
    let tracker = tracker(100, 0.9);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .host("127.0.0.1", "api")
        .unwrap();
    let mut service = tower::ServiceBuilder::new()
        .layer(QuotaLayer::from(&middleware))
        .service(sender());
    service
        .ready()
        .await
        .unwrap()
        .call(get(&api.url, &[("ratelimit-remaining", "40")]))
        .await
        .unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 60);
    let error = service
        .ready()
        .await
        .unwrap()
        .call(get(&api.url, &[("status", "429"), ("retry-after", "5")]))
        .await
        .unwrap_err();
    let error = QuotaExceeded::find_boxed(&error).unwrap();
    assert_eq!(error.reason, Exceeded::TooManyRequests);
    assert_eq!(
        (error.used, error.retry_after),
        (100, Some(Duration::from_secs(5)))
    );
    // The host may come from the Host header when the URI has none.
    let mut no_authority = get("/v1/items", &[]);
    no_authority
        .headers_mut()
        .insert(http::header::HOST, HeaderValue::from_static("127.0.0.1:9"));
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .host("127.0.0.1", "api")
        .unwrap();
    let mut refusing = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(rules))
        .service(tower::service_fn(|_: http::Request<reqwest::Body>| async {
            Err::<http::Response<reqwest::Body>, BoxError>("sent".into())
        }));
    let error = refusing
        .ready()
        .await
        .unwrap()
        .call(no_authority)
        .await
        .unwrap_err();
    assert_eq!(
        QuotaExceeded::find_boxed(&error).unwrap().reason,
        Exceeded::Denied(DenyReason::Limit)
    );
}

// ---------------------------------------------------------------------------------------------
// The example and the README.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_runs_on_the_repository_config() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../quota.toml");
    // finnhub: 60 a minute, Critical from 48. 8 x 10 = 80 tries.
    let report = example::run(config, Some("finnhub"), 10).await.unwrap();
    assert_eq!(report.sent, report.received);
    assert_eq!(report.sent + report.denied, 80);
    // 48 in one minute; more only if the run crossed into the next minute.
    assert!(report.sent >= 48, "{report:?}");
    let error = example::run("/nonexistent/quota.toml", None, 1)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/quota.toml"),
        "{error}"
    );
}

#[test]
fn the_readme_shows_the_example_as_it_is() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/reqwest_quota.rs");
    let code = readme
        .split("<!-- quota-reqwest/examples/reqwest_quota.rs -->\n```rust,ignore\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("README shows the example");
    assert_eq!(
        format!("{code}\n"),
        example,
        "README and examples/reqwest_quota.rs differ"
    );
}

#[tokio::test]
async fn a_denial_by_the_reserve_says_when_to_retry_like_one_at_the_critical_level() {
    // Normal calls stop at limit - reserve (90 of 100): until the window resets, like a
    // denial at the Critical level, so the wait is known.
    let api = Api::start().await;
    let config = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.1)
        .build()
        .unwrap()]);
    let tracker = Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap());
    tracker.record_call("api", 90).unwrap();
    let client = counted(&tracker, Counting::TryBefore);
    let error = send(&client, &api.url, &[]).await.unwrap_err();
    assert_eq!(error.reason, Exceeded::Denied(DenyReason::Reserve));
    assert_eq!(
        error.retry_after,
        Some(Duration::from_millis(DAY_END - NOW))
    );
    assert_eq!(api.received(), 0);
}

#[tokio::test]
async fn the_layer_reads_a_host_header_without_a_port_including_an_ipv6_literal() {
    // Server side: the URI has no host, the Host header names it, with or without a port.
    let tracker = tracker(100, 1.0);
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .host("[::1]", "api")
        .unwrap()
        .host("api.example", "api")
        .unwrap();
    let inner = tower::service_fn(|_: http::Request<String>| async {
        Ok::<_, BoxError>(http::Response::new(String::new()))
    });
    let mut service = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(rules))
        .service(inner);
    for host in ["[::1]", "[::1]:8080", "api.example", "api.example:443"] {
        let request = http::Request::get("/v1/items")
            .header("host", host)
            .body(String::new())
            .unwrap();
        service.ready().await.unwrap().call(request).await.unwrap();
    }
    assert_eq!(tracker.usage("api").unwrap().used, 4);
}

#[tokio::test]
async fn a_record_after_request_given_up_in_flight_is_still_counted() {
    // The caller's timeout drops the request's future after it was sent: the request may
    // have reached the provider, as after a transport error, so it is counted.
    let api = Api::start().await;
    let tracker = tracker(100, 1.0);
    let client = counted(&tracker, Counting::RecordAfter);
    let request = client
        .get(&api.url)
        .header("x-echo-delay-ms", "2000")
        .send();
    assert!(tokio::time::timeout(Duration::from_millis(300), request)
        .await
        .is_err());
    assert_eq!(api.received(), 1, "it was sent");
    assert_eq!(tracker.usage("api").unwrap().used, 1);
    // Through the layer too.
    let mut service = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(
            QuotaRules::new(Arc::clone(&tracker))
                .route(|_| Some("api"))
                .counting("api", Counting::RecordAfter)
                .unwrap(),
        ))
        .service(sender());
    let call = service
        .ready()
        .await
        .unwrap()
        .call(get(&api.url, &[("delay-ms", "2000")]));
    assert!(tokio::time::timeout(Duration::from_millis(300), call)
        .await
        .is_err());
    assert_eq!(api.received(), 2);
    assert_eq!(tracker.usage("api").unwrap().used, 2);
}

#[tokio::test]
async fn a_host_with_a_trailing_dot_or_other_case_matches_its_host_rule() {
    // `API.Example.com.` is the fully qualified form of `api.example.com`: the same host.
    let api = Api::start().await;
    let addr: std::net::SocketAddr = api.url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let tracker = tracker(100, 1.0);
    let reqwest = reqwest::Client::builder()
        .resolve("api.example.com.", addr)
        .resolve("api.example.com", addr)
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest)
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .host("api.example.com", "api")
                .unwrap(),
        )
        .build();
    let port = addr.port();
    for host in ["api.example.com.", "API.Example.COM.", "api.example.com"] {
        client
            .get(format!("http://{host}:{port}/v1/items"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(api.received(), 3);
    assert_eq!(tracker.usage("api").unwrap().used, 3, "every one counted");
    // A rule written with the dot matches both forms; one dot only, and never a suffix.
    let rules = QuotaRules::new(Arc::clone(&tracker))
        .host("api.example.com.", "api")
        .unwrap();
    let mut service = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(rules))
        .service(tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, BoxError>(http::Response::new(String::new()))
        }));
    for host in [
        "api.example.com",
        "API.EXAMPLE.COM.:443",
        "api.example.com..",
        "xapi.example.com",
        "api.example.co",
    ] {
        let request = http::Request::get("/v1/items")
            .header("host", host)
            .body(String::new())
            .unwrap();
        service.ready().await.unwrap().call(request).await.unwrap();
    }
    assert_eq!(tracker.usage("api").unwrap().used, 5, "two more, not five");
}

#[tokio::test]
async fn a_panicking_route_fails_the_request_with_a_typed_error_and_sends_nothing() {
    let api = Api::start().await;
    let tracker = tracker(100, 1.0);
    let client = client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .route(|request| {
                if request.path.starts_with("/v2") {
                    panic!("route rule broke on {}", request.path);
                }
                if request.path.starts_with("/v3") {
                    std::panic::panic_any(42_u8);
                }
                None::<&str>
            })
            .route(|_| Some("api")),
    );
    let v2 = api.url.replace("/v1/", "/v2/");
    let error = client.get(&v2).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("{error}");
    };
    assert_eq!(
        inner.downcast_ref::<RoutePanicked>(),
        Some(&RoutePanicked {
            message: "route rule broke on /v2/items".into()
        })
    );
    assert_eq!(
        error.to_string(),
        "a quota route rule panicked (route rule broke on /v2/items): the request was not sent"
    );
    let v3 = api.url.replace("/v1/", "/v3/");
    let error = client.get(&v3).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("{error}");
    };
    assert_eq!(
        inner.downcast_ref::<RoutePanicked>().unwrap().message,
        "Box<dyn Any>"
    );
    assert_eq!(api.received(), 0, "not sent");
    assert_eq!(tracker.usage("api").unwrap().used, 0, "not counted");
    // The rules still work for the requests they do not panic on.
    client.get(&api.url).send().await.unwrap();
    assert_eq!((api.received(), tracker.usage("api").unwrap().used), (1, 1));
    // Through the layer: the same typed error, the inner service never called.
    let mut service = tower::ServiceBuilder::new()
        .layer(QuotaLayer::new(
            QuotaRules::new(Arc::clone(&tracker))
                .route(|_| -> Option<String> { panic!("layer route broke") }),
        ))
        .service(sender());
    let error = service
        .ready()
        .await
        .unwrap()
        .call(get(&api.url, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<RoutePanicked>().unwrap().message,
        "layer route broke"
    );
    assert_eq!((api.received(), tracker.usage("api").unwrap().used), (1, 1));
}

#[tokio::test]
async fn a_429_or_a_count_whose_reset_does_not_parse_raises_nothing() {
    // The window of the provider's count is unknown: neither is applied to ours. The 429 still
    // fails the call with its Retry-After.
    let api = Api::start().await;
    for counting in [Counting::TryBefore, Counting::RecordAfter] {
        let tracker = tracker(100, 1.0);
        let client = counted(&tracker, counting);
        for reset in ["x-ratelimit-reset", "ratelimit-reset"] {
            let error = send(
                &client,
                &api.url,
                &[("status", "429"), (reset, "soon"), ("retry-after", "30")],
            )
            .await
            .unwrap_err();
            let used = tracker.usage("api").unwrap().used;
            assert_eq!(used, if reset == "ratelimit-reset" { 2 } else { 1 });
            assert_eq!(
                error,
                QuotaExceeded {
                    service: "api".into(),
                    used,
                    limit: 100,
                    retry_after: Some(Duration::from_secs(30)),
                    reason: Exceeded::TooManyRequests,
                },
                "{counting:?} {reset}"
            );
        }
        send(
            &client,
            &api.url,
            &[("ratelimit-remaining", "0"), ("ratelimit-reset", "soon")],
        )
        .await
        .unwrap();
        assert_eq!(tracker.usage("api").unwrap().used, 3, "{counting:?}");
        // Without Retry-After and with no usable reset, the wait is unknown.
        let error = send(
            &client,
            &api.url,
            &[("status", "429"), ("x-ratelimit-reset", "-5")],
        )
        .await
        .unwrap_err();
        assert_eq!((error.used, error.retry_after), (4, None));
        // One family's reset that parses still tells the window.
        let error = send(
            &client,
            &api.url,
            &[
                ("status", "429"),
                ("x-ratelimit-reset", "soon"),
                ("ratelimit-reset", "60"),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(
            (error.used, error.retry_after),
            (100, Some(Duration::from_secs(60)))
        );
    }
}

#[tokio::test]
async fn a_fractional_epoch_seconds_reset_is_an_instant_not_a_delay() {
    let api = Api::start().await;
    let tracker = tracker(100, 1.0);
    let client = counted(&tracker, Counting::TryBefore);
    // Half a second before our window's end, in epoch seconds with a fraction: ours.
    let end = format!("{}.5", DAY_END / 1000 - 1);
    send(
        &client,
        &api.url,
        &[("x-ratelimit-remaining", "30"), ("x-ratelimit-reset", &end)],
    )
    .await
    .unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 70);
    // And a 429's wait is the time until that instant.
    let error = send(
        &client,
        &api.url,
        &[("status", "429"), ("x-ratelimit-reset", &end)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (error.used, error.retry_after),
        (100, Some(Duration::from_millis(DAY_END - 500 - NOW)))
    );
}

/// The end of NOW's hour window (07:00 UTC).
const HOUR_END: u64 = NOW / 3_600_000 * 3_600_000 + 3_600_000;

/// Tiingo's shape: 50 calls an hour and 1,000 a day, Critical at 90% of each, no reserve.
fn hour_and_day() -> ServiceConfig {
    ServiceConfig::builder("api", 50, Period::Hour)
        .and_limit(Limit::new(1_000, Period::Day))
        .critical_threshold(0.9)
        .reserve_fraction(0.0)
        .build()
        .unwrap()
}

/// Each limit's `used`, the hour's then the day's.
fn used_per_limit(tracker: &QuotaTracker) -> Vec<u64> {
    let limits = tracker.usage_limits("api").unwrap();
    limits.iter().map(|usage| usage.used).collect()
}

#[tokio::test]
async fn with_two_limits_a_count_raises_the_limit_whose_window_holds_its_reset() {
    let api = Api::start().await;
    let tracker = Arc::new(
        QuotaTracker::new_with_clock(TrackerConfig::new([hour_and_day()]), ManualClock::new(NOW))
            .unwrap(),
    );
    let client = counted(&tracker, Counting::TryBefore);
    let (url, x_remaining, x_reset) = (&api.url, "x-ratelimit-remaining", "x-ratelimit-reset");
    // 400 left until the day's end (epoch seconds): 600 of the day's 1,000 used (not
    // 50 - 400 of the hour's, the binding limit's).
    let day_end = (DAY_END / 1000).to_string();
    send(&client, url, &[(x_remaining, "400"), (x_reset, &day_end)])
        .await
        .unwrap();
    assert_eq!(used_per_limit(&tracker), [1, 600]);
    // 30 left until the hour's end (seconds from now): 20 of the hour's 50.
    let hour_end = ((HOUR_END - NOW) / 1000).to_string();
    send(&client, url, &[(x_remaining, "30"), (x_reset, &hour_end)])
        .await
        .unwrap();
    assert_eq!(used_per_limit(&tracker), [20, 601]);
    // A second past the hour's end: within the slack, still the hour's (not the day's,
    // whose window holds that instant).
    let past_hour = (HOUR_END / 1000 + 1).to_string();
    send(&client, url, &[(x_remaining, "25"), (x_reset, &past_hour)])
        .await
        .unwrap();
    assert_eq!(used_per_limit(&tracker), [25, 602]);
    // A second past the day's end: the day's.
    let past_day = (DAY_END / 1000 + 1).to_string();
    send(&client, url, &[(x_remaining, "300"), (x_reset, &past_day)])
        .await
        .unwrap();
    assert_eq!(used_per_limit(&tracker), [26, 700]);
    // An hour past the day's end (the IETF family, seconds from now): no window of ours.
    let tomorrow = ((DAY_END + 3_600_000 - NOW) / 1000).to_string();
    send(
        &client,
        url,
        &[("ratelimit-remaining", "0"), ("ratelimit-reset", &tomorrow)],
    )
    .await
    .unwrap();
    assert_eq!(used_per_limit(&tracker), [27, 701]);
    // No reset header: the shortest window's count.
    send(&client, url, &[("ratelimit-remaining", "10")])
        .await
        .unwrap();
    assert_eq!(used_per_limit(&tracker), [40, 702]);
    // A 429 without a reset raises the shortest window's limit to its limit, and names it.
    let error = send(&client, url, &[("status", "429"), ("retry-after", "30")])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        QuotaExceeded {
            service: "api".into(),
            used: 50,
            limit: 50,
            retry_after: Some(Duration::from_secs(30)),
            reason: Exceeded::TooManyRequests,
        }
    );
    assert_eq!(used_per_limit(&tracker), [50, 703]);
    // Now the hour denies before sending, until the hour's end.
    let denied = send(&client, url, &[]).await.unwrap_err();
    assert_eq!(
        (denied.reason, denied.used, denied.limit, denied.retry_after),
        (
            Exceeded::Denied(DenyReason::Limit),
            50,
            50,
            Some(Duration::from_millis(HOUR_END - NOW))
        )
    );
    assert_eq!(api.received(), 7);
}

#[tokio::test]
async fn with_two_limits_a_429_at_the_day_end_exhausts_the_day_and_waits_for_it() {
    let api = Api::start().await;
    let tracker = Arc::new(
        QuotaTracker::new_with_clock(TrackerConfig::new([hour_and_day()]), ManualClock::new(NOW))
            .unwrap(),
    );
    let client = counted(&tracker, Counting::RecordAfter);
    let day_end = (DAY_END / 1000).to_string();
    let error = send(
        &client,
        &api.url,
        &[("status", "429"), ("x-ratelimit-reset", &day_end)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error,
        QuotaExceeded {
            service: "api".into(),
            used: 1_000,
            limit: 1_000,
            retry_after: Some(Duration::from_millis(DAY_END - NOW)),
            reason: Exceeded::TooManyRequests,
        }
    );
    assert_eq!(used_per_limit(&tracker), [1, 1_000]);
}

#[tokio::test]
async fn with_two_limits_a_denial_by_the_day_says_to_wait_for_the_day_not_the_hour() {
    let api = Api::start().await;
    let tracker = Arc::new(
        QuotaTracker::new_with_clock(TrackerConfig::new([hour_and_day()]), ManualClock::new(NOW))
            .unwrap(),
    );
    let client = counted(&tracker, Counting::TryBefore);
    // 100 left of the day: 900 used, the day's Critical level; the hour (1 of 50) is the
    // binding limit, with less headroom than the day's 100.
    let day_end = (DAY_END / 1000).to_string();
    send(
        &client,
        &api.url,
        &[
            ("x-ratelimit-remaining", "100"),
            ("x-ratelimit-reset", &day_end),
        ],
    )
    .await
    .unwrap();
    assert_eq!(used_per_limit(&tracker), [1, 900]);
    assert_eq!(tracker.usage("api").unwrap().limit, 50, "the binding limit");
    let denied = send(&client, &api.url, &[]).await.unwrap_err();
    assert_eq!(
        denied,
        QuotaExceeded {
            service: "api".into(),
            used: 900,
            limit: 1_000,
            retry_after: Some(Duration::from_millis(DAY_END - NOW)),
            reason: Exceeded::Denied(DenyReason::Critical),
        }
    );
    assert_eq!(api.received(), 1);
}

#[tokio::test]
async fn a_limit_added_by_a_reconfigure_takes_counts_from_the_next_response() {
    let api = Api::start().await;
    let hour_only = ServiceConfig::builder("api", 50, Period::Hour)
        .reserve_fraction(0.0)
        .build()
        .unwrap();
    let tracker = Arc::new(
        QuotaTracker::new_with_clock(TrackerConfig::new([hour_only]), ManualClock::new(NOW))
            .unwrap(),
    );
    let client = counted(&tracker, Counting::TryBefore);
    let day_end = (DAY_END / 1000).to_string();
    let day_report = [
        ("x-ratelimit-remaining", "400"),
        ("x-ratelimit-reset", day_end.as_str()),
    ];
    // One limit, the hour's: a count for the day's end is not of its window.
    send(&client, &api.url, &day_report).await.unwrap();
    assert_eq!(used_per_limit(&tracker), [1]);
    tracker
        .reconfigure(TrackerConfig::new([hour_and_day()]))
        .unwrap();
    // The same client, the day's limit now known: 1,000 - 400.
    send(&client, &api.url, &day_report).await.unwrap();
    assert_eq!(used_per_limit(&tracker), [2, 600]);
}
