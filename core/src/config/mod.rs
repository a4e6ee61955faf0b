//! Configuration: what a tracker counts ([`ServiceConfig`], [`Admission`], [`TrackerConfig`],
//! validated here) and the config file that says it ([`QuotaFile`]: `file.rs` reads it,
//! `repr.rs` is its schema, `position.rs` locates its errors, `store_url.rs` names its store).
//!
//! Nothing here depends on the tracker: building one from a file is `tracker/from_file.rs`.
//! The JS module reads the same config from JS objects (`js/input.rs`); `tests/schema.rs`
//! fails if the readers' field names drift apart.

mod error;
mod file;
mod limit;
mod policy;
mod position;
mod repr;
mod store_url;
#[cfg(test)]
pub(crate) mod tests;

pub use error::ConfigError;
pub use file::{ConfigFormat, QuotaFile};
pub use limit::Limit;
pub(crate) use limit::LimitRule;
pub use policy::{ReducedRatePolicy, SyncPolicy};
pub use store_url::{RedisUrl, StoreUrl, StoreUrlError};

use crate::error::QuotaError;
use crate::sorted::Lookup;
use crate::text::{Float, Quoted};
use crate::window::{Period, WindowSpec, WindowSpecError};
use serde::{Deserialize, Serialize};

/// One rate-limited service: `limit` calls per `period`, with its thresholds.
///
/// ```
/// use quota_core::{Period, ServiceConfig};
/// let openai = ServiceConfig::builder("openai", 10_000, Period::Day)
///     .warn_threshold(0.6)
///     .critical_threshold(0.9)
///     .build()
///     .unwrap();
/// assert_eq!(openai.reserve_fraction, 0.1);
/// assert!(ServiceConfig::builder("bad", 0, Period::Day).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Non-exhaustive: several limits per service (issue 18) add fields.
#[non_exhaustive]
pub struct ServiceConfig {
    /// Unique, non-empty name that calls are recorded under.
    pub name: String,
    /// Calls allowed per window, at least 1.
    pub limit: u64,
    /// The window: a [`Period`], or N of them, in an IANA time zone, a month from an anchor
    /// day ([`WindowSpec`]). Flattened in files and serde: `period`, `every`, `timezone`,
    /// `anchor_day`.
    #[serde(flatten)]
    pub window: WindowSpec,
    /// Fraction of the limit at which the level becomes Warning, in (0, 1]; default 0.5.
    pub warn_threshold: f64,
    /// Fraction of the limit at which the level becomes Critical, in (0, 1]; default 0.8.
    pub critical_threshold: f64,
    /// Fraction of the limit held back as a reserve for priority calls, in [0, 1); default 0.1.
    /// Normal admission (`try_record`, `can_call`) stops at `limit - floor(limit x
    /// reserve_fraction)` if that comes before the Critical threshold;
    /// [`try_record_priority`](crate::QuotaTracker::try_record_priority) may use the reserve.
    pub reserve_fraction: f64,
    /// How calls are admitted when instances share the quota through a store (default
    /// [`Admission::Local`]).
    #[serde(default)]
    pub admission: Admission,
    /// Whether admission denies (default `true`). `false` is shadow mode, for rolling a new
    /// quota out safely: every call is counted and levels change as usual, and where a call
    /// would have been denied it is admitted and reported instead
    /// ([`Recorded::shadow_denied`](crate::Recorded::shadow_denied), the JS result's
    /// `shadowDenied`, the metric `quota_shadow_denied_total{service,reason}`). `can_call`
    /// answers `true`. Shadow mode decides on this instance's view, so it takes
    /// [`Admission::Local`] (a shared count still syncs through the store).
    #[serde(default = "enforce_by_default")]
    pub enforce: bool,
    /// Limits besides `limit` per `window`, each in its own window (no two alike), at most
    /// [`MAX_LIMITS`](Self::MAX_LIMITS) in all: a call is admitted only if every limit admits
    /// it, and counted in every limit's window, in one step. Each has its own level and
    /// transitions; the service's level is the highest. Empty by default (one limit). With
    /// more than one, shared admission ([`Admission::Exact`], [`Admission::Leased`]) needs a
    /// store that checks every window in one step
    /// ([`Store::several_windows`](crate::Store::several_windows)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_limits: Vec<Limit>,
}

fn enforce_by_default() -> bool {
    true
}

/// The window spec of a config file's or a JS config's service `name`, from the integers as
/// written (any `i64`: a value past `u32` or `u8` gets the field's range message too); a refusal
/// is the tracker's own config error, naming the field (`every`, `timezone`, `anchor_day`).
pub(crate) fn window_spec(
    name: &str,
    period: Period,
    every: i64,
    timezone: Option<&str>,
    anchor_day: Option<i64>,
) -> Result<WindowSpec, QuotaError> {
    // Out of their types' ranges: 0, which the spec refuses with the same rule.
    let narrow_every = u32::try_from(every).unwrap_or(0);
    let narrow_anchor = anchor_day.map(|day| u8::try_from(day).unwrap_or(0));
    WindowSpec::from_parts(period, narrow_every, timezone, narrow_anchor).map_err(|error| {
        let invalid = |field, value: &dyn std::fmt::Display, reason: String| {
            QuotaError::invalid_config(Some(name), field, value, reason)
        };
        let anchor = anchor_day.unwrap_or(0);
        match error {
            WindowSpecError::UnknownTimeZone(zone) => invalid(
                "timezone",
                &Quoted(&zone),
                "must be an IANA time zone name, such as \"America/Los_Angeles\"".into(),
            ),
            WindowSpecError::ZeroEvery | WindowSpecError::EveryTooLarge { .. } => invalid(
                "every",
                &every,
                format!(
                    "must be from 1 to {} for {}s",
                    WindowSpec::max_every(period),
                    period
                ),
            ),
            WindowSpecError::AnchorNeedsMonth { .. } => {
                invalid("anchor_day", &anchor, "needs period \"month\"".into())
            }
            WindowSpecError::AnchorOutOfRange(_) => invalid(
                "anchor_day",
                &anchor,
                "must be a day of the month, 1 to 31".into(),
            ),
            other => invalid("anchor_day", &anchor, other.to_string()),
        }
    })
}

/// Whether this build has `Exact` and `Leased` admission (feature `shared-admission`). Without
/// it a config that selects them is refused, so nothing shared is ever asked, queued or resent,
/// and every path guarded by this constant is compiled out (the JS module leaves it out).
pub(crate) const SHARED_ADMISSION: bool = cfg!(feature = "shared-admission");

/// How a service's calls are admitted across instances that share its quota through a store.
///
/// ```
/// use quota_core::{Admission, Period, ServiceConfig};
/// let llm = ServiceConfig::builder("llm", 10_000, Period::Day)
///     .admission(Admission::Leased { block: 100 })
///     .build()?;
/// assert_eq!(llm.admission, Admission::Leased { block: 100 });
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// Decide on this instance's view (the store's total at the last sync + what it recorded
    /// since), sync the calls behind them. As fast as without a store; may over-admit by what
    /// other instances recorded since their last sync (at most their calls of one sync
    /// interval).
    #[default]
    Local,
    /// Decide on the shared count (feature `shared-admission`, on by default; the JS module
    /// leaves it out): `try_record`, `try_record_priority` and `can_call` are one atomic step in
    /// the store (one round trip per call) applying the same rule as the local step (normal
    /// calls stop at the Critical level or the reserve, priority calls at the limit), and only
    /// admitted calls are counted. Never over-admits, with any number of instances. While the
    /// store is unreachable they deny; `record_call` counts locally and syncs later.
    Exact,
    /// Take `block` calls at a time from the store (feature `shared-admission`, on by
    /// default; the JS module leaves it out; at most the headroom below where normal admission
    /// stops: the Critical threshold or `limit - reserve`, so a block never holds the reserve),
    /// spend them at in-process speed, ask for the next block when they run out
    /// (a call larger than a block asks for that many), give back what is unused on `flush`,
    /// on drop and at the window's end. A priority call that its block does not cover asks the
    /// store once, as `Exact` does, up to the limit. Never over-admits; an instance killed
    /// while holding a block strands at most that block until the window ends.
    Leased {
        /// Calls per block, at least 1.
        block: u64,
    },
}

/// An [`Admission`] in a message, written as `{:?}` writes it (`Exact`, `Leased { block: 0 }`):
/// the derived `Debug` would link the struct formatter into the JS module for these messages
/// alone.
pub(crate) struct AdmissionText(pub(crate) Admission);

impl std::fmt::Display for AdmissionText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Admission::Local => f.write_str("Local"),
            Admission::Exact => f.write_str("Exact"),
            Admission::Leased { block } => write!(f, "Leased {{ block: {block} }}"),
        }
    }
}

impl ServiceConfig {
    /// Default warn threshold.
    pub const DEFAULT_WARN: f64 = 0.5;
    /// Default critical threshold.
    pub const DEFAULT_CRITICAL: f64 = 0.8;
    /// Default reserve fraction.
    pub const DEFAULT_RESERVE: f64 = 0.1;

    /// A config with the default thresholds: `limit` calls per `window` (a [`Period`] or a
    /// [`WindowSpec`]). It is checked when a tracker is built (or by
    /// [`validate`](Self::validate)).
    ///
    /// ```
    /// use quota_core::{Period, ServiceConfig, WindowSpec};
    /// // Google's daily quotas reset at midnight Pacific time.
    /// let pacific = WindowSpec::new(Period::Day).timezone("America/Los_Angeles")?;
    /// let maps = ServiceConfig::new("maps", 10_000, pacific);
    /// assert_eq!(maps.window.to_string(), "day in America/Los_Angeles");
    /// # Ok::<(), quota_core::WindowSpecError>(())
    /// ```
    pub fn new(name: impl Into<String>, limit: u64, window: impl Into<WindowSpec>) -> Self {
        ServiceConfig {
            name: name.into(),
            limit,
            window: window.into(),
            warn_threshold: Self::DEFAULT_WARN,
            critical_threshold: Self::DEFAULT_CRITICAL,
            reserve_fraction: Self::DEFAULT_RESERVE,
            admission: Admission::Local,
            enforce: true,
            more_limits: Vec::new(),
        }
    }

    /// A builder starting from the defaults.
    pub fn builder(
        name: impl Into<String>,
        limit: u64,
        window: impl Into<WindowSpec>,
    ) -> ServiceConfigBuilder {
        ServiceConfigBuilder(Self::new(name, limit, window))
    }

    /// Checks every field; the error names the service, the field and its value.
    pub fn validate(&self) -> Result<(), QuotaError> {
        let name = Some(self.name.as_str());
        let invalid = |field, value: &dyn std::fmt::Display, reason: &str| {
            Err(QuotaError::invalid_config(name, field, value, reason))
        };
        if self.name.trim().is_empty() {
            return Err(QuotaError::invalid_config(
                None,
                "name",
                Quoted(&self.name),
                "must not be empty",
            ));
        }
        self.check_limit(0)?;
        if !(self.reserve_fraction >= 0.0 && self.reserve_fraction < 1.0) {
            return invalid(
                "reserve_fraction",
                &Float(self.reserve_fraction),
                "must be in [0, 1)",
            );
        }
        if self.admission == (Admission::Leased { block: 0 }) {
            // A lease of nothing would ask the store again for every call, and be granted 0.
            return invalid(
                "admission",
                &"Admission::Leased { block: 0 }",
                "needs a lease block of at least 1",
            );
        }
        if !self.enforce && self.admission != Admission::Local {
            // Exact and Leased exist only to deny in the store; shadow mode never denies.
            return invalid(
                "enforce",
                &false,
                "shadow mode (enforce = false) needs Admission::Local: it never denies, so there \
                 is nothing for the store to decide (a shared count still syncs)",
            );
        }
        self.validate_more_limits()
    }
}

/// Builds a [`ServiceConfig`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServiceConfigBuilder(ServiceConfig);

impl ServiceConfigBuilder {
    /// Sets the warn threshold (fraction of the limit).
    pub fn warn_threshold(mut self, fraction: f64) -> Self {
        self.0.warn_threshold = fraction;
        self
    }

    /// Sets the critical threshold (fraction of the limit).
    pub fn critical_threshold(mut self, fraction: f64) -> Self {
        self.0.critical_threshold = fraction;
        self
    }

    /// Sets the reserve fraction.
    pub fn reserve_fraction(mut self, fraction: f64) -> Self {
        self.0.reserve_fraction = fraction;
        self
    }

    /// Sets how calls are admitted across instances sharing a store.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.0.admission = admission;
        self
    }

    /// Sets whether admission denies; `false` is shadow mode (see
    /// [`ServiceConfig::enforce`]).
    pub fn enforce(mut self, enforce: bool) -> Self {
        self.0.enforce = enforce;
        self
    }

    /// Adds a limit in another window (see [`Limit`]): the service admits a call only if
    /// every limit does.
    pub fn and_limit(mut self, limit: Limit) -> Self {
        self.0.more_limits.push(limit);
        self
    }

    /// The validated config.
    pub fn build(self) -> Result<ServiceConfig, QuotaError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// The services a tracker counts, in order (snapshots list them in this order).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// The services, in display order; names must be unique.
    pub services: Vec<ServiceConfig>,
}

impl TrackerConfig {
    /// A config of these services.
    pub fn new(services: impl IntoIterator<Item = ServiceConfig>) -> Self {
        TrackerConfig {
            services: services.into_iter().collect(),
        }
    }

    /// The defaults: tiingo 500 per month, finnhub 60 per minute, sendgrid 100 per day.
    pub fn defaults() -> Self {
        Self::new([
            ServiceConfig::new("tiingo", 500, Period::Month),
            ServiceConfig::new("finnhub", 60, Period::Minute),
            ServiceConfig::new("sendgrid", 100, Period::Day),
        ])
    }

    /// Adds a service (builder style).
    pub fn with_service(mut self, service: ServiceConfig) -> Self {
        self.services.push(service);
        self
    }

    /// Checks that there is at least one service, every service, and that names are unique
    /// (in O(n) for n services).
    pub fn validate(&self) -> Result<(), QuotaError> {
        if self.services.is_empty() {
            return Err(QuotaError::invalid_config(
                None,
                "services",
                "[]",
                "must name at least one service",
            ));
        }
        // Not std's HashSet: its SipHash would be linked for this alone.
        let mut seen = Lookup::default();
        for service in &self.services {
            service.validate()?;
            if seen.insert(service.name.as_str(), ()).is_some() {
                return Err(QuotaError::invalid_config(
                    Some(&service.name),
                    "name",
                    Quoted(&service.name),
                    "must be unique (it is used twice)",
                ));
            }
        }
        Ok(())
    }
}
