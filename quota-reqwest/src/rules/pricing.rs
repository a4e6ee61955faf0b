//! Priced requests: held at an estimate before they are sent, settled at what the response
//! says they cost, given back when they never left or their status is not counted.

use super::QuotaRules;
use crate::body::{Pending, Pointer};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use quota_core::{OwnedHold, QuotaError, QuotaTracker, ServiceId};
use std::ops::RangeInclusive;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// What a priced request really cost, read from its response's status and headers (`None`:
/// the response does not say; the estimate stays counted).
type Settle = dyn Fn(StatusCode, &HeaderMap) -> Option<u64> + Send + Sync;

/// How a service's requests are counted when they are held rather than recorded: at an
/// estimate, settled from the response, and only for some statuses.
#[derive(Clone)]
pub(crate) struct Pricing {
    /// Calls (tokens, units) held before sending.
    pub(crate) estimate: u64,
    /// The response's actual cost (none: each response costs its estimate).
    settle: Option<Arc<Settle>>,
    /// Where the response's body reports the actual cost ([`QuotaRules::price_json`]).
    json: Option<Arc<Pointer>>,
    /// The statuses a response is counted for (empty: every status); a response of another
    /// status gives its hold back.
    counted: Vec<RangeInclusive<u16>>,
}

impl Pricing {
    fn counts(&self, status: StatusCode) -> bool {
        self.counted.is_empty() || self.counted.iter().any(|r| r.contains(&status.as_u16()))
    }
}

impl QuotaRules {
    /// Prices `service`'s requests: each is held at `estimate` calls before it is sent
    /// ([`QuotaTracker::hold`](quota_core::QuotaTracker::hold): admitted as `try_record` admits, refused with
    /// [`QuotaExceeded`](crate::QuotaExceeded)), then settled at what `settle` reads from the response's status and
    /// headers (`None`: the response does not say, and the estimate stays counted). For an LLM
    /// API counted in tokens: the estimate is the most a request may use, `settle` reads the
    /// tokens the provider reports.
    ///
    /// A request that fails to connect (`reqwest::Error::is_connect`: it never left) gives
    /// its hold back; any other failure, and a request given up in flight, keeps the estimate
    /// (it may have reached the provider). With [`counted_statuses`](Self::counted_statuses),
    /// a response of another status gives it back too.
    ///
    /// For [`Counting::TryBefore`](crate::Counting::TryBefore) services (the default): a
    /// service counted [`RecordAfter`](crate::Counting::RecordAfter) records 1 per response and
    /// is not priced. Each hop of a redirect the middleware follows is a request of its own,
    /// held and settled on its own (a 3xx says no cost: its estimate stays, unless
    /// [`counted_statuses`](Self::counted_statuses) leaves 3xx out).
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for an estimate of
    /// 0.
    pub fn price(
        mut self,
        service: &str,
        estimate: u64,
        settle: impl Fn(StatusCode, &HeaderMap) -> Option<u64> + Send + Sync + 'static,
    ) -> Result<Self, QuotaError> {
        let handle = self.tracker.service(service)?;
        if estimate == 0 {
            return Err(QuotaError::InvalidCount {
                service: Arc::from(service),
                count: 0,
                reason: "an estimate must be at least 1",
            });
        }
        let pricing = self.pricing.entry(handle.id()).or_insert(Pricing {
            estimate,
            settle: None,
            json: None,
            counted: Vec::new(),
        });
        pricing.estimate = estimate;
        pricing.settle = Some(Arc::new(settle));
        pricing.json = None;
        Ok(self)
    }

    /// Prices `service`'s requests as [`price`](Self::price) does, settled at the whole number
    /// the response's JSON body holds at `pointer`, a JSON pointer (RFC 6901):
    /// `"/usage/total_tokens"` for an LLM API's `{"usage": {"total_tokens": 1234}}`,
    /// `"/choices/0/n"` through an array, `~1` for a `/` in a member name and `~0` for a `~`.
    ///
    /// The middleware returns the response at once; the hold is settled when the caller has
    /// read the body to its end (`.json()`, `.text()`, `.bytes()`, `.chunk()` until it
    /// returns `None`, a `bytes_stream()` until it ends). The body is not buffered: each
    /// chunk is passed on unchanged and scanned on the way, in constant memory (a few words
    /// and a bit per level of nesting, up to 128 levels), so a stream the caller reads
    /// chunk by chunk stays one.
    ///
    /// The estimate stays counted (the hold is dropped unsettled) when the body is dropped
    /// before its end, fails midway, is not valid JSON (its grammar: the bytes of strings are
    /// not checked to be UTF-8), or nests deeper than 128 levels, or
    /// has no whole non-negative number at `pointer` (a string, `null`, `1.5`, `1e3`, `-1`, or
    /// a number past `u64::MAX`, are none). Where a member name occurs twice, the last one
    /// counts, as in serde_json's `Value` and JavaScript's `JSON.parse`. Until the body ends
    /// the estimate is held: a server that stops sending midway holds it until the client's
    /// timeout fails the body or the caller drops it (kept then).
    ///
    /// The response's status and headers are taken in when it arrives, before its body: a
    /// 429 fails the call (the body is not read: the estimate stays), and the floors its
    /// remaining-calls headers (and [`unit_headers`](Self::unit_headers) mapped to
    /// `service`) raise for it are raised again right after the body settles, so that a
    /// give-back never takes the count below the provider's (a floor of a window that has
    /// ended since is ignored, as always). A 3xx the middleware follows is dropped unread:
    /// its estimate stays, unless [`counted_statuses`](Self::counted_statuses) leaves 3xx
    /// out.
    ///
    /// A response whose `Content-Type` is `text/event-stream` (Server-Sent Events, as
    /// OpenAI's streamed completions with `stream_options: {"include_usage": true}`) is read
    /// as events: each event's `data` is scanned as a JSON document on its own, and the last
    /// event with a whole number at `pointer` settles the hold when the stream ends (events
    /// whose data is not JSON, such as `[DONE]`, are skipped).
    ///
    /// With [`QuotaLayer`](crate::QuotaLayer), the response body is scanned when its type is
    /// `reqwest::Body`, or http-body-util's `BoxBody<Bytes, BoxError>` or
    /// `UnsyncBoxBody<Bytes, BoxError>` (the layer cannot change its service's response type,
    /// so it wraps only a body that can hold another): with any other body type (hyper's
    /// `Incoming`, a `String`) the estimate stays counted.
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for an estimate of
    /// 0; [`QuotaError::InvalidConfig`] for a `pointer` that is not a JSON pointer (neither
    /// empty nor starting with `/`, or a `~` not followed by `0` or `1`).
    pub fn price_json(
        self,
        service: &str,
        estimate: u64,
        pointer: &str,
    ) -> Result<Self, QuotaError> {
        let parsed = Pointer::parse(pointer).map_err(|reason| QuotaError::InvalidConfig {
            service: Some(service.to_owned()),
            field: "pointer",
            value: format!("{pointer:?}"),
            reason: reason.to_owned(),
        })?;
        let mut rules = self.price(service, estimate, |_, _| None)?;
        let id = rules.tracker.service(service)?.id();
        if let Some(pricing) = rules.pricing.get_mut(&id) {
            pricing.settle = None;
            pricing.json = Some(Arc::new(parsed));
        }
        Ok(rules)
    }

    /// Counts `service`'s responses only when their status is in one of `statuses` (say
    /// `[200..=299, 429..=429]`, as flask-limiter's `deduct_when`): each request is held
    /// before it is sent (at 1, or at its [`price`](Self::price)'s estimate), and a response of
    /// another status gives the hold back, as a request that fails to connect does. Other
    /// failures, and requests given up in flight, stay counted. For
    /// [`Counting::TryBefore`](crate::Counting::TryBefore) services (the default).
    ///
    /// Errors: [`QuotaError::UnknownService`].
    pub fn counted_statuses(
        mut self,
        service: &str,
        statuses: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Result<Self, QuotaError> {
        let id = self.tracker.service(service)?.id();
        let pricing = self.pricing.entry(id).or_insert(Pricing {
            estimate: 1,
            settle: None,
            json: None,
            counted: Vec::new(),
        });
        pricing.counted = statuses.into_iter().collect();
        Ok(self)
    }
}

/// Settles a priced request's `hold` from its response: given back for a status not counted,
/// else at what the pricing's `settle` reads (kept at the estimate if it reads nothing, or
/// panics: a panic in a user's closure never unwinds through the client). A pricing that
/// reads the body returns the hold, to be settled when the body ends.
pub(crate) fn settle(
    hold: OwnedHold,
    pricing: &Pricing,
    status: StatusCode,
    headers: &HeaderMap,
    (tracker, service): (&Arc<QuotaTracker>, ServiceId),
) -> Option<Pending> {
    if !pricing.counts(status) {
        let _ = hold.cancel();
        return None;
    }
    if let Some(pointer) = &pricing.json {
        let content_type = headers.get(CONTENT_TYPE).map(http::HeaderValue::as_bytes);
        let service = (Arc::clone(tracker), service);
        return Some(Pending::new(
            hold,
            service,
            Arc::clone(pointer),
            content_type,
        ));
    }
    let Some(read) = &pricing.settle else {
        return None;
    };
    match catch_unwind(AssertUnwindSafe(|| read(status, headers))) {
        // Fails only for a service removed since: its calls stay counted.
        Ok(Some(actual)) => drop(hold.settle(actual)),
        Ok(None) => {}
        // Leaked, not dropped, as core does: a payload's `Drop` may panic.
        Err(payload) => std::mem::forget(payload),
    }
    None
}
