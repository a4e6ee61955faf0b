//! [`Counting::WaitBefore`]: a denied request waits for capacity before it is sent.

use super::{Counting, QuotaRules, Refused};
use crate::error::{Exceeded, QuotaExceeded};
use quota_core::{
    AsyncCall, AsyncRecorded, HoldWhenReady, OwnedHold, QuotaError, ServiceId, UntilReady,
};
use std::time::{Duration, Instant};

/// A counted request in flight: what the answer is taken in for.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(super) service: ServiceId,
    /// A priced service's hold (settled from the answer).
    pub(super) hold: Option<OwnedHold>,
    /// [`Counting::WaitBefore`]: the call waiting for capacity, to await before sending.
    pub(super) waiting: Option<Waiting>,
}

/// A call to await before the request is sent: waiting for capacity, counted (`until_ready`)
/// or held at its estimate (a priced service: `hold_when_ready`); or tried once
/// ([`Counting::TryBefore`]), counted or held, by the async API (on the tracker's I/O threads
/// when the store is asked).
#[derive(Debug)]
pub(super) enum Waiting {
    Counted(UntilReady),
    Held(HoldWhenReady),
    Tried(AsyncCall<AsyncRecorded>),
    TriedHold(AsyncCall<Result<OwnedHold, QuotaError>>),
}

/// Whether `counting` waits for capacity.
pub(super) fn waits(counting: Counting) -> bool {
    matches!(counting, Counting::WaitBefore(_))
}

/// How long `counting` waits for capacity (0 for a counting that does not wait).
fn waits_for(counting: Counting) -> Duration {
    match counting {
        Counting::WaitBefore(max) => max,
        Counting::TryBefore | Counting::RecordAfter => Duration::ZERO,
    }
}

/// The instant `max` from now; a far one where that is past what an `Instant` holds
/// (`Duration::MAX`: wait as long as it takes).
fn deadline_after(max: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(max)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

impl QuotaRules {
    /// The ticket of a request to `service` that waits for capacity ([`Counting::WaitBefore`]):
    /// admitted at once where it can be (on the caller's task only if no store is asked),
    /// else queued; held at `estimate` for a priced service.
    pub(super) fn waiting_ticket(
        &self,
        id: ServiceId,
        service: &str,
        counting: Counting,
        estimate: Option<u64>,
    ) -> Ticket {
        let deadline = deadline_after(waits_for(counting));
        let waiting = match estimate {
            Some(estimate) => {
                Waiting::Held(self.tracker.hold_when_ready(service, estimate, deadline))
            }
            None => Waiting::Counted(self.tracker.until_ready(service, 1, deadline)),
        };
        Ticket {
            service: id,
            hold: None,
            waiting: Some(waiting),
        }
    }
}

impl Ticket {
    /// Whether the call waits for capacity before it may be sent.
    pub(crate) fn waits(&self) -> bool {
        matches!(self.waiting, Some(Waiting::Counted(_) | Waiting::Held(_)))
    }

    /// Waits for the call's capacity, if it waits ([`Counting::WaitBefore`]): the ticket
    /// once the call is counted, or the refusal when its time is up.
    pub(crate) async fn ready(mut self, rules: &QuotaRules) -> Result<Ticket, Refused> {
        let Some(waiting) = self.waiting.take() else {
            return Ok(self);
        };
        let admitted = match waiting {
            Waiting::Counted(counted) => counted.await.map(|_| ()),
            Waiting::Held(held) => held.await.map(|hold| self.hold = Some(hold)),
            Waiting::Tried(tried) => tried.await.map(|_| ()),
            Waiting::TriedHold(tried) => tried.await.map(|hold| self.hold = Some(hold)),
        };
        match admitted {
            Ok(()) => Ok(self),
            Err(QuotaError::Denied {
                used,
                limit,
                reason,
                ..
            }) => Err(rules.denied(self.service, used, limit, reason)),
            Err(QuotaError::NotReady {
                reason,
                ready_at_ms,
                ..
            }) => {
                let (service, _) = rules.handle(self.service).map_err(Refused::Tracker)?;
                let usage = service.usage();
                let now = rules.tracker.now_ms();
                Err(Refused::Exceeded(QuotaExceeded {
                    service: service.name().to_owned(),
                    used: usage.used,
                    limit: usage.limit,
                    retry_after: ready_at_ms
                        .map(|at| Duration::from_millis(at.saturating_sub(now))),
                    reason: Exceeded::Denied(reason),
                }))
            }
            Err(other) => Err(Refused::Tracker(other)),
        }
    }
}
