//! The IETF `RateLimit` / `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers-09)
//! from a real HTTP server on 127.0.0.1: each policy's count becomes a floor of the limit
//! whose window holds its reset.

#[path = "support/api.rs"]
mod api;

use api::Api;
use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::QuotaMiddleware;
use reqwest_middleware::ClientBuilder;
use std::sync::Arc;

/// 2024-06-10 06:13:20 UTC: 64,000 s before the day's end.
const NOW: u64 = 1_718_000_000_000;

#[tokio::test]
async fn a_policys_count_is_its_quota_less_remaining_in_the_window_of_its_reset() {
    let api = Api::start().await;
    let config = TrackerConfig::new([ServiceConfig::new("api", 100, Period::Day)]);
    let tracker = Arc::new(QuotaTracker::new_with_clock(config, ManualClock::new(NOW)).unwrap());
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(QuotaMiddleware::new(Arc::clone(&tracker)).route(|_| Some("api")))
        .build();
    let used = || tracker.usage("api").unwrap().used;
    // No policy field: the count is our limit less remaining.
    client
        .get(&api.url)
        .header("x-echo-ratelimit", r#""daily";r=90;t=64000"#)
        .send()
        .await
        .unwrap();
    assert_eq!(used(), 10);
    // The policy says the provider's quota is 200: its count is 200 - 150.
    client
        .get(&api.url)
        .header(
            "x-echo-ratelimit-policy",
            r#""burst";q=10;w=1, "daily";q=200;w=86400"#,
        )
        .header("x-echo-ratelimit", r#""daily";r=150;t=64000"#)
        .send()
        .await
        .unwrap();
    assert_eq!(used(), 50);
    // A reset in another window, and a field that does not parse: nothing taken in.
    client
        .get(&api.url)
        .header("x-echo-ratelimit", r#""daily";r=0;t=90000"#)
        .send()
        .await
        .unwrap();
    client
        .get(&api.url)
        .header("x-echo-ratelimit", r#""daily";r=0;t=64000,"#)
        .send()
        .await
        .unwrap();
    assert_eq!(used(), 52);
}
