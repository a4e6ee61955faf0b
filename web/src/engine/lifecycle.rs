//! Whether a simulation's virtual workers run: start, pause and reset as the simulation and the
//! instances view share them, and the [`Status`] the page shows for it.

use crate::model::Status;
use std::cell::Cell;

/// The start / pause state of one simulation's workers, and the worker tasks still alive.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// Bumped whenever the workers must stop (pause, reset, new settings); a worker of an older
    /// generation finishes the call it started and exits.
    generation: Cell<u64>,
    running: Cell<bool>,
    /// Started since the last reset (on this page or, restored, on an earlier one).
    started: Cell<bool>,
    /// Worker tasks that have not exited yet.
    active: Cell<usize>,
}

impl Lifecycle {
    /// Stopped workers of a run that counts as `started` already (one restored with calls).
    pub(crate) fn new(started: bool) -> Self {
        Lifecycle {
            started: Cell::new(started),
            ..Lifecycle::default()
        }
    }

    /// Marks the workers running and the run started; `false`, and nothing changed, if they
    /// already run.
    pub(crate) fn start(&self) -> bool {
        if self.running.replace(true) {
            return false;
        }
        self.started.set(true);
        true
    }

    /// Tells the workers to stop: each finishes the call it started, then exits.
    pub(crate) fn stop(&self) {
        self.running.set(false);
        self.next_generation();
    }

    /// Ends the current workers' generation without stopping: the caller spawns the next.
    pub(crate) fn next_generation(&self) {
        self.generation.set(self.generation.get() + 1);
    }

    /// A new run began: it counts as started only if the workers keep running.
    pub(crate) fn new_run(&self) {
        self.started.set(self.running.get());
    }

    /// Whether the workers run (or were told to: [`stop`](Self::stop) stops them).
    pub(crate) fn is_running(&self) -> bool {
        self.running.get()
    }

    /// Running, pausing (stopped, a worker still finishing), paused or ready (not started).
    pub(crate) fn status(&self) -> Status {
        match (self.running.get(), self.active.get(), self.started.get()) {
            (true, _, _) => Status::Running,
            (false, 0, true) => Status::Paused,
            (false, 0, false) => Status::Ready,
            (false, _, _) => Status::Pausing,
        }
    }

    /// A worker task begins: it counts as active until [`exit`](Self::exit). Returns the
    /// generation it belongs to.
    pub(crate) fn enter(&self) -> u64 {
        self.active.set(self.active.get() + 1);
        self.generation.get()
    }

    /// Whether a worker of `generation` goes on.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.get() == generation
    }

    /// A worker task ends.
    pub(crate) fn exit(&self) {
        self.active.set(self.active.get() - 1);
    }
}
