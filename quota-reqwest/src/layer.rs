//! The tower layer: the same rules for any `http` client or server stack built on tower.

use crate::rules::{InFlight, QuotaRules, Refused, RequestInfo, Ticket};
use crate::BoxError;
use http::header::HOST;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A [`tower_layer::Layer`] counting `http::Request`s by [`QuotaRules`], exactly as
/// [`QuotaMiddleware`](crate::QuotaMiddleware) does: a denied request never reaches the inner
/// service, the provider's headers and 429s are taken in from its responses. The service's
/// error is a [`BoxError`]: a [`QuotaExceeded`](crate::QuotaExceeded) (see
/// [`QuotaExceeded::find_boxed`](crate::QuotaExceeded::find_boxed)), a
/// [`QuotaError`](quota_core::QuotaError) for a rule naming an unknown service, a
/// [`RoutePanicked`](crate::RoutePanicked) for a route closure that panicked, or the inner
/// service's error.
///
/// The host a rule sees is the URI's, or else the `Host` header's (without the port).
///
/// ```
/// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
/// use quota_reqwest::{QuotaLayer, QuotaRules};
///
/// let tracker = QuotaTracker::new(TrackerConfig::new([ServiceConfig::new(
///     "search", 100, Period::Minute,
/// )]))?;
/// let layer = QuotaLayer::new(QuotaRules::new(tracker).host("api.search.example", "search")?);
/// # drop(layer);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
///
/// # Redirects
///
/// The layer counts one call per request it sees, and does not follow redirects. To follow
/// them, put tower-http's `FollowRedirect` **outside** the layer (before it in a
/// `ServiceBuilder`): each hop is then a request of its own through the layer, matched by the
/// rules against its own host, admitted (or denied, and not sent) and counted. Inside the
/// layer (or in the client the inner service sends with: build a reqwest client with
/// `redirect(reqwest::redirect::Policy::none())`), the hops after the first pass uncounted,
/// and the layer cannot tell (an `http::Response` carries no URL to compare): unlike the
/// middleware, it has no `ClientFollowed` check, so this order is the only guard.
///
/// ```
/// # use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
/// # use quota_reqwest::{QuotaLayer, QuotaRules};
/// # let tracker = QuotaTracker::new(TrackerConfig::new([ServiceConfig::new(
/// #     "search", 100, Period::Minute,
/// # )]))?;
/// # let layer = QuotaLayer::new(QuotaRules::new(tracker).host("api.search.example", "search")?);
/// # let client = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let service = tower::ServiceBuilder::new()
///     .layer(tower_http::follow_redirect::FollowRedirectLayer::new())
///     .layer(layer)
///     .service(client);
/// # drop(service);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[derive(Debug, Clone)]
pub struct QuotaLayer {
    rules: Arc<QuotaRules>,
    connect_error: ConnectError,
}

/// Which of the inner service's errors mean the request never left (a held request gives its
/// hold back for them: see [`QuotaRules::price`]).
#[derive(Clone)]
struct ConnectError(Arc<dyn Fn(&BoxError) -> bool + Send + Sync>);

impl ConnectError {
    /// A `reqwest::Error` that `is_connect` (the inner service a reqwest client).
    fn reqwest() -> Self {
        ConnectError(Arc::new(|error: &BoxError| {
            error
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_connect)
        }))
    }
}

impl std::fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectError(..)")
    }
}

impl QuotaLayer {
    /// A layer applying `rules`.
    pub fn new(rules: impl Into<Arc<QuotaRules>>) -> Self {
        QuotaLayer {
            rules: rules.into(),
            connect_error: ConnectError::reqwest(),
        }
    }

    /// Tells which of the inner service's errors (as a [`BoxError`]) mean the request never
    /// left, so that a held request ([`QuotaRules::price`],
    /// [`counted_statuses`](QuotaRules::counted_statuses)) gives its hold back; every other
    /// error keeps it counted. The default knows a `reqwest::Error` that `is_connect`.
    pub fn connect_errors(
        mut self,
        classify: impl Fn(&BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.connect_error = ConnectError(Arc::new(classify));
        self
    }
}

impl From<&crate::QuotaMiddleware> for QuotaLayer {
    /// The layer of a middleware's rules (shared, not copied).
    fn from(middleware: &crate::QuotaMiddleware) -> Self {
        QuotaLayer::new(Arc::clone(middleware.rules()))
    }
}

impl<S> tower_layer::Layer<S> for QuotaLayer {
    type Service = QuotaService<S>;

    fn layer(&self, inner: S) -> QuotaService<S> {
        QuotaService {
            inner,
            rules: Arc::clone(&self.rules),
            connect_error: self.connect_error.clone(),
        }
    }
}

/// The service [`QuotaLayer`] makes around an inner service.
#[derive(Debug, Clone)]
pub struct QuotaService<S> {
    inner: S,
    rules: Arc<QuotaRules>,
    connect_error: ConnectError,
}

impl<S, B, R> tower_service::Service<Request<B>> for QuotaService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let uri = request.uri();
        let host = uri.host().or_else(|| {
            let header = request.headers().get(HOST)?.to_str().ok()?;
            // `host[:port]`, or `[v6]:port`.
            Some(match header.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                _ => header,
            })
        });
        let info = RequestInfo {
            method: request.method(),
            host,
            path: uri.path(),
            headers: request.headers(),
        };
        let ticket = match self.rules.before(&info) {
            Ok(ticket) => ticket,
            Err(Refused::Exceeded(error)) => {
                return Box::pin(std::future::ready(Err(error.into())))
            }
            Err(Refused::Tracker(error)) => return Box::pin(std::future::ready(Err(error.into()))),
            Err(Refused::Panicked(error)) => {
                return Box::pin(std::future::ready(Err(error.into())))
            }
        };
        // The clone that was made ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let waits = ticket.as_ref().is_some_and(Ticket::waits);
        if waits {
            // The call waits for capacity first: the readiness `poll_ready` reserved (a
            // concurrency slot, say) goes back now, and is asked for again once it may go.
            let fresh = inner.clone();
            drop(inner);
            inner = fresh;
        }
        let connect_error = self.connect_error.clone();
        let rules = Arc::clone(&self.rules);
        Box::pin(async move {
            let ticket = match ticket {
                Some(ticket) => match ticket.ready(&rules).await {
                    Ok(ticket) => Some(ticket),
                    Err(Refused::Exceeded(error)) => return Err(error.into()),
                    Err(Refused::Tracker(error)) => return Err(error.into()),
                    Err(Refused::Panicked(error)) => return Err(error.into()),
                },
                None => None,
            };
            if waits {
                if let Err(error) = std::future::poll_fn(|cx| inner.poll_ready(cx)).await {
                    // Counted, never sent: as a transport error before sending would be.
                    if let Some(ticket) = ticket {
                        InFlight::new(rules, ticket).failed(false);
                    }
                    return Err(error.into());
                }
            }
            // Counts the request as failed if the future is dropped before the answer.
            let in_flight = ticket.map(|ticket| InFlight::new(rules, ticket));
            // The inner error (not `Send`, maybe) is boxed before anything else is awaited.
            let result: Result<Response<R>, BoxError> =
                inner.call(request).await.map_err(Into::into);
            let Some(in_flight) = in_flight else {
                return result;
            };
            let mut response = match result {
                Ok(response) => response,
                Err(error) => {
                    in_flight.failed((connect_error.0)(&error));
                    return Err(error);
                }
            };
            let pending = in_flight
                .answered(response.status(), response.headers())
                .await?;
            if let Some(pending) = pending {
                // Only some body types can be wrapped without changing the response's
                // type; any other body keeps the estimate.
                crate::body::settling_in_place(response.body_mut(), pending);
            }
            Ok(response)
        })
    }
}
