//! The hot path beside its floor, in one run: a bare `Mutex<u64>` increment, an
//! `AtomicU64::fetch_add`, the clock reads (`std`'s `SystemTime` as `SystemClock` used to read
//! it, and `SystemClock` now), governor's direct `check()` and keyed `check_key`, and
//! `record_call` by name and through a handle (`tracker.service("x")?.record(1)`), with a
//! `ManualClock` and with the real clock, the lean `record_remaining` through a handle, and
//! `try_record`. Then the aggregate throughput of N threads on different services and on one
//! service.
//!
//! Run (everything, threads 1 and 2):
//!
//! ```sh
//! cargo bench -p quota-core --bench record_call
//! ```
//!
//! Other thread counts for the aggregate group: `QUOTA_BENCH_THREADS=1,2,16 cargo bench -p
//! quota-core --bench record_call -- aggregate`. Instruction counts of the same calls:
//! `core/examples/hot_loop.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use governor::{Quota, RateLimiter};
use quota_core::{
    Clock, ManualClock, Period, QuotaTracker, ServiceConfig, SystemClock, TrackerConfig,
};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NAMES: [&str; 4] = ["market", "mail", "llm", "search"];

fn config(names: &[String]) -> TrackerConfig {
    TrackerConfig::new(
        names
            .iter()
            .map(|n| ServiceConfig::new(n.as_str(), u64::MAX, Period::Month)),
    )
}

fn four() -> Vec<String> {
    NAMES.map(String::from).to_vec()
}

fn manual_tracker(names: &[String]) -> QuotaTracker {
    QuotaTracker::new_with_clock(config(names), ManualClock::new(1_718_000_000_000)).unwrap()
}

fn system_tracker(names: &[String]) -> QuotaTracker {
    QuotaTracker::new_with_clock(config(names), SystemClock).unwrap()
}

/// What `SystemClock` read before it had a cheaper clock: `SystemTime::now()` (web-time is
/// `std`'s natively) to whole milliseconds.
fn std_system_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn hot_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));

    let counter = Mutex::new(0u64);
    group.bench_function("mutex_u64_increment", |b| {
        b.iter(|| *counter.lock().unwrap() += black_box(1))
    });
    let atomic = AtomicU64::new(0);
    group.bench_function("atomic_u64_fetch_add", |b| {
        b.iter(|| atomic.fetch_add(black_box(1), Ordering::Relaxed))
    });

    group.bench_function("clock_std_system_time", |b| b.iter(std_system_time_ms));
    let _ = SystemClock.now_ms(); // calibrates, once per process
    group.bench_function("clock_system_clock", |b| b.iter(|| SystemClock.now_ms()));

    // governor with a quota it never reaches (its GCRA state and the quanta clock, as ours).
    let quota = Quota::per_second(NonZeroU32::MAX);
    let direct = RateLimiter::direct(quota);
    group.bench_function("governor_direct_check", |b| {
        b.iter(|| black_box(direct.check()).is_ok())
    });
    let keyed = RateLimiter::<&'static str, _, _>::keyed(quota);
    for name in NAMES {
        keyed.check_key(&name).unwrap();
    }
    group.bench_function("governor_keyed_check_key", |b| {
        b.iter(|| black_box(keyed.check_key(black_box(&"llm"))).is_ok())
    });

    for (clock, tracker) in [
        ("manual_clock", manual_tracker(&four())),
        ("system_clock", system_tracker(&four())),
    ] {
        group.bench_function(format!("record_call_by_name_{clock}"), |b| {
            b.iter(|| tracker.record_call(black_box("llm"), 1).unwrap())
        });
        let llm = tracker.service("llm").unwrap();
        group.bench_function(format!("record_by_handle_{clock}"), |b| {
            b.iter(|| llm.record(black_box(1)).unwrap())
        });
        group.bench_function(format!("record_remaining_by_handle_{clock}"), |b| {
            b.iter(|| llm.record_remaining(black_box(1)).unwrap())
        });
        group.bench_function(format!("try_record_by_name_{clock}"), |b| {
            b.iter(|| tracker.try_record(black_box("llm"), 1).unwrap())
        });
        // A hold of 2 settled at 1: admission, then a give-back of 1 (two lock acquisitions).
        group.bench_function(format!("hold_settle_by_name_{clock}"), |b| {
            b.iter(|| {
                let hold = tracker.hold(black_box("llm"), 2).unwrap();
                hold.settle(black_box(1)).unwrap()
            })
        });
        group.bench_function(format!("try_record_many_two_{clock}"), |b| {
            b.iter(|| {
                tracker
                    .try_record_many(black_box(&[("llm", 1), ("mail", 1)]))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// Runs `iters` calls on each of `services.len()` threads at once; the elapsed wall time.
fn parallel(tracker: &QuotaTracker, services: &[String], iters: u64) -> Duration {
    timed_threads(services.len(), |thread| {
        let service = &services[thread];
        for _ in 0..iters {
            black_box(tracker.record_call(black_box(service), 1).unwrap());
        }
    })
}

/// The machine's own scaling: each thread increments its own padded `Mutex<u64>`.
fn parallel_bare(threads: usize, iters: u64) -> Duration {
    let counters: Vec<crossbeam_utils::CachePadded<Mutex<u64>>> = (0..threads)
        .map(|_| crossbeam_utils::CachePadded::new(Mutex::new(0)))
        .collect();
    timed_threads(threads, |thread| {
        for _ in 0..iters {
            *counters[thread].lock().unwrap() += black_box(1);
        }
    })
}

/// Runs `work(i)` on `threads` threads released together; the time from the first thread's
/// start to the last one's end, as the threads themselves read it (a time read by the
/// spawning thread would miss whatever ran before it was scheduled again).
fn timed_threads(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(thread);
                    (start, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}

/// The thread counts of the aggregate group: `QUOTA_BENCH_THREADS` (say `1,2,16`), else 1 and 2.
fn thread_counts() -> Vec<usize> {
    std::env::var("QUOTA_BENCH_THREADS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|&n| n > 0)
                .collect::<Vec<usize>>()
        })
        .filter(|counts| !counts.is_empty())
        .unwrap_or_else(|| vec![1, 2])
}

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("bare_mutex_own_counters", threads), |b| {
            b.iter_custom(|iters| parallel_bare(threads, iters))
        });
        // At least the usual four services (up to 8 names are compared, more are hashed).
        let names: Vec<String> = (0..threads.max(4)).map(|i| format!("service{i}")).collect();
        let different = &names[..threads];
        let same = vec![names[0].clone(); threads];
        let manual = manual_tracker(&names);
        let system = system_tracker(&names);
        let cases = [
            ("different_services_manual_clock", &manual, different),
            ("one_service_manual_clock", &manual, &same[..]),
            ("different_services_system_clock", &system, different),
            ("one_service_system_clock", &system, &same[..]),
        ];
        for (name, tracker, services) in cases {
            group.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| parallel(tracker, services, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, hot_path, aggregate);
criterion_main!(benches);
