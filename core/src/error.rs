//! The tracker's errors.

/// Everything the tracker can refuse. An operation that returns an error has changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The configuration is not valid; the message names the field and its value.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// No service of that name is configured.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// A call count of 0, or one that would overflow the service's counter.
    #[error("invalid count {count} for service {service:?}: {reason}")]
    InvalidCount {
        /// The service the count was for.
        service: String,
        /// The count that was refused.
        count: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// [`try_record`](crate::QuotaTracker::try_record) refused: the calls are not allowed now.
    #[error("denied: {count} call(s) to {service:?} not allowed at {used} of {limit} used")]
    Denied {
        /// The service that was asked for.
        service: String,
        /// How many calls were asked for.
        count: u64,
        /// Calls used in the current window.
        used: u64,
        /// The window's limit.
        limit: u64,
    },
}
