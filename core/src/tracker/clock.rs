//! Where the tracker reads the time, and what it does when a user's clock panics.

use super::QuotaTracker;
use crate::clock::{Clock, SystemClock};
use crate::locks::Ordering;
use crate::observers::quietly;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Where the tracker reads the time. The [`SystemClock`] is read directly: it cannot panic
/// (see [`SystemClock::wall_ms`]), so it needs no panic guard and no dynamic call; any other
/// clock is called through `dyn Clock` under `catch_unwind`.
pub(super) enum TrackerClock {
    System,
    Other(Box<dyn Clock>),
}

impl TrackerClock {
    pub(super) fn of<C: Clock + 'static>(clock: C) -> Self {
        if (&clock as &dyn Any).is::<SystemClock>() {
            TrackerClock::System
        } else {
            TrackerClock::Other(Box::new(clock))
        }
    }
}

impl QuotaTracker {
    /// Reads the clock. A clock that panics is reported and its last good reading (to
    /// within a second) is used instead.
    #[inline]
    pub(super) fn now(&self) -> u64 {
        match &self.clock {
            TrackerClock::System => SystemClock.now_ms(),
            TrackerClock::Other(clock) => self.guarded_now(&**clock),
        }
    }

    /// Reads a user's clock under a panic guard.
    pub(super) fn guarded_now(&self, clock: &dyn Clock) -> u64 {
        match catch_unwind(AssertUnwindSafe(|| clock.now_ms())) {
            Ok(now) => {
                // Written about once a second, so threads do not contend on it.
                if now.abs_diff(self.last_good_ms.load(Ordering::Relaxed)) >= 1_000 {
                    self.last_good_ms.store(now, Ordering::Relaxed);
                }
                now
            }
            Err(payload) => {
                std::mem::forget(payload);
                quietly(|| log::error!("quota: the clock panicked; using its last good reading"));
                self.last_good_ms.load(Ordering::Relaxed)
            }
        }
    }
}
