//! Where the tracker gets the time from.

use crate::locks::{Arc, AtomicU64, Ordering};

/// A source of the current time, in milliseconds since the Unix epoch (UTC).
///
/// The tracker reads it once per operation, outside its locks. Inject a [`ManualClock`] in tests
/// so they never sleep or race the wall clock.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock, in milliseconds since the Unix epoch.
///
/// On `wasm32-unknown-unknown` every reading is the JavaScript clock (`Date.now()`, read
/// through js-sys, in browsers and Node; `std`'s clock would panic there): 1 ms resolution; a
/// reading before 1970 is 0.
///
/// Natively, where the CPU has an invariant time-stamp counter (x86-64 with `rdtscp` and the
/// invariant TSC flag; the system counter on AArch64: what the `quanta` crate detects), a
/// reading is the counter, scaled to nanoseconds (`quanta`'s calibration), plus an offset to the
/// wall clock that is measured again whenever 1 ms of counter time has passed since it was last
/// measured (one wall-clock read per millisecond, whichever thread comes first): a fraction of
/// the cost of reading the wall clock on every call. What that guarantees:
///
/// - the reading is the wall clock's time to within a few microseconds (the scaling's error
///   over at most about a millisecond, plus the uncertainty of the offset's measurement, which
///   is retried when the thread was interrupted while measuring), so calendar windows end
///   within 1 ms of the wall clock's instant; resolution 1 ms (the reading is truncated to the
///   millisecond, like the wall clock's);
/// - a step of the wall clock (NTP, an administrator) is followed at most about 1 ms of counter
///   time later, either way; readings are monotonic except where the wall clock steps back
///   (and, within a millisecond, at the instant the offset is measured again);
/// - a counter that goes backwards (a machine resumed from sleep) makes the next reading
///   measure the offset again at once.
///
/// Where there is no such counter, every reading is the wall clock (`SystemTime`). Either way
/// the tracker's clock-sanity rules apply to the readings as to any [`Clock`]'s. Calibration
/// happens once per process, at the first reading (about a millisecond; `quanta` caps it at
/// 200 ms). A [`ManualClock`] or any other [`Clock`] is read as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The wall clock, read directly (no counter). Never panics: a reading before 1970 is 0
    /// (natively `duration_since` fails, on wasm32 the float converts saturating).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wall_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            // Whole seconds and milliseconds: no 128-bit division (`as_millis`).
            .map_or(0, |since| {
                since
                    .as_secs()
                    .saturating_mul(1_000)
                    .saturating_add(u64::from(since.subsec_millis()))
            })
    }

    /// The wall clock: `Date.now()`, read directly rather than through web-time, whose
    /// `SystemTime::now()` panics on a negative reading. Negative and NaN readings are 0, past
    /// `u64::MAX` saturate (`as` converts that way).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn wall_ms() -> u64 {
        js_sys::Date::now() as u64
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            fast::now_ms()
        }
        #[cfg(target_arch = "wasm32")]
        {
            Self::wall_ms()
        }
    }
}

/// The counter-based wall clock behind [`SystemClock`] (native builds).
///
/// Its atomics are `std`'s even under `cfg(loom)`: this is a process-wide clock, outside the
/// tracker's locking, whose races are benign by construction (below), not something loom
/// models.
#[cfg(not(target_arch = "wasm32"))]
mod fast {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::OnceLock;

    /// How much counter time an offset to the wall clock is used for, at most.
    pub(super) const RESYNC_NS: u64 = 1_000_000;
    /// A measurement of the offset taking longer than this (the thread was interrupted between
    /// its reads) is retried, up to [`MEASURE_TRIES`] times.
    const MEASURE_SLACK_NS: u64 = 20_000;
    const MEASURE_TRIES: usize = 3;

    /// Where the readings come from: a fast counter and the wall clock.
    pub(super) trait Source {
        /// The counter now (ticks; wraps around, in theory).
        fn raw(&self) -> u64;
        /// Nanoseconds of `ticks` counter ticks (a fixed linear scale).
        fn nanos(&self, ticks: u64) -> u64;
        /// The wall clock now, in nanoseconds since the Unix epoch.
        fn wall_ns(&self) -> u64;
    }

    /// A counter made to read the wall clock: `wall ≈ nanos(raw) + offset`, the offset
    /// measured again once the counter has moved [`RESYNC_NS`] past the reading it was measured
    /// at (or moved back before it).
    ///
    /// The two atomics are read and written independently, and every combination is valid:
    /// `anchor` only says when to measure again, and any offset stored is a measurement at most
    /// about a millisecond old. Threads that find it stale each measure and store their own
    /// (the last store wins), so nobody waits for anybody.
    pub(super) struct Anchored<S> {
        source: S,
        /// Counter ticks in [`RESYNC_NS`].
        resync_ticks: u64,
        /// The counter reading the offset was measured at.
        anchor: AtomicU64,
        /// `wall_ns - nanos(anchor)`, wrapping.
        offset: AtomicU64,
    }

    impl<S: Source> Anchored<S> {
        pub(super) fn new(source: S) -> Self {
            // Ticks per RESYNC_NS, from the scale of a large count (at least 1 tick).
            let probe = 1u64 << 40;
            let probe_ns = source.nanos(probe).max(1);
            let resync_ticks =
                u64::try_from(u128::from(RESYNC_NS) * u128::from(probe) / u128::from(probe_ns))
                    .unwrap_or(u64::MAX)
                    .max(1);
            let clock = Anchored {
                source,
                resync_ticks,
                anchor: AtomicU64::new(0),
                offset: AtomicU64::new(0),
            };
            clock.measure();
            clock
        }

        /// Milliseconds since the Unix epoch.
        #[inline]
        pub(super) fn now_ms(&self) -> u64 {
            self.now_ns() / 1_000_000
        }

        #[inline]
        pub(super) fn now_ns(&self) -> u64 {
            let raw = self.source.raw();
            // Also stale when the counter is before the anchor (the subtraction wraps).
            if raw.wrapping_sub(self.anchor.load(Relaxed)) >= self.resync_ticks {
                return self.measure();
            }
            self.source
                .nanos(raw)
                .wrapping_add(self.offset.load(Relaxed))
        }

        /// Measures the offset (the counter read on both sides of the wall clock, retried if
        /// that took long), stores it; the wall clock's reading.
        #[cold]
        #[inline(never)]
        fn measure(&self) -> u64 {
            let mut best: Option<(u64, u64, u64)> = None; // (gap, counter, wall)
            for _ in 0..MEASURE_TRIES {
                let before = self.source.raw();
                let wall = self.source.wall_ns();
                let after = self.source.raw();
                let gap = self.source.nanos(after.wrapping_sub(before));
                let middle = before.wrapping_add(after.wrapping_sub(before) / 2);
                if best.is_none_or(|(best_gap, _, _)| gap < best_gap) {
                    best = Some((gap, middle, wall));
                }
                if gap <= MEASURE_SLACK_NS {
                    break;
                }
            }
            let Some((_, raw, wall)) = best else {
                return self.source.wall_ns();
            };
            self.offset
                .store(wall.wrapping_sub(self.source.nanos(raw)), Relaxed);
            self.anchor.store(raw, Relaxed);
            wall
        }
    }

    /// `quanta`'s counter, scaled by its calibration, and `std`'s wall clock.
    pub(super) struct Counter {
        clock: quanta::Clock,
        /// Nanoseconds in 2^32 ticks (quanta's scale, taken once: a multiply and a shift per
        /// reading, relative error below 10^-9 for counters up to 4 GHz).
        ns_per_2_32_ticks: u64,
    }

    impl Source for Counter {
        #[inline]
        fn raw(&self) -> u64 {
            self.clock.raw()
        }

        #[inline]
        fn nanos(&self, ticks: u64) -> u64 {
            // Truncating to 64 bits wraps consistently: only differences of readings matter.
            ((u128::from(ticks) * u128::from(self.ns_per_2_32_ticks)) >> 32) as u64
        }

        fn wall_ns(&self) -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    since
                        .as_secs()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(u64::from(since.subsec_nanos()))
                })
        }
    }

    /// The counter clock, or `None` where `quanta` found no usable counter (it then reads the
    /// OS's monotonic clock, which costs as much as the wall clock: read that instead).
    fn counter() -> Option<Anchored<Counter>> {
        let clock = quanta::Clock::new();
        // Without a counter, quanta's raw readings are already nanoseconds (its scale is 1);
        // with one, its calibrated scale is never exactly 1.
        let probe = 1u64 << 40;
        if clock.delta_as_nanos(0, probe) == probe {
            return None;
        }
        let ns_per_2_32_ticks = clock.delta_as_nanos(0, 1 << 32);
        Some(Anchored::new(Counter {
            clock,
            ns_per_2_32_ticks,
        }))
    }

    static COUNTER: OnceLock<Option<Anchored<Counter>>> = OnceLock::new();

    /// The wall clock, ms since the Unix epoch, through the counter where there is one.
    #[inline]
    pub(super) fn now_ms() -> u64 {
        match COUNTER.get_or_init(counter) {
            Some(clock) => clock.now_ms(),
            None => super::SystemClock::wall_ms(),
        }
    }

    /// Whether readings come from the counter.
    #[cfg(test)]
    pub(super) fn uses_counter() -> bool {
        COUNTER.get_or_init(counter).is_some()
    }

    #[cfg(test)]
    mod tests {
        use super::{Anchored, Source, RESYNC_NS};
        use std::cell::Cell;
        use std::rc::Rc;

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
    }
}

/// A clock that only moves when told to. Clones share one time.
///
/// ```
/// use quota_core::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let shared = clock.clone();
/// shared.advance(500);
/// assert_eq!(clock.now_ms(), 1_500);
/// clock.set(42);
/// assert_eq!(shared.now_ms(), 42);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock to `ms` (backwards too).
    pub fn set(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms`, saturating at `u64::MAX`.
    pub fn advance(&self, ms: u64) {
        // fetch_update never fails here: the closure always returns Some.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::{fast, Clock, SystemClock};
    use std::time::{Duration, Instant};

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
}
