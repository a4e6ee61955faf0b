//! The hot path allocates nothing: `record_call`, `try_record`, `can_call`, `usage` and the
//! service handle's calls, on the path without a level change, with and without a store.
//! A counting global allocator counts this thread's allocations while a test measures.

use quota_core::{
    ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, SyncPolicy, SystemClock,
    TrackerConfig,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts (thread-locals that never allocate:
// const-initialized `Cell`s).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note() {
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` made on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn config(services: usize) -> TrackerConfig {
    TrackerConfig::new(
        (0..services).map(|i| ServiceConfig::new(format!("api{i}"), 1 << 40, Period::Day)),
    )
}

fn exercise(tracker: &QuotaTracker, name: &str) {
    for _ in 0..1_000 {
        let recorded = tracker.record_call(name, 1).unwrap();
        assert!(recorded.transition().is_none());
        assert!(tracker.try_record(name, 1).is_ok());
        assert!(tracker.can_call(name).unwrap());
        assert!(tracker.usage(name).unwrap().used > 0);
    }
    let service = tracker.service(name).unwrap();
    for _ in 0..1_000 {
        service.record(1).unwrap();
        service.try_record(2).unwrap();
        assert!(service.record_remaining(1).unwrap() > 0);
        assert!(service.try_record_remaining(1).unwrap() > 0);
        assert!(service.can_call());
        assert!(service.usage().remaining > 0);
    }
}

#[test]
fn the_calls_without_a_level_change_allocate_nothing() {
    // Few services (names compared in order) and many (names hashed).
    for services in [3, 50] {
        let tracker =
            QuotaTracker::new_with_clock(config(services), ManualClock::new(1_718_000_000_000))
                .unwrap();
        tracker.on_transition(|_| {});
        let name = format!("api{}", services - 1);
        assert_eq!(
            allocations(|| exercise(&tracker, &name)),
            0,
            "{services} services"
        );
    }
    // The real clock, and a store whose interval has not come.
    let tracker = QuotaTracker::builder(config(3))
        .clock(SystemClock)
        .store(MemoryStore::new())
        .sync_policy(SyncPolicy {
            interval_ms: 3_600_000,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    assert_eq!(
        allocations(|| exercise(&tracker, "api1")),
        0,
        "with a store"
    );
}

#[test]
fn the_counter_sees_allocations() {
    // The test above can fail: a level change allocates its transition.
    let tracker = QuotaTracker::new(TrackerConfig::new([ServiceConfig::new(
        "api",
        10,
        Period::Day,
    )]))
    .unwrap();
    assert!(
        allocations(|| {
            tracker.record_call("api", 9).unwrap();
        }) > 0
    );
}
