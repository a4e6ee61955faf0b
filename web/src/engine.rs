//! The simulation in the browser: one store, the virtual workers that call it, and the counters
//! they keep.
//!
//! Each virtual worker is an async task ([`leptos::task::spawn_local`]) that wakes on a timer,
//! issues the calls its rate says are due, and sleeps again, so workers interleave on the event
//! loop. In locked mode a call is one [`QuotaTracker::record_call`]. In racy mode a worker
//! copies the whole [`RacyCounts`] state, awaits a real timer
//! ([`TimeoutFuture::new(0)`](gloo_timers::future::TimeoutFuture), since an already-resolved
//! promise would not let other workers run), records its due calls in the copy and writes the
//! whole copy back: the workers that ran in between lose their updates.
//!
//! Nothing here touches the DOM: [`Engine::frame`] reads everything the page shows, once per
//! animation frame.

use crate::clock::SimClock;
use crate::model::{Cause, Frame, ServiceView, Status};
use gloo_timers::future::TimeoutFuture;
use quota_core::sim::{Mode, Op, OpStream, RacyCounts, Share, Workload, WorkloadError};
use quota_core::{Clock, QuotaError, QuotaTracker, Snapshot, TrackerConfig, Transition};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use web_time::Instant;

/// The workload and how it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Workers, rate, mix, call sizes, bursts, seed.
    pub workload: Workload,
    /// Locked (the tracker) or racy (the demonstration of the bug).
    pub mode: Mode,
    /// Simulated time per real time: 60 makes a minute window pass in a second.
    pub speed: f64,
}

/// Shortest sleep between a worker's wake-ups, in ms (browsers clamp nested timers to 4 ms).
const MIN_TICK_MS: u32 = 10;
/// Longest sleep, so that pause takes effect quickly even at 1 call per second.
const MAX_TICK_MS: u32 = 100;
/// A worker that fell behind (a background tab) issues at most this many seconds of calls at
/// once and drops the rest of its backlog.
const MAX_CATCH_UP_S: f64 = 0.2;

/// The store and its counters from one reset to the next.
struct Run {
    config: TrackerConfig,
    store: Store,
    /// Units issued per service (config order): the workers' attempts, counted after each call
    /// completed.
    issued: RefCell<Vec<u64>>,
    /// Calls issued (each of one or more units).
    calls: Cell<u64>,
    /// Level changes not yet shown, with their cause. Shared with the tracker's observer, which
    /// must be `Send + Sync`.
    changes: Arc<Mutex<Vec<(Transition, Cause)>>>,
    /// The worker (from 1) whose call is in progress; 0 while none is (a read rolled a window).
    actor: Arc<AtomicUsize>,
}

enum Store {
    // Boxed: the tracker is much larger than the racy store.
    Locked(Box<QuotaTracker>),
    /// DEMONSTRATION ONLY: the racy read-modify-write.
    Racy(RacyCounts),
}

impl Run {
    fn new(config: TrackerConfig, mode: Mode, clock: &SimClock) -> Result<Run, QuotaError> {
        if config.services.is_empty() {
            return Err(QuotaError::InvalidConfig(
                "the dashboard needs at least one service".to_owned(),
            ));
        }
        let changes: Arc<Mutex<Vec<(Transition, Cause)>>> = Arc::default();
        let actor = Arc::new(AtomicUsize::new(0));
        let store = match mode {
            Mode::Locked => {
                let tracker = QuotaTracker::new_with_clock(config.clone(), clock.clone())?;
                let (changes, actor) = (Arc::clone(&changes), Arc::clone(&actor));
                tracker.on_transition(move |transition| {
                    let cause = cause_of(transition, actor.load(Ordering::Relaxed));
                    lock(&changes).push((transition.clone(), cause));
                });
                Store::Locked(Box::new(tracker))
            }
            Mode::Racy => Store::Racy(RacyCounts::new(config.clone(), clock.now_ms())?),
        };
        Ok(Run {
            issued: RefCell::new(vec![0; config.services.len()]),
            config,
            store,
            calls: Cell::new(0),
            changes,
            actor,
        })
    }

    fn name(&self, service: usize) -> &str {
        &self.config.services[service].name
    }

    fn count_issued(&self, ops: &[Op]) {
        let mut issued = self.issued.borrow_mut();
        for op in ops {
            issued[op.service] += op.count;
        }
        self.calls.set(self.calls.get() + ops.len() as u64);
    }

    /// Records `ops` for `worker` (from 1) at once: through the tracker, or as one racy
    /// read-modify-write with nothing in between.
    fn record_now(&self, worker: usize, ops: &[Op], now_ms: u64) {
        match &self.store {
            Store::Locked(tracker) => {
                self.actor.store(worker, Ordering::Relaxed);
                for op in ops {
                    // Transitions reach the observer before record_call returns.
                    if let Err(error) = tracker.record_call(self.name(op.service), op.count) {
                        leptos::logging::warn!("record_call refused: {error}");
                    }
                }
                self.actor.store(0, Ordering::Relaxed);
            }
            Store::Racy(counts) => {
                let mut copy = counts.load();
                self.record_in_copy(&mut copy, worker, ops, now_ms);
                counts.store(copy);
            }
        }
        self.count_issued(ops);
    }

    fn record_in_copy(
        &self,
        copy: &mut quota_core::sim::RacyState,
        worker: usize,
        ops: &[Op],
        now_ms: u64,
    ) {
        let mut seen = Vec::new();
        for op in ops {
            match copy.record(self.name(op.service), op.count, now_ms) {
                Ok(recorded) => seen.extend(
                    [recorded.reset_transition, recorded.transition]
                        .into_iter()
                        .flatten()
                        .map(|t| {
                            let cause = cause_of(&t, worker);
                            (t, cause)
                        }),
                ),
                Err(error) => leptos::logging::warn!("racy record refused: {error}"),
            }
        }
        lock(&self.changes).extend(seen);
    }

    fn snapshot(&self, now_ms: u64) -> Snapshot {
        match &self.store {
            Store::Locked(tracker) => tracker.snapshot(),
            Store::Racy(counts) => counts.snapshot(now_ms),
        }
    }
}

fn cause_of(transition: &Transition, actor: usize) -> Cause {
    if transition.to < transition.from || actor == 0 {
        Cause::WindowReset
    } else {
        Cause::Worker(actor)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single-threaded on wasm; no critical section here can panic half-way.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running simulation. Shared (`Rc`) by the page and the worker tasks.
pub struct Engine {
    clock: SimClock,
    settings: RefCell<Settings>,
    run: RefCell<Rc<Run>>,
    /// Bumped whenever the workers must stop (pause, reset, new settings); a worker of an older
    /// generation finishes the call it started and exits.
    generation: Cell<u64>,
    running: Cell<bool>,
    /// Started since the last reset.
    started: Cell<bool>,
    /// Worker tasks that have not exited yet.
    active: Cell<usize>,
}

impl Engine {
    /// A paused engine for `config`, in locked mode, with [`Workload::even`] settings.
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`] for an invalid config.
    pub fn new(config: TrackerConfig, clock: SimClock) -> Result<Rc<Engine>, QuotaError> {
        let settings = Settings {
            workload: Workload::even(&config),
            mode: Mode::Locked,
            speed: clock.speed(),
        };
        let run = Run::new(config, settings.mode, &clock)?;
        Ok(Rc::new(Engine {
            clock,
            settings: RefCell::new(settings),
            run: RefCell::new(Rc::new(run)),
            generation: Cell::new(0),
            running: Cell::new(false),
            started: Cell::new(false),
            active: Cell::new(0),
        }))
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings.borrow().clone()
    }

    /// The running config.
    pub fn config(&self) -> TrackerConfig {
        self.run.borrow().config.clone()
    }

    /// The simulated clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Starts the workers (no effect while running).
    pub fn start(self: &Rc<Self>) {
        if self.running.replace(true) {
            return;
        }
        self.started.set(true);
        self.clock.start();
        self.spawn_workers();
    }

    /// Stops the workers; each finishes the call it started. The simulated clock stops too.
    pub fn pause(&self) {
        self.running.set(false);
        self.generation.set(self.generation.get() + 1);
        self.clock.pause();
    }

    /// Starts over: a new, empty store, counters at 0, the simulated clock back at real time.
    /// Workers keep running if they were.
    pub fn reset(self: &Rc<Self>) {
        let config = self.config();
        let mode = self.settings.borrow().mode;
        match Run::new(config, mode, &self.clock) {
            Ok(run) => self.replace_run(run),
            Err(error) => unreachable!("the running config was valid: {error}"),
        }
    }

    /// Switches between locked and racy; starts over (the counters are per mode).
    pub fn set_mode(self: &Rc<Self>, mode: Mode) {
        self.settings.borrow_mut().mode = mode;
        self.reset();
    }

    /// Simulated time per real time from now on.
    pub fn set_speed(&self, speed: f64) {
        self.clock.set_speed(speed);
        self.settings.borrow_mut().speed = self.clock.speed();
    }

    /// Changes the workload; running workers restart with it. The counters continue.
    ///
    /// Errors: the new workload is invalid or does not fit the config; nothing changed.
    pub fn update_workload(
        self: &Rc<Self>,
        change: impl FnOnce(&mut Workload),
    ) -> Result<(), WorkloadError> {
        let mut workload = self.settings.borrow().workload.clone();
        change(&mut workload);
        workload.stream(&self.config(), 0)?;
        self.settings.borrow_mut().workload = workload;
        if self.running.get() {
            self.restart_workers();
        }
        Ok(())
    }

    /// Runs `config` from now on: a new store, counters at 0 (see [`reset`](Self::reset)).
    /// Services keep their mix weight; new ones get weight 1.
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`] for an invalid config; the running
    /// config stays.
    pub fn apply_config(self: &Rc<Self>, config: TrackerConfig) -> Result<(), QuotaError> {
        let mode = self.settings.borrow().mode;
        let run = Run::new(config.clone(), mode, &self.clock)?;
        {
            let mut settings = self.settings.borrow_mut();
            let old = std::mem::take(&mut settings.workload.mix);
            let weight = |name: &str| {
                old.iter()
                    .find(|share| share.service == name)
                    .map_or(1, |share| share.weight)
            };
            let mut mix: Vec<Share> = config
                .services
                .iter()
                .map(|service| Share {
                    service: service.name.clone(),
                    weight: weight(&service.name),
                })
                .collect();
            if mix.iter().all(|share| share.weight == 0) {
                mix.iter_mut().for_each(|share| share.weight = 1);
            }
            settings.workload.mix = mix;
        }
        self.replace_run(run);
        Ok(())
    }

    /// Records one call of `count` units to service `service` (config index) as worker
    /// `worker` (from 1), at once, in the current mode: what a worker does, without the wait.
    pub fn record(&self, worker: usize, service: usize, count: u64) {
        let run = Rc::clone(&self.run.borrow());
        let op = Op {
            service,
            count,
            follows: false,
        };
        run.record_now(worker, &[op], self.clock.now_ms());
    }

    /// Everything the page shows now, and the level changes since the last call.
    pub fn frame(&self) -> (Frame, Vec<(Transition, Cause)>) {
        let run = Rc::clone(&self.run.borrow());
        let now = self.clock.now_ms();
        let snapshot = run.snapshot(now);
        let issued = run.issued.borrow();
        let services = snapshot
            .services()
            .iter()
            .zip(issued.iter())
            .map(|(usage, &issued)| ServiceView {
                usage: usage.clone(),
                issued,
            })
            .collect();
        let changes = std::mem::take(&mut *lock(&run.changes));
        let frame = Frame {
            at_ms: now,
            status: self.status(),
            mode: self.settings.borrow().mode,
            services,
            calls: run.calls.get(),
        };
        (frame, changes)
    }

    fn status(&self) -> Status {
        match (self.running.get(), self.active.get(), self.started.get()) {
            (true, _, _) => Status::Running,
            (false, 0, true) => Status::Paused,
            (false, 0, false) => Status::Ready,
            (false, _, _) => Status::Pausing,
        }
    }

    fn replace_run(self: &Rc<Self>, run: Run) {
        *self.run.borrow_mut() = Rc::new(run);
        self.started.set(self.running.get());
        self.clock.set(
            web_time::SystemTime::now()
                .duration_since(web_time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
        );
        if self.running.get() {
            self.restart_workers();
        }
    }

    fn restart_workers(self: &Rc<Self>) {
        self.generation.set(self.generation.get() + 1);
        self.spawn_workers();
    }

    fn spawn_workers(self: &Rc<Self>) {
        let run = Rc::clone(&self.run.borrow());
        let workload = self.settings.borrow().workload.clone();
        for index in 0..workload.workers {
            match workload.stream(&run.config, index) {
                Ok(stream) => {
                    self.active.set(self.active.get() + 1);
                    let worker = Worker {
                        engine: Rc::clone(self),
                        run: Rc::clone(&run),
                        generation: self.generation.get(),
                        id: index + 1,
                        stream,
                    };
                    leptos::task::spawn_local(worker.work());
                }
                Err(error) => unreachable!("the workload was validated: {error}"),
            }
        }
    }

    fn rate(&self) -> u32 {
        self.settings.borrow().workload.calls_per_second
    }
}

/// One virtual worker: issues its stream at the configured rate until its generation ends.
struct Worker {
    engine: Rc<Engine>,
    run: Rc<Run>,
    generation: u64,
    /// From 1, as shown in the timeline.
    id: usize,
    stream: OpStream,
}

impl Worker {
    async fn work(mut self) {
        let mut pace = Pace::new(self.engine.rate());
        while self.engine.generation.get() == self.generation {
            let due = pace.due(self.engine.rate());
            let ops = self.take(due);
            if !ops.is_empty() {
                self.issue(&ops).await;
            }
            TimeoutFuture::new(pace.tick_ms()).await;
        }
        self.engine.active.set(self.engine.active.get() - 1);
    }

    /// `due` calls, each followed by the rest of its burst.
    fn take(&mut self, due: u64) -> Vec<Op> {
        let mut ops = Vec::with_capacity(due as usize);
        let mut stream = self.stream.by_ref().peekable();
        for _ in 0..due {
            ops.extend(stream.next());
            while let Some(op) = stream.next_if(|op| op.follows) {
                ops.push(op);
            }
        }
        ops
    }

    async fn issue(&self, ops: &[Op]) {
        match &self.run.store {
            Store::Locked(_) => self
                .run
                .record_now(self.id, ops, self.engine.clock.now_ms()),
            Store::Racy(counts) => {
                // DEMONSTRATION ONLY: copy the whole state, let the other workers run, change
                // the copy, write the whole copy back.
                let mut copy = counts.load();
                TimeoutFuture::new(0).await;
                let now = self.engine.clock.now_ms();
                self.run.record_in_copy(&mut copy, self.id, ops, now);
                counts.store(copy);
                self.run.count_issued(ops);
            }
        }
    }
}

/// A worker's schedule: how many calls are due at its rate since it started (or since the rate
/// last changed).
struct Pace {
    since: Instant,
    rate: u32,
    issued: u64,
}

impl Pace {
    fn new(rate: u32) -> Self {
        Pace {
            since: Instant::now(),
            rate,
            issued: 0,
        }
    }

    fn due(&mut self, rate: u32) -> u64 {
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

    fn tick_ms(&self) -> u32 {
        (1_000 / self.rate.max(1)).clamp(MIN_TICK_MS, MAX_TICK_MS)
    }
}
