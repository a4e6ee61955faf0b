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
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

mod until_ready;
mod waiter;

pub use until_ready::UntilReady;
use waiter::Waiter;

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
