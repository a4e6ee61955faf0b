//! The tracker's errors.

use crate::store::StoreError;
use crate::text::Quoted;
use std::fmt;
use std::sync::Arc;

/// Everything the tracker can refuse. An operation that returns an error has changed nothing.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
// Non-exhaustive: new calls (holds, waiting) may fail in new ways.
#[non_exhaustive]
pub enum QuotaError {
    /// The configuration is not valid. The fields say where and why; the message reads
    /// `invalid config: service "api": limit must be at least 1 (got 0)`.
    #[error("invalid config: {}", ConfigProblem { service: service.as_deref(), field, value, reason })]
    InvalidConfig {
        /// The service whose config is invalid; `None` for a tracker-wide setting.
        service: Option<String>,
        /// The Rust name of the invalid field (`limit`, `warn_threshold`, ...).
        field: &'static str,
        /// The value that was refused, as written in Rust (`0`, `1.5`, `"api"`).
        value: String,
        /// What the value must be (`must be at least 1`).
        reason: String,
    },
    /// No service of that name is configured.
    #[error("unknown service {}", Quoted(.0))]
    UnknownService(String),
    /// A call count of 0, or one that would overflow the service's counter.
    #[error("invalid count {count} for service {}: {reason}", Quoted(service))]
    InvalidCount {
        /// The service the count was for.
        service: Arc<str>,
        /// The count that was refused.
        count: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// [`try_record`](crate::QuotaTracker::try_record) refused: the calls are not allowed now.
    #[error(
        "denied: {count} call(s) to {} not allowed at {used} of {limit} used: {reason}",
        Quoted(service)
    )]
    Denied {
        /// The service that was asked for.
        service: Arc<str>,
        /// How many calls were asked for.
        count: u64,
        /// Calls used in the current window.
        used: u64,
        /// The window's limit.
        limit: u64,
        /// Which rule refused.
        reason: DenyReason,
    },
    /// [`until_ready`](crate::QuotaTracker::until_ready) gave up: the calls were not
    /// admitted by its deadline (nothing was recorded), or can never be (more than the
    /// service's cap for their kind of call: `ready_at_ms` is `None`). Native only, as
    /// `until_ready` is.
    #[cfg(not(target_arch = "wasm32"))]
    #[error(
        "not ready: {count} call(s) to {} not admitted by the deadline: {reason}{}",
        Quoted(service),
        ReadyAt(*ready_at_ms)
    )]
    NotReady {
        /// The service that was asked for.
        service: Arc<str>,
        /// How many calls were asked for.
        count: u64,
        /// The rule that refused them last.
        reason: DenyReason,
        /// The earliest instant they could pass (ms since the Unix epoch, on the tracker's
        /// clock): when every window that refuses them ends. `None` when no window end
        /// would admit them (they pass the cap of an empty window, or the store is
        /// unavailable).
        ready_at_ms: Option<u64>,
    },
    /// The store failed (from [`flush`](crate::QuotaTracker::flush) through `?`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which admission rule refused a call.
///
/// Normal admission ([`try_record`](crate::QuotaTracker::try_record),
/// [`can_call`](crate::QuotaTracker::can_call)) stops at the Critical level or at
/// `limit - reserve`, whichever comes first; priority admission
/// ([`try_record_priority`](crate::QuotaTracker::try_record_priority)) may go up to the limit.
/// Reduced-rate mode caps both. When several rules refuse, the one named is the first of
/// `Limit`, `ReducedRate`, then `Critical` or `Reserve`: so `Critical` and `Reserve` mean a
/// priority call would have been admitted.
///
/// ```
/// use quota_core::{DenyReason, Period, QuotaError, QuotaTracker, ServiceConfig, TrackerConfig};
/// // Critical at the limit: the reserve (10 calls) is what stops normal calls.
/// let api = ServiceConfig::builder("api", 100, Period::Day).critical_threshold(1.0).build()?;
/// let tracker = QuotaTracker::new(TrackerConfig::new([api]))?;
/// tracker.try_record("api", 90)?;
/// let denied = tracker.try_record("api", 1).unwrap_err();
/// assert!(matches!(denied, QuotaError::Denied { reason: DenyReason::Reserve, .. }));
/// assert_eq!(
///     denied.to_string(),
///     "denied: 1 call(s) to \"api\" not allowed at 90 of 100 used: reserve held back"
/// );
/// tracker.try_record_priority("api", 10)?; // the reserve, up to the limit
/// # Ok::<(), QuotaError>(())
/// ```
// Non-exhaustive: admission may gain rules (the reserve came after the others), and a new
// reason must not break a downstream `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// Normal admission: the service is at its Critical level, or the calls would pass it
    /// (normal admission stops there). A priority call may go on to the limit.
    Critical,
    /// `used + count` would pass the limit (priority calls too).
    Limit,
    /// Normal admission: the calls would take some of the reserve (`limit - reserve` would be
    /// passed), which is held back for priority calls.
    Reserve,
    /// Reduced-rate mode (the store failed too often): only the reduced allowance is left, for
    /// priority calls too.
    ReducedRate,
    /// Shared admission (`Exact`, or `Leased` without a block in hand) needs the store, and
    /// it cannot be reached: denying is the only way not to over-admit.
    StoreUnavailable,
    /// Calls queued by [`until_ready`](crate::QuotaTracker::until_ready) wait for this
    /// service, and a new call does not pass them: a normal call waits behind every queued
    /// call, a priority call behind queued priority calls. Never on wasm32 (no waiting there).
    Waiting,
}

impl DenyReason {
    /// Every reason, in a fixed order (the metrics' and `simulate`'s).
    pub const ALL: [DenyReason; 6] = [
        DenyReason::Critical,
        DenyReason::Reserve,
        DenyReason::Limit,
        DenyReason::ReducedRate,
        DenyReason::StoreUnavailable,
        DenyReason::Waiting,
    ];

    /// A short phrase: `critical level`, `over the limit`, `reserve held back`, `reduced rate`,
    /// `store unavailable`, `calls waiting`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Critical => "critical level",
            DenyReason::Limit => "over the limit",
            DenyReason::Reserve => "reserve held back",
            DenyReason::ReducedRate => "reduced rate",
            DenyReason::StoreUnavailable => "store unavailable",
            DenyReason::Waiting => "calls waiting",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl QuotaError {
    /// An [`InvalidConfig`](Self::InvalidConfig) error.
    pub(crate) fn invalid_config(
        service: Option<&str>,
        field: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        QuotaError::InvalidConfig {
            service: service.map(str::to_owned),
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The end of a [`QuotaError::NotReady`] message: when the calls could pass, if ever.
#[cfg(not(target_arch = "wasm32"))]
struct ReadyAt(Option<u64>);

#[cfg(not(target_arch = "wasm32"))]
impl fmt::Display for ReadyAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(at_ms) => write!(f, " (they could pass at {at_ms} ms)"),
            None => Ok(()),
        }
    }
}

/// Formats an invalid-config problem; the JS layer formats the same fields with camelCase
/// field names.
pub(crate) struct ConfigProblem<'a> {
    pub(crate) service: Option<&'a str>,
    pub(crate) field: &'a str,
    pub(crate) value: &'a str,
    pub(crate) reason: &'a str,
}

impl fmt::Display for ConfigProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(service) = self.service {
            write!(f, "service {}: ", Quoted(service))?;
        }
        write!(f, "{} {} (got {})", self.field, self.reason, self.value)
    }
}

/// The message, as `Display` writes it: a `main` returning `Result<(), Box<dyn Error>>`
/// prints `Error: ` and this, and `unwrap` shows it too, rather than a struct dump.
impl std::fmt::Debug for QuotaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
