//! The virtual workers: async tasks that issue their seeded call streams at the configured
//! rate.

use super::run::Run;
use super::{tokens, Engine, ESTIMATE_TOKENS};
use crate::model::Unit;
use gloo_timers::future::TimeoutFuture;
use quota_core::sim::{Counter, Op, OpStream};
use quota_core::Clock;
use std::rc::Rc;
use web_time::Instant;

/// Shortest sleep between a worker's wake-ups, in ms (browsers clamp nested timers to 4 ms).
const MIN_TICK_MS: u32 = 10;
/// Longest sleep, so that pause takes effect quickly even at 1 call per second.
const MAX_TICK_MS: u32 = 100;
/// A worker that fell behind (a background tab) issues at most this many seconds of calls at
/// once and drops the rest of its backlog.
const MAX_CATCH_UP_S: f64 = 0.2;

/// One virtual worker: issues its stream at the configured rate until its generation ends.
pub(super) struct Worker {
    engine: Rc<Engine>,
    run: Rc<Run>,
    generation: u64,
    /// From 1, as shown in the timeline.
    id: usize,
    stream: OpStream,
}

impl Worker {
    /// Starts worker `id` (from 1) of the engine's current generation, issuing `stream` to
    /// `run`. The engine counts it as active until it exits.
    pub(super) fn spawn(engine: &Rc<Engine>, run: &Rc<Run>, id: usize, stream: OpStream) {
        let worker = Worker {
            engine: Rc::clone(engine),
            run: Rc::clone(run),
            generation: engine.workers.enter(),
            id,
            stream,
        };
        leptos::task::spawn_local(worker.work());
    }

    async fn work(mut self) {
        let mut pace = Pace::new(self.engine.rate());
        while self.engine.workers.is_current(self.generation) {
            let due = pace.due(self.engine.rate());
            let ops = self.take(due);
            if !ops.is_empty() {
                self.issue(&ops).await;
            }
            TimeoutFuture::new(pace.tick_ms()).await;
        }
        self.engine.workers.exit();
    }

    /// `due` calls, each followed by the rest of its burst.
    fn take(&mut self, due: u64) -> Vec<Op> {
        take_due(&mut self.stream, due)
    }

    async fn issue(&self, ops: &[Op]) {
        // In locked mode, calls to token services run as tasks of their own (hold, response,
        // settle); in racy mode they count their estimate (see `tokens`).
        let locked = self.run.counter().tracker().is_some();
        let mut calls = Vec::with_capacity(ops.len());
        for op in ops {
            let name = self.run.config().services[op.service].name.clone();
            match (Unit::of(&name), locked) {
                (Unit::Tokens, true) => {
                    tokens::spawn(&self.engine, &self.run, self.id, name, op.count)
                }
                (Unit::Tokens, false) => calls.push(Op {
                    count: op.count.saturating_mul(ESTIMATE_TOKENS),
                    ..*op
                }),
                (Unit::Calls, _) => calls.push(*op),
            }
        }
        let ops = &calls[..];
        if ops.is_empty() {
            return;
        }
        match self.run.counter() {
            Counter::Locked(_) => self.run.record_now(
                self.id,
                ops,
                self.engine.clock.now_ms(),
                self.engine.call_mode(),
            ),
            Counter::Racy(counts) => {
                // DEMONSTRATION ONLY: copy the whole state, let the other workers run, change
                // the copy, write the whole copy back.
                let mut copy = counts.load();
                TimeoutFuture::new(0).await;
                let now = self.engine.clock.now_ms();
                self.run.record_in_copy(&mut copy, self.id, ops, now);
                counts.store(copy);
            }
        }
    }
}

/// The next `due` calls of `stream`, each followed by the rest of its burst.
pub(crate) fn take_due(stream: &mut OpStream, due: u64) -> Vec<Op> {
    let mut ops = Vec::with_capacity(due as usize);
    let mut stream = stream.by_ref().peekable();
    for _ in 0..due {
        ops.extend(stream.next());
        while let Some(op) = stream.next_if(|op| op.follows) {
            ops.push(op);
        }
    }
    ops
}

/// A worker's schedule: how many calls are due at its rate since it started (or since the rate
/// last changed).
pub(crate) struct Pace {
    since: Instant,
    rate: u32,
    issued: u64,
}

impl Pace {
    /// A schedule at `rate` calls per second from now.
    pub(crate) fn new(rate: u32) -> Self {
        Pace {
            since: Instant::now(),
            rate,
            issued: 0,
        }
    }

    /// The calls due now at `rate` (a new rate starts a new schedule); a backlog is capped.
    pub(crate) fn due(&mut self, rate: u32) -> u64 {
        if rate != self.rate {
            *self = Pace::new(rate);
        }
        let owed = (self.since.elapsed().as_secs_f64() * f64::from(self.rate)) as u64;
        let mut due = owed.saturating_sub(self.issued);
        let cap = (f64::from(self.rate) * MAX_CATCH_UP_S).ceil() as u64;
        if due > cap {
            self.issued += due - cap;
            due = cap;
        }
        self.issued += due;
        due
    }

    /// How long to sleep before the next look.
    pub(crate) fn tick_ms(&self) -> u32 {
        (1_000 / self.rate.max(1)).clamp(MIN_TICK_MS, MAX_TICK_MS)
    }
}
