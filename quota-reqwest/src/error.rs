//! The typed error of a call over quota.

use quota_core::DenyReason;
use std::fmt;
use std::time::Duration;

/// A call refused for its quota: either denied before sending (it never left this process),
/// or answered `429 Too Many Requests` by the provider.
///
/// The reqwest middleware returns it as `reqwest_middleware::Error::Middleware` and the tower
/// layer as its boxed error; [`QuotaExceeded::find`] and [`QuotaExceeded::find_boxed`] get it
/// back out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The service the request was counted against.
    pub service: String,
    /// The service's `used` when the call was refused (after taking in the provider's word,
    /// for a 429).
    pub used: u64,
    /// The service's limit.
    pub limit: u64,
    /// How long to wait: for a 429 the provider's `Retry-After` (or else the time until its
    /// reset header's instant); for a denial at the limit, the Critical level or the reserve, the time left
    /// until the tracker's window resets. `None` when unknown.
    pub retry_after: Option<Duration>,
    /// Why.
    pub reason: Exceeded,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The tracker denied it before sending (`try_record`): the request was never sent.
    Denied(DenyReason),
    /// The provider answered `429 Too Many Requests`: the request was sent (and counted).
    TooManyRequests,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (service, used, limit) = (&self.service, self.used, self.limit);
        match self.reason {
            Exceeded::Denied(reason) => write!(
                f,
                "quota of {service:?} exceeded: {used} of {limit} calls used, not sent ({reason})"
            )?,
            Exceeded::TooManyRequests => write!(
                f,
                "{service:?} answered 429 Too Many Requests: {used} of {limit} calls used"
            )?,
        }
        if let Some(wait) = self.retry_after {
            write!(f, "; retry after {:.3} s", wait.as_secs_f64())?;
        }
        Ok(())
    }
}

impl std::error::Error for QuotaExceeded {}

impl QuotaExceeded {
    /// The quota error inside a middleware client's error, if it is one.
    pub fn find(error: &reqwest_middleware::Error) -> Option<&QuotaExceeded> {
        match error {
            reqwest_middleware::Error::Middleware(error) => error.downcast_ref(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }

    /// The quota error inside the tower layer's boxed error, if it is one.
    pub fn find_boxed(error: &crate::BoxError) -> Option<&QuotaExceeded> {
        error.downcast_ref()
    }
}

/// A [`route`](crate::QuotaRules::route) closure panicked on a request: the service the
/// request counts against is unknown, so it was not sent and nothing was counted.
///
/// The reqwest middleware returns it as `reqwest_middleware::Error::Middleware` (get it with
/// `downcast_ref`), the tower layer as its boxed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePanicked {
    /// The panic's message (`Box<dyn Any>` when its payload is not a string).
    pub message: String,
}

impl fmt::Display for RoutePanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a quota route rule panicked ({}): the request was not sent",
            self.message
        )
    }
}

impl std::error::Error for RoutePanicked {}
