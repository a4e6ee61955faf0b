//! Prices an LLM API's requests in the tokens its JSON body reports: each held at an estimate
//! before it is sent, settled at `usage.total_tokens` once the body has been read to its end:
//! `cargo run -p quota-reqwest --example priced_json`.

use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
use quota_reqwest::QuotaMiddleware;

/// Builds a client whose requests to the LLM API are priced from their bodies.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TrackerConfig::new([ServiceConfig::new("llm-tokens", 1_000_000, Period::Day)]);
    let tracker = QuotaTracker::new(config)?;
    let middleware = QuotaMiddleware::new(tracker)
        .host("api.llm.example", "llm-tokens")?
        // Held at 4,000 tokens; settled at `{"usage": {"total_tokens": N}}` (a JSON pointer),
        // in one JSON document or in the last Server-Sent Event that reports it. A body
        // dropped before its end keeps the 4,000.
        .price_json("llm-tokens", 4_000, "/usage/total_tokens")?
        .counted_statuses("llm-tokens", [200..=299, 429..=429])?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    // let response = client.post("https://api.llm.example/v1/chat/completions")
    //     .json(&request).send().await?;
    // let reply: Reply = response.json().await?; // settled here, at the body's end
    drop(client);
    Ok(())
}
