//! The rules both the reqwest middleware and the tower layer apply: which service a request
//! counts against, when it is counted, and what the provider's answer says.

use crate::body::Pending;
use crate::error::{Exceeded, QuotaExceeded, RoutePanicked};
use crate::headers::ProviderWord;
use http::{HeaderMap, Method, StatusCode};
pub(crate) use in_flight::InFlight;
use pricing::{settle, Pricing};
use quota_core::{DenyReason, QuotaError, QuotaTracker, Service, ServiceId};
use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use units::UnitHeaders;
pub(crate) use waiting::Ticket;
use waiting::{waits, Waiting};
use which_limit::refusing_reset;

/// When a service's requests are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counting {
    /// `try_record` before sending (the default): a request the tracker denies is never sent
    /// and fails with [`QuotaExceeded`]. A request that fails on the way stays counted (it may
    /// have reached the provider: an over-count, never a miss).
    #[default]
    TryBefore,
    /// `record_call` after the response (or the transport error, or when the caller gives up
    /// on the request's future after it was handed on: the request may have reached the
    /// provider): every request is sent, the tracker only counts.
    RecordAfter,
    /// As [`TryBefore`](Self::TryBefore), but a request the tracker denies waits up to the
    /// given time for capacity ([`QuotaTracker::until_ready`]: in a queue per service, in
    /// arrival order, woken by the window's end or calls given back; the wait never blocks
    /// the executor) and is sent once it is counted; one that does not fit in time fails
    /// with [`QuotaExceeded`] as `TryBefore` does. A priced service
    /// ([`price`](QuotaRules::price)) waits for its hold the same way
    /// ([`QuotaTracker::hold_when_ready`]).
    WaitBefore(Duration),
}

/// What a routing rule sees of a request: the same for reqwest and for tower.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The host the request goes to (without the port), if the URL has one.
    pub host: Option<&'a str>,
    /// The URL's path.
    pub path: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
}

/// A closure rule, resolved to a service of the tracker (or an unknown name's error).
type Route = dyn Fn(&RequestInfo<'_>) -> Option<Result<ServiceId, QuotaError>> + Send + Sync;

#[derive(Clone)]
enum Rule {
    /// Requests to this host (without a trailing dot; compared ignoring ASCII case and one
    /// trailing dot of the request's host).
    Host(String, ServiceId),
    Route(Arc<Route>),
}

/// Which requests count against which service, and how: built with [`host`](Self::host),
/// [`route`](Self::route) and [`counting`](Self::counting), then used by
/// [`QuotaMiddleware`](crate::QuotaMiddleware) and [`QuotaLayer`](crate::QuotaLayer).
///
/// Rules are tried in the order they were added; the first that names a service wins. A
/// request no rule names is sent uncounted.
///
/// After each counted response the provider's own word is taken in:
/// - a remaining-calls header `r` (`X-RateLimit-Remaining`, or `RateLimit-Remaining`) raises
///   the service's `used` to `limit - r` with [`QuotaTracker::raise_used`]: a floor, never
///   added (the provider's count includes calls already counted here, and by every instance
///   sharing the tracker's store), and only when the header family's reset time falls in the
///   tracker's current window (`X-RateLimit-Reset`: epoch seconds from 10^9, epoch ms from
///   10^12, seconds from now below that, each whole or with a decimal fraction, rounded up
///   to the millisecond: `1718003600.5` is an instant, `0.5` half a second from now;
///   `RateLimit-Reset`: seconds from now). A reset up to
///   [`reset_slack`](Self::reset_slack) past the window's end counts as its end (whole
///   seconds are rounded, clocks differ). A count with no reset header is taken as the
///   current window's unless [`require_reset`](Self::require_reset) is set; a count whose
///   family's reset header does not parse is ignored (its window is unknown);
/// - the IETF fields of draft-ietf-httpapi-ratelimit-headers-09, `RateLimit: "daily";r=150;t=60`
///   and `RateLimit-Policy: "daily";q=200;w=86400`: each policy's remaining `r` with its reset
///   `t` (seconds from now) is a count as above, whose floor is `q - r` where the policy field
///   gives the provider's quota `q`, else `limit - r`;
/// - a `429 Too Many Requests` raises `used` to the limit (with the same reset rule when the
///   response has a reset header: the first of `X-RateLimit-Reset`, `RateLimit-Reset` that
///   parses) and fails the call with [`QuotaExceeded`], whose `retry_after` is the
///   response's `Retry-After` (delay-seconds or an HTTP-date), or else the time until the
///   response's reset: a delay, never a count. When the response has reset headers and none
///   parses, the 429's window is unknown, as for a count: `used` is not raised, and the call
///   still fails with [`QuotaExceeded`] and the `Retry-After`.
///
/// A service of several limits ([`quota_core::Limit`]: 50 an hour *and* 1,000 a day) takes
/// each count, and each 429, into one limit, the one [`QuotaTracker::raise_used`] picks: the
/// limit of the shortest window that contains the (slack-snapped) reset, or the shortest
/// window's where the response gave no reset ([`ServiceUsage::limit_for_reset`](quota_core::ServiceUsage::limit_for_reset)). `limit` above
/// is that limit's: remaining `r` with a reset at the day's end raises the day's `used` to
/// `1,000 - r`; at the hour's end, the hour's to `50 - r`; a 429 without a reset raises the
/// hour's to 50, and its [`QuotaExceeded`] names the hour's `used` and limit. A reset that
/// is the end of two windows at once (the hour's and the day's at midnight) is the shorter
/// one's. The limits are read from the tracker for each response that needs them, so a
/// [`reconfigure`](QuotaTracker::reconfigure) applies from the next response. A denial's
/// `retry_after` is the time until the denying limit's window resets.
///
/// Malformed headers are otherwise ignored: never an error, never a panic.
#[derive(Clone)]
pub struct QuotaRules {
    pub(crate) tracker: Arc<QuotaTracker>,
    rules: Vec<Rule>,
    /// Services counted other than [`Counting::TryBefore`]. Nothing else about a service is
    /// kept here: its limit and window are read from the tracker when a response needs them.
    counting: HashMap<ServiceId, Counting>,
    /// Services whose requests are held ([`price`](Self::price),
    /// [`counted_statuses`](Self::counted_statuses)) rather than recorded.
    pub(crate) pricing: HashMap<ServiceId, Pricing>,
    /// Per-unit headers ([`unit_headers`](Self::unit_headers)), in the order added.
    units: Vec<UnitHeaders>,
    reset_slack_ms: u64,
    require_reset: bool,
}

/// Why a request is not sent.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Over its quota.
    Exceeded(QuotaExceeded),
    /// The rules named a service the tracker does not have.
    Tracker(QuotaError),
    /// A route closure panicked.
    Panicked(RoutePanicked),
}

impl QuotaRules {
    /// Rules on `tracker` that count nothing yet.
    pub fn new(tracker: impl Into<Arc<QuotaTracker>>) -> Self {
        QuotaRules {
            tracker: tracker.into(),
            rules: Vec::new(),
            counting: HashMap::new(),
            pricing: HashMap::new(),
            units: Vec::new(),
            reset_slack_ms: 2_000,
            require_reset: false,
        }
    }

    /// The tracker the rules count in.
    pub fn tracker(&self) -> &Arc<QuotaTracker> {
        &self.tracker
    }

    /// Requests to `host` (any port) count against `service`.
    ///
    /// Host names are compared ignoring ASCII case and one trailing dot, on either side: the
    /// fully qualified `API.Example.com.` is the same host as `api.example.com`. Nothing else
    /// is normalized (no IDNA: write an internationalized name as its `xn--` form, as URLs
    /// carry it; an IPv6 literal is written in brackets, `[::1]`, as URLs carry it).
    ///
    /// Errors: [`QuotaError::UnknownService`] if the tracker has no such service.
    pub fn host(mut self, host: &str, service: &str) -> Result<Self, QuotaError> {
        let id = self.tracker.service(service)?.id();
        self.rules
            .push(Rule::Host(without_root(host).to_owned(), id));
        Ok(self)
    }

    /// Requests for which `route` names a service count against it (`None`: this rule does
    /// not decide). A name the tracker does not know fails the request with
    /// [`QuotaError::UnknownService`] before it is sent.
    ///
    /// A `route` that panics (or whose name's `as_ref` panics) fails the request with
    /// [`RoutePanicked`] before it is sent, counted nowhere, as core treats a panicking
    /// observer or clock: the panic does not unwind through the client or the tower service,
    /// and later rules are not tried (the request's service is unknown, so sending it
    /// uncounted could miss a call). The panic hook still reports the panic; under
    /// `panic = "abort"` nothing can be caught.
    pub fn route<F, N>(mut self, route: F) -> Self
    where
        F: Fn(&RequestInfo<'_>) -> Option<N> + Send + Sync + 'static,
        N: AsRef<str>,
    {
        let tracker = Arc::clone(&self.tracker);
        self.rules.push(Rule::Route(Arc::new(move |info| {
            let name = route(info)?;
            Some(tracker.service(name.as_ref()).map(|s| s.id()))
        })));
        self
    }

    /// When `service`'s requests are counted (default [`Counting::TryBefore`]).
    ///
    /// Errors: [`QuotaError::UnknownService`].
    pub fn counting(mut self, service: &str, counting: Counting) -> Result<Self, QuotaError> {
        let id = self.tracker.service(service)?.id();
        self.counting.insert(id, counting);
        Ok(self)
    }

    /// How far past the tracker's window end a provider's reset time may fall and still
    /// count as that end (default 2 s).
    pub fn reset_slack(mut self, slack: Duration) -> Self {
        self.reset_slack_ms = u64::try_from(slack.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Whether a remaining-calls header without a reset header is ignored (`true`) or taken
    /// as a count of the current window (`false`, the default).
    pub fn require_reset(mut self, require: bool) -> Self {
        self.require_reset = require;
        self
    }

    /// The service `info` counts against, if a rule names one.
    fn resolve(&self, info: &RequestInfo<'_>) -> Result<Option<ServiceId>, Refused> {
        let host = info.host.map(without_root);
        for rule in &self.rules {
            match rule {
                Rule::Host(rule_host, id) => {
                    if host.is_some_and(|h| h.eq_ignore_ascii_case(rule_host)) {
                        return Ok(Some(*id));
                    }
                }
                Rule::Route(route) => match catch_unwind(AssertUnwindSafe(|| route(info))) {
                    Ok(Some(resolved)) => return resolved.map(Some).map_err(Refused::Tracker),
                    Ok(None) => {}
                    Err(payload) => {
                        let message = payload
                            .downcast_ref::<&str>()
                            .map(|m| (*m).to_owned())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "Box<dyn Any>".to_owned());
                        // Leaked, not dropped, as core does: a payload's `Drop` may panic.
                        std::mem::forget(payload);
                        return Err(Refused::Panicked(RoutePanicked { message }));
                    }
                },
            }
        }
        Ok(None)
    }

    fn handle(&self, id: ServiceId) -> Result<(Service<'_>, Counting), QuotaError> {
        let counting = self.counting.get(&id).copied().unwrap_or_default();
        match self.tracker.service_by_id(id) {
            Some(service) => Ok((service, counting)),
            // Ids come from this tracker, which never loses a service.
            None => Err(QuotaError::UnknownService(format!("{id:?}"))),
        }
    }

    /// Before sending: finds the service and, for [`Counting::TryBefore`], counts the call or
    /// refuses it. `Ok(None)`: no rule counts this request.
    pub(crate) fn before(&self, info: &RequestInfo<'_>) -> Result<Option<Ticket>, Refused> {
        let Some(id) = self.resolve(info)? else {
            return Ok(None);
        };
        let (service, counting) = self.handle(id).map_err(Refused::Tracker)?;
        let before = matches!(counting, Counting::TryBefore | Counting::WaitBefore(_));
        let pricing = self.pricing.get(&id).filter(|_| before);
        if before && waits(counting) {
            let estimate = pricing.map(|pricing| pricing.estimate);
            return Ok(Some(self.waiting_ticket(
                id,
                service.name(),
                counting,
                estimate,
            )));
        }
        if before {
            // Decided at once without the store; else on the tracker's I/O threads, awaited
            // (`Ticket::ready`) before the request is sent.
            let tried = match pricing {
                Some(pricing) => {
                    Waiting::TriedHold(self.tracker.hold_async(service.name(), pricing.estimate))
                }
                None => Waiting::Tried(self.tracker.try_record_async(service.name(), 1)),
            };
            return Ok(Some(Ticket {
                service: id,
                hold: None,
                waiting: Some(tried),
            }));
        }
        Ok(Some(Ticket {
            service: id,
            hold: None,
            waiting: None,
        }))
    }

    /// The refusal of a request to service `id` that admission denied for `reason` (`used`
    /// of `limit`), saying when waiting would help: until the refusing window resets, for
    /// the limit, the Critical level and the reserve; for the store's troubles nobody knows.
    pub(super) fn denied(
        &self,
        id: ServiceId,
        used: u64,
        limit: u64,
        reason: DenyReason,
    ) -> Refused {
        let (service, _) = match self.handle(id) {
            Ok(found) => found,
            Err(error) => return Refused::Tracker(error),
        };
        let retry_after = matches!(
            reason,
            DenyReason::Limit | DenyReason::Critical | DenyReason::Reserve
        )
        .then(|| {
            let reset = refusing_reset(&service.usage_limits(), limit);
            Duration::from_millis(reset.saturating_sub(self.tracker.now_ms()))
        });
        Refused::Exceeded(QuotaExceeded {
            service: service.name().to_owned(),
            used,
            limit,
            retry_after,
            reason: Exceeded::Denied(reason),
        })
    }

    /// After a response: counts it for [`Counting::RecordAfter`], takes in the provider's
    /// headers, and turns a 429 into [`QuotaExceeded`]. `Ok(Some)`: a hold to settle from
    /// the response's body ([`price_json`](Self::price_json)).
    pub(crate) fn after(
        &self,
        ticket: Ticket,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Option<Pending>, QuotaExceeded> {
        let Ok((service, counting)) = self.handle(ticket.service) else {
            return Ok(None);
        };
        let mut pending = None;
        if let (Some(hold), Some(pricing)) = (ticket.hold, self.pricing.get(&ticket.service)) {
            // Settled before the provider's headers are taken in: a floor they raise is
            // counted above what the request really cost, never below it.
            pending = settle(
                hold,
                pricing,
                status,
                headers,
                (&self.tracker, ticket.service),
            );
        }
        if counting == Counting::RecordAfter {
            // Fails only if the counter would overflow: nothing more to count then.
            let _ = service.record(1);
        }
        self.take_units(headers, pending.as_mut());
        let now = self.tracker.now_ms();
        let mut word = ProviderWord::read(headers, now);
        crate::ratelimit_fields::read_into(&mut word, headers, now);
        if word.remaining.is_empty() && status != StatusCode::TOO_MANY_REQUESTS {
            return Ok(pending);
        }
        // Every limit and window as the tracker has them now (read at need, never cached).
        let limits = service.usage_limits();
        for report in &word.remaining {
            if report.resets_at_ms.is_none() && self.require_reset {
                continue;
            }
            // A count of no current window says nothing about ours: nothing to raise.
            let Some((at, resets)) = self.target(&limits, report.resets_at_ms) else {
                continue;
            };
            let quota = report.quota.unwrap_or(limits[at].limit);
            let at_least = quota.saturating_sub(report.remaining);
            if at_least > 0 {
                // Fails only for floors past 2^62 (limits that large): nothing to raise.
                let _ = service.raise_used(at_least, resets);
                if let Some(pending) = &mut pending {
                    pending.floor(at_least, resets.unwrap_or(limits[at].reset_at_ms));
                }
            }
        }
        if status != StatusCode::TOO_MANY_REQUESTS {
            return Ok(pending);
        }
        // A reset header that does not parse: the 429's window is unknown, as for a count.
        let target = if word.reset_malformed {
            None
        } else {
            self.target(&limits, word.resets_at_ms)
        };
        let (used, limit) = match target {
            Some((at, resets)) => {
                let limit = limits[at].limit;
                let used = match service.raise_used(limit, resets) {
                    // One limit: the raise's usage is that limit's.
                    Ok(raised) if limits.len() == 1 => raised.usage.used,
                    // Several: the raise's usage is the binding limit's; the 429 is this one's.
                    _ => service
                        .usage_limits()
                        .get(at)
                        .map_or(limit, |usage| usage.used),
                };
                (used, limit)
            }
            // No limit's window: reported as the service stands (its binding limit).
            None => {
                let usage = service.usage();
                (usage.used, usage.limit)
            }
        };
        Err(QuotaExceeded {
            service: service.name().to_owned(),
            used,
            limit,
            // The provider's delay; without one, the time until its count resets.
            retry_after: word.retry_after.or_else(|| {
                let at = word.resets_at_ms?;
                Some(Duration::from_millis(at.saturating_sub(now)))
            }),
            reason: Exceeded::TooManyRequests,
        })
    }

    /// After a transport error (no response), or a request given up in flight: a
    /// [`Counting::RecordAfter`] call is counted, as it may have reached the provider.
    ///
    /// A held request gives its hold back if it failed to `connect` (it never left), and
    /// keeps its estimate otherwise.
    pub(crate) fn failed(&self, ticket: Ticket, connect: bool) {
        if let Some(hold) = ticket.hold {
            if connect {
                // Fails only for a service removed since: its calls stay counted.
                let _ = hold.cancel();
            }
            return;
        }
        if let Ok((service, counting)) = self.handle(ticket.service) {
            if counting == Counting::RecordAfter {
                let _ = service.record(1);
            }
        }
    }
}

/// `host` without one trailing dot (the DNS root): `api.example.com.` is `api.example.com`.
fn without_root(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

impl fmt::Debug for QuotaRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaRules")
            .field("rules", &self.rules.len())
            .field("reset_slack_ms", &self.reset_slack_ms)
            .field("require_reset", &self.require_reset)
            .finish_non_exhaustive()
    }
}

mod in_flight;
mod pricing;
mod units;
mod waiting;
mod which_limit;
