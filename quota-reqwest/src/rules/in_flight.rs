//! A counted request on its way ([`InFlight`]): its answer, or its failure, taken in off
//! the executor when the service's calls go through the store.

use super::{QuotaRules, Ticket};
use crate::body::Pending;
use crate::error::QuotaExceeded;
use crate::off_executor::asks_store;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;

/// A counted request on its way: its answer is taken in with [`answered`](Self::answered)
/// or [`failed`](Self::failed). Dropped before either (the caller gave up on the future after
/// the request was handed on: a timeout, a `select!`), it counts as a transport error does,
/// since the request may have reached the provider.
pub(crate) struct InFlight {
    rules: Arc<QuotaRules>,
    ticket: Option<Ticket>,
}

impl InFlight {
    pub(crate) fn new(rules: Arc<QuotaRules>, ticket: Ticket) -> Self {
        InFlight {
            rules,
            ticket: Some(ticket),
        }
    }

    /// [`QuotaRules::after`]; `Ok(Some)`: the hold is settled from the response's body. A
    /// service whose calls go through the store (`Exact`, `Leased`) is answered on the
    /// tracker's I/O threads, never on the executor.
    pub(crate) async fn answered(
        mut self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Option<Pending>, QuotaExceeded> {
        let Some(ticket) = self.ticket.take() else {
            return Ok(None);
        };
        if !asks_store(&self.rules.tracker, ticket.service) {
            return self.rules.after(ticket, status, headers);
        }
        let (rules, headers) = (Arc::clone(&self.rules), headers.clone());
        let answer = self
            .rules
            .tracker
            .run_async(move |_| rules.after(ticket, status, &headers))
            .await;
        // `Err`: it could not run (the tracker dropped): nothing left to count.
        answer.unwrap_or(Ok(None))
    }

    /// [`QuotaRules::failed`]; `connect`: the request never left (a connection error).
    pub(crate) fn failed(mut self, connect: bool) {
        if let Some(ticket) = self.ticket.take() {
            failed_off_executor(&self.rules, ticket, connect);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            failed_off_executor(&self.rules, ticket, false);
        }
    }
}

/// [`QuotaRules::failed`], on the tracker's I/O threads for a service whose calls go through
/// the store (it runs from drops and error paths on an executor, and is never awaited).
fn failed_off_executor(rules: &Arc<QuotaRules>, ticket: Ticket, connect: bool) {
    if asks_store(&rules.tracker, ticket.service) {
        let owned = Arc::clone(rules);
        // Runs whether or not its answer is awaited: nothing here waits for it.
        drop(
            rules
                .tracker
                .run_async(move |_| owned.failed(ticket, connect)),
        );
    } else {
        rules.failed(ticket, connect);
    }
}
