//! One queued call, and its answer.

use super::ReadyResult;
use crate::locks::lock_std;
use std::sync::Mutex;
use std::task::Waker;
use std::time::Instant;

/// One queued call.
pub(super) struct Waiter {
    pub(super) position: usize,
    pub(super) count: u64,
    pub(super) priority: bool,
    pub(super) deadline: Instant,
    pub(super) state: Mutex<WaitState>,
}

pub(super) enum WaitState {
    /// In the queue; whom to wake when it is answered.
    Queued(Option<Wake>),
    /// Answered, not taken yet (boxed: a `Recorded` is large, and rare here).
    Done(Box<ReadyResult>),
    /// The answer was taken.
    Taken,
    /// The caller went away (the future dropped, or a blocking caller past its deadline).
    Abandoned,
}

pub(super) enum Wake {
    Thread(std::thread::Thread),
    Task(Waker),
}

impl Wake {
    pub(super) fn wake(self) {
        match self {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task(waker) => waker.wake(),
        }
    }
}

impl Waiter {
    /// Answers the call and wakes its caller; `false` if the caller went away.
    pub(super) fn answer(&self, result: ReadyResult) -> bool {
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

    pub(super) fn abandoned(&self) -> bool {
        matches!(*lock_std(&self.state), WaitState::Abandoned)
    }

    /// The answer, if there is one; else `wake` is woken when it comes.
    pub(super) fn take(&self, wake: impl FnOnce() -> Wake) -> Option<ReadyResult> {
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
    pub(super) fn abandon(&self) -> Option<ReadyResult> {
        let mut state = lock_std(&self.state);
        match std::mem::replace(&mut *state, WaitState::Abandoned) {
            WaitState::Done(result) => Some(*result),
            _ => None,
        }
    }
}
