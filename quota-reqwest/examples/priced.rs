//! Prices an LLM API's requests in tokens: each held at an estimate before it is sent, settled
//! at what the provider reports: `cargo run -p quota-reqwest --example priced`.

use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::QuotaMiddleware;

/// Builds a client whose requests to the LLM API are priced (an application sends with it).
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TrackerConfig::new([ServiceConfig::new("llm-tokens", 1_000_000, Period::Day)]);
    let tracker = QuotaTracker::new(config)?;
    let middleware = QuotaMiddleware::new(tracker)
        .host("api.llm.example", "llm-tokens")?
        // Held at 4,000 tokens, settled at what the provider reports in a header.
        .price("llm-tokens", 4_000, |_status, headers| {
            headers
                .get("x-usage-total-tokens")?
                .to_str()
                .ok()?
                .parse()
                .ok()
        })?
        .counted_statuses("llm-tokens", [200..=299, 429..=429])?;
    let _client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    Ok(())
}
