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

    /// The service with the limits of a `limits` list, as a config file or a JS config gives
    /// one (the one home of the rule): the first entry is the service's own limit, and its own
    /// thresholds and `enforce`, if it sets them, are its alone: the service's (already set
    /// here) still apply to every other entry that sets none.
    pub(crate) fn with_listed_limits(mut self, mut listed: Vec<Limit>) -> Result<Self, QuotaError> {
        if listed.is_empty() {
            return Err(QuotaError::invalid_config(
                Some(&self.name),
                "limits",
                "[]",
                "must list at least one limit",
            ));
        }
        let first = listed.remove(0);
        for limit in &mut listed {
            let inherit =
                |own: Option<f64>, first: Option<f64>, service: f64| own.or(first.map(|_| service));
            limit.warn_threshold = inherit(
                limit.warn_threshold,
                first.warn_threshold,
                self.warn_threshold,
            );
            limit.critical_threshold = inherit(
                limit.critical_threshold,
                first.critical_threshold,
                self.critical_threshold,
            );
            limit.enforce = limit.enforce.or(first.enforce.map(|_| self.enforce));
        }
        self.limit = first.count;
        self.window = first.window;
        self.warn_threshold = first.warn_threshold.unwrap_or(self.warn_threshold);
        self.critical_threshold = first.critical_threshold.unwrap_or(self.critical_threshold);
        self.enforce = first.enforce.unwrap_or(self.enforce);
        self.more_limits = listed;
        Ok(self)
    }

    /// How many limits the service has (its own and [`more_limits`](Self::more_limits)).
    pub(crate) fn limit_count(&self) -> usize {
        1 + self.more_limits.len()
    }

    /// The rule of the limit at `at` (0: the service's own), resolved.
    pub(crate) fn limit_rule(&self, at: usize) -> LimitRule<'_> {
        let Some(limit) = at.checked_sub(1).map(|more| &self.more_limits[more]) else {
            return LimitRule {
                count: self.limit,
                window: &self.window,
                warn_threshold: self.warn_threshold,
                critical_threshold: self.critical_threshold,
                reserve_fraction: self.reserve_fraction,
                enforce: self.enforce,
            };
        };
        LimitRule {
            count: limit.count,
            window: &limit.window,
            warn_threshold: limit.warn_threshold.unwrap_or(self.warn_threshold),
            critical_threshold: limit.critical_threshold.unwrap_or(self.critical_threshold),
            reserve_fraction: self.reserve_fraction,
            enforce: limit.enforce.unwrap_or(self.enforce),
        }
    }

    /// Every limit's rule, the service's own first.
    pub(crate) fn limit_rules(&self) -> impl Iterator<Item = LimitRule<'_>> + '_ {
        (0..self.limit_count()).map(|at| self.limit_rule(at))
    }

    /// Checks the limit at `at` (0: the service's own, whose errors name its fields; the others'
    /// name `limits` and the entry, counted from 1 as a list is read): a count of at least 1,
    /// thresholds in (0, 1] and in order, and a reserve that leaves normal calls some calls.
    pub(super) fn check_limit(&self, at: usize) -> Result<(), QuotaError> {
        let rule = self.limit_rule(at);
        let invalid = |field: &'static str, value: &dyn std::fmt::Display, reason: &str| {
            Err(match at {
                0 => QuotaError::invalid_config(Some(&self.name), field, value, reason),
                _ => QuotaError::invalid_config(
                    Some(&self.name),
                    "limits",
                    value,
                    format!("entry {}: {field} {reason}", at + 1),
                ),
            })
        };
        if rule.count == 0 {
            return invalid("limit", &0, "must be at least 1");
        }
        for (field, value) in [
            ("warn_threshold", rule.warn_threshold),
            ("critical_threshold", rule.critical_threshold),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return invalid(field, &Float(value), "must be in (0, 1]");
            }
        }
        if rule.warn_threshold > rule.critical_threshold {
            return invalid(
                "warn_threshold",
                &Float(rule.warn_threshold),
                &format!(
                    "must not exceed the critical threshold ({})",
                    Float(rule.critical_threshold)
                ),
            );
        }
        // A fraction a hair below 1 whose calls round to the whole limit (the thresholds
        // forgive float noise): nothing would be left for normal calls. (Its range is the
        // service's check.)
        let reserve_in_range = (0.0..1.0).contains(&rule.reserve_fraction);
        if reserve_in_range
            && crate::level::calls_at_most(rule.count, rule.reserve_fraction) >= rule.count
        {
            return invalid(
                "reserve_fraction",
                &Float(rule.reserve_fraction),
                &format!("must leave normal calls some of the limit ({})", rule.count),
            );
        }
        Ok(())
    }

    /// Checks [`more_limits`](Self::more_limits): each as the service's own limit is checked,
    /// no two windows alike, at most [`MAX_LIMITS`](Self::MAX_LIMITS).
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
        for at in 1..self.limit_count() {
            let window = self.limit_rule(at).window;
            if let Some(first) = (0..at).find(|&before| self.limit_rule(before).window == window) {
                return invalid(
                    &Quoted(&window.key()),
                    format!(
                        "entry {} has the window of entry {}: each limit of a service needs its \
                         own window",
                        at + 1,
                        first + 1
                    ),
                );
            }
            self.check_limit(at)?;
        }
        Ok(())
    }
}
