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

/// A redirect the [`QuotaMiddleware`](crate::QuotaMiddleware) did not follow, or one the
/// reqwest `Client` followed on its own, uncounted.
///
/// The middleware returns it as `reqwest_middleware::Error::Middleware` (get it with
/// [`RedirectError::find`]). Every request that was sent before it was counted; the request
/// it names was not sent, except for [`ClientFollowed`](Self::ClientFollowed), whose hops
/// were sent by the client without passing through the middleware.
///
/// The URLs are shown without user info, query or fragment: those may carry keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedirectError {
    /// The reqwest `Client` under the middleware followed redirects itself: the response
    /// comes from `answered`, not from the `sent` URL the middleware counted, and the hops in
    /// between reached their hosts uncounted. Build the client with
    /// `reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())`; the
    /// middleware then follows redirects itself, counting each hop.
    ClientFollowed {
        /// The URL the middleware counted and handed on.
        sent: reqwest::Url,
        /// The URL the response came from.
        answered: reqwest::Url,
    },
    /// More redirects in a row than the middleware's
    /// [`max_redirects`](crate::QuotaMiddleware::max_redirects): the last one was not followed.
    TooMany {
        /// The limit.
        max: usize,
        /// Where the redirect not followed pointed.
        location: reqwest::Url,
    },
    /// A 307 or 308 asks for the request to be sent again with its body, and the body is a
    /// stream, which cannot be sent twice: the redirect was not followed.
    BodyNotReplayable {
        /// 307 or 308.
        status: http::StatusCode,
        /// The request's method.
        method: http::Method,
        /// Where the redirect pointed.
        location: reqwest::Url,
    },
}

impl RedirectError {
    /// The redirect error inside a middleware client's error, if it is one.
    pub fn find(error: &reqwest_middleware::Error) -> Option<&RedirectError> {
        match error {
            reqwest_middleware::Error::Middleware(error) => error.downcast_ref(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }
}

impl fmt::Display for RedirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectError::ClientFollowed { sent, answered } => write!(
                f,
                "the reqwest Client followed a redirect on its own: {sent} was answered by \
                 {answered}, and the requests in between were sent uncounted; build the Client \
                 with `.redirect(reqwest::redirect::Policy::none())` and QuotaMiddleware \
                 follows redirects itself, counting each hop"
            ),
            RedirectError::TooMany { max, location } => write!(
                f,
                "more than {max} redirects in a row: the one to {location} was not followed"
            ),
            RedirectError::BodyNotReplayable {
                status,
                method,
                location,
            } => write!(
                f,
                "{status} to {location} asks to send the {method} request again with its body, \
                 and the body is a stream that cannot be sent twice: not followed (give the \
                 request a body of bytes, or turn off `follow_redirects` and follow it yourself)"
            ),
        }
    }
}

impl std::error::Error for RedirectError {}
