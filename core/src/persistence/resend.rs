//! Operations whose outcome is unknown: a batch whose reply was lost, a batch cut but not
//! sent, and the queued operations (give-backs, admissions and leases whose answer was lost),
//! each resent as it is until the store answers (the store applies an `(instance, seq)` once).

use super::saver::guarded;
use super::Queued;
use super::{Books, Persistence};
use crate::config::SHARED_ADMISSION;
use crate::observers::quietly;
use crate::store::{
    AdmitReply, AdmitRequest, GiveBack, LeaseRequest, Store, StoreError, SyncBatch, WindowTotal,
};

/// What the save lock guards: operations to send or resend, each as it is (the store applies
/// an `(instance, seq)` once), until the store answers.
#[derive(Default)]
pub(super) struct SaverState {
    /// A batch sent whose reply never came: resent as it is before anything else.
    pub(super) outstanding: Option<SyncBatch>,
    /// A batch cut but never sent (an operation queued before it failed): sent after the
    /// queued operations, as a fresh cut would be (its floors may count held calls, which must
    /// reach the store first), and no new batch is cut meanwhile.
    pub(super) unsent: Option<SyncBatch>,
    /// Operations the cuts took from the services' ledgers, sent before each batch.
    pub(super) queued: Queued,
}

impl SaverState {
    /// (operations, calls) whose outcome is unknown.
    pub(super) fn unresolved(&self) -> (u64, u64) {
        let batches = self.outstanding.iter().chain(&self.unsent);
        let ops = batches.clone().count() as u64;
        let calls = batches
            .flat_map(|b| &b.deltas)
            .fold(0u64, |sum, d| sum.saturating_add(d.calls));
        let (queued_ops, queued_calls) = self.queued.unresolved();
        (ops + queued_ops, calls.saturating_add(queued_calls))
    }
}

/// What a sync learned late, for the tracker to settle under the service's lock.
pub(crate) enum Late<'a> {
    /// An admission the caller was told was refused: if the store applied it, the answer's
    /// windows (their raise counts then: the request's window, then each of its `also`).
    Admit {
        request: &'a AdmitRequest,
        admitted: Option<(u64, Vec<WindowTotal>)>,
    },
    /// A lease whose answer was lost: what it granted, and the window's raise count then (and
    /// each of the request's `also` windows').
    Lease {
        request: &'a LeaseRequest,
        granted: u64,
        raise_count: u64,
        also: Vec<WindowTotal>,
    },
}

/// What the tracker does with a late answer: calls to give back, if any.
pub(crate) enum Settled {
    Nothing,
    GiveBack(GiveBack),
}

/// What a cut hands the save lock: the batch, and the operations queued under the service
/// locks (give-backs, held admissions, leases whose answer was lost).
pub(crate) struct Cut {
    pub(crate) batch: SyncBatch,
    pub(crate) queued: Queued,
}

impl Persistence {
    /// Resends a batch whose reply was lost, then cuts a new one; sends every operation whose
    /// outcome is unknown (admissions and leases whose answer was lost, give-backs), then the
    /// batch. Each stays queued, as it is, until the store answers it.
    pub(super) fn sync_once(
        &self,
        saver: &mut SaverState,
        books: &dyn Books,
    ) -> Result<(), StoreError> {
        if let Some(batch) = saver.outstanding.take() {
            match self.send(&batch) {
                Ok(totals) => {
                    self.answered(batch.seq);
                    books.take_totals(&batch, &totals);
                }
                Err(error) => {
                    saver.outstanding = Some(batch);
                    return Err(error);
                }
            }
        }
        // A batch cut before but never sent goes after the operations queued before it, then
        // a new cut takes what was recorded and queued since (a flush must carry it all).
        if let Some(batch) = saver.unsent.take() {
            self.send_after_queued(saver, books, batch)?;
        }
        let cut = books.cut(self.instance);
        // Only shared admission queues operations (the JS module has none).
        let mut cut = cut;
        saver.queued.append(&mut cut.queued);
        self.send_after_queued(saver, books, cut.batch)
    }

    /// Sends the queued operations, then `batch`: kept *unsent* if an operation failed, or
    /// *outstanding* if its own reply was lost.
    pub(super) fn send_after_queued(
        &self,
        saver: &mut SaverState,
        books: &dyn Books,
        batch: SyncBatch,
    ) -> Result<(), StoreError> {
        if let Err(error) = self.resolve(saver, books) {
            if batch.changes() {
                saver.unsent = Some(batch);
            }
            return Err(error);
        }
        match self.send(&batch) {
            Ok(totals) => {
                if batch.changes() {
                    self.answered(batch.seq);
                }
                books.take_totals(&batch, &totals);
                Ok(())
            }
            Err(error) => {
                // Its deltas are cut: only this exact batch may carry them (exactly once).
                if batch.changes() {
                    saver.outstanding = Some(batch);
                }
                Err(error)
            }
        }
    }

    /// Sends the queued operations, first to last; stops at the first failure (all stay
    /// queued from there). A late answer is settled by the tracker, which may give calls back.
    pub(super) fn resolve(
        &self,
        saver: &mut SaverState,
        books: &dyn Books,
    ) -> Result<(), StoreError> {
        let mut forfeited = 0u64;
        let settled = |settled: Settled, saver: &mut SaverState| {
            if let Settled::GiveBack(back) = settled {
                saver.queued.give_backs.push(back);
            }
        };
        let mut result = Ok(());
        // Without shared admission (the JS module) nothing is ever queued here: the compiler
        // drops all of it.
        let shared = SHARED_ADMISSION;
        while let Some(held) = saver.queued.admits.first().filter(|_| shared) {
            match guarded(|| self.store.admit(&held.request)?.answering(&held.request)) {
                Ok(reply) => {
                    let held = saver.queued.admits.remove(0);
                    self.answered(held.request.seq);
                    if !held.counted {
                        let admitted = match reply {
                            AdmitReply::Admitted {
                                raise_count, also, ..
                            } => Some((raise_count, also)),
                            AdmitReply::Denied { .. } => None,
                        };
                        let late = Late::Admit {
                            request: &held.request,
                            admitted,
                        };
                        settled(books.settle(late), saver);
                    }
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        while shared && result.is_ok() && !saver.queued.leases.is_empty() {
            let lease = &saver.queued.leases[0];
            match guarded(|| self.store.lease(lease)?.answering(lease)) {
                Ok(reply) => {
                    let request = saver.queued.leases.remove(0);
                    self.answered(request.seq);
                    let late = Late::Lease {
                        request: &request,
                        granted: reply.granted,
                        raise_count: reply.raise_count,
                        also: reply.also,
                    };
                    settled(books.settle(late), saver);
                }
                Err(error) => result = Err(error),
            }
        }
        while shared && result.is_ok() && !saver.queued.give_backs.is_empty() {
            match guarded(|| self.store.give_back(&saver.queued.give_backs[0])) {
                Ok(taken) => {
                    let back = saver.queued.give_backs.remove(0);
                    self.answered(back.seq);
                    // Less taken off: the window was raised since (the store forfeited them).
                    forfeited = forfeited.saturating_add(back.unused.saturating_sub(taken));
                }
                Err(StoreError::Unsupported(_)) => {
                    // A store that cannot give back (a custom one) never will: the calls stay
                    // counted (an over-count only), and the queue moves on.
                    let back = saver.queued.give_backs.remove(0);
                    self.answered(back.seq);
                    forfeited = forfeited.saturating_add(back.unused);
                }
                Err(error) => result = Err(error),
            }
        }
        if forfeited > 0 {
            self.stats.lock().forfeited_calls += forfeited;
            quietly(|| {
                log::warn!(
                    "quota: {forfeited} calls to give back stay counted: their window was \
                     raised after they were counted (the floor may include them)"
                )
            });
        }
        result
    }
}
