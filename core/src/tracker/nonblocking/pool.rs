//! The tracker's I/O threads and [`AsyncCall`], the future of an async call whose work they
//! do: the store I/O of the async API runs here, never on the caller's executor.
//!
//! Threads start when work is queued and none is idle (at most [`MOST_THREADS`], so that
//! that many calls to the store can be in flight at once), and end after [`IDLE_END`] with
//! nothing to do, or when the tracker drops. A thread holds the tracker only while it works.
//! The queue lock is a leaf, never held while a job runs; an answer's lock too.

use crate::error::QuotaError;
use crate::locks::lock_std;
use crate::observers::quietly;
use crate::store::StoreError;
use crate::tracker::QuotaTracker;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The most I/O threads a tracker runs: the most store calls of async callers in flight at
/// once (a `RedisStore` pools as many connections).
pub(crate) const MOST_THREADS: usize = 8;

/// An idle I/O thread ends after this long.
const IDLE_END: Duration = Duration::from_secs(10);

/// A job for an I/O thread: it runs with the tracker borrowed.
type Job = Box<dyn FnOnce(&QuotaTracker) + Send>;

/// A tracker's I/O threads and their queue.
#[derive(Default)]
pub(in crate::tracker) struct IoPool {
    shared: Arc<PoolShared>,
}

#[derive(Default)]
struct PoolShared {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// The tracker dropped: the threads end (jobs left are dropped, their callers answered
    /// by the drop of their answer's sender).
    closed: bool,
}

impl QuotaTracker {
    /// Runs `job` on an I/O thread and answers its result through the returned call.
    /// `left`: what to do with a result whose caller dropped the call first (a hold goes
    /// back); `unanswered`: the result of a job that never ran (or panicked).
    pub(in crate::tracker) fn off_executor<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&QuotaTracker) -> T + Send + 'static,
        left: impl FnOnce(&QuotaTracker, T) + Send + 'static,
        unanswered: impl FnOnce(QuotaError) -> T + Send + 'static,
    ) -> AsyncCall<T> {
        self.io
            .handle()
            .call(Arc::downgrade(self), job, left, unanswered)
    }
}

/// A tracker's [`IoPool`], to queue jobs through without borrowing the tracker (a job that
/// owns its tracker's `Arc`).
pub(in crate::tracker) struct IoHandle(Arc<PoolShared>);

impl IoPool {
    pub(in crate::tracker) fn handle(&self) -> IoHandle {
        IoHandle(Arc::clone(&self.shared))
    }
}

impl IoHandle {
    /// [`QuotaTracker::off_executor`] of the tracker `tracker`, which the job may own (its
    /// last `Arc` then drops on the I/O thread).
    pub(in crate::tracker) fn call<T: Send + 'static>(
        self,
        tracker: Weak<QuotaTracker>,
        job: impl FnOnce(&QuotaTracker) -> T + Send + 'static,
        left: impl FnOnce(&QuotaTracker, T) + Send + 'static,
        unanswered: impl FnOnce(QuotaError) -> T + Send + 'static,
    ) -> AsyncCall<T> {
        let answer = Arc::new(Answer {
            state: Mutex::new(AnswerState {
                value: None,
                waker: None,
                taken: false,
                dropped: false,
            }),
        });
        let mut sender = Sender {
            answer: Arc::clone(&answer),
            unanswered: Some(Box::new(unanswered)),
        };
        let run: Job = Box::new(move |tracker: &QuotaTracker| {
            let value = job(tracker);
            if let Some(value) = sender.send(value) {
                left(tracker, value);
            }
        });
        // A job that cannot run is dropped, and its sender answers why.
        submit(&self.0, tracker, run);
        AsyncCall(Inner::Sent(answer))
    }
}

/// Queues `job`, starting a thread if none is idle and fewer than [`MOST_THREADS`] run; drops
/// it if no thread runs and none can start.
fn submit(shared: &Arc<PoolShared>, tracker: Weak<QuotaTracker>, job: Job) {
    let mut state = lock_std(&shared.state);
    if state.closed {
        drop(state);
        drop(job);
        return;
    }
    state.jobs.push_back(job);
    if state.idle > 0 {
        shared.work.notify_one();
    }
    // An idle thread woken for an earlier job counts as idle until it takes one: a thread
    // starts unless the idle ones cover every queued job (a job must never wait behind one
    // that hangs while fewer than `MOST_THREADS` run).
    if state.jobs.len() <= state.idle || state.threads >= MOST_THREADS {
        return;
    }
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("quota-io".into())
        .spawn(move || run_io(&tracker, &thread_shared));
    match spawned {
        Ok(_) => state.threads += 1,
        Err(error) => {
            quietly(|| log::warn!("quota: cannot start an I/O thread: {error}"));
            // With a thread running, it takes the job in turn.
            let job = (state.threads == 0).then(|| state.jobs.pop_back());
            drop(state);
            drop(job);
        }
    }
}

/// The tracker drops: its I/O threads end once their job is done.
impl Drop for IoPool {
    fn drop(&mut self) {
        let jobs = {
            let mut state = lock_std(&self.shared.state);
            state.closed = true;
            std::mem::take(&mut state.jobs)
        };
        // Their callers are answered (the tracker is gone) outside the lock.
        drop(jobs);
        self.shared.work.notify_all();
    }
}

/// An I/O thread: runs jobs while the tracker lives, holding it only while one runs.
fn run_io(tracker: &Weak<QuotaTracker>, shared: &PoolShared) {
    let mut state = lock_std(&shared.state);
    loop {
        if state.closed {
            break;
        }
        let Some(job) = state.jobs.pop_front() else {
            state.idle += 1;
            let (next, timeout) = shared
                .work
                .wait_timeout(state, IDLE_END)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.jobs.is_empty() {
                break;
            }
            continue;
        };
        drop(state);
        match tracker.upgrade() {
            Some(tracker) => {
                // Stores, clocks and observers are caught where they are called; a job that
                // panics all the same answers its caller with an error (its sender drops).
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(&tracker))) {
                    std::mem::forget(payload);
                    quietly(|| log::error!("quota: an async call panicked on its I/O thread"));
                }
            }
            None => drop(job),
        }
        state = lock_std(&shared.state);
    }
    state.threads -= 1;
}

/// The future of an async call of [`QuotaTracker`]: resolves with what the blocking twin
/// would have answered. Calls that need no store I/O are answered at once (it is ready when
/// first polled); the others run on the tracker's I/O threads. Dropped before it is ready,
/// the call still runs to its end: calls it records stay counted, a hold it takes goes back.
#[must_use = "an async call does its work whether or not it is awaited; await it for the answer"]
pub struct AsyncCall<T>(Inner<T>);

enum Inner<T> {
    Ready(Option<T>),
    Sent(Arc<Answer<T>>),
}

struct Answer<T> {
    state: Mutex<AnswerState<T>>,
}

struct AnswerState<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The caller took the value.
    taken: bool,
    /// The caller dropped the call.
    dropped: bool,
}

/// The I/O side of an answer: answers once; dropped unanswered (the job panicked, or never
/// ran), it answers with the error `unanswered` makes.
struct Sender<T> {
    answer: Arc<Answer<T>>,
    unanswered: Option<Box<dyn FnOnce(QuotaError) -> T + Send>>,
}

impl<T> Sender<T> {
    /// Answers `value`; gives it back if the caller has left.
    fn send(&mut self, value: T) -> Option<T> {
        self.unanswered = None;
        let waker = {
            let mut state = lock_std(&self.answer.state);
            if state.dropped {
                return Some(value);
            }
            state.value = Some(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            // A waker that panics is the executor's bug: the answer is in place all the same.
            let _ = catch_unwind(AssertUnwindSafe(|| waker.wake()));
        }
        None
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(unanswered) = self.unanswered.take() {
            let error = QuotaError::Store(StoreError::Io(
                "the async call did not run: no I/O thread could take it (the tracker dropped, \
                 a thread could not start, or the call panicked)"
                    .into(),
            ));
            let value = unanswered(error);
            let _ = self.send(value);
        }
    }
}

impl<T> AsyncCall<T> {
    /// A call answered without I/O.
    pub(in crate::tracker) fn ready(value: T) -> Self {
        AsyncCall(Inner::Ready(Some(value)))
    }
}

/// No field is pinned: the value is only moved out, never polled in place.
impl<T> Unpin for AsyncCall<T> {}

impl<T> Future for AsyncCall<T> {
    type Output = T;

    /// Polled again after it answered, it stays pending (an answer is given once).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        match &mut this.0 {
            Inner::Ready(value) => value.take().map_or(Poll::Pending, Poll::Ready),
            Inner::Sent(answer) => {
                let mut state = lock_std(&answer.state);
                match state.value.take() {
                    Some(value) => {
                        state.taken = true;
                        Poll::Ready(value)
                    }
                    None if state.taken => Poll::Pending,
                    None => {
                        let waker = cx.waker();
                        if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                            state.waker = Some(waker.clone());
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl<T> Drop for AsyncCall<T> {
    fn drop(&mut self) {
        if let Inner::Sent(answer) = &self.0 {
            let value = {
                let mut state = lock_std(&answer.state);
                state.dropped = true;
                state.waker = None;
                state.value.take()
            };
            // Answered but never taken: dropped here (a hold in it keeps its estimate; see
            // `off_executor`'s `left` for one answered after the caller left).
            drop(value);
        }
    }
}

impl<T> std::fmt::Debug for AsyncCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = match &self.0 {
            Inner::Ready(value) => value.is_some(),
            Inner::Sent(answer) => lock_std(&answer.state).value.is_some(),
        };
        f.debug_struct("AsyncCall")
            .field("ready", &ready)
            .finish_non_exhaustive()
    }
}
