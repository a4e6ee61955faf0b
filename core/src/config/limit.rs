//! A service's limits: the first is the service's own `limit` per `window`; [`Limit`]s add
//! more (Tiingo: 50 an hour *and* 1,000 a day), each counted in its own window.

use super::ServiceConfig;
use crate::error::QuotaError;
use crate::text::{Float, Quoted};
use crate::window::WindowSpec;
use serde::{Deserialize, Serialize};

/// One more limit of a service ([`ServiceConfigBuilder::and_limit`](super::ServiceConfigBuilder::and_limit)):
/// `count` calls per `window`, with thresholds and `enforce` of its own or, where it sets
/// none, the service's. A call is admitted only if every limit of its service admits it, and
/// is counted in every limit's window, in one step.
///
/// ```
/// use quota_core::{Limit, Period, ServiceConfig};
/// // Tiingo's free plan: 50 requests an hour and 1,000 a day.
/// let tiingo = ServiceConfig::builder("tiingo", 50, Period::Hour)
///     .and_limit(Limit::new(1_000, Period::Day))
///     .build()?;
/// assert_eq!(tiingo.limits().count(), 2);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limit {
    /// Calls allowed per window, at least 1 (`limit` in files and serde, as a service's own).
    #[serde(rename = "limit")]
    pub count: u64,
    /// The window (flattened as a service's: `period`, `every`, `timezone`, `anchor_day`). No
    /// two limits of a service have the same.
    #[serde(flatten)]
    pub window: WindowSpec,
    /// The warn threshold (fraction of `count`); `None`: the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_threshold: Option<f64>,
    /// The critical threshold (fraction of `count`); `None`: the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_threshold: Option<f64>,
    /// Whether this limit denies (`false`: shadow mode for this limit alone); `None`: the
    /// service's [`enforce`](ServiceConfig::enforce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
}

impl Limit {
    /// `count` calls per `window`, with the service's thresholds and `enforce`.
    pub fn new(count: u64, window: impl Into<WindowSpec>) -> Self {
        Limit {
            count,
            window: window.into(),
            warn_threshold: None,
            critical_threshold: None,
            enforce: None,
        }
    }

    /// This limit's own warn threshold (fraction of its count).
    #[must_use]
    pub fn warn_threshold(mut self, fraction: f64) -> Self {
        self.warn_threshold = Some(fraction);
        self
    }

    /// This limit's own critical threshold (fraction of its count).
    #[must_use]
    pub fn critical_threshold(mut self, fraction: f64) -> Self {
        self.critical_threshold = Some(fraction);
        self
    }

    /// Whether this limit denies; `false` counts and reports only (shadow mode).
    #[must_use]
    pub fn enforce(mut self, enforce: bool) -> Self {
        self.enforce = Some(enforce);
        self
    }
}

/// A limit with every setting resolved (its own, or the service's): what the rules are
/// computed from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitRule<'c> {
    pub(crate) count: u64,
    pub(crate) window: &'c WindowSpec,
    pub(crate) warn_threshold: f64,
    pub(crate) critical_threshold: f64,
    pub(crate) reserve_fraction: f64,
    pub(crate) enforce: bool,
}

impl ServiceConfig {
    /// The most limits a service has (its own and [`more_limits`](Self::more_limits)).
    pub const MAX_LIMITS: usize = 8;

    /// Every limit of the service, resolved: first its own (`limit` per `window`, with the
    /// service's thresholds), then [`more_limits`](Self::more_limits), each with its own
    /// thresholds and `enforce` or the service's.
    pub fn limits(&self) -> impl Iterator<Item = Limit> + '_ {
        self.limit_rules().map(|rule| Limit {
            count: rule.count,
            window: rule.window.clone(),
            warn_threshold: Some(rule.warn_threshold),
            critical_threshold: Some(rule.critical_threshold),
            enforce: Some(rule.enforce),
        })
    }

    /// Every limit's rule, the service's own first.
    pub(crate) fn limit_rules(&self) -> impl Iterator<Item = LimitRule<'_>> + '_ {
        let own = LimitRule {
            count: self.limit,
            window: &self.window,
            warn_threshold: self.warn_threshold,
            critical_threshold: self.critical_threshold,
            reserve_fraction: self.reserve_fraction,
            enforce: self.enforce,
        };
        std::iter::once(own).chain(self.more_limits.iter().map(move |limit| LimitRule {
            count: limit.count,
            window: &limit.window,
            warn_threshold: limit.warn_threshold.unwrap_or(self.warn_threshold),
            critical_threshold: limit.critical_threshold.unwrap_or(self.critical_threshold),
            reserve_fraction: self.reserve_fraction,
            enforce: limit.enforce.unwrap_or(self.enforce),
        }))
    }

    /// Checks [`more_limits`](Self::more_limits): each as the service's own limit is checked,
    /// no two windows alike, at most [`MAX_LIMITS`](Self::MAX_LIMITS), `Local` admission.
    pub(super) fn validate_more_limits(&self) -> Result<(), QuotaError> {
        if self.more_limits.is_empty() {
            return Ok(());
        }
        let invalid = |value: &dyn std::fmt::Display, reason: String| {
            Err(QuotaError::invalid_config(
                Some(&self.name),
                "limits",
                value,
                reason,
            ))
        };
        let count = self.more_limits.len() + 1;
        if count > Self::MAX_LIMITS {
            return invalid(
                &count,
                format!("must be at most {} per service", Self::MAX_LIMITS),
            );
        }
        if self.admission != super::Admission::Local {
            // The store's admission scripts decide one window per call today.
            return invalid(
                &format_args!("{:?}", self.admission),
                "with more than one limit need Admission::Local in this version (each \
                 limit's count still syncs through the store)"
                    .into(),
            );
        }
        let windows: Vec<&WindowSpec> = self.limit_rules().map(|rule| rule.window).collect();
        for (at, rule) in self.limit_rules().enumerate().skip(1) {
            let entry = at + 1;
            if let Some(first) = windows[..at].iter().position(|w| *w == rule.window) {
                return invalid(
                    &Quoted(&rule.window.key()),
                    format!(
                        "entry {entry} has the window of entry {}: each limit of a service \
                         needs its own window",
                        first + 1
                    ),
                );
            }
            if rule.count == 0 {
                return invalid(&0, format!("entry {entry}: limit must be at least 1"));
            }
            for (field, value) in [
                ("warn_threshold", rule.warn_threshold),
                ("critical_threshold", rule.critical_threshold),
            ] {
                if !(value > 0.0 && value <= 1.0) {
                    return invalid(
                        &Float(value),
                        format!("entry {entry}: {field} must be in (0, 1]"),
                    );
                }
            }
            if rule.warn_threshold > rule.critical_threshold {
                return invalid(
                    &Float(rule.warn_threshold),
                    format!(
                        "entry {entry}: warn_threshold must not exceed the critical threshold ({})",
                        Float(rule.critical_threshold)
                    ),
                );
            }
            if crate::level::calls_at_most(rule.count, rule.reserve_fraction) >= rule.count {
                return invalid(
                    &Float(rule.reserve_fraction),
                    format!(
                        "entry {entry}: reserve_fraction must leave normal calls some of the \
                         limit ({})",
                        rule.count
                    ),
                );
            }
        }
        Ok(())
    }
}
