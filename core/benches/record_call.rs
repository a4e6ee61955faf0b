//! `record_call` (by name and through a service handle) cost on one thread beside a bare `Mutex<u64>` increment, and aggregate
//! throughput of 1 and 2 threads on different services and on the same service.
//!
//! Run: `cargo bench -p quota-core --bench record_call`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, SystemClock, TrackerConfig};
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

fn config() -> TrackerConfig {
    TrackerConfig::new(
        ["market", "mail", "llm", "search"].map(|n| ServiceConfig::new(n, u64::MAX, Period::Month)),
    )
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_thread");
    group.throughput(Throughput::Elements(1));
    let counter = Mutex::new(0u64);
    group.bench_function("bare_mutex_u64_increment", |b| {
        b.iter(|| *counter.lock().unwrap() += black_box(1))
    });
    let tracker =
        QuotaTracker::new_with_clock(config(), ManualClock::new(1_718_000_000_000)).unwrap();
    group.bench_function("record_call_manual_clock", |b| {
        b.iter(|| tracker.record_call(black_box("llm"), 1).unwrap())
    });
    let llm = tracker.service("llm").unwrap();
    group.bench_function("handle_record_manual_clock", |b| {
        b.iter(|| llm.record(black_box(1)).unwrap())
    });
    let tracker = QuotaTracker::new_with_clock(config(), SystemClock).unwrap();
    group.bench_function("record_call_system_clock", |b| {
        b.iter(|| tracker.record_call(black_box("llm"), 1).unwrap())
    });
    let llm = tracker.service("llm").unwrap();
    group.bench_function("handle_record_system_clock", |b| {
        b.iter(|| llm.record(black_box(1)).unwrap())
    });
    group.finish();
}

/// Runs `iters` calls on each of `services.len()` threads at once; the elapsed wall time.
fn parallel(tracker: &QuotaTracker, services: &[&str], iters: u64) -> Duration {
    let barrier = Barrier::new(services.len() + 1);
    std::thread::scope(|scope| {
        for &service in services {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    black_box(tracker.record_call(black_box(service), 1).unwrap());
                }
            });
        }
        barrier.wait();
        // The scope joins the workers before returning.
        Instant::now()
    })
    .elapsed()
}

/// The machine's own scaling: each thread increments its own padded `Mutex<u64>`.
fn parallel_bare(threads: usize, iters: u64) -> Duration {
    let counters: Vec<crossbeam_utils::CachePadded<Mutex<u64>>> = (0..threads)
        .map(|_| crossbeam_utils::CachePadded::new(Mutex::new(0)))
        .collect();
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for counter in &counters {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    *counter.lock().unwrap() += black_box(1);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    for threads in [1, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("bare_mutex_{threads}_threads_own_counters"), |b| {
            b.iter_custom(|iters| parallel_bare(threads, iters))
        });
    }
    let tracker =
        QuotaTracker::new_with_clock(config(), ManualClock::new(1_718_000_000_000)).unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("1_thread", &["market"]),
        ("2_threads_different_services", &["market", "mail"]),
        ("2_threads_same_service", &["market", "market"]),
    ];
    for (name, services) in cases {
        group.throughput(Throughput::Elements(services.len() as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| parallel(&tracker, services, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, single_thread, threads);
criterion_main!(benches);
