//! The reqwest-middleware middleware.

use crate::rules::{Counting, InFlight, QuotaRules, Refused, RequestInfo};
use http::Extensions;
use quota_core::{QuotaError, QuotaTracker};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use std::sync::Arc;
use std::time::Duration;

/// Counts a [`reqwest_middleware::ClientWithMiddleware`]'s requests against a tracker's
/// quotas, by the [`QuotaRules`] it is built with (see there for the provider's headers and
/// 429s).
///
/// A request the tracker denies is never sent: the client returns
/// `reqwest_middleware::Error::Middleware` holding a [`QuotaExceeded`](crate::QuotaExceeded)
/// (get it with [`QuotaExceeded::find`](crate::QuotaExceeded::find)). A rule naming a service
/// the tracker lacks fails the request with a [`QuotaError`] the same way, and a panicking
/// route closure with a [`RoutePanicked`](crate::RoutePanicked).
///
/// ```
/// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
/// use quota_reqwest::{Counting, QuotaMiddleware};
///
/// let tracker = QuotaTracker::new(TrackerConfig::new([
///     ServiceConfig::new("search", 100, Period::Minute),
///     ServiceConfig::new("mail", 1_000, Period::Day),
/// ]))?;
/// let middleware = QuotaMiddleware::new(tracker)
///     .host("api.search.example", "search")?
///     .route(|request| request.path.starts_with("/v1/mail").then_some("mail"))
///     .counting("mail", Counting::RecordAfter)?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(middleware)
///     .build();
/// # drop(client);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuotaMiddleware {
    rules: Arc<QuotaRules>,
}

impl QuotaMiddleware {
    /// A middleware on `tracker` that counts nothing until rules are added.
    pub fn new(tracker: impl Into<Arc<QuotaTracker>>) -> Self {
        Self::with_rules(QuotaRules::new(tracker))
    }

    /// A middleware applying `rules`.
    pub fn with_rules(rules: QuotaRules) -> Self {
        QuotaMiddleware {
            rules: Arc::new(rules),
        }
    }

    /// The rules, shared (with a [`QuotaLayer`](crate::QuotaLayer), say).
    pub fn rules(&self) -> &Arc<QuotaRules> {
        &self.rules
    }

    fn map(self, change: impl FnOnce(QuotaRules) -> QuotaRules) -> Self {
        let rules = Arc::try_unwrap(self.rules).unwrap_or_else(|shared| QuotaRules::clone(&shared));
        Self::with_rules(change(rules))
    }

    fn try_map(
        self,
        change: impl FnOnce(QuotaRules) -> Result<QuotaRules, QuotaError>,
    ) -> Result<Self, QuotaError> {
        let rules = Arc::try_unwrap(self.rules).unwrap_or_else(|shared| QuotaRules::clone(&shared));
        Ok(Self::with_rules(change(rules)?))
    }

    /// [`QuotaRules::host`].
    pub fn host(self, host: &str, service: &str) -> Result<Self, QuotaError> {
        self.try_map(|rules| rules.host(host, service))
    }

    /// [`QuotaRules::route`].
    pub fn route<F, N>(self, route: F) -> Self
    where
        F: Fn(&RequestInfo<'_>) -> Option<N> + Send + Sync + 'static,
        N: AsRef<str>,
    {
        self.map(|rules| rules.route(route))
    }

    /// [`QuotaRules::counting`].
    pub fn counting(self, service: &str, counting: Counting) -> Result<Self, QuotaError> {
        self.try_map(|rules| rules.counting(service, counting))
    }

    /// [`QuotaRules::reset_slack`].
    pub fn reset_slack(self, slack: Duration) -> Self {
        self.map(|rules| rules.reset_slack(slack))
    }

    /// [`QuotaRules::require_reset`].
    pub fn require_reset(self, require: bool) -> Self {
        self.map(|rules| rules.require_reset(require))
    }
}

fn refused(refusal: Refused) -> reqwest_middleware::Error {
    match refusal {
        Refused::Exceeded(error) => reqwest_middleware::Error::middleware(error),
        Refused::Tracker(error) => reqwest_middleware::Error::middleware(error),
        Refused::Panicked(error) => reqwest_middleware::Error::middleware(error),
    }
}

#[async_trait::async_trait]
impl Middleware for QuotaMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let url = request.url();
        let info = RequestInfo {
            method: request.method(),
            host: url.host_str(),
            path: url.path(),
            headers: request.headers(),
        };
        let ticket = self.rules.before(&info).map_err(refused)?;
        // Counts the request as failed if this future is dropped before the answer.
        let in_flight = ticket.map(|ticket| InFlight::new(Arc::clone(&self.rules), ticket));
        let result = next.run(request, extensions).await;
        let Some(in_flight) = in_flight else {
            return result;
        };
        match result {
            Ok(response) => {
                in_flight
                    .answered(response.status(), response.headers())
                    .map_err(reqwest_middleware::Error::middleware)?;
                Ok(response)
            }
            Err(error) => {
                in_flight.failed();
                Err(error)
            }
        }
    }
}
