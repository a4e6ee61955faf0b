//! Waiting for capacity (native only): [`QuotaTracker::until_ready`] queues a call that is not
//! admitted now, and one thread per tracker, the *waiter*, admits queued calls in their turn.
//!
//! Each service has two queues, priority calls first, each in arrival order; only the waiter
//! takes calls off them. It tries a service's first queued call (the normal admission path,
//! marked `served` so that the queue does not hold it back), and on a refusal sleeps until
//! the earliest of: the windows that refused it end, a queued call's deadline, a sync
//! interval (a store: other instances may have freed calls), and [`RECHECK`]. Whatever frees
//! calls here wakes it at once: a hold settled low or cancelled, a reconfigure. One timer for
//! every waiting call; no caller polls.
//!
//! While calls are queued, new calls do not pass them: `ServiceSlot::waiting` counts them,
//! and every admission reads it beside the settings (no other cache line) and refuses with
//! [`DenyReason::Waiting`]; the fast path is never reached. Records are never held back.
//!
//! The waiter runs the admission (and so any store I/O it needs) on its own thread: an async
//! caller's executor never does. Its queue lock is a leaf, never held while admitting; a
//! queued call's state has a leaf lock of its own.

use super::QuotaTracker;
use crate::error::{DenyReason, QuotaError};
use crate::locks::{lock_std, Ordering};
use crate::rules::Request;
use crate::usage::Recorded;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The longest the waiter sleeps while calls are queued: a bound on how late it notices
/// what nothing tells it of (a clock that is not the system's, capacity another instance
/// freed without a store sync, reduced rate ending).
const RECHECK: Duration = Duration::from_secs(1);

/// What `until_ready` answers: the admitted calls' [`Recorded`], owning the service name.
pub type ReadyResult = Result<Recorded<'static>, QuotaError>;

/// The wait queue of a tracker, shared with its waiter thread.
#[derive(Default)]
pub(super) struct Waiting {
    shared: Arc<WaitShared>,
}

#[derive(Default)]
struct WaitShared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    /// The services with queued calls.
    services: Vec<ServiceQueue>,
    /// The waiter thread was started.
    started: bool,
    /// Something may have freed calls since the waiter last looked.
    notified: bool,
    /// The tracker dropped: the waiter ends.
    closed: bool,
}

struct ServiceQueue {
    position: usize,
    priority: VecDeque<Arc<Waiter>>,
    normal: VecDeque<Arc<Waiter>>,
}

impl ServiceQueue {
    fn first(&self) -> Option<&Arc<Waiter>> {
        self.priority.front().or_else(|| self.normal.front())
    }

    fn is_empty(&self) -> bool {
        self.priority.is_empty() && self.normal.is_empty()
    }
}

/// One queued call.
struct Waiter {
    position: usize,
    count: u64,
    priority: bool,
    deadline: Instant,
    state: Mutex<WaitState>,
}

enum WaitState {
    /// In the queue; whom to wake when it is answered.
    Queued(Option<Wake>),
    /// Answered, not taken yet (boxed: a `Recorded` is large, and rare here).
    Done(Box<ReadyResult>),
    /// The answer was taken.
    Taken,
    /// The caller went away (the future dropped, or a blocking caller past its deadline).
    Abandoned,
}

enum Wake {
    Thread(std::thread::Thread),
    Task(Waker),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task(waker) => waker.wake(),
        }
    }
}

impl Waiter {
    /// Answers the call and wakes its caller; `false` if the caller went away.
    fn answer(&self, result: ReadyResult) -> bool {
        let mut state = lock_std(&self.state);
        let wake = match std::mem::replace(&mut *state, WaitState::Taken) {
            WaitState::Queued(wake) => wake,
            WaitState::Abandoned => {
                *state = WaitState::Abandoned;
                return false;
            }
            done => {
                *state = done;
                return true;
            }
        };
        *state = WaitState::Done(Box::new(result));
        drop(state);
        if let Some(wake) = wake {
            wake.wake();
        }
        true
    }

    fn abandoned(&self) -> bool {
        matches!(*lock_std(&self.state), WaitState::Abandoned)
    }

    /// The answer, if there is one; else `wake` is woken when it comes.
    fn take(&self, wake: impl FnOnce() -> Wake) -> Option<ReadyResult> {
        let mut state = lock_std(&self.state);
        match std::mem::replace(&mut *state, WaitState::Taken) {
            WaitState::Done(result) => Some(*result),
            WaitState::Queued(_) => {
                *state = WaitState::Queued(Some(wake()));
                None
            }
            other => {
                *state = other;
                None
            }
        }
    }

    /// Leaves the queue (as far as the caller is concerned): an answer that comes later is
    /// dropped. The answer, if it came first.
    fn abandon(&self) -> Option<ReadyResult> {
        let mut state = lock_std(&self.state);
        match std::mem::replace(&mut *state, WaitState::Abandoned) {
            WaitState::Done(result) => Some(*result),
            _ => None,
        }
    }
}

/// A call waiting for capacity: from [`QuotaTracker::until_ready`]. Await it, or
/// [`wait`](Self::wait) for it on a thread. Dropped before it is answered, it leaves the queue
/// (calls the waiter admitted for it in the meantime stay counted: never an under-count).
#[must_use = "nothing is queued until it is awaited or waited for"]
pub struct UntilReady {
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
    deadline: Instant,
}

impl std::fmt::Debug for UntilReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntilReady")
            .field("queued", &self.waiter.is_some())
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
    /// with a store (capacity other instances freed is noticed within one interval and the
    /// sync it triggers), and at least once a second. Shared admission's store calls run on
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
        self.until_ready_as(service, count, false, deadline)
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
        self.until_ready_as(service, count, true, deadline)
    }

    fn until_ready_as(
        self: &Arc<Self>,
        service: &str,
        count: u64,
        priority: bool,
        deadline: Instant,
    ) -> UntilReady {
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
                deadline,
            })
        });
        UntilReady {
            tracker: Arc::clone(self),
            call,
            waiter: None,
            answered: false,
        }
    }

    /// The request of a queued call.
    fn request_of(&self, waiter: &Waiter) -> Request {
        self.admission(waiter.count, waiter.priority)
    }

    /// When `request`, refused for `reason`, could pass at the earliest (tracker ms): when
    /// every limit that refuses it here ends its window; if none does here (the store's count
    /// refused it), when the first window ends. `None` if some limit refuses it even in an
    /// empty window, or the refusal is not one a window end lifts (reduced rate, the store).
    fn ready_at(&self, position: usize, request: Request, reason: DenyReason) -> Option<u64> {
        if matches!(
            reason,
            DenyReason::ReducedRate | DenyReason::StoreUnavailable
        ) {
            return None;
        }
        let request = request.with_reduced_rate(false);
        self.read_limits(position, |_, settings, state| {
            let (mut refusing, mut first) = (None, None);
            for at in 0..state.limit_count() {
                let rules = settings.limit(at);
                if rules.denies(0, request).is_some() {
                    return None;
                }
                let count = state.count(at);
                let reset_at_ms = Some(count.window.reset_at_ms);
                if rules.denies(count.used, request).is_some() {
                    refusing = refusing.max(reset_at_ms);
                }
                first = match first {
                    None => reset_at_ms,
                    Some(_) => first.min(reset_at_ms),
                };
            }
            refusing.or(first)
        })
    }

    /// Whether `request` could pass some window (it asks no more than an empty one allows).
    fn could_ever_pass(&self, position: usize, request: Request) -> bool {
        let settings = self.slot(position).settings();
        let request = request.with_reduced_rate(false);
        !settings.config.enforce
            || (0..=settings.more.len()).all(|at| settings.limit(at).denies(0, request).is_none())
    }

    /// One round of the waiter: tries each service's first queued call until one is refused,
    /// answers calls past their deadline, and says when to look again.
    fn serve(&self, shared: &WaitShared) -> Option<Instant> {
        let positions: Vec<usize> = lock_std(&shared.queue)
            .services
            .iter()
            .map(|queue| queue.position)
            .collect();
        let mut next: Option<Instant> = None;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |next| next.min(at)));
        for position in positions {
            loop {
                let first = lock_std(&shared.queue)
                    .services
                    .iter()
                    .find(|queue| queue.position == position)
                    .and_then(|queue| queue.first().cloned());
                let Some(first) = first else { break };
                if first.abandoned() {
                    shared.remove(&first, self);
                    continue;
                }
                let request = self.request_of(&first);
                match self.update(position, request.served()) {
                    Ok(recorded) => {
                        shared.remove(&first, self);
                        if !first.answer(Ok(recorded.into_owned())) {
                            log::debug!(
                                "quota: {} call(s) to {} admitted for a caller that left: kept",
                                first.count,
                                self.slot(position).name
                            );
                        }
                    }
                    Err(QuotaError::Denied { reason, .. }) => {
                        let now = Instant::now();
                        let ready_at_ms = self.ready_at(position, request, reason);
                        if first.deadline <= now {
                            shared.remove(&first, self);
                            first.answer(Err(self.not_ready(&first, reason, ready_at_ms)));
                            continue;
                        }
                        // Not before its end: a window end in the past (a clock that is not
                        // the system's) is left to the recheck, never a busy loop.
                        if let Some(wait) = ready_at_ms.and_then(|at| at.checked_sub(self.now())) {
                            soonest(now + Duration::from_millis(wait.max(1)));
                        }
                        break;
                    }
                    Err(error) => {
                        shared.remove(&first, self);
                        first.answer(Err(error));
                    }
                }
            }
            for late in shared.past_deadline(position, self) {
                let request = self.request_of(&late);
                let reason = DenyReason::Waiting;
                let ready_at_ms = self.ready_at(position, request, reason);
                late.answer(Err(self.not_ready(&late, reason, ready_at_ms)));
            }
            if let Some(deadline) = shared.first_deadline(position) {
                soonest(deadline);
            }
        }
        next
    }

    fn not_ready(
        &self,
        waiter: &Waiter,
        reason: DenyReason,
        ready_at_ms: Option<u64>,
    ) -> QuotaError {
        QuotaError::NotReady {
            service: Arc::clone(&self.slot(waiter.position).name),
            count: waiter.count,
            reason,
            ready_at_ms,
        }
    }

    /// The longest the waiter sleeps while calls are queued: a sync interval with a store,
    /// else [`RECHECK`].
    fn recheck(&self) -> Duration {
        match &self.persistence {
            Some(persistence) => {
                Duration::from_millis(persistence.policy.interval_ms.max(1)).min(RECHECK)
            }
            None => RECHECK,
        }
    }
}

impl WaitShared {
    /// Takes `waiter` off its queue (if it is still there).
    fn remove(&self, waiter: &Arc<Waiter>, tracker: &QuotaTracker) {
        let mut queue = lock_std(&self.queue);
        let Some(at) = queue
            .services
            .iter()
            .position(|queue| queue.position == waiter.position)
        else {
            return;
        };
        let service = &mut queue.services[at];
        let calls = match waiter.priority {
            true => &mut service.priority,
            false => &mut service.normal,
        };
        let Some(index) = calls.iter().position(|queued| Arc::ptr_eq(queued, waiter)) else {
            return;
        };
        calls.remove(index);
        tracker
            .slot(waiter.position)
            .waiting
            .fetch_sub(if waiter.priority { 1 << 32 } else { 1 }, Ordering::Relaxed);
        if service.is_empty() {
            queue.services.swap_remove(at);
        }
    }

    /// Takes the calls of the service at `position` whose deadline passed off the queue.
    fn past_deadline(&self, position: usize, tracker: &QuotaTracker) -> Vec<Arc<Waiter>> {
        let now = Instant::now();
        let mut late: Vec<Arc<Waiter>> = lock_std(&self.queue)
            .services
            .iter()
            .filter(|queue| queue.position == position)
            .flat_map(|queue| queue.priority.iter().chain(&queue.normal))
            .filter(|waiter| waiter.deadline <= now || waiter.abandoned())
            .cloned()
            .collect();
        for waiter in &late {
            self.remove(waiter, tracker);
        }
        late.retain(|waiter| !waiter.abandoned());
        late
    }

    /// The earliest deadline of the calls queued for the service at `position`.
    fn first_deadline(&self, position: usize) -> Option<Instant> {
        lock_std(&self.queue)
            .services
            .iter()
            .filter(|queue| queue.position == position)
            .flat_map(|queue| queue.priority.iter().chain(&queue.normal))
            .map(|waiter| waiter.deadline)
            .min()
    }
}

impl Waiting {
    /// Wakes the waiter, if it runs.
    pub(super) fn notify(&self) {
        let mut queue = lock_std(&self.shared.queue);
        if queue.started {
            queue.notified = true;
            drop(queue);
            self.shared.wake.notify_one();
        }
    }

    /// Ends the waiter (the tracker drops).
    pub(super) fn close(&self) {
        lock_std(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
    }
}

impl UntilReady {
    /// Blocks this thread until the calls are admitted (recorded) or the deadline passes.
    /// Tries at once on this thread; queued, it sleeps until the waiter answers, and gives
    /// up by itself at the deadline even if the waiter is in a slow store call then.
    ///
    /// Errors: [`QuotaError::NotReady`] at the deadline, or at once for calls that could
    /// never pass; [`QuotaError::UnknownService`], [`QuotaError::InvalidCount`].
    pub fn wait(mut self) -> ReadyResult {
        if let Some(answer) = self.start(true) {
            return answer;
        }
        let waiter = Arc::clone(self.waiter.as_ref().expect("queued by start"));
        loop {
            if let Some(answer) = waiter.take(|| Wake::Thread(std::thread::current())) {
                self.waiter = None;
                return answer;
            }
            let now = Instant::now();
            if now >= waiter.deadline + RECHECK {
                // The waiter is late (a store call that hangs): give up here.
                self.waiter = None;
                if let Some(answer) = waiter.abandon() {
                    return answer;
                }
                // Whatever holds it up, it is not a window: no instant to name.
                return Err(self
                    .tracker
                    .not_ready(&waiter, DenyReason::StoreUnavailable, None));
            }
            std::thread::park_timeout((waiter.deadline + RECHECK) - now);
        }
    }

    /// Tries the call, and queues it if it is refused: `Some` with the answer if there is
    /// one already. `here`: the admission may run on the caller's thread (a blocking wait,
    /// or a tracker with no store, whose admission does no I/O).
    fn start(&mut self, here: bool) -> Option<ReadyResult> {
        let call = match &self.call {
            Ok(call) => *call,
            Err(error) => return Some(Err(error.clone())),
        };
        let tracker = &self.tracker;
        let request = tracker.admission(call.count, call.priority);
        if !tracker.could_ever_pass(call.position, request) {
            let waiter = self.waiter_of(call);
            return Some(Err(tracker.not_ready(&waiter, DenyReason::Limit, None)));
        }
        if here || tracker.persistence.is_none() {
            match tracker.update(call.position, request) {
                Ok(recorded) => return Some(Ok(recorded.into_owned())),
                Err(QuotaError::Denied { .. }) => {}
                Err(error) => return Some(Err(error)),
            }
        }
        let waiter = Arc::new(self.waiter_of(call));
        if let Err(error) = tracker.enqueue(&waiter) {
            return Some(Err(error));
        }
        self.waiter = Some(waiter);
        None
    }

    fn waiter_of(&self, call: Call) -> Waiter {
        Waiter {
            position: call.position,
            count: call.count,
            priority: call.priority,
            deadline: call.deadline,
            state: Mutex::new(WaitState::Queued(None)),
        }
    }
}

impl QuotaTracker {
    /// Puts `waiter` at the end of its queue and wakes the waiter thread (starting it the
    /// first time).
    fn enqueue(self: &Arc<Self>, waiter: &Arc<Waiter>) -> Result<(), QuotaError> {
        let shared = &self.waiting.shared;
        let mut queue = lock_std(&shared.queue);
        if !queue.started {
            let weak = Arc::downgrade(self);
            let thread_shared = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name("quota-waiter".into())
                .spawn(move || run_waiter(&weak, &thread_shared));
            if let Err(error) = spawned {
                drop(queue);
                log::warn!("quota: cannot start the waiter thread: {error}");
                return Err(self.not_ready(waiter, DenyReason::Waiting, None));
            }
            queue.started = true;
        }
        let at = match queue
            .services
            .iter()
            .position(|queue| queue.position == waiter.position)
        {
            Some(at) => at,
            None => {
                queue.services.push(ServiceQueue {
                    position: waiter.position,
                    priority: VecDeque::new(),
                    normal: VecDeque::new(),
                });
                queue.services.len() - 1
            }
        };
        let service = &mut queue.services[at];
        match waiter.priority {
            true => service.priority.push_back(Arc::clone(waiter)),
            false => service.normal.push_back(Arc::clone(waiter)),
        }
        self.slot(waiter.position)
            .waiting
            .fetch_add(if waiter.priority { 1 << 32 } else { 1 }, Ordering::Relaxed);
        queue.notified = true;
        drop(queue);
        shared.wake.notify_one();
        Ok(())
    }
}

/// The waiter thread: serves the queues while the tracker lives, holding it only while it
/// serves (so the tracker can drop while it sleeps).
fn run_waiter(tracker: &Weak<QuotaTracker>, shared: &WaitShared) {
    loop {
        let next = {
            let Some(tracker) = tracker.upgrade() else {
                return;
            };
            let next = tracker.serve(shared);
            let recheck = tracker.recheck();
            let queued = !lock_std(&shared.queue).services.is_empty();
            queued.then(|| {
                let latest = Instant::now() + recheck;
                next.map_or(latest, |next| next.min(latest))
            })
        };
        let mut queue = lock_std(&shared.queue);
        while !queue.notified && !queue.closed {
            queue = match next {
                None => shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    shared
                        .wake
                        .wait_timeout(queue, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        if queue.closed {
            return;
        }
        queue.notified = false;
    }
}

impl Future for UntilReady {
    type Output = ReadyResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReadyResult> {
        let this = &mut *self;
        if this.answered {
            return Poll::Pending;
        }
        if this.waiter.is_none() {
            if let Some(answer) = this.start(false) {
                this.answered = true;
                return Poll::Ready(answer);
            }
        }
        let waiter = Arc::clone(this.waiter.as_ref().expect("queued by start"));
        match waiter.take(|| Wake::Task(cx.waker().clone())) {
            Some(answer) => {
                this.waiter = None;
                this.answered = true;
                Poll::Ready(answer)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for UntilReady {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            waiter.abandon();
            // The waiter takes it off the queue (and lets the calls behind it go).
            self.tracker.waiting.notify();
        }
    }
}
