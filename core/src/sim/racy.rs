//! DEMONSTRATION ONLY: the lost-update bug that [`QuotaTracker`](crate::QuotaTracker) exists to
//! prevent, kept so the simulator and the dashboard can show it happening.
//!
//! The original code kept every counter in one shared state and updated it in three steps:
//! copy the whole state, change the copy, write the whole copy back. Two workers that copy the
//! same state both write back, and the second write erases the first worker's calls. Each step
//! here is atomic on its own (so this is safe Rust), but nothing holds the state between them.

use crate::config::{ServiceConfig, TrackerConfig};
use crate::error::QuotaError;
use crate::rules::{Change, Request, ServiceRules, ServiceState};
use crate::usage::{Recorded, ServiceUsage, Snapshot, Transition};
use std::sync::Arc;
// Deliberately std's Mutex, not the crate's loom-aware one: this store is not part of what the
// loom tests check, and each lock covers one copy or one write, never the read-modify-write.
use std::sync::Mutex;

/// DEMONSTRATION ONLY, not a quota tracker: per-service counts updated by copying the whole
/// state ([`load`](Self::load)), changing the copy ([`RacyState::record`]) and writing the whole
/// copy back ([`store`](Self::store)). Concurrent updates get lost. Use
/// [`QuotaTracker`](crate::QuotaTracker) for real counting.
///
/// ```
/// use quota_core::sim::RacyCounts;
/// use quota_core::TrackerConfig;
///
/// let counts = RacyCounts::new(TrackerConfig::defaults(), 0)?;
/// let mut first = counts.load(); // worker 1 copies the state
/// let mut second = counts.load(); // worker 2 copies the same state
/// first.record("tiingo", 5, 0)?;
/// second.record("tiingo", 3, 0)?;
/// counts.store(first);
/// counts.store(second); // erases worker 1's 5 calls
/// assert_eq!(counts.snapshot(0).service("tiingo").unwrap().total_recorded, 3);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[derive(Debug)]
pub struct RacyCounts {
    state: Mutex<RacyState>,
}

/// A copy of the whole racy state, taken by [`RacyCounts::load`].
#[derive(Debug, Clone)]
pub struct RacyState {
    services: Vec<RacyService>,
}

/// One service of a racy copy: the same rules and state as a tracker's service, unguarded.
#[derive(Debug, Clone)]
struct RacyService {
    name: Arc<str>,
    config: ServiceConfig,
    rules: ServiceRules,
    state: ServiceState,
}

impl RacyCounts {
    /// Counts for `config`'s services, with windows starting at `now_ms`.
    ///
    /// Errors: [`QuotaError::InvalidConfig`], as for the tracker.
    pub fn new(config: TrackerConfig, now_ms: u64) -> Result<Self, QuotaError> {
        config.validate()?;
        let services = config
            .services
            .into_iter()
            .map(|config| RacyService {
                name: Arc::from(config.name.as_str()),
                // Reduced-rate mode needs a store, which the demonstration has not.
                rules: ServiceRules::new(&config, 1.0),
                state: ServiceState::new(&config.window, now_ms),
                config,
            })
            .collect();
        Ok(RacyCounts {
            state: Mutex::new(RacyState { services }),
        })
    }

    /// Step 1 of the racy update: a copy of the whole state.
    pub fn load(&self) -> RacyState {
        self.lock().clone()
    }

    /// Step 3 of the racy update: overwrites the whole state with `state`, whatever was written
    /// since it was loaded.
    pub fn store(&self, state: RacyState) {
        *self.lock() = state;
    }

    /// The racy update in one go: [`load`](Self::load), `between()` (where another worker gets
    /// to run: a thread yield, or an await in the browser), [`RacyState::record`],
    /// [`store`](Self::store). Nothing is stored if recording fails.
    pub fn record(
        &self,
        service: &str,
        count: u64,
        now_ms: u64,
        between: impl FnOnce(),
    ) -> Result<Recorded<'static>, QuotaError> {
        let mut copy = self.load();
        between();
        let recorded = copy.record(service, count, now_ms)?;
        self.store(copy);
        Ok(recorded)
    }

    /// Every service's usage as stored now (see [`RacyState::snapshot`]).
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        self.lock().snapshot(now_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RacyState> {
        // Each critical section is one clone or one assignment: a poisoned lock still holds a
        // whole state.
        crate::locks::lock_std(&self.state)
    }
}

impl RacyState {
    /// Records `count` units to `service` in this copy with the tracker's own step (window
    /// roll-over, count, level change), and returns the copy's usage and level changes like
    /// [`QuotaTracker::record_call`](crate::QuotaTracker::record_call) (it always records).
    ///
    /// Errors: [`QuotaError::UnknownService`], [`QuotaError::InvalidCount`]; on error nothing
    /// is counted.
    pub fn record(
        &mut self,
        service: &str,
        count: u64,
        now_ms: u64,
    ) -> Result<Recorded<'static>, QuotaError> {
        let slot = self
            .services
            .iter_mut()
            .find(|slot| *slot.name == *service)
            .ok_or_else(|| QuotaError::UnknownService(service.to_owned()))?;
        let invalid = |reason| QuotaError::InvalidCount {
            service: Arc::clone(&slot.name),
            count,
            reason,
        };
        if count == 0 {
            return Err(invalid("count must be at least 1"));
        }
        let step = slot
            .rules
            .step(&mut slot.state, now_ms, Request::record(count));
        // A plain record is refused only when the counter would overflow.
        if step.refused.is_some() {
            return Err(invalid("the counter would overflow"));
        }
        Ok(Recorded {
            usage: slot.usage().into_owned(),
            reset: step.reset.map(|change| slot.transition(change)),
            recorded: step.recorded.map(|change| slot.transition(change)),
            shadow_denied: None,
        })
    }

    /// Every service's usage in this copy as of `now_ms`, in config order. A window that ended
    /// shows as a fresh one (used 0); the copy itself is not changed.
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        let services = self
            .services
            .iter()
            .map(|slot| {
                let mut fresh = slot.clone();
                fresh.rules.align(&mut fresh.state, now_ms);
                fresh.usage().into_owned()
            })
            .collect();
        Snapshot {
            services,
            at_ms: now_ms,
        }
    }
}

impl RacyService {
    fn transition(&self, change: Change) -> Transition {
        Transition::of(
            &self.name,
            self.rules.limit,
            &self.rules.window,
            change,
            false,
        )
    }

    fn usage(&self) -> ServiceUsage<'_> {
        ServiceUsage::of(&self.name, &self.config, &self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::Level;
    use crate::window::Period;

    const MINUTE: u64 = 60_000;

    fn counts() -> RacyCounts {
        let config = TrackerConfig::new([ServiceConfig::new("search", 10, Period::Minute)]);
        RacyCounts::new(config, 0).unwrap()
    }

    #[test]
    fn sequential_updates_are_all_counted() {
        let counts = counts();
        for _ in 0..7 {
            counts.record("search", 1, 0, || {}).unwrap();
        }
        let usage = counts.snapshot(0).service("search").unwrap().clone();
        assert_eq!((usage.used, usage.total_recorded), (7, 7));
    }

    #[test]
    fn interleaved_updates_lose_the_earlier_write() {
        let counts = counts();
        let mut a = counts.load();
        let mut b = counts.load();
        a.record("search", 4, 0).unwrap();
        b.record("search", 2, 0).unwrap();
        counts.store(a);
        counts.store(b);
        let usage = counts.snapshot(0).service("search").unwrap().clone();
        assert_eq!((usage.used, usage.total_recorded), (2, 2), "4 units lost");
    }

    #[test]
    fn a_racing_update_between_copy_and_write_is_erased() {
        let counts = counts();
        counts
            .record("search", 1, 0, || {
                counts.record("search", 5, 0, || {}).unwrap();
            })
            .unwrap();
        assert_eq!(counts.snapshot(0).services()[0].total_recorded, 1);
    }

    #[test]
    fn transitions_and_window_resets_match_the_tracker() {
        let counts = counts();
        let up = counts.record("search", 8, 0, || {}).unwrap();
        let transition = up.transition().unwrap();
        assert_eq!(
            (transition.from, transition.to),
            (Level::Normal, Level::Critical)
        );
        assert!(up.reset.is_none());
        // Next minute: the copy rolls over (critical -> normal), then 6 units make it warning.
        let next = counts.record("search", 6, MINUTE, || {}).unwrap();
        let reset = next.reset.unwrap();
        assert_eq!((reset.from, reset.to), (Level::Critical, Level::Normal));
        assert_eq!(next.recorded.unwrap().to, Level::Warning);
        assert_eq!(next.usage.used, 6);
        assert_eq!(next.usage.total_recorded, 14);
        // A reset alone is reported as the transition.
        let quiet = counts.record("search", 1, 2 * MINUTE, || {}).unwrap();
        assert_eq!(quiet.transition().unwrap().to, Level::Normal);
        assert!(quiet.recorded.is_none());
    }

    #[test]
    fn snapshot_shows_an_ended_window_as_fresh_without_changing_it() {
        let counts = counts();
        counts.record("search", 9, 0, || {}).unwrap();
        let later = counts.snapshot(MINUTE);
        let usage = &later.services()[0];
        assert_eq!((usage.used, usage.total_recorded), (0, 9));
        assert_eq!(usage.window_start_ms, MINUTE);
        assert_eq!(counts.snapshot(0).services()[0].used, 9);
    }

    #[test]
    fn errors_change_nothing() {
        let counts = counts();
        let mut copy = counts.load();
        assert!(matches!(
            copy.record("nope", 1, 0),
            Err(QuotaError::UnknownService(_))
        ));
        assert!(matches!(
            copy.record("search", 0, 0),
            Err(QuotaError::InvalidCount { .. })
        ));
        copy.record("search", 3, 0).unwrap();
        assert!(matches!(
            copy.record("search", u64::MAX, 0),
            Err(QuotaError::InvalidCount { .. })
        ));
        let after = copy.snapshot(0);
        assert_eq!(
            (after.services()[0].used, after.services()[0].total_recorded),
            (3, 3)
        );
        assert!(RacyCounts::new(
            TrackerConfig::new([ServiceConfig::new("x", 0, Period::Day)]),
            0
        )
        .is_err());
    }
}
