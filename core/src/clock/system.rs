//! The system's wall clock: natively the CPU's counter, calibrated and re-anchored on the wall
//! clock every millisecond; `Date.now()` on wasm32.

use super::Clock;
#[cfg(doc)]
use super::ManualClock;

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
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
