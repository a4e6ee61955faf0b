//! [`UntilReady`] and [`HoldWhenReady`]: a call to wait for, as a future or on a thread;
//! both are a `Wait` answered with what they admit.

use super::waiter::{GiveUp, Waiter, Wake};
use super::{Admitted, Answer, ReadyResult, ON_WAITER, RECHECK};
use crate::config::Admission;
use crate::error::{DenyReason, QuotaError};
use crate::tracker::OwnedHold;
use crate::tracker::QuotaTracker;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A call waiting for capacity: from [`QuotaTracker::until_ready`]. Await it, or
/// [`wait`](Self::wait) for it on a thread. Dropped before it is answered, it leaves the queue
/// (calls the waiter admitted for it in the meantime stay counted: never an under-count).
#[must_use = "nothing is queued until it is awaited or waited for"]
pub struct UntilReady(Wait);

/// A hold waiting for capacity: from [`QuotaTracker::hold_when_ready`]. Await it, or
/// [`wait`](Self::wait) for it on a thread. Dropped before it is answered, it leaves the queue
/// (a hold the waiter admitted for it in the meantime is cancelled).
#[must_use = "nothing is queued until it is awaited or waited for"]
pub struct HoldWhenReady(Wait);

/// What both wait on: the call, and its place in the queue once it has one.
struct Wait {
    tracker: Arc<QuotaTracker>,
    call: Result<Call, QuotaError>,
    waiter: Option<Arc<Waiter>>,
    /// Answered: polled again, it stays pending (it never counts twice).
    answered: bool,
}

#[derive(Clone, Copy)]
struct Call {
    position: usize,
    count: u64,
    priority: bool,
    hold: bool,
    deadline: Instant,
}

impl std::fmt::Debug for UntilReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntilReady")
            .field("queued", &self.0.waiter.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HoldWhenReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldWhenReady")
            .field("queued", &self.0.waiter.is_some())
            .finish_non_exhaustive()
    }
}

impl QuotaTracker {
    /// Waits until `count` calls to `service` are admitted by normal admission (as
    /// [`try_record`](Self::try_record) admits them), and records them; or gives up at
    /// `deadline` with [`QuotaError::NotReady`]: the rule that refused them last, and the
    /// earliest instant they could pass. Await the answer, or
    /// [`wait`](UntilReady::wait) for it on a thread. Native only.
    ///
    /// Calls that are admitted now are recorded at once. The others queue, per service, behind
    /// the calls queued before them (priority calls, from
    /// [`until_ready_priority`](Self::until_ready_priority), first), and while any are queued
    /// new calls do not pass them ([`DenyReason::Waiting`]; records are never held back). One
    /// thread per tracker (started by the first call that queues) admits them in turn,
    /// waking when a window that refused the first ends, when calls are given back here (a
    /// hold settled low or cancelled) or a reconfigure lands, at least every sync interval
    /// with a store (capacity other instances freed is noticed within about one interval:
    /// `Exact` and `Leased` ask the store itself, `Local` sees it at the next sync, which its
    /// admissions trigger or [`sync_in_background`](Self::sync_in_background) runs), and at
    /// least once a second. Shared admission's store calls run on
    /// that thread, never on the caller's. Calls that could never pass (more than the cap of
    /// an empty window) fail at once, with `ready_at_ms` `None`.
    ///
    /// ```
    /// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    ///
    /// let api = ServiceConfig::builder("api", 10, Period::Minute).critical_threshold(1.0).build()?;
    /// let tracker = Arc::new(QuotaTracker::new(TrackerConfig::new([api]))?);
    /// let held = tracker.hold("api", 9)?; // the minute's calls (less the 10% reserve)
    ///
    /// let waiting = tracker.until_ready("api", 3, Instant::now() + Duration::from_secs(5));
    /// let thread = std::thread::spawn(move || waiting.wait());
    /// held.settle(4)?; // 5 given back: the waiting call passes at once
    /// let recorded = thread.join().unwrap()?;
    /// assert_eq!(recorded.usage.used, 7);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    pub fn until_ready(
        self: &Arc<Self>,
        service: &str,
        count: u64,
        deadline: Instant,
    ) -> UntilReady {
        UntilReady(self.wait_for(service, count, false, false, deadline))
    }

    /// [`until_ready`](Self::until_ready) with priority admission (the reserve too, up to the
    /// limit, as [`try_record_priority`](Self::try_record_priority)): served before every
    /// queued normal call, and held back only by queued priority calls.
    pub fn until_ready_priority(
        self: &Arc<Self>,
        service: &str,
        count: u64,
        deadline: Instant,
    ) -> UntilReady {
        UntilReady(self.wait_for(service, count, true, false, deadline))
    }

    /// Waits until a hold of `estimate` calls of `service` is admitted (as
    /// [`hold`](Self::hold) admits it), or gives up at `deadline`: the waiting of
    /// [`until_ready`](Self::until_ready), in the same queue, answered with an [`OwnedHold`]
    /// to settle when the call's cost is known. Native only.
    ///
    /// ```
    /// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    ///
    /// let llm = ServiceConfig::new("llm-tokens", 10_000, Period::Minute);
    /// let tracker = Arc::new(QuotaTracker::new(TrackerConfig::new([llm]))?);
    /// let running = tracker.hold("llm-tokens", 8_000)?; // normal calls stop at 8,000
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// let next = tracker.hold_when_ready("llm-tokens", 2_000, deadline);
    /// let thread = std::thread::spawn(move || next.wait());
    /// running.settle(3_000)?; // 5,000 back: the waiting hold is admitted
    /// let hold = thread.join().unwrap()?;
    /// hold.settle(1_500)?;
    /// assert_eq!(tracker.usage("llm-tokens")?.used, 4_500);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    pub fn hold_when_ready(
        self: &Arc<Self>,
        service: &str,
        estimate: u64,
        deadline: Instant,
    ) -> HoldWhenReady {
        HoldWhenReady(self.wait_for(service, estimate, false, true, deadline))
    }

    /// [`hold_when_ready`](Self::hold_when_ready) with priority admission (as
    /// [`hold_priority`](Self::hold_priority)), queued as
    /// [`until_ready_priority`](Self::until_ready_priority) is.
    pub fn hold_priority_when_ready(
        self: &Arc<Self>,
        service: &str,
        estimate: u64,
        deadline: Instant,
    ) -> HoldWhenReady {
        HoldWhenReady(self.wait_for(service, estimate, true, true, deadline))
    }

    fn wait_for(
        self: &Arc<Self>,
        service: &str,
        count: u64,
        priority: bool,
        hold: bool,
        deadline: Instant,
    ) -> Wait {
        let call = self.position(service).and_then(|position| {
            if count == 0 {
                return Err(self
                    .slot(position)
                    .invalid_count(count, "count must be at least 1"));
            }
            Ok(Call {
                position,
                count,
                priority,
                hold,
                deadline,
            })
        });
        Wait {
            tracker: Arc::clone(self),
            call,
            waiter: None,
            answered: false,
        }
    }
}

impl UntilReady {
    /// Blocks this thread until the calls are admitted (recorded) or the deadline passes.
    /// Tries at once on this thread; queued (or polled before, and queued then), it sleeps
    /// until the waiter thread answers. If that thread is held up (calls ahead in a slow
    /// store), it gives up by itself one second past the deadline, unless the thread is
    /// admitting this very call: then it takes that answer. Called on a waiter thread (from
    /// an observer), it never waits: a call not admitted at once fails.
    ///
    /// Errors: [`QuotaError::NotReady`] at the deadline (reason [`DenyReason::Waiting`] when
    /// the waiter thread never got to it), or at once for calls that could never pass;
    /// [`QuotaError::UnknownService`]; [`QuotaError::InvalidCount`] for 0 calls, and for a
    /// wait whose answer was already taken by polling.
    pub fn wait(mut self) -> ReadyResult {
        let answer = self.0.wait_blocking();
        self.0.recorded(answer)
    }
}

impl HoldWhenReady {
    /// Blocks this thread until the hold is admitted or the deadline passes, as
    /// [`UntilReady::wait`] does.
    ///
    /// Errors: those of [`UntilReady::wait`].
    pub fn wait(mut self) -> Result<OwnedHold, QuotaError> {
        let answer = self.0.wait_blocking();
        self.0.held(answer)
    }
}

impl Wait {
    fn wait_blocking(&mut self) -> Answer {
        if self.answered {
            return Err(self.answered_already());
        }
        self.answered = true;
        let waiter = match &self.waiter {
            // Polled before: wait for the call it queued.
            Some(waiter) => Arc::clone(waiter),
            None => match self.start(true) {
                Some(answer) => return answer,
                None => Arc::clone(self.waiter.as_ref().expect("queued by start")),
            },
        };
        if ON_WAITER.with(Cell::get) {
            // An observer on a waiter thread: that thread cannot wait for itself (or block
            // every other queued call for this one). It leaves, even while the call is being
            // admitted (by another tracker's waiter): an answer that comes later is a call
            // admitted for nobody (a hold goes back).
            self.waiter = None;
            let answer = waiter.abandon();
            self.tracker.waiting.notify();
            return match answer {
                Some(answer) => answer,
                None => Err(self.tracker.not_ready(&waiter, DenyReason::Waiting, None)),
            };
        }
        let give_up_at = waiter
            .deadline
            .checked_add(RECHECK)
            .unwrap_or(waiter.deadline);
        loop {
            if let Some(answer) = waiter.take(|| Wake::Thread(std::thread::current())) {
                self.waiter = None;
                return answer;
            }
            let now = Instant::now();
            if now >= give_up_at {
                // The waiter thread is late (busy with calls ahead, a slow store): leave,
                // unless it is admitting this very call, whose answer comes next.
                match waiter.give_up() {
                    GiveUp::Answered(answer) => {
                        self.waiter = None;
                        return *answer;
                    }
                    GiveUp::Left => {
                        self.waiter = None;
                        self.tracker.waiting.notify();
                        return Err(self.tracker.not_ready(&waiter, DenyReason::Waiting, None));
                    }
                    GiveUp::Admitting => std::thread::park_timeout(RECHECK),
                }
                continue;
            }
            std::thread::park_timeout(give_up_at - now);
        }
    }

    /// The error of a wait asked again after its answer was taken.
    fn answered_already(&self) -> QuotaError {
        let (service, count) = match &self.call {
            Ok(call) => (
                Arc::clone(&self.tracker.slot(call.position).name),
                call.count,
            ),
            Err(error) => return error.clone(),
        };
        QuotaError::InvalidCount {
            service,
            count,
            reason: "this wait was answered already",
        }
    }

    /// Tries the call, and queues it if it is refused: `Some` with the answer if there is
    /// one already. `here`: the admission may run on the caller's thread whatever it needs (a
    /// blocking wait); else only a `Local` one, which asks no store.
    fn start(&mut self, here: bool) -> Option<Answer> {
        let call = match &self.call {
            Ok(call) => *call,
            Err(error) => return Some(Err(error.clone())),
        };
        let tracker = &self.tracker;
        let request = tracker.admission(call.count, call.priority);
        let waiter = Waiter::new(
            call.position,
            call.count,
            call.priority,
            call.hold,
            call.deadline,
        );
        if let Some(reason) = tracker.never_passes(call.position, request) {
            return Some(Err(tracker.not_ready(&waiter, reason, None)));
        }
        let admission = tracker.slot(call.position).settings().config.admission;
        if here || admission == Admission::Local {
            let admit = || match call.hold {
                true => tracker
                    .hold_at(call.position, call.count, call.priority, false)
                    .map(Admitted::Held),
                false => tracker
                    .update(call.position, request)
                    .map(|recorded| Admitted::Recorded(recorded.into_owned())),
            };
            // Polled: a sync it finds due goes to the background syncer, not the executor; a
            // call that needs the store (a reconfigure since) is queued for the waiter.
            let admitted = match here {
                true => Some(admit()),
                false => tracker.in_place(admit),
            };
            match admitted {
                Some(Ok(admitted)) => return Some(Ok(admitted)),
                None | Some(Err(QuotaError::Denied { .. })) => {}
                Some(Err(error)) => return Some(Err(error)),
            }
        }
        let waiter = Arc::new(waiter);
        if let Err(error) = tracker.enqueue(&waiter) {
            return Some(Err(error));
        }
        self.waiter = Some(waiter);
        None
    }
}

impl Wait {
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Answer> {
        if self.answered {
            return Poll::Pending;
        }
        if self.waiter.is_none() {
            if let Some(answer) = self.start(false) {
                self.answered = true;
                return Poll::Ready(answer);
            }
        }
        let waiter = Arc::clone(self.waiter.as_ref().expect("queued by start"));
        match waiter.take(|| Wake::Task(cx.waker().clone())) {
            Some(answer) => {
                self.waiter = None;
                self.answered = true;
                Poll::Ready(answer)
            }
            None => Poll::Pending,
        }
    }

    /// The answer of a record (`until_ready`).
    fn recorded(&self, answer: Answer) -> ReadyResult {
        match answer? {
            Admitted::Recorded(recorded) => Ok(recorded),
            // Never: a record is answered with a record. Given back, not kept.
            Admitted::Held(held) => {
                let _ = self.tracker.settle_held(&held, 0);
                Err(self.answered_already())
            }
        }
    }

    /// The answer of a hold (`hold_when_ready`).
    fn held(&self, answer: Answer) -> Result<OwnedHold, QuotaError> {
        match answer? {
            Admitted::Held(held) => Ok(OwnedHold {
                tracker: Arc::clone(&self.tracker),
                held,
            }),
            // Never: a hold is answered with a hold.
            Admitted::Recorded(_) => Err(self.answered_already()),
        }
    }
}

impl Future for UntilReady {
    type Output = ReadyResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReadyResult> {
        let wait = &mut self.0;
        wait.poll_answer(cx).map(|answer| wait.recorded(answer))
    }
}

impl Future for HoldWhenReady {
    type Output = Result<OwnedHold, QuotaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let wait = &mut self.0;
        wait.poll_answer(cx).map(|answer| wait.held(answer))
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            if let Some(answer) = waiter.abandon() {
                // Answered, never taken: a hold goes back, recorded calls stay counted.
                self.tracker.admitted_for_nobody(answer);
            }
            // The waiter takes it off the queue (and lets the calls behind it go).
            self.tracker.waiting.notify();
        }
    }
}
