//! The cost of the metrics (feature `metrics`) where they are emitted: `publish_metrics` (one
//! refresh: every service's four gauges and `quota_reduced_rate`) and the Prometheus exporter's
//! `render` of them, for 4 and 1,000 services, and a denied `try_record` (its counter) with and
//! without a recorder, each into a Prometheus recorder installed for the bench's thread. The plain
//! recording path emits nothing: its cost, with the feature or without, is `record_call.rs`'s
//! (and `core/examples/hot_loop.rs`'s instruction counts).
//!
//! ```sh
//! cargo bench -p quota-core --features metrics --bench metrics
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use metrics_exporter_prometheus::PrometheusBuilder;
use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use std::hint::black_box;

fn tracker(services: usize) -> QuotaTracker {
    let config = TrackerConfig::new(
        (0..services).map(|i| ServiceConfig::new(format!("service_{i}"), 100, Period::Day)),
    );
    let tracker =
        QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000)).unwrap();
    tracker.record_call("service_0", 90).unwrap();
    tracker
}

fn metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    // A recorder of its own per measurement, so that each renders only its own series.
    let recorder = || PrometheusBuilder::new().build_recorder();
    for services in [4, 1_000] {
        let recorder = recorder();
        metrics::with_local_recorder(&recorder, || {
            let tracker = tracker(services);
            group.bench_function(BenchmarkId::new("publish_metrics", services), |b| {
                b.iter(|| tracker.publish_metrics())
            });
        });
        let handle = recorder.handle();
        group.bench_function(BenchmarkId::new("render", services), |b| {
            b.iter(|| black_box(handle.render()))
        });
    }
    let recorder = recorder();
    metrics::with_local_recorder(&recorder, || {
        let tracker = tracker(4);
        group.bench_function("try_record_denied", |b| {
            b.iter(|| black_box(tracker.try_record("service_0", 1)).unwrap_err())
        });
    });
    // The same denial without a recorder: what the error costs without counting it.
    let tracker = tracker(4);
    group.bench_function("try_record_denied_no_recorder", |b| {
        b.iter(|| black_box(tracker.try_record("service_0", 1)).unwrap_err())
    });
    group.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
