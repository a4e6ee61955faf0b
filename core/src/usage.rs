//! Plain values the tracker hands out: usage, transitions, snapshots.

use crate::config::{LimitRule, ServiceConfig};
use crate::level::{Level, Thresholds};
use crate::rules::{Change, ServiceState};
use crate::window::{Period, WindowSpec};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// One service's usage in its current window, at one instant. A plain value: it does not change
/// when the tracker does.
///
/// The name is borrowed from the tracker where it can be (the results of `record_call`,
/// `try_record` and `usage` allocate nothing); [`into_owned`](Self::into_owned) makes a value
/// that outlives the tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceUsage<'t> {
    /// The service's name.
    pub name: Cow<'t, str>,
    /// Calls recorded in the current window (may exceed `limit`: `record_call` always records).
    /// With a store, this tracker's view: the shared total at its last sync plus its own calls
    /// since. Under [`Admission::Leased`](crate::Admission::Leased) it counts the block in hand
    /// as used, spent or not (that is what admission decides on): after one call with
    /// `block: 100` it reads 100; the calls really made reach the store when the unused part
    /// is given back (`flush`, drop, the window's end).
    pub used: u64,
    /// Calls allowed per window.
    pub limit: u64,
    /// `limit - used`, saturating at 0.
    pub remaining: u64,
    /// The window length.
    pub period: Period,
    /// Start of the current window, ms since the Unix epoch.
    pub window_start_ms: u64,
    /// When the current window ends and `used` restarts at 0, ms since the Unix epoch.
    pub reset_at_ms: u64,
    /// Calls recorded since the tracker was created, summed across all windows.
    pub total_recorded: u64,
    /// The warn threshold (fraction of the limit) the level is computed with.
    pub warn_threshold: f64,
    /// The critical threshold (fraction of the limit) the level is computed with.
    pub critical_threshold: f64,
    /// The service's level where it has several limits: the highest of its limits', which
    /// may be above this (binding) limit's own. `None`: [`level`](Self::level) computes it
    /// from the fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service_level: Option<Level>,
}

impl<'t> ServiceUsage<'t> {
    /// The usage of the service `name` configured by `config`, in `state`: the one builder,
    /// for the tracker's services and the racy demonstration's.
    #[inline]
    pub(crate) fn of(name: &'t str, config: &ServiceConfig, state: &ServiceState) -> Self {
        ServiceUsage {
            name: Cow::Borrowed(name),
            used: state.used,
            limit: config.limit,
            remaining: config.limit.saturating_sub(state.used),
            period: config.window.period(),
            window_start_ms: state.window.start_ms,
            reset_at_ms: state.window.reset_at_ms,
            total_recorded: state.total,
            warn_threshold: config.warn_threshold,
            critical_threshold: config.critical_threshold,
            service_level: None,
        }
    }

    /// The usage of one limit (`rule`) of the service `name`, in `state`, at its own level.
    pub(crate) fn of_limit(name: &'t str, rule: LimitRule<'_>, state: &ServiceState) -> Self {
        ServiceUsage {
            name: Cow::Borrowed(name),
            used: state.used,
            limit: rule.count,
            remaining: rule.count.saturating_sub(state.used),
            period: rule.window.period(),
            window_start_ms: state.window.start_ms,
            reset_at_ms: state.window.reset_at_ms,
            total_recorded: state.total,
            warn_threshold: rule.warn_threshold,
            critical_threshold: rule.critical_threshold,
            service_level: None,
        }
    }

    /// The same usage at the service's `level` (the highest of its limits').
    pub(crate) fn at_level(self, level: Level) -> Self {
        ServiceUsage {
            service_level: Some(level),
            ..self
        }
    }
}

impl ServiceUsage<'_> {
    /// The same usage, owning its name.
    pub fn into_owned(self) -> ServiceUsage<'static> {
        ServiceUsage {
            name: Cow::Owned(self.name.into_owned()),
            ..self
        }
    }

    /// `used / limit x 100` (above 100 when more than the limit was recorded).
    pub fn percent_used(&self) -> f64 {
        self.used as f64 / self.limit as f64 * 100.0
    }

    /// The level: Warning from `warn_threshold x limit` calls, Critical from
    /// `critical_threshold x limit`, Exhausted when nothing remains. For a service of several
    /// limits, the highest of its limits' levels (which may be above this limit's own).
    pub fn level(&self) -> Level {
        if let Some(level) = self.service_level {
            return level;
        }
        let thresholds = Thresholds::new(self.limit, self.warn_threshold, self.critical_threshold);
        Level::of(self.used, self.limit, thresholds)
    }

    /// `level() >= Warning`.
    pub fn is_warning(&self) -> bool {
        self.level() >= Level::Warning
    }

    /// `level() >= Critical`.
    pub fn is_critical(&self) -> bool {
        self.level() >= Level::Critical
    }

    /// Which of a service's limits ([`usage_limits`](crate::QuotaTracker::usage_limits), in
    /// its order) a count reported from outside belongs to, as
    /// [`raise_used`](crate::QuotaTracker::raise_used) decides: the limit of the shortest
    /// window that contains `resets_at_ms` (`window_start_ms < resets_at_ms <= reset_at_ms`;
    /// of two as long, the one whose reset is nearest `resets_at_ms`, then the first), or for
    /// `None` the shortest window's. `None` when no
    /// window contains it (`raise_used` ignores such a report).
    ///
    /// What turns a provider's "remaining" into "used" (`limits[i].limit - remaining`) for the
    /// limit `raise_used` will raise.
    ///
    /// ```
    /// use quota_core::{Limit, ManualClock, Period, QuotaTracker, ServiceConfig, ServiceUsage,
    ///     TrackerConfig};
    ///
    /// let tiingo = ServiceConfig::builder("tiingo", 50, Period::Hour)
    ///     .and_limit(Limit::new(1_000, Period::Day))
    ///     .build()?;
    /// // 2024-06-10 06:13:20 UTC: the hour ends at 07:00, the day at midnight.
    /// let tracker = QuotaTracker::new_with_clock(
    ///     TrackerConfig::new([tiingo]),
    ///     ManualClock::new(1_718_000_000_000),
    /// )?;
    /// let limits = tracker.usage_limits("tiingo")?;
    /// let (hour_end, day_end) = (limits[0].reset_at_ms, limits[1].reset_at_ms);
    /// assert_eq!(ServiceUsage::limit_for_reset(&limits, Some(day_end)), Some(1));
    /// assert_eq!(ServiceUsage::limit_for_reset(&limits, Some(hour_end)), Some(0));
    /// assert_eq!(ServiceUsage::limit_for_reset(&limits, None), Some(0));
    /// assert_eq!(ServiceUsage::limit_for_reset(&limits, Some(day_end + 1)), None);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    pub fn limit_for_reset(
        limits: &[ServiceUsage<'_>],
        resets_at_ms: Option<u64>,
    ) -> Option<usize> {
        limit_for_reset(
            limits
                .iter()
                .map(|usage| (usage.window_start_ms, usage.reset_at_ms)),
            resets_at_ms,
        )
    }
}

/// [`ServiceUsage::limit_for_reset`] over each limit's current window (`(start_ms,
/// reset_at_ms)`, in the limits' order): the one rule, for `raise_used` and for its callers.
pub(crate) fn limit_for_reset(
    windows: impl Iterator<Item = (u64, u64)>,
    resets_at_ms: Option<u64>,
) -> Option<usize> {
    windows
        .enumerate()
        .filter(|(_, (start, end))| resets_at_ms.is_none_or(|at| *start < at && at <= *end))
        // The shortest; of equal lengths (an hour in UTC and one in Asia/Kolkata), the one whose
        // reset is nearest the reported one; then the first.
        .min_by_key(|(at, (start, end))| {
            let off = resets_at_ms.map_or(0, |reset| end.saturating_sub(reset));
            (end - start, off, *at)
        })
        .map(|(at, _)| at)
}

/// A change of one service's level, caused by recorded calls (upwards) or by the window
/// resetting (downwards). Transitions are rare and get queued for observers, so they own their
/// data; the name is shared with the tracker (cloning it copies no text). Two are equal when
/// their public fields are (a transition read back from JSON equals the one written).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transition {
    /// The service whose level changed.
    pub service: Arc<str>,
    /// The level before.
    pub from: Level,
    /// The level after.
    pub to: Level,
    /// Calls used in the window right after the change.
    pub used: u64,
    /// The limit whose level changed: its calls per window.
    pub limit: u64,
    /// The limit's window: a service of several limits has one transition per limit whose
    /// level changed, each naming its window.
    pub window: WindowSpec,
    /// When it happened (the tracker clock), ms since the Unix epoch.
    pub at_ms: u64,
    /// Whether the service had several limits then: the metrics label such a transition's
    /// series by its window (a service of one keeps its unlabelled series).
    #[serde(skip)]
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) several: bool,
}

impl PartialEq for Transition {
    fn eq(&self, other: &Self) -> bool {
        // Not `several`: a hint for the metrics, which JSON does not carry.
        self.service == other.service
            && self.from == other.from
            && self.to == other.to
            && self.used == other.used
            && self.limit == other.limit
            && self.window == other.window
            && self.at_ms == other.at_ms
    }
}

impl Eq for Transition {}

impl Transition {
    /// The transition of the service `service`'s limit of `limit` calls per `window` that
    /// `change` describes; `several`: the service has several limits.
    pub(crate) fn of(
        service: &Arc<str>,
        limit: u64,
        window: &WindowSpec,
        change: Change,
        several: bool,
    ) -> Self {
        Transition {
            service: Arc::clone(service),
            from: change.from,
            to: change.to,
            used: change.used,
            limit,
            window: window.clone(),
            at_ms: change.at_ms,
            several,
        }
    }
}

/// What [`record_call`](crate::QuotaTracker::record_call) and
/// [`try_record`](crate::QuotaTracker::try_record) return. Borrows the service name from the
/// tracker; [`into_owned`](Self::into_owned) for a value to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<'t> {
    /// The service's usage right after recording.
    pub usage: ServiceUsage<'t>,
    /// The downward change of a window reset this call performed before recording, if any.
    pub reset: Option<Transition>,
    /// The level change the recording itself made, if any (after `reset`).
    pub recorded: Option<Transition>,
    /// Shadow mode ([`ServiceConfig::enforce`](crate::ServiceConfig::enforce) `false`): the
    /// rule that would have denied this call, which was admitted and counted instead. Always
    /// `None` where admission is enforced.
    pub shadow_denied: Option<crate::DenyReason>,
}

impl Recorded<'_> {
    /// The latest level change this call made: `recorded`, or else `reset`.
    pub fn transition(&self) -> Option<&Transition> {
        self.recorded.as_ref().or(self.reset.as_ref())
    }

    /// The level changes this call made, in the order they happened (reset first).
    pub fn transitions(&self) -> impl Iterator<Item = &Transition> {
        self.reset.iter().chain(&self.recorded)
    }

    /// The same result, owning the service name.
    pub fn into_owned(self) -> Recorded<'static> {
        Recorded {
            usage: self.usage.into_owned(),
            reset: self.reset,
            recorded: self.recorded,
            shadow_denied: self.shadow_denied,
        }
    }
}

/// What [`raise_used`](crate::QuotaTracker::raise_used) returns. Borrows the service name from
/// the tracker; [`into_owned`](Self::into_owned) for a value to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised<'t> {
    /// The service's usage right after.
    pub usage: ServiceUsage<'t>,
    /// Whether the report belonged to the current window and was taken in (`used` rose to
    /// it, or already was at least as high); `false`: ignored, nothing but a due roll-over
    /// changed.
    pub applied: bool,
    /// The downward change of a window reset this call performed first, if any.
    pub reset: Option<Transition>,
    /// The level change the raise made, if any (after `reset`).
    pub recorded: Option<Transition>,
}

impl Raised<'_> {
    /// The same result, owning the service name.
    pub fn into_owned(self) -> Raised<'static> {
        Raised {
            usage: self.usage.into_owned(),
            ..self
        }
    }
}

/// Every service's usage at one instant: no call was half-recorded when it was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub(crate) services: Vec<ServiceUsage<'static>>,
    pub(crate) at_ms: u64,
}

impl Snapshot {
    /// Every service, in config order.
    pub fn services(&self) -> &[ServiceUsage<'static>] {
        &self.services
    }

    /// One service by name.
    pub fn service(&self, name: &str) -> Option<&ServiceUsage<'static>> {
        self.services.iter().find(|usage| usage.name == name)
    }

    /// The sum of `used` over all services (saturating).
    pub fn total_used(&self) -> u64 {
        self.services
            .iter()
            .fold(0u64, |total, usage| total.saturating_add(usage.used))
    }

    /// When it was taken (the tracker clock), ms since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        self.at_ms
    }
}
