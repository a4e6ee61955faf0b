//! The reqwest-middleware middleware.

use crate::redirect::{self, Kept, Redirects, Then};
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
/// # Redirects
///
/// Build the reqwest `Client` with `redirect(reqwest::redirect::Policy::none())`: the
/// middleware then follows redirects itself, one hop at a time, and each hop passes through
/// the rules (its host and path may count against another service, or none), is admitted or
/// denied and counted like a request of its own, and has its response's headers taken in.
/// A hop that is denied is not sent. So the provider never receives more requests than the
/// tracker admitted, redirects included. Hops run the middlewares added after this one again;
/// those added before it see one request. So add a middleware that sets credentials *before*
/// this one: its headers are then dropped on a hop to another host, while one added after it
/// would add them again to every hop, wherever it goes.
///
/// A followed redirect is built as reqwest builds it: 303 (and 301 / 302 for a POST) becomes a
/// GET without body, 307 / 308 send the same method and body again, a relative `Location` is
/// taken relative to the hop's URL, and Authorization, Cookie and Proxy-Authorization are
/// dropped when the host or port changes. A redirect without a `Location` that is an http(s)
/// URL is returned as it is. Failures are a [`RedirectError`](crate::RedirectError): more
/// than [`max_redirects`](Self::max_redirects) in a row (10 by default), or a 307 / 308 for a
/// request whose body is a stream (it cannot be sent twice), raised before the next hop is
/// sent. [`follow_redirects(false)`](Self::follow_redirects) returns every 3xx as it is.
///
/// A client that follows redirects itself (reqwest's default policy) sends the hops after the
/// first without this middleware seeing them: uncounted. The middleware fails such a call
/// with [`RedirectError::ClientFollowed`](crate::RedirectError::ClientFollowed), which says
/// how to build the client, whenever a response's URL is not where it sent the request
/// (scheme, host, port and path: a later middleware may add a query, which is no redirect).
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
/// // The middleware follows redirects, counting each hop: the client must not.
/// let reqwest = reqwest::Client::builder()
///     .redirect(reqwest::redirect::Policy::none())
///     .build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest)
///     .with(middleware)
///     .build();
/// # drop(client);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuotaMiddleware {
    rules: Arc<QuotaRules>,
    redirects: Redirects,
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
            redirects: Redirects::default(),
        }
    }

    /// The rules, shared (with a [`QuotaLayer`](crate::QuotaLayer), say).
    pub fn rules(&self) -> &Arc<QuotaRules> {
        &self.rules
    }

    /// Whether the middleware follows redirects itself, counting each hop (`true`, the
    /// default: see [Redirects](Self#redirects)). With `false`, a 3xx is returned as it is.
    /// Either way the client must not follow redirects on its own.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.redirects.follow = follow;
        self
    }

    /// How many redirects in a row the middleware follows (default 10, as reqwest); the next
    /// one fails with [`RedirectError::TooMany`](crate::RedirectError::TooMany). With 0 a
    /// redirect is an error.
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.redirects.max = max;
        self
    }

    fn map(self, change: impl FnOnce(QuotaRules) -> QuotaRules) -> Self {
        let rules = Arc::try_unwrap(self.rules).unwrap_or_else(|shared| QuotaRules::clone(&shared));
        QuotaMiddleware {
            rules: Arc::new(change(rules)),
            redirects: self.redirects,
        }
    }

    fn try_map(
        self,
        change: impl FnOnce(QuotaRules) -> Result<QuotaRules, QuotaError>,
    ) -> Result<Self, QuotaError> {
        let rules = Arc::try_unwrap(self.rules).unwrap_or_else(|shared| QuotaRules::clone(&shared));
        Ok(QuotaMiddleware {
            rules: Arc::new(change(rules)?),
            redirects: self.redirects,
        })
    }

    /// Sends one hop through the rest of the chain, counted by the rules.
    async fn send(
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
        let ticket = match self.rules.before(&info).map_err(refused)? {
            Some(ticket) => Some(ticket.ready(&self.rules).await.map_err(refused)?),
            None => None,
        };
        // Counts the request as failed if this future is dropped before the answer.
        let in_flight = ticket.map(|ticket| InFlight::new(Arc::clone(&self.rules), ticket));
        let sent = request.url().clone();
        let result = next.run(request, extensions).await;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                if let Some(in_flight) = in_flight {
                    let connect = match &error {
                        reqwest_middleware::Error::Reqwest(error) => error.is_connect(),
                        reqwest_middleware::Error::Middleware(_) => false,
                    };
                    in_flight.failed(connect);
                }
                return Err(error);
            }
        };
        if let Some(error) = redirect::client_followed(&sent, &response) {
            // Sent, answered by another host: its headers are not this service's word.
            if let Some(in_flight) = in_flight {
                in_flight.failed(false);
            }
            return Err(reqwest_middleware::Error::middleware(error));
        }
        if let Some(in_flight) = in_flight {
            let pending = in_flight
                .answered(response.status(), response.headers())
                .await
                .map_err(reqwest_middleware::Error::middleware)?;
            if let Some(pending) = pending {
                return Ok(crate::body::settling_response(response, pending));
            }
        }
        Ok(response)
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

    /// [`QuotaRules::price`].
    pub fn price(
        self,
        service: &str,
        estimate: u64,
        settle: impl Fn(http::StatusCode, &http::HeaderMap) -> Option<u64> + Send + Sync + 'static,
    ) -> Result<Self, QuotaError> {
        self.try_map(|rules| rules.price(service, estimate, settle))
    }

    /// [`QuotaRules::price_json`].
    pub fn price_json(
        self,
        service: &str,
        estimate: u64,
        pointer: &str,
    ) -> Result<Self, QuotaError> {
        self.try_map(|rules| rules.price_json(service, estimate, pointer))
    }

    /// [`QuotaRules::counted_statuses`].
    pub fn counted_statuses(
        self,
        service: &str,
        statuses: impl IntoIterator<Item = std::ops::RangeInclusive<u16>>,
    ) -> Result<Self, QuotaError> {
        self.try_map(|rules| rules.counted_statuses(service, statuses))
    }

    /// [`QuotaRules::unit_headers`].
    pub fn unit_headers(
        self,
        service: &str,
        remaining: &str,
        reset: &str,
    ) -> Result<Self, QuotaError> {
        self.try_map(|rules| rules.unit_headers(service, remaining, reset))
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
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Redirects { follow, max } = self.redirects;
        let mut followed = 0;
        loop {
            let kept = follow.then(|| Kept::of(&mut request));
            let response = self.send(request, extensions, next.clone()).await?;
            let Some(kept) = kept else {
                return Ok(response);
            };
            match redirect::next_hop(kept, &response, followed, max) {
                Then::Follow(hop) => (request, followed) = (hop, followed + 1),
                Then::Answer => return Ok(response),
                Then::Refuse(error) => return Err(reqwest_middleware::Error::middleware(error)),
            }
        }
    }
}
