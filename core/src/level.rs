//! How close a service is to its limit.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How close a service is to its limit, ordered `Normal < Warning < Critical < Exhausted`.
///
/// ```
/// use quota_core::Level;
/// assert!(Level::Normal < Level::Warning && Level::Critical < Level::Exhausted);
/// assert_eq!(Level::Critical.as_str(), "critical");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Below the warn threshold.
    Normal,
    /// At or above the warn threshold.
    Warning,
    /// At or above the critical threshold: `can_call` says no from here on.
    Critical,
    /// Nothing remains in this window.
    Exhausted,
}

impl Level {
    /// The level of `used` calls against `limit`, given the unit thresholds
    /// (`warn_at <= critical_at`, both computed by [`Thresholds::new`]).
    pub(crate) fn of(used: u64, limit: u64, thresholds: Thresholds) -> Level {
        if used >= limit {
            Level::Exhausted
        } else if used >= thresholds.critical_at {
            Level::Critical
        } else if used >= thresholds.warn_at {
            Level::Warning
        } else {
            Level::Normal
        }
    }

    /// The lowercase word for this level: `normal`, `warning`, `critical` or `exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::Exhausted => "exhausted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The warn and critical thresholds of one service, in calls.
///
/// Computed once from the fractional thresholds so that the hot path compares integers, and
/// so that `0.7 x 100` means 70 calls even though `0.7 * 100.0` is `70.00000000000001`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub(crate) warn_at: u64,
    pub(crate) critical_at: u64,
}

impl Thresholds {
    pub(crate) fn new(limit: u64, warn: f64, critical: f64) -> Thresholds {
        Thresholds {
            warn_at: calls_at_least(limit, warn),
            critical_at: calls_at_least(limit, critical),
        }
    }
}

/// The smallest whole number of calls `>= fraction x limit`, forgiving float noise.
pub(crate) fn calls_at_least(limit: u64, fraction: f64) -> u64 {
    whole_calls(limit, fraction, f64::ceil)
}

/// The largest whole number of calls `<= fraction x limit`, forgiving float noise.
pub(crate) fn calls_at_most(limit: u64, fraction: f64) -> u64 {
    whole_calls(limit, fraction, f64::floor)
}

/// `fraction x limit` in whole calls: the nearest whole number when the product is one up to
/// float noise (0.7 x 10 is 7.000000000000001), else `round` of it.
fn whole_calls(limit: u64, fraction: f64, round: fn(f64) -> f64) -> u64 {
    let exact = fraction * limit as f64;
    let nearest = exact.round();
    if (exact - nearest).abs() <= exact.abs() * 1e-12 {
        nearest as u64
    } else {
        round(exact) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_forgive_float_noise() {
        assert_eq!(calls_at_least(100, 0.7), 70);
        assert_eq!(calls_at_least(500, 0.8), 400);
        assert_eq!(calls_at_least(60, 0.5), 30);
        assert_eq!(calls_at_least(3, 0.5), 2);
        assert_eq!(calls_at_most(500, 0.1), 50);
        assert_eq!(calls_at_most(60, 0.1), 6);
        assert_eq!(calls_at_most(15, 0.1), 1);
    }

    #[test]
    fn level_boundaries() {
        let t = Thresholds::new(100, 0.5, 0.8);
        assert_eq!(Level::of(49, 100, t), Level::Normal);
        assert_eq!(Level::of(50, 100, t), Level::Warning);
        assert_eq!(Level::of(79, 100, t), Level::Warning);
        assert_eq!(Level::of(80, 100, t), Level::Critical);
        assert_eq!(Level::of(99, 100, t), Level::Critical);
        assert_eq!(Level::of(100, 100, t), Level::Exhausted);
        assert_eq!(Level::of(150, 100, t), Level::Exhausted);
    }
}
