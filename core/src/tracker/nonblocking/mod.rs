//! The async API (native): twins of the calls that may touch the store, answering an
//! [`AsyncCall`] that never blocks the executor polling it.
//!
//! A call that needs no store I/O runs at once on the caller's thread: every call of a
//! `Local` service, a `Leased` call the block in hand covers, `raise_used`. It runs as an
//! *async caller*: a sync it finds due is handed to the background syncer (started by the
//! first async call of a tracker with a store), never run in place, even while that thread
//! is stuck. Everything else (an `Exact` admission, a block to lease, a hold settled through
//! the store, `flush`) runs on the tracker's I/O threads (see [`pool`]), each call there the
//! blocking twin itself: one implementation of the exactly-once rules for both APIs.

mod pool;

use super::{OwnedHold, QuotaTracker, Settlement, SHARED};
use crate::config::Admission;
use crate::error::QuotaError;
use crate::rules::Request;
use crate::store::StoreError;
use crate::usage::{Raised, Recorded};
use std::sync::Arc;

pub use pool::AsyncCall;
pub(super) use pool::IoPool;

/// The error a deferred call returns on the caller's thread (never seen by a caller: the
/// twin runs the call again off the executor).
pub(super) fn deferred() -> QuotaError {
    QuotaError::Store(StoreError::Unsupported(
        "deferred to an I/O thread: the call needs the store",
    ))
}

/// What an async record answers: the blocking twin's result, owning the service name.
pub type AsyncRecorded = Result<Recorded<'static>, QuotaError>;

impl QuotaTracker {
    /// Runs `call` on this thread as an async caller (starting the background syncer first
    /// if the tracker has a store); `None` if it reached the store's path (it changed
    /// nothing: run it off the executor instead).
    pub(super) fn in_place<R>(self: &Arc<Self>, call: impl FnOnce() -> R) -> Option<R> {
        if self.persistence.is_some() && !self.syncer.runs() {
            // A thread that cannot start leaves due syncs due: logged, and `flush` still
            // sends everything.
            if let Err(error) = self.sync_in_background() {
                crate::observers::quietly(|| {
                    log::warn!("quota: cannot start the background syncer: {error}")
                });
            }
        }
        crate::caller::as_async(call)
    }

    /// Whether calls of the service at `position` may need the store (shared admission).
    fn asks_store(&self, position: usize) -> bool {
        SHARED && self.slot(position).settings().config.admission != Admission::Local
    }

    /// An admission (`request`) of the service at `position` without store I/O, if it needs
    /// none: `Local`, or the block in hand of a `Leased` service of one limit covers it.
    fn update_in_place(
        self: &Arc<Self>,
        position: usize,
        request: Request,
    ) -> Option<AsyncRecorded> {
        let slot = self.slot(position);
        let settings = slot.settings();
        match settings.config.admission {
            _ if !self.asks_store(position) => {
                self.in_place(|| self.update(position, request).map(Recorded::into_owned))
            }
            Admission::Leased { .. }
                if settings.more.is_empty()
                    && !settings.removed
                    && request.count > 0
                    && !slot.queued_ahead(request) =>
            {
                let now = self.now();
                let spent = self.in_place(|| self.spend_lease(position, now, request.count))?;
                spent.map(|recorded| Ok(recorded.into_owned()))
            }
            _ => None,
        }
    }

    /// [`try_record`](Self::try_record), [`record_call`](Self::record_call) or
    /// [`try_record_priority`](Self::try_record_priority) (`ask`) as an async call.
    fn update_async(
        self: &Arc<Self>,
        service: &str,
        count: u64,
        ask: fn(&QuotaTracker, u64) -> Request,
    ) -> AsyncCall<AsyncRecorded> {
        let position = match self.position(service) {
            Ok(position) => position,
            Err(error) => return AsyncCall::ready(Err(error)),
        };
        if count == 0 {
            let error = self
                .slot(position)
                .invalid_count(count, "count must be at least 1");
            return AsyncCall::ready(Err(error));
        }
        if let Some(answer) = self.update_in_place(position, ask(self, count)) {
            return AsyncCall::ready(answer);
        }
        self.off_executor(
            move |tracker| {
                // The request is made here: reduced-rate mode as it is when the call runs.
                let request = ask(tracker, count);
                tracker.update(position, request).map(Recorded::into_owned)
            },
            |_, _| {},
            Err,
        )
    }

    /// [`try_record`](Self::try_record) that never blocks the executor: the same rules and
    /// errors, as a future. `Local` calls, and `Leased` calls the block in hand covers, are
    /// decided at once; an `Exact` admission or a block to lease goes to the store on one of
    /// the tracker's I/O threads. A sync found due is handed to the background syncer, which
    /// the first async call of a tracker with a store starts
    /// ([`sync_in_background`](Self::sync_in_background)). Dropped before it is ready, the
    /// call still runs: what it admits stays counted. Native only.
    ///
    /// ```
    /// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
    /// use std::sync::Arc;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let config = TrackerConfig::new([ServiceConfig::new("search", 10, Period::Minute)]);
    /// let tracker = Arc::new(QuotaTracker::new(config)?);
    /// let recorded = tracker.try_record_async("search", 3).await?;
    /// assert_eq!(recorded.usage.used, 3);
    /// tracker.close().await?;
    /// # Ok::<(), quota_core::QuotaError>(())
    /// # }).unwrap();
    /// ```
    pub fn try_record_async(
        self: &Arc<Self>,
        service: &str,
        count: u64,
    ) -> AsyncCall<AsyncRecorded> {
        self.update_async(service, count, |tracker, count| {
            tracker.admission(count, false)
        })
    }

    /// [`try_record_priority`](Self::try_record_priority) as an async call (see
    /// [`try_record_async`](Self::try_record_async)).
    pub fn try_record_priority_async(
        self: &Arc<Self>,
        service: &str,
        count: u64,
    ) -> AsyncCall<AsyncRecorded> {
        self.update_async(service, count, |tracker, count| {
            tracker.admission(count, true)
        })
    }

    /// [`record_call`](Self::record_call) as an async call (see
    /// [`try_record_async`](Self::try_record_async)).
    pub fn record_call_async(
        self: &Arc<Self>,
        service: &str,
        count: u64,
    ) -> AsyncCall<AsyncRecorded> {
        self.update_async(service, count, |_, count| Request::record(count))
    }

    /// [`can_call`](Self::can_call) as an async call: a `Local` service answers at once; an
    /// `Exact` or `Leased` one asks its store on an I/O thread.
    pub fn can_call_async(self: &Arc<Self>, service: &str) -> AsyncCall<Result<bool, QuotaError>> {
        let position = match self.position(service) {
            Ok(position) => position,
            Err(error) => return AsyncCall::ready(Err(error)),
        };
        if !self.asks_store(position) {
            if let Some(can) = self.in_place(|| self.can_call_at(position)) {
                return AsyncCall::ready(Ok(can));
            }
        }
        self.off_executor(
            move |tracker| Ok(tracker.can_call_at(position)),
            |_, _| {},
            Err,
        )
    }

    /// [`raise_used`](Self::raise_used) as an async call. A raise never asks the store
    /// itself (the floor goes with the next sync, which the background syncer runs): it is
    /// decided at once, in any admission.
    pub fn raise_used_async(
        self: &Arc<Self>,
        service: &str,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> AsyncCall<Result<Raised<'static>, QuotaError>> {
        let position = match self.position(service) {
            Ok(position) => position,
            Err(error) => return AsyncCall::ready(Err(error)),
        };
        let raise = move |tracker: &QuotaTracker| {
            let raised = tracker.raise_at(position, at_least, resets_at_ms);
            raised.map(Raised::into_owned)
        };
        match self.in_place(|| raise(self)) {
            Some(answer) => AsyncCall::ready(answer),
            // Never taken today (a raise has no store path); kept off the executor if it is.
            None => self.off_executor(raise, |_, _| {}, Err),
        }
    }

    /// [`hold_owned`](Self::hold_owned) as an async call: at once for a `Local` service, on
    /// an I/O thread otherwise. Dropped before it is ready, a hold admitted for it is cancelled
    /// (one already answered but never polled keeps its estimate, as a dropped hold does).
    pub fn hold_async(
        self: &Arc<Self>,
        service: &str,
        estimate: u64,
    ) -> AsyncCall<Result<OwnedHold, QuotaError>> {
        self.hold_async_as(service, estimate, false)
    }

    /// [`hold_priority`](Self::hold_priority) as an async call, answered with an
    /// [`OwnedHold`] (see [`hold_async`](Self::hold_async)).
    pub fn hold_priority_async(
        self: &Arc<Self>,
        service: &str,
        estimate: u64,
    ) -> AsyncCall<Result<OwnedHold, QuotaError>> {
        self.hold_async_as(service, estimate, true)
    }

    fn hold_async_as(
        self: &Arc<Self>,
        service: &str,
        estimate: u64,
        priority: bool,
    ) -> AsyncCall<Result<OwnedHold, QuotaError>> {
        let position = match self.position(service) {
            Ok(position) => position,
            Err(error) => return AsyncCall::ready(Err(error)),
        };
        if estimate == 0 {
            let error = self
                .slot(position)
                .invalid_count(estimate, "count must be at least 1");
            return AsyncCall::ready(Err(error));
        }
        let owned = |tracker: &Arc<QuotaTracker>, held| OwnedHold {
            tracker: Arc::clone(tracker),
            held,
        };
        if !self.asks_store(position) {
            let held = self.in_place(|| self.hold_at(position, estimate, priority, false));
            if let Some(held) = held {
                return AsyncCall::ready(held.map(|held| owned(self, held)));
            }
        }
        let tracker = Arc::clone(self);
        self.off_executor(
            move |here| {
                here.hold_at(position, estimate, priority, false)
                    .map(|held| owned(&tracker, held))
            },
            |_, left| {
                if let Ok(hold) = left {
                    // Fails only if a reconfigure removed the service: the estimate stays.
                    let _ = hold.cancel();
                }
            },
            Err,
        )
    }

    /// [`try_record_many`](Self::try_record_many) as an async call: at once if every service
    /// is `Local`, else on an I/O thread.
    pub fn try_record_many_async(
        self: &Arc<Self>,
        calls: &[(&str, u64)],
    ) -> AsyncCall<Result<Vec<Recorded<'static>>, QuotaError>> {
        self.many_async(calls, false)
    }

    /// [`try_record_many_priority`](Self::try_record_many_priority) as an async call (see
    /// [`try_record_many_async`](Self::try_record_many_async)).
    pub fn try_record_many_priority_async(
        self: &Arc<Self>,
        calls: &[(&str, u64)],
    ) -> AsyncCall<Result<Vec<Recorded<'static>>, QuotaError>> {
        self.many_async(calls, true)
    }

    fn many_async(
        self: &Arc<Self>,
        calls: &[(&str, u64)],
        priority: bool,
    ) -> AsyncCall<Result<Vec<Recorded<'static>>, QuotaError>> {
        let positions = match self
            .positions_of(calls)
            .and_then(|positions| self.check_many(&positions).map(|()| positions))
        {
            Ok(positions) => positions,
            Err(error) => return AsyncCall::ready(Err(error)),
        };
        let owned =
            |recorded: Vec<Recorded<'_>>| recorded.into_iter().map(Recorded::into_owned).collect();
        if !positions
            .iter()
            .any(|&(position, _)| self.asks_store(position))
        {
            let answer = self.in_place(|| {
                let answer = self.admit_many(&positions, priority);
                answer.map(|(recorded, _)| owned(recorded))
            });
            if let Some(answer) = answer {
                return AsyncCall::ready(answer);
            }
        }
        self.off_executor(
            move |tracker| {
                let (recorded, _) = tracker.admit_many(&positions, priority)?;
                Ok(owned(recorded))
            },
            |_, _| {},
            Err,
        )
    }

    /// Runs `job` (blocking calls of this tracker) on one of its I/O threads: for calls that
    /// must follow one another off the executor, such as a settlement and then the floors a
    /// response reported. `Err` only if the job could not run (the tracker dropped first, or
    /// the job panicked). A job that uses `?` returns a `Result` whose error type it names
    /// (`Ok::<_, QuotaError>(..)` where nothing else says it). Native only.
    ///
    /// ```
    /// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
    /// use std::sync::Arc;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let config = TrackerConfig::new([ServiceConfig::new("llm", 10_000, Period::Minute)]);
    /// let tracker = Arc::new(QuotaTracker::new(config)?);
    /// let used = tracker
    ///     .run_async(|tracker| {
    ///         tracker.hold("llm", 2_000)?.settle(1_200)?;
    ///         tracker.raise_used("llm", 1_500, None).map(|raised| raised.usage.used)
    ///     })
    ///     .await??;
    /// assert_eq!(used, 1_500);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// # }).unwrap();
    /// ```
    pub fn run_async<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&QuotaTracker) -> T + Send + 'static,
    ) -> AsyncCall<Result<T, QuotaError>> {
        self.off_executor(move |tracker| Ok(job(tracker)), |_, _| {}, Err)
    }

    /// [`flush`](Self::flush) on an I/O thread.
    pub fn flush_async(self: &Arc<Self>) -> AsyncCall<Result<(), StoreError>> {
        if self.persistence.is_none() {
            return AsyncCall::ready(Ok(()));
        }
        self.off_executor(
            |tracker| tracker.flush(),
            |_, _| {},
            |error| Err(StoreError::Io(error.to_string())),
        )
    }

    /// Flushes on an I/O thread, then lets this `Arc` go there: if it was the last, the
    /// tracker drops on that thread (its drop flushes again, off the executor). An async
    /// program ends with it: dropping an `Arc` instead flushes nothing before it returns (the
    /// background syncer or an I/O thread may hold another `Arc` for a moment, and then the
    /// last drop, and its flush, happen there later), and on the executor it would block.
    /// Later calls through other `Arc`s still work.
    pub fn close(self: Arc<Self>) -> AsyncCall<Result<(), StoreError>> {
        let (io, weak) = (self.io.handle(), Arc::downgrade(&self));
        io.call(
            weak,
            move |tracker| {
                let flushed = tracker.flush();
                // Not the last `Arc`: the I/O thread holds one while the job runs.
                drop(self);
                flushed
            },
            |_, _| {},
            |error| Err(StoreError::Io(error.to_string())),
        )
    }
}

impl OwnedHold {
    /// [`settle`](OwnedHold::settle) as an async call: at once for a `Local` service; through
    /// the store (an `Exact` settlement, a give-back) on an I/O thread otherwise.
    pub fn settle_async(self, actual: u64) -> AsyncCall<Result<Settlement, QuotaError>> {
        let tracker = Arc::clone(&self.tracker);
        if !tracker.asks_store(self.held.position()) {
            if let Some(settled) = tracker.in_place(|| tracker.settle_held(&self.held, actual)) {
                return AsyncCall::ready(settled);
            }
        }
        tracker.off_executor(move |_| self.settle(actual), |_, _| {}, Err)
    }

    /// [`cancel`](OwnedHold::cancel) as an async call: [`settle_async`](Self::settle_async)
    /// at 0.
    pub fn cancel_async(self) -> AsyncCall<Result<Settlement, QuotaError>> {
        self.settle_async(0)
    }
}
