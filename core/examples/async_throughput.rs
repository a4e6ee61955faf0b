//! Exact and Leased admissions per second on a Redis, blocking (threads) against async (tasks
//! on one current-thread tokio runtime), 1 and 8 callers, side by side in one run; and how long
//! the runtime's thread spent inside the async calls (the time an executor is blocked).
//!
//! Usage: `cargo run --release -p quota-core --features redis --example async_throughput --
//! redis://127.0.0.1:6391 [CALLS]` (CALLS per mode and caller count, 20,000 by default). Every
//! service's limit is 10^9: nothing is denied.

use quota_core::{Admission, Period, QuotaTracker, RedisStore, ServiceConfig, TrackerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tracker(url: &str, admission: Admission, name: &str) -> Arc<QuotaTracker> {
    let service = ServiceConfig::builder(name, 1_000_000_000, Period::Day)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(admission)
        .build()
        .unwrap();
    let store = RedisStore::new(url).unwrap();
    Arc::new(
        QuotaTracker::builder(TrackerConfig::new([service]))
            .store(store)
            .build()
            .unwrap(),
    )
}

/// `calls` admissions split over `callers` threads, blocking: calls/s.
fn blocking(tracker: &Arc<QuotaTracker>, name: &str, callers: u64, calls: u64) -> f64 {
    let started = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (tracker, name) = (Arc::clone(tracker), name.to_owned());
            std::thread::spawn(move || {
                for _ in 0..calls / callers {
                    tracker.try_record(&name, 1).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

/// `calls` admissions split over `callers` tasks of one current-thread runtime: calls/s, and
/// the runtime thread's time inside the calls (polls included) per call.
fn async_tasks(
    tracker: &Arc<QuotaTracker>,
    name: &str,
    callers: u64,
    calls: u64,
) -> (f64, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let inside = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (tracker, name, inside) =
                    (Arc::clone(tracker), name.to_owned(), Arc::clone(&inside));
                tokio::task::spawn(async move {
                    let mut spent = Duration::ZERO;
                    for _ in 0..calls / callers {
                        let at = Instant::now();
                        let call = tracker.try_record_async(&name, 1);
                        spent += at.elapsed();
                        call.await.unwrap();
                    }
                    *inside.lock().unwrap() += spent;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    let per_call = *inside.lock().unwrap() / calls as u32;
    (rate, per_call)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("a Redis URL");
    let calls: u64 = args.next().map_or(20_000, |n| n.parse().unwrap());
    for (mode, admission) in [
        ("Exact", Admission::Exact),
        ("Leased 1000", Admission::Leased { block: 1_000 }),
    ] {
        let calls = if mode == "Exact" { calls } else { calls * 50 };
        for callers in [1u64, 8] {
            let name = format!("bench-{}-{callers}", mode.replace(' ', "-"));
            let tracker = tracker(&url, admission, &name);
            let blocking_rate = blocking(&tracker, &name, callers, calls);
            let (async_rate, inside) = async_tasks(&tracker, &name, callers, calls);
            println!(
                "{mode:<12} callers {callers}: blocking {:>9.0} calls/s, async {:>9.0} calls/s \
                 ({:.2}x), executor time inside a call {inside:?}",
                blocking_rate,
                async_rate,
                async_rate / blocking_rate
            );
        }
    }
}
