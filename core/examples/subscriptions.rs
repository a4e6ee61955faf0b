//! How long subscribing and unsubscribing take with many observers, and building a tracker of
//! many services (both O(n log n)): `cargo run -p quota-core --release --example subscriptions`.

use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
use std::time::Instant;

fn main() {
    let tracker = QuotaTracker::with_defaults();
    let started = Instant::now();
    let ids: Vec<_> = (0..20_000).map(|_| tracker.on_transition(|_| {})).collect();
    let subscribed = started.elapsed();
    let started = Instant::now();
    for id in ids {
        tracker.unsubscribe(id);
    }
    let unsubscribed = started.elapsed();
    let config = TrackerConfig::new(
        (0..20_000).map(|i| ServiceConfig::new(format!("s{i}"), 10, Period::Day)),
    );
    let started = Instant::now();
    let many = QuotaTracker::new(config).expect("valid");
    let built = started.elapsed();
    drop(many);
    println!(
        "20,000 subscriptions: {subscribed:?}; 20,000 unsubscribes: {unsubscribed:?}; \
         a tracker of 20,000 services: {built:?}"
    );
}
