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

use super::{Held, QuotaTracker};
use crate::error::{DenyReason, QuotaError};
use crate::locks::lock_std;
use crate::observers::quietly;
use crate::rules::Request;
use crate::usage::Recorded;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

mod until_ready;
mod waiter;

pub use until_ready::{HoldWhenReady, UntilReady};
use waiter::Waiter;

/// The longest the waiter sleeps while calls are queued: a bound on how late it notices
/// what nothing tells it of (a clock that is not the system's, capacity another instance
/// freed without a store sync, reduced rate ending).
const RECHECK: Duration = Duration::from_secs(1);

/// The shortest the waiter sleeps for a window end: a clock that lags the system's just
/// before one must not make it retry every millisecond.
const LEAST_SLEEP: Duration = Duration::from_millis(10);

std::thread_local! {
    /// Set on waiter threads: a blocking `wait` there (an observer's) does not wait.
    static ON_WAITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What `until_ready` answers: the admitted calls' [`Recorded`], owning the service name.
pub type ReadyResult = Result<Recorded<'static>, QuotaError>;

/// What a queued call is answered: recorded, or held (`hold_when_ready`), or an error.
type Answer = Result<Admitted, QuotaError>;

/// A queued call admitted.
enum Admitted {
    Recorded(Recorded<'static>),
    Held(Held),
}

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
    /// The window end (tracker ms) the waiter last slept until for this service.
    slept_until_ms: Option<u64>,
}

impl ServiceQueue {
    fn first(&self) -> Option<&Arc<Waiter>> {
        self.priority.front().or_else(|| self.normal.front())
    }

    fn is_empty(&self) -> bool {
        self.priority.is_empty() && self.normal.is_empty()
    }
}

impl QuotaTracker {
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

    /// The rule that refuses `request` even in an empty window, if one does: it could never
    /// pass.
    fn never_passes(&self, position: usize, request: Request) -> Option<DenyReason> {
        let settings = self.slot(position).settings();
        let request = request.with_reduced_rate(false);
        if !settings.config.enforce || settings.removed {
            return None;
        }
        (0..=settings.more.len()).find_map(|at| settings.limit(at).denies(0, request))
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
                let request = self.request_of(&first);
                if let Some(reason) = self.never_passes(position, request) {
                    // A reconfigure lowered the limit below it since it queued.
                    shared.remove(&first, self);
                    let _ = first.answer(Err(self.not_ready(&first, reason, None)));
                    continue;
                }
                if !first.admitting(true) {
                    // Its caller left.
                    shared.remove(&first, self);
                    continue;
                }
                let admitted = match first.hold {
                    true => self
                        .hold_at(position, first.count, first.priority, true)
                        .map(Admitted::Held),
                    false => self
                        .update(position, request.served())
                        .map(|recorded| Admitted::Recorded(recorded.into_owned())),
                };
                match admitted {
                    Ok(admitted) => {
                        shared.remove(&first, self);
                        if let Some(left) = first.answer(Ok(admitted)) {
                            self.admitted_for_nobody(left);
                        }
                    }
                    Err(QuotaError::Denied { reason, .. }) => {
                        first.admitting(false);
                        let now = Instant::now();
                        let ready_at_ms = self.ready_at(position, request, reason);
                        if first.deadline <= now {
                            shared.remove(&first, self);
                            let _ = first.answer(Err(self.not_ready(&first, reason, ready_at_ms)));
                            continue;
                        }
                        // Until its end, once: woken there and refused for the same end again
                        // (a clock that lags the system's), it is left to the recheck, never
                        // a busy loop.
                        if let Some(at_ms) = ready_at_ms {
                            let wait = at_ms.saturating_sub(self.now());
                            if shared.first_sleep_until(position, at_ms) {
                                soonest(now + Duration::from_millis(wait).max(LEAST_SLEEP));
                            }
                        }
                        break;
                    }
                    Err(error) => {
                        shared.remove(&first, self);
                        let _ = first.answer(Err(error));
                    }
                }
            }
            for late in shared.past_deadline(position, self) {
                let request = self.request_of(&late);
                let reason = DenyReason::Waiting;
                let ready_at_ms = self.ready_at(position, request, reason);
                let _ = late.answer(Err(self.not_ready(&late, reason, ready_at_ms)));
            }
            if let Some(deadline) = shared.first_deadline(position) {
                soonest(deadline);
            }
        }
        next
    }

    /// Calls admitted for a caller that left meanwhile: a hold is cancelled (the call was
    /// never made); recorded calls stay counted (never an under-count).
    fn admitted_for_nobody(&self, left: Answer) {
        match left {
            Ok(Admitted::Held(held)) => {
                // Fails only if a reconfigure removed the service: the estimate stays.
                let _ = self.settle_held(&held, 0);
            }
            Ok(Admitted::Recorded(recorded)) => {
                quietly(|| {
                    log::debug!(
                        "quota: calls to {} recorded for a waiting caller that left: kept",
                        recorded.usage.name
                    )
                });
            }
            Err(_) => {}
        }
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

    /// Whether the waiter has not slept until `at_ms` for the service at `position` yet
    /// (noting that it will).
    fn first_sleep_until(&self, position: usize, at_ms: u64) -> bool {
        let mut queue = lock_std(&self.queue);
        let Some(service) = queue.services.iter_mut().find(|q| q.position == position) else {
            return false;
        };
        let first = service.slept_until_ms != Some(at_ms);
        service.slept_until_ms = Some(at_ms);
        first
    }

    /// Marks every queued call as not being admitted (after a round that panicked).
    fn none_admitting(&self) {
        let queue = lock_std(&self.queue);
        for waiter in queue
            .services
            .iter()
            .flat_map(|q| q.priority.iter().chain(&q.normal))
        {
            waiter.admitting(false);
        }
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
}

/// The tracker drops: its waiter thread ends.
impl Drop for Waiting {
    fn drop(&mut self) {
        lock_std(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
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
                quietly(|| log::warn!("quota: cannot start the waiter thread: {error}"));
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
                    slept_until_ms: None,
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
    ON_WAITER.with(|on| on.set(true));
    loop {
        let next = {
            let Some(tracker) = tracker.upgrade() else {
                return;
            };
            // Nothing in a round should panic (stores, clocks, observers and wakers are
            // caught where they are called); if something does, the queue is served again.
            let next = match catch_unwind(AssertUnwindSafe(|| tracker.serve(shared))) {
                Ok(next) => next,
                Err(payload) => {
                    std::mem::forget(payload);
                    shared.none_admitting();
                    quietly(|| log::error!("quota: a round of the waiter thread panicked"));
                    Some(Instant::now() + RECHECK)
                }
            };
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
