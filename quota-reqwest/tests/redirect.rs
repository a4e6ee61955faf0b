//! Redirects against a real HTTP server on 127.0.0.1 that records every request it receives
//! (method, host, path, headers, body). The hosts `api.test`, `search.test` and `other.test`
//! all resolve to it; the path says how it answers:
//! - `/hop/N`: 307 to `N-1` (a relative `Location`), and 200 at `/hop/0`;
//! - `/redirect?status=S[&to=URL][&remaining=R]`: status `S` to `URL` (no `Location`
//!   without it), with `RateLimit-Remaining: R` when given;
//! - `/loop?...`: 307 to itself, query included;
//! - anything else: 200 `landed`.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use quota_core::{DenyReason, ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::{
    BoxError, Counting, Exceeded, QuotaExceeded, QuotaLayer, QuotaMiddleware, QuotaRules,
    RedirectError,
};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::{Service as _, ServiceExt as _};

/// 2024-06-10 06:13:20 UTC.
const NOW: u64 = 1_718_000_000_000;

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// The Host header without the port.
    host: String,
    /// Path and query.
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

struct Api {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    async fn start() -> Api {
        async fn answer(
            axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<Seen>>>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split(':').next())
                .unwrap_or_default()
                .to_owned();
            let path = uri.path_and_query().unwrap().as_str().to_owned();
            seen.lock().unwrap().push(Seen {
                method,
                host,
                path: path.clone(),
                headers,
                body,
            });
            let query: Vec<(&str, &str)> = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .collect();
            let param = |name: &str| query.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
            let redirect = |status: u16, to: &str| {
                let mut out = HeaderMap::new();
                if !to.is_empty() {
                    out.insert("location", HeaderValue::from_str(to).unwrap());
                }
                if let Some(remaining) = param("remaining") {
                    out.insert("ratelimit-remaining", remaining.parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), out, "moved").into_response()
            };
            if let Some(n) = uri.path().strip_prefix("/hop/") {
                return match n.parse::<u32>().unwrap() {
                    0 => "landed".into_response(),
                    n => redirect(307, &(n - 1).to_string()),
                };
            }
            match uri.path() {
                "/redirect" => redirect(
                    param("status").unwrap().parse().unwrap(),
                    param("to").unwrap_or_default(),
                ),
                "/loop" => redirect(307, &path),
                _ => "landed".into_response(),
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(answer).with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { addr, seen }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn received(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// A reqwest client for the test hosts; `follows`: with reqwest's own redirect policy.
    fn reqwest(&self, follows: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder();
        if !follows {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        for host in ["api.test", "search.test", "other.test"] {
            builder = builder.resolve(host, self.addr);
        }
        builder.build().unwrap()
    }

    /// The documented setup: a client that does not follow redirects, under `middleware`.
    fn client(&self, middleware: QuotaMiddleware) -> ClientWithMiddleware {
        ClientBuilder::new(self.reqwest(false))
            .with(middleware)
            .build()
    }
}

/// Services `(name, limit)` of a day, admitted up to their limit.
fn tracker(services: &[(&str, u64)]) -> Arc<QuotaTracker> {
    let config = TrackerConfig::new(services.iter().map(|(name, limit)| {
        ServiceConfig::builder(*name, *limit, Period::Day)
            .warn_threshold(0.5)
            .critical_threshold(1.0)
            .reserve_fraction(0.0)
            .build()
            .unwrap()
    }));
    Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap())
}

fn used(tracker: &QuotaTracker, service: &str) -> u64 {
    tracker.usage(service).unwrap().used
}

fn redirect_error(error: &reqwest_middleware::Error) -> RedirectError {
    RedirectError::find(error)
        .unwrap_or_else(|| panic!("not a redirect error: {error}"))
        .clone()
}

#[tokio::test]
async fn a_307_to_itself_three_times_is_four_requests_admitted_and_four_received() {
    for counting in [Counting::TryBefore, Counting::RecordAfter] {
        let api = Api::start().await;
        let tracker = tracker(&[("api", 100)]);
        let client = api.client(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .host("api.test", "api")
                .unwrap()
                .counting("api", counting)
                .unwrap(),
        );
        let response = client
            .get(api.url("api.test", "/hop/3"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.url().path(), "/hop/0");
        assert_eq!(response.text().await.unwrap(), "landed");
        let paths: Vec<String> = api.seen().into_iter().map(|s| s.path).collect();
        assert_eq!(
            paths,
            ["/hop/3", "/hop/2", "/hop/1", "/hop/0"],
            "{counting:?}"
        );
        assert_eq!(used(&tracker, "api"), 4, "{counting:?}");
    }
}

#[tokio::test]
async fn an_uncounted_host_redirecting_to_a_counted_one_is_counted_there() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted(&api, &tracker);
    let to = api.url("api.test", "/landing");
    let response = client
        .get(api.url("other.test", &format!("/redirect?status=302&to={to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let hosts: Vec<String> = api.seen().into_iter().map(|s| s.host).collect();
    assert_eq!(hosts, ["other.test", "api.test"]);
    assert_eq!(used(&tracker, "api"), 1);
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_hop_limit_with_a_typed_error() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .host("api.test", "api")
        .unwrap();
    // reqwest's default: 10 redirects followed, 11 requests.
    let client = api.client(middleware.clone());
    let error = client
        .get(api.url("api.test", "/loop?token=secret"))
        .send()
        .await
        .unwrap_err();
    let RedirectError::TooMany { max, location } = redirect_error(&error) else {
        panic!("{error}");
    };
    assert_eq!(max, 10);
    assert_eq!(location.path(), "/loop");
    assert_eq!(api.received(), 11);
    assert_eq!(used(&tracker, "api"), 11);
    assert_eq!(
        error.to_string(),
        format!(
            "more than 10 redirects in a row: the one to {} was not followed",
            api.url("api.test", "/loop")
        ),
        "the query, which may hold a key, is not shown"
    );
    let client = api.client(middleware.max_redirects(2));
    let error = client
        .get(api.url("api.test", "/loop"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        redirect_error(&error),
        RedirectError::TooMany { max: 2, .. }
    ));
    assert_eq!(api.received(), 11 + 3);
    assert_eq!(used(&tracker, "api"), 14);
}

#[tokio::test]
async fn a_denied_hop_is_not_sent_and_the_error_names_its_service() {
    let api = Api::start().await;
    let tracker = tracker(&[("search", 10), ("api", 1)]);
    tracker.record_call("api", 1).unwrap();
    let client = api.client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .host("search.test", "search")
            .unwrap()
            .host("api.test", "api")
            .unwrap(),
    );
    let to = api.url("api.test", "/landing");
    let error = client
        .get(api.url(
            "search.test",
            &format!("/redirect?status=302&to={to}&remaining=3"),
        ))
        .send()
        .await
        .unwrap_err();
    let error = QuotaExceeded::find(&error)
        .unwrap_or_else(|| panic!("{error}"))
        .clone();
    assert_eq!(error.service, "api");
    assert_eq!(error.reason, Exceeded::Denied(DenyReason::Limit));
    let hosts: Vec<String> = api.seen().into_iter().map(|s| s.host).collect();
    assert_eq!(hosts, ["search.test"], "the denied hop was not sent");
    // The redirect's own headers were taken in for its service: 10 - 3 remaining.
    assert_eq!(used(&tracker, "search"), 7);
    assert_eq!(used(&tracker, "api"), 1);
}

/// Sends `method` with a body of bytes to a redirect answering `status`; returns what the
/// second hop received.
async fn second_hop(api: &Api, client: &ClientWithMiddleware, method: Method, status: u16) -> Seen {
    let before = api.received();
    client
        .request(
            method,
            api.url(
                "api.test",
                &format!("/redirect?status={status}&to=/landing"),
            ),
        )
        .header("content-type", "text/plain")
        .body("payload")
        .send()
        .await
        .unwrap();
    let seen = api.seen();
    assert_eq!(seen.len(), before + 2);
    seen[before + 1].clone()
}

#[tokio::test]
async fn a_303_and_a_post_answered_301_or_302_become_a_get_without_body_and_307_308_keep_both() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted(&api, &tracker);
    for (method, status) in [
        (Method::POST, 303),
        (Method::PUT, 303),
        (Method::POST, 301),
        (Method::POST, 302),
    ] {
        let hop = second_hop(&api, &client, method.clone(), status).await;
        let case = format!("{method} answered {status}");
        assert_eq!(
            (hop.method, hop.path.as_str()),
            (Method::GET, "/landing"),
            "{case}"
        );
        assert!(hop.body.is_empty(), "{case}");
        assert!(hop.headers.get("content-type").is_none(), "{case}");
    }
    for (method, status) in [
        (Method::POST, 307),
        (Method::PUT, 308),
        (Method::PUT, 301),
        (Method::PATCH, 302),
    ] {
        let hop = second_hop(&api, &client, method.clone(), status).await;
        let case = format!("{method} answered {status}");
        assert_eq!(hop.method, method, "{case}");
        assert_eq!(&hop.body[..], b"payload", "{case}");
        assert_eq!(hop.headers["content-type"], "text/plain", "{case}");
    }
    assert_eq!(used(&tracker, "api"), 16);
}

#[tokio::test]
async fn a_streaming_body_answered_307_is_a_typed_error_and_the_next_hop_is_not_sent() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted(&api, &tracker);
    let stream = || reqwest::Body::wrap(String::from("payload"));
    let error = client
        .post(api.url("api.test", "/redirect?status=307&to=/landing"))
        .body(stream())
        .send()
        .await
        .unwrap_err();
    let RedirectError::BodyNotReplayable {
        status,
        method,
        location,
    } = redirect_error(&error)
    else {
        panic!("{error}");
    };
    assert_eq!(
        (status, method),
        (StatusCode::TEMPORARY_REDIRECT, Method::POST)
    );
    assert_eq!(location.as_str(), api.url("api.test", "/landing"));
    assert!(
        error.to_string().contains("cannot be sent twice"),
        "{error}"
    );
    assert_eq!(api.received(), 1);
    assert_eq!(used(&tracker, "api"), 1);
    // A 303 sends no body: followed.
    let response = client
        .post(api.url("api.test", "/redirect?status=303&to=/landing"))
        .body(stream())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api.seen()[2].method, Method::GET);
    assert_eq!(used(&tracker, "api"), 3);
}

#[tokio::test]
async fn a_cross_host_redirect_drops_credentials_and_a_same_host_one_keeps_them() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted(&api, &tracker);
    let send = |to: String| {
        client
            .get(api.url("api.test", &format!("/redirect?status=307&to={to}")))
            .header("authorization", "Bearer key")
            .header("cookie", "session=1")
            .header("proxy-authorization", "Basic cHJveHk6a2V5")
            .header("x-keep", "kept")
            .send()
    };
    send("/landing".into()).await.unwrap();
    send(api.url("other.test", "/landing")).await.unwrap();
    let seen = api.seen();
    let same_host = &seen[1].headers;
    for name in ["authorization", "cookie", "proxy-authorization", "x-keep"] {
        assert!(same_host.contains_key(name), "same host: {name} kept");
    }
    assert_eq!(seen[3].host, "other.test");
    let other_host = &seen[3].headers;
    for name in ["authorization", "cookie", "proxy-authorization"] {
        assert!(!other_host.contains_key(name), "other host: {name} dropped");
    }
    assert_eq!(other_host["x-keep"], "kept");
    // The first request of each call to api.test, and the same-host hop.
    assert_eq!(used(&tracker, "api"), 3);
}

#[tokio::test]
async fn a_client_that_follows_redirects_itself_fails_with_a_typed_error() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let middleware = QuotaMiddleware::new(Arc::clone(&tracker))
        .host("api.test", "api")
        .unwrap();
    for middleware in [middleware.clone(), middleware.follow_redirects(false)] {
        // reqwest's default policy: it follows redirects inside one middleware call.
        let client = ClientBuilder::new(api.reqwest(true))
            .with(middleware)
            .build();
        let before = api.received();
        let error = client
            .get(api.url("api.test", "/hop/3?token=secret"))
            .send()
            .await
            .unwrap_err();
        let RedirectError::ClientFollowed { sent, answered } = redirect_error(&error) else {
            panic!("{error}");
        };
        assert_eq!(sent.as_str(), api.url("api.test", "/hop/3"));
        assert_eq!(answered.as_str(), api.url("api.test", "/hop/0"));
        let message = error.to_string();
        assert!(
            message.contains("redirect(reqwest::redirect::Policy::none())"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
        assert_eq!(
            api.received() - before,
            4,
            "the client sent the hops itself"
        );
    }
    // One counted per call: the hops the client followed never passed the middleware.
    assert_eq!(used(&tracker, "api"), 2);
}

#[tokio::test]
async fn follow_redirects_false_returns_a_redirect_as_it_is() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = api.client(
        QuotaMiddleware::new(Arc::clone(&tracker))
            .host("api.test", "api")
            .unwrap()
            .follow_redirects(false),
    );
    let response = client
        .get(api.url("api.test", "/hop/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()["location"], "2");
    assert_eq!(api.received(), 1);
    assert_eq!(used(&tracker, "api"), 1);
}

#[tokio::test]
async fn a_redirect_without_an_http_location_is_returned_as_it_is() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted(&api, &tracker);
    for (status, path) in [
        (302, "/redirect?status=302"),
        (307, "/redirect?status=307&to=ftp://api.test/file"),
        (308, "/redirect?status=308&to=http://[bad"),
    ] {
        let response = client.get(api.url("api.test", path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    assert_eq!(api.received(), 3);
    assert_eq!(used(&tracker, "api"), 3);
}

/// A middleware after the quota middleware that answers without sending, as a cache or a
/// mock does: a response built from an `http::Response`, without a URL.
struct Answers;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Answers {
    async fn handle(
        &self,
        _: reqwest::Request,
        _: &mut http::Extensions,
        _: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(http::Response::new("cached").into())
    }
}

#[tokio::test]
async fn a_response_without_a_url_from_a_later_middleware_is_no_client_redirect() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted_then(&api, &tracker, Answers);
    let response = client
        .get(api.url("api.test", "/landing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "cached");
    assert_eq!(used(&tracker, "api"), 1);
}

// ---------------------------------------------------------------------------------------------
// The tower layer: tower-http's FollowRedirect goes outside QuotaLayer.

type Inner = tower::util::BoxCloneService<
    http::Request<reqwest::Body>,
    http::Response<reqwest::Body>,
    BoxError,
>;

/// Sends through a reqwest client that does not follow redirects.
fn sender(client: reqwest::Client) -> Inner {
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

fn get(url: &str) -> http::Request<reqwest::Body> {
    http::Request::get(url)
        .body(reqwest::Body::from(""))
        .unwrap()
}

#[tokio::test]
async fn tower_http_follow_redirect_outside_the_layer_counts_every_hop() {
    use tower_http::follow_redirect::FollowRedirectLayer;
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let layer = QuotaLayer::new(
        QuotaRules::new(Arc::clone(&tracker))
            .host("api.test", "api")
            .unwrap(),
    );
    // The documented order: FollowRedirect outside, so each hop is a request to the layer.
    let mut service = tower::ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(sender(api.reqwest(false)));
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get(&api.url("api.test", "/hop/3")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api.received(), 4);
    assert_eq!(
        used(&tracker, "api"),
        4,
        "one count per request the layer sees"
    );
    // Inside the layer, the hops after the first pass it unseen: 4 received, 1 counted.
    let mut inside = tower::ServiceBuilder::new()
        .layer(layer)
        .layer(FollowRedirectLayer::new())
        .service(sender(api.reqwest(false)));
    inside
        .ready()
        .await
        .unwrap()
        .call(get(&api.url("api.test", "/hop/3")))
        .await
        .unwrap();
    assert_eq!(api.received(), 8);
    assert_eq!(used(&tracker, "api"), 5, "the wrong order undercounts");
}

/// A middleware after the quota middleware that adds the API key as a query parameter (as
/// many providers want it: `?token=KEY`).
struct AddToken;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for AddToken {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        request
            .url_mut()
            .query_pairs_mut()
            .append_pair("token", "KEY");
        next.run(request, extensions).await
    }
}

#[tokio::test]
async fn a_later_middleware_that_adds_a_query_is_no_client_redirect() {
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = counted_then(&api, &tracker, AddToken);
    let response = client
        .get(api.url("api.test", "/landing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!((api.received(), used(&tracker, "api")), (1, 1));
}

/// A middleware that authenticates every request it sees.
struct Auth;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Auth {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_static("Bearer api-secret"),
        );
        next.run(request, extensions).await
    }
}

#[tokio::test]
async fn an_auth_middleware_added_before_ours_sends_no_key_to_another_host() {
    // As documented: credentials added before the quota middleware, which follows the hops.
    let api = Api::start().await;
    let tracker = tracker(&[("api", 100)]);
    let client = ClientBuilder::new(api.reqwest(false))
        .with(Auth)
        .with(
            QuotaMiddleware::new(Arc::clone(&tracker))
                .host("api.test", "api")
                .unwrap(),
        )
        .build();
    let to = api.url("other.test", "/landing");
    client
        .get(api.url("api.test", &format!("/redirect?status=302&to={to}")))
        .send()
        .await
        .unwrap();
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.contains_key("authorization"));
    assert_eq!(seen[1].host, "other.test");
    assert!(
        !seen[1].headers.contains_key("authorization"),
        "the key went to other.test"
    );
    // Added after it, a middleware runs again for every hop: its key goes along (documented).
    let api = Api::start().await;
    let client = counted_then(&api, &tracker, Auth);
    let to = api.url("other.test", "/landing");
    client
        .get(api.url("api.test", &format!("/redirect?status=302&to={to}")))
        .send()
        .await
        .unwrap();
    assert!(api.seen()[1].headers.contains_key("authorization"));
}

/// A client counting requests to api.test against `api`, with `later` added after the quota
/// middleware (so it runs for every hop).
fn counted_then(
    api: &Api,
    tracker: &Arc<QuotaTracker>,
    later: impl reqwest_middleware::Middleware,
) -> ClientWithMiddleware {
    ClientBuilder::new(api.reqwest(false))
        .with(
            QuotaMiddleware::new(Arc::clone(tracker))
                .host("api.test", "api")
                .unwrap(),
        )
        .with(later)
        .build()
}

/// A client counting requests to api.test against `api`.
fn counted(api: &Api, tracker: &Arc<QuotaTracker>) -> ClientWithMiddleware {
    api.client(
        QuotaMiddleware::new(Arc::clone(tracker))
            .host("api.test", "api")
            .unwrap(),
    )
}
