//! A loop of `n` calls on the hot path, for instruction counts under callgrind (repeatable on a
//! noisy machine, unlike times):
//!
//! ```sh
//! cargo build -p quota-core --release --example hot_loop
//! for n in 1000000 2000000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     --collect-atstart=no '--toggle-collect=*hot_loop::measured*' \
//!     target/release/examples/hot_loop record-manual $n 2>&1 | grep refs
//! done
//! ```
//!
//! Instructions per call = (refs at 2,000,000 - refs at 1,000,000) / 1,000,000, counted inside
//! `measured` only (the loop, each call, and dropping each result): the system clock's one-off
//! calibration, whose length varies, stays out. Modes: `record-manual`, `record-system`,
//! `handle-manual`, `handle-system`, `remaining-manual`, `remaining-system`, `try-manual`,
//! `try-system`, `hold-manual`, `hold-system` (a hold of 2 settled at 1), `many-manual`,
//! `many-system` (`try_record_many` of two services), and the references
//! `governor-direct` (`check()`) and `governor-keyed` (`check_key(&"llm")`).

use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, SystemClock, TrackerConfig};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "record-manual".into());
    let n: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let config = TrackerConfig::new(
        ["market", "mail", "llm", "search"].map(|n| ServiceConfig::new(n, u64::MAX, Period::Month)),
    );
    let tracker = if mode.ends_with("system") {
        QuotaTracker::new_with_clock(config, SystemClock)
    } else {
        QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000))
    }
    .expect("valid config");
    // The first reading calibrates the system clock (once per process): not in the loop.
    black_box(tracker.now_ms());
    measured(&mode, &tracker, n);
}

#[inline(never)]
fn measured(mode: &str, tracker: &QuotaTracker, n: u64) {
    match mode {
        #[cfg(not(target_arch = "wasm32"))]
        "governor-direct" | "governor-keyed" => governor(mode, n),
        "record-manual" | "record-system" => {
            for _ in 0..n {
                black_box(tracker.record_call(black_box("llm"), 1).expect("recorded"));
            }
        }
        "handle-manual" | "handle-system" => {
            let llm = tracker.service("llm").expect("configured");
            for _ in 0..n {
                black_box(llm.record(black_box(1)).expect("recorded"));
            }
        }
        "remaining-manual" | "remaining-system" => {
            let llm = tracker.service("llm").expect("configured");
            for _ in 0..n {
                black_box(llm.record_remaining(black_box(1)).expect("recorded"));
            }
        }
        "try-manual" | "try-system" => {
            for _ in 0..n {
                black_box(tracker.try_record(black_box("llm"), 1).expect("allowed"));
            }
        }
        "hold-manual" | "hold-system" => {
            for _ in 0..n {
                let hold = tracker.hold(black_box("llm"), 2).expect("allowed");
                black_box(hold.settle(black_box(1)).expect("settled"));
            }
        }
        "many-manual" | "many-system" => {
            for _ in 0..n {
                let calls = black_box([("llm", 1), ("mail", 1)]);
                black_box(tracker.try_record_many(&calls).expect("allowed"));
            }
        }
        other => eprintln!("unknown mode {other:?}"),
    }
}

/// governor's limiters with a quota they never reach, as in the criterion bench.
#[cfg(not(target_arch = "wasm32"))]
fn governor(mode: &str, n: u64) {
    use governor::{Quota, RateLimiter};
    let quota = Quota::per_second(std::num::NonZeroU32::MAX);
    if mode == "governor-direct" {
        let direct = RateLimiter::direct(quota);
        for _ in 0..n {
            let _ = black_box(direct.check());
        }
    } else {
        let keyed = RateLimiter::<&'static str, _, _>::keyed(quota);
        for name in ["market", "mail", "llm", "search"] {
            let _ = keyed.check_key(&name);
        }
        for _ in 0..n {
            let _ = black_box(keyed.check_key(black_box(&"llm")));
        }
    }
}
