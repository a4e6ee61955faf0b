//! `SystemClock`'s tests: the counter clock against a fake counter and wall clock, and the
//! real clock against the wall clock.

use super::fast::{self, Anchored, Source, RESYNC_NS};
use super::SystemClock;
use crate::clock::Clock;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const T0: u64 = 1_718_000_000_000_000_000; // ns

/// A counter of 3 ticks per ns and a wall clock that is the counter's time plus a
/// settable offset; wall reads are counted, and may move the counter (a slow read).
#[derive(Clone, Default)]
struct Fake {
    raw: Rc<Cell<u64>>,
    wall_offset: Rc<Cell<u64>>,
    wall_reads: Rc<Cell<u64>>,
    /// Ticks the counter moves during each of the next wall reads.
    slow_reads: Rc<Cell<Vec<u64>>>,
}

impl Source for Fake {
    fn raw(&self) -> u64 {
        self.raw.get()
    }
    fn nanos(&self, ticks: u64) -> u64 {
        ticks / 3
    }
    fn wall_ns(&self) -> u64 {
        self.wall_reads.set(self.wall_reads.get() + 1);
        let mut slow = self.slow_reads.take();
        if !slow.is_empty() {
            self.advance_ticks(slow.remove(0));
        }
        self.slow_reads.set(slow);
        (self.raw.get() / 3).wrapping_add(self.wall_offset.get())
    }
}

impl Fake {
    fn new() -> Self {
        let fake = Fake::default();
        fake.raw.set(3_000);
        fake.wall_offset.set(T0 - 1_000);
        fake
    }
    fn advance_ticks(&self, ticks: u64) {
        self.raw.set(self.raw.get().wrapping_add(ticks));
    }
    fn advance_ns(&self, ns: u64) {
        self.advance_ticks(ns * 3);
    }
    fn wall(&self) -> u64 {
        (self.raw.get() / 3).wrapping_add(self.wall_offset.get())
    }
}

#[test]
fn the_counter_reads_the_wall_clock_with_one_wall_read_per_period() {
    let fake = Fake::new();
    let clock = Anchored::new(fake.clone());
    assert_eq!(fake.wall_reads.get(), 1);
    for _ in 0..999 {
        fake.advance_ns(1_000);
        assert_eq!(clock.now_ns(), fake.wall());
    }
    assert_eq!(
        fake.wall_reads.get(),
        1,
        "within the period: the counter alone"
    );
    fake.advance_ns(1_000);
    assert_eq!(clock.now_ns(), fake.wall());
    assert_eq!(fake.wall_reads.get(), 2, "a period passed: measured again");
    assert_eq!(clock.now_ms(), fake.wall() / 1_000_000);
}

#[test]
fn a_wall_clock_step_is_followed_within_one_period() {
    for step_forward in [true, false] {
        let fake = Fake::new();
        let clock = Anchored::new(fake.clone());
        let hour = 3_600_000_000_000;
        let offset = fake.wall_offset.get();
        fake.wall_offset.set(if step_forward {
            offset + hour
        } else {
            offset - hour
        });
        fake.advance_ns(RESYNC_NS / 2);
        // Not yet: the offset measured before the step is still in use.
        assert_eq!(
            clock.now_ns(),
            fake.wall().wrapping_add(if step_forward {
                hour.wrapping_neg()
            } else {
                hour
            })
        );
        fake.advance_ns(RESYNC_NS / 2);
        assert_eq!(clock.now_ns(), fake.wall(), "followed after one period");
    }
}

#[test]
fn a_counter_that_goes_back_measures_again_at_once() {
    let fake = Fake::new();
    let clock = Anchored::new(fake.clone());
    fake.advance_ns(500);
    assert_eq!(clock.now_ns(), fake.wall());
    let reads = fake.wall_reads.get();
    // The counter restarts (a resume from sleep) while the wall clock went on.
    let wall = fake.wall() + 5_000_000_000;
    fake.raw.set(30);
    fake.wall_offset.set(wall - 10);
    assert_eq!(clock.now_ns(), fake.wall());
    assert_eq!(fake.wall_reads.get(), reads + 1);
    fake.advance_ns(10);
    assert_eq!(clock.now_ns(), fake.wall());
}

#[test]
fn an_interrupted_measurement_is_retried() {
    let fake = Fake::new();
    let clock = Anchored::new(fake.clone());
    // The next wall read is interrupted for 5 ms of counter time, the one after is not.
    fake.slow_reads.set(vec![15_000_000, 0]);
    fake.advance_ns(RESYNC_NS);
    let reads = fake.wall_reads.get();
    clock.now_ns();
    assert_eq!(fake.wall_reads.get(), reads + 2, "retried once");
    fake.advance_ns(10);
    assert_eq!(
        clock.now_ns(),
        fake.wall(),
        "the quick measurement's offset"
    );
    // Interrupted every time: the least interrupted measurement is kept (off by at
    // most half its gap).
    fake.slow_reads.set(vec![9_000_000, 6_000_000, 12_000_000]);
    fake.advance_ns(RESYNC_NS);
    clock.now_ns();
    fake.advance_ns(10);
    assert!(clock.now_ns().abs_diff(fake.wall()) <= 1_000_000);
}

/// Readings of `SystemClock` lie between wall-clock readings taken just before and after
/// them, to within the 1 ms of truncation, and do not go back, for `run` (with pauses of
/// every size, so that the offset is measured again at every phase).
fn against_the_wall_clock(run: Duration) -> u64 {
    let start = Instant::now();
    let mut last = 0;
    let mut readings = 0;
    let mut i = 0u64;
    while start.elapsed() < run {
        let before = SystemClock::wall_ms();
        let now = SystemClock.now_ms();
        let after = SystemClock::wall_ms();
        assert!(
            before.saturating_sub(1) <= now && now <= after + 1,
            "{before} <= {now} <= {after}, to within 1 ms"
        );
        assert!(now + 1 >= last, "went back from {last} to {now}");
        last = now;
        readings += 1;
        i += 1;
        match i % 4 {
            0 => std::thread::sleep(Duration::from_micros(100 * (i % 17))),
            1 => std::thread::yield_now(),
            _ => {}
        }
    }
    readings
}

#[test]
fn the_system_clock_is_the_wall_clock_to_within_a_millisecond() {
    eprintln!(
        "SystemClock reads the CPU counter: {}",
        fast::uses_counter()
    );
    assert!(against_the_wall_clock(Duration::from_millis(1_500)) > 1_000);
}

#[test]
fn the_system_clock_is_the_wall_clock_on_every_thread() {
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| against_the_wall_clock(Duration::from_millis(500)));
        }
    });
}
