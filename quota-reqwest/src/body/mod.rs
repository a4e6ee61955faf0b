//! Settling a priced request from its response body ([`QuotaRules::price_json`]): the body
//! the caller reads is passed through unchanged, chunk by chunk, into a constant-memory
//! scanner; the hold is settled at the count it found once the body is read to its end.
//!
//! [`QuotaRules::price_json`]: crate::QuotaRules::price_json

mod json;
mod sse;
#[cfg(test)]
mod tests;

pub(crate) use json::Pointer;
use json::Scanner;
use quota_core::{OwnedHold, QuotaTracker, ServiceId};
use sse::Events;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// How a response body is read: one JSON document, or Server-Sent Events whose `data` are
/// each a JSON document.
#[derive(Debug)]
enum Scan {
    Json(Scanner),
    Sse(Events),
}

/// A hold waiting for its response's body: settled at the count the body reports when the
/// body ends, kept at its estimate if it is dropped before, fails, or reports none.
#[derive(Debug)]
pub(crate) struct Pending {
    hold: OwnedHold,
    scan: Scan,
    /// The service held, in its tracker.
    service: (Arc<QuotaTracker>, ServiceId),
    /// The provider's floors taken in from the response's headers (`at_least` up to the
    /// reset), raised again after the settlement.
    floors: Vec<(u64, u64)>,
}

impl Pending {
    /// A pending settlement of `hold` from a body with this `content_type`: Server-Sent
    /// Events for `text/event-stream`, else one JSON document.
    pub(crate) fn new(
        hold: OwnedHold,
        service: (Arc<QuotaTracker>, ServiceId),
        pointer: Arc<Pointer>,
        content_type: Option<&[u8]>,
    ) -> Self {
        let sse = content_type.is_some_and(|value| {
            let essence = value.split(|&b| b == b';').next().unwrap_or_default();
            essence
                .trim_ascii()
                .eq_ignore_ascii_case(b"text/event-stream")
        });
        let scan = if sse {
            Scan::Sse(Events::new(pointer))
        } else {
            Scan::Json(Scanner::new(pointer))
        };
        Pending {
            hold,
            scan,
            service,
            floors: Vec::new(),
        }
    }

    /// The service held.
    pub(crate) fn service(&self) -> ServiceId {
        self.service.1
    }

    /// The response's headers raised `service` to `at_least` in the window resetting at
    /// `resets_at_ms`: raised again once the body settles (a give-back would undo it).
    pub(crate) fn floor(&mut self, at_least: u64, resets_at_ms: u64) {
        self.floors.push((at_least, resets_at_ms));
    }

    fn feed(&mut self, bytes: &[u8]) {
        match &mut self.scan {
            Scan::Json(scanner) => scanner.feed(bytes),
            Scan::Sse(events) => events.feed(bytes),
        }
    }

    /// The body ended: settles at the count found, or keeps the estimate. A service whose
    /// settlement goes through the store (`Exact`, `Leased`) settles on the tracker's I/O
    /// threads (the body is read on an executor), then raises the floors, in that order.
    fn finish(self) {
        let found = match self.scan {
            Scan::Json(scanner) => scanner.finish(),
            Scan::Sse(events) => events.finish(),
        };
        let Some(actual) = found else {
            // Dropped unsettled: the estimate stays counted.
            return;
        };
        let (tracker, id) = (Arc::clone(&self.service.0), self.service.1);
        let (hold, floors) = (self.hold, self.floors);
        let settle = move |tracker: &QuotaTracker| {
            // Fails only for a service removed since: its calls stay counted.
            let _ = hold.settle(actual);
            if let Some(service) = tracker.service_by_id(id) {
                for &(at_least, resets) in &floors {
                    // Ignored for a window that has ended since; fails only past 2^62.
                    let _ = service.raise_used(at_least, Some(resets));
                }
            }
        };
        if crate::off_executor::asks_store(&tracker, id) {
            // Runs whether or not its answer is awaited: nothing here waits for it.
            drop(tracker.run_async(settle));
        } else {
            settle(&tracker);
        }
    }
}

/// A response body passed through unchanged, scanned on the way.
#[derive(Debug)]
pub(crate) struct Settling<B> {
    inner: B,
    pending: Option<Pending>,
}

impl<B> http_body::Body for Settling<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), &mut this.pending) {
                    pending.feed(data);
                }
            }
            // A body that fails midway keeps the estimate: the count may be in what is lost.
            Poll::Ready(Some(Err(_))) => this.pending = None,
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Not before the end was polled: a reader that stops at `is_end_stream` would leave
        // the hold unsettled.
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Scans `body` for `pending` in place, where its type allows it without changing the type:
/// a `reqwest::Body`, or http-body-util's `BoxBody` or `UnsyncBoxBody` of `Bytes` and
/// [`BoxError`](crate::BoxError). A body of any other type drops `pending`: the estimate
/// stays counted.
pub(crate) fn settling_in_place(body: &mut dyn std::any::Any, pending: Pending) {
    use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
    type Boxed = BoxBody<bytes::Bytes, crate::BoxError>;
    type Unsync = UnsyncBoxBody<bytes::Bytes, crate::BoxError>;
    let pending = Some(pending);
    if let Some(body) = body.downcast_mut::<reqwest::Body>() {
        let inner = std::mem::replace(body, reqwest::Body::from(Vec::new()));
        *body = reqwest::Body::wrap(Settling { inner, pending });
    } else if let Some(body) = body.downcast_mut::<Boxed>() {
        let inner = std::mem::take(body);
        *body = BoxBody::new(Settling { inner, pending });
    } else if let Some(body) = body.downcast_mut::<Unsync>() {
        let inner = std::mem::take(body);
        *body = UnsyncBoxBody::new(Settling { inner, pending });
    }
}

/// `response` with its body scanned for `pending` as the caller reads it: the status,
/// headers, version, extensions and URL are kept.
pub(crate) fn settling_response(
    response: reqwest::Response,
    pending: Pending,
) -> reqwest::Response {
    use reqwest::ResponseBuilderExt as _;
    let url = response.url().clone();
    let (mut parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    // reqwest keeps a response's URL in an extension only its builder sets.
    if let Ok(tagged) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(tagged.into_parts().0.extensions);
    }
    let body = reqwest::Body::wrap(Settling {
        inner: body,
        pending: Some(pending),
    });
    reqwest::Response::from(http::Response::from_parts(parts, body))
}
