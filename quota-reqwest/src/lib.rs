//! Counts HTTP calls against [`quota_core`] quotas.
//!
//! - [`QuotaMiddleware`]: a [`reqwest_middleware`] middleware.
//! - [`QuotaLayer`]: a [`tower_layer::Layer`] for any tower stack of `http` requests.
//!
//! Both apply one [`QuotaRules`]: which service a request counts against (by host, or by a
//! closure), and per service whether it is counted with `try_record` before sending (a
//! denied request is never sent and fails with [`QuotaExceeded`], naming the service, `used`
//! and the limit) or with `record_call` after the response ([`Counting`]). The provider's own
//! word is taken in from every counted response: remaining-calls headers raise `used` as a
//! floor ([`quota_core::QuotaTracker::raise_used`]), a 429 raises it to the limit and fails
//! the call with its `Retry-After` as a delay; for a service of several limits, each into the
//! limit whose window holds the response's reset (without one, the shortest window's). See
//! [`QuotaRules`] for the exact rules.
//!
//! Redirects are counted hop by hop, so the provider never receives more requests than the
//! tracker admitted: build the reqwest `Client` with
//! `redirect(reqwest::redirect::Policy::none())` and [`QuotaMiddleware`] follows redirects
//! itself, each hop through the rules (a client that follows them on its own fails the call
//! with a [`RedirectError`]); with tower, put tower-http's `FollowRedirect` outside
//! [`QuotaLayer`]. See [QuotaMiddleware's redirects](QuotaMiddleware#redirects) and
//! [QuotaLayer's](QuotaLayer#redirects).
//!
//! The tracker's calls take its per-service lock for a moment and never wait on I/O, except
//! that a tracker with a store syncs from whichever call makes a sync due (every
//! `interval_ms`, or on entering Critical): that call waits for the store's round trip.

mod body;
mod error;
mod headers;
mod layer;
mod middleware;
mod off_executor;
mod ratelimit_fields;
mod redirect;
mod rules;

pub use error::{Exceeded, QuotaExceeded, RedirectError, RoutePanicked};
pub use layer::{QuotaLayer, QuotaService};
pub use middleware::QuotaMiddleware;
pub use rules::{Counting, QuotaRules, RequestInfo};

/// The tower layer's error: a boxed error, as tower's own middleware use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
