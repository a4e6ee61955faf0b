//! One queued call, and its answer.

use super::Answer;
use crate::locks::lock_std;
use crate::observers::quietly;
use std::sync::Mutex;
use std::task::Waker;
use std::time::Instant;

/// One queued call.
pub(super) struct Waiter {
    pub(super) position: usize,
    pub(super) count: u64,
    pub(super) priority: bool,
    /// A hold (`hold_when_ready`), not a record.
    pub(super) hold: bool,
    pub(super) deadline: Instant,
    pub(super) state: Mutex<WaitState>,
}

pub(super) enum WaitState {
    /// In the queue: whom to wake when it is answered, and whether the waiter thread is
    /// admitting it right now (a caller past its deadline then waits for that answer).
    Queued { wake: Option<Wake>, admitting: bool },
    /// Answered, not taken yet (boxed: a `Recorded` is large, and rare here).
    Done(Box<Answer>),
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
    /// Wakes the caller; a waker that panics is caught (the waiter thread goes on).
    pub(super) fn wake(self) {
        quietly(|| match self {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task(waker) => waker.wake(),
        });
    }
}

/// What a caller past its deadline finds.
pub(super) enum GiveUp {
    /// The answer came first (boxed, as in [`WaitState::Done`]).
    Answered(Box<Answer>),
    /// The call is being admitted: its answer comes next.
    Admitting,
    /// Left the queue, unanswered.
    Left,
}

impl Waiter {
    /// A queued call with no one to wake yet.
    pub(super) fn new(
        position: usize,
        count: u64,
        priority: bool,
        hold: bool,
        deadline: Instant,
    ) -> Self {
        Waiter {
            position,
            count,
            priority,
            hold,
            deadline,
            state: Mutex::new(WaitState::Queued {
                wake: None,
                admitting: false,
            }),
        }
    }

    /// Marks the call as being admitted (or not any more); `false` if its caller left.
    pub(super) fn admitting(&self, now: bool) -> bool {
        match &mut *lock_std(&self.state) {
            WaitState::Queued { admitting, .. } => {
                *admitting = now;
                true
            }
            _ => false,
        }
    }

    /// Answers the call and wakes its caller; the answer back if the caller went away.
    pub(super) fn answer(&self, result: Answer) -> Option<Answer> {
        let mut state = lock_std(&self.state);
        let wake = match std::mem::replace(&mut *state, WaitState::Taken) {
            WaitState::Queued { wake, .. } => wake,
            WaitState::Abandoned => {
                *state = WaitState::Abandoned;
                return Some(result);
            }
            done => {
                *state = done;
                return None;
            }
        };
        *state = WaitState::Done(Box::new(result));
        drop(state);
        if let Some(wake) = wake {
            wake.wake();
        }
        None
    }

    pub(super) fn abandoned(&self) -> bool {
        matches!(*lock_std(&self.state), WaitState::Abandoned)
    }

    /// The answer, if there is one; else `wake` is woken when it comes.
    pub(super) fn take(&self, wake: impl FnOnce() -> Wake) -> Option<Answer> {
        let mut state = lock_std(&self.state);
        match std::mem::replace(&mut *state, WaitState::Taken) {
            WaitState::Done(result) => Some(*result),
            WaitState::Queued { admitting, .. } => {
                *state = WaitState::Queued {
                    wake: Some(wake()),
                    admitting,
                };
                None
            }
            other => {
                *state = other;
                None
            }
        }
    }

    /// Leaves the queue (as far as the caller is concerned): an answer that comes later is
    /// dropped (calls admitted for it stay counted). The answer, if it came first.
    pub(super) fn abandon(&self) -> Option<Answer> {
        let mut state = lock_std(&self.state);
        match std::mem::replace(&mut *state, WaitState::Abandoned) {
            WaitState::Done(result) => Some(*result),
            _ => None,
        }
    }

    /// A blocking caller past its deadline leaves, unless the call is being admitted.
    pub(super) fn give_up(&self) -> GiveUp {
        let mut state = lock_std(&self.state);
        match std::mem::replace(&mut *state, WaitState::Abandoned) {
            WaitState::Done(result) => GiveUp::Answered(result),
            WaitState::Queued {
                wake,
                admitting: true,
            } => {
                *state = WaitState::Queued {
                    wake,
                    admitting: true,
                };
                GiveUp::Admitting
            }
            _ => GiveUp::Left,
        }
    }
}
