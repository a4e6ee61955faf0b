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
//! In locked mode the tracker saves to `localStorage` through the [`persist`](crate::persist)
//! store, every [`SYNC_INTERVAL_MS`] of simulated time, at once on entering Critical, and when
//! the workers pause or the page is hidden; a new engine on the same key continues from the last
//! successful sync. A new run (reset, mode, config) clears what was saved.
//!
//! Nothing here touches the DOM: [`Engine::frame`] reads everything the page shows, once per
//! animation frame.

use crate::clock::SimClock;
use crate::model::{Cause, Frame, ServiceView, Status};
use crate::persist::{Persistence, SavedCounters, SavedService, Synced};
use gloo_timers::future::TimeoutFuture;
use quota_core::sim::{Mode, Op, OpStream, RacyCounts, Share, Workload, WorkloadError};
use quota_core::{
    Clock, QuotaError, QuotaTracker, Snapshot, StoreEvent, StoreStats, SyncPolicy, TrackerConfig,
    Transition,
};
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

/// The tracker saves when this much *simulated* time passed since its last successful save (the
/// tracker reads the simulated clock). At 1x that is two syncs a second: reduced-rate mode
/// starts within a sync or two of an outage (a failed save is retried on the very next call) and
/// ends 5 good syncs, 2.5 s, after it.
pub const SYNC_INTERVAL_MS: u64 = 500;

/// Store events kept until the next frame reads them; older ones are dropped.
const MAX_PENDING_STORE_EVENTS: usize = 100;

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
    /// Units recorded before this page (restored counters), per service; added to the tracker's
    /// `total_recorded`, which counts from this tracker's build.
    recorded_before: Vec<u64>,
}

enum Store {
    // Boxed: the tracker is much larger than the racy store.
    Locked(Box<Locked>),
    /// DEMONSTRATION ONLY: the racy read-modify-write.
    Racy(RacyCounts),
}

/// The tracker and what its store shares with the engine.
struct Locked {
    tracker: QuotaTracker,
    persistence: Persistence,
    /// Set by the store on each successful save.
    synced: Synced,
    /// Reduced-rate mode starting and ending, not yet shown.
    events: Arc<Mutex<Vec<StoreEvent>>>,
}

/// The dashboard runs configs the core accepts that have at least one service.
fn check_config(config: &TrackerConfig) -> Result<(), QuotaError> {
    if config.services.is_empty() {
        return Err(QuotaError::InvalidConfig(
            "the dashboard needs at least one service".to_owned(),
        ));
    }
    config.validate()
}

impl Run {
    /// A run of `config` in `mode`. In locked mode the tracker restores from and saves to
    /// `persistence`; `saved` are the counters of the sync it restores from (if any).
    fn new(
        config: TrackerConfig,
        mode: Mode,
        clock: &SimClock,
        persistence: &Persistence,
        saved: Option<&SavedCounters>,
    ) -> Result<Run, QuotaError> {
        check_config(&config)?;
        let changes: Arc<Mutex<Vec<(Transition, Cause)>>> = Arc::default();
        let actor = Arc::new(AtomicUsize::new(0));
        let store = match mode {
            Mode::Locked => {
                let (store, synced) = persistence.store();
                let tracker = QuotaTracker::builder(config.clone())
                    .clock(clock.clone())
                    .store(store)
                    .sync_policy(SyncPolicy {
                        interval_ms: SYNC_INTERVAL_MS,
                        ..SyncPolicy::default()
                    })
                    .build()?;
                let (changes, actor) = (Arc::clone(&changes), Arc::clone(&actor));
                tracker.on_transition(move |transition| {
                    let cause = cause_of(transition, actor.load(Ordering::Relaxed));
                    lock(&changes).push((transition.clone(), cause));
                });
                let events: Arc<Mutex<Vec<StoreEvent>>> = Arc::default();
                let pending = Arc::clone(&events);
                tracker.on_store_event(move |event| {
                    let mut pending = lock(&pending);
                    if pending.len() < MAX_PENDING_STORE_EVENTS {
                        pending.push(event.clone());
                    }
                });
                Store::Locked(Box::new(Locked {
                    tracker,
                    persistence: persistence.clone(),
                    synced,
                    events,
                }))
            }
            Mode::Racy => Store::Racy(RacyCounts::new(config.clone(), clock.now_ms())?),
        };
        let restored = |f: fn(&SavedService) -> u64| -> Vec<u64> {
            config
                .services
                .iter()
                .map(|s| saved.and_then(|c| c.service(&s.name)).map_or(0, f))
                .collect()
        };
        Ok(Run {
            issued: RefCell::new(restored(|s| s.issued)),
            recorded_before: restored(|s| s.recorded),
            calls: Cell::new(saved.map_or(0, |c| c.calls)),
            config,
            store,
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
            Store::Locked(locked) => {
                self.actor.store(worker, Ordering::Relaxed);
                for op in ops {
                    // Transitions reach the observer, and a due save runs, before record_call
                    // returns.
                    if let Err(error) = locked.tracker.record_call(self.name(op.service), op.count)
                    {
                        leptos::logging::warn!("record_call refused: {error}");
                    }
                    self.count_issued(std::slice::from_ref(op));
                    // Nothing ran since that save: the counters now are the ones it saved.
                    if let Some(at_ms) = locked.synced.take() {
                        self.save_counters(locked, at_ms);
                    }
                }
                self.actor.store(0, Ordering::Relaxed);
            }
            Store::Racy(counts) => {
                let mut copy = counts.load();
                self.record_in_copy(&mut copy, worker, ops, now_ms);
                counts.store(copy);
                self.count_issued(ops);
            }
        }
    }

    /// Writes the counters that go with the tracker state saved at `synced_at_ms`.
    fn save_counters(&self, locked: &Locked, synced_at_ms: u64) {
        let snapshot = locked.tracker.snapshot();
        let issued = self.issued.borrow();
        let services = snapshot
            .services()
            .iter()
            .zip(issued.iter().zip(&self.recorded_before))
            .map(|(usage, (&issued, &before))| SavedService {
                name: usage.name.clone(),
                issued,
                recorded: before + usage.total_recorded,
            })
            .collect();
        locked.persistence.save_counters(&SavedCounters {
            version: SavedCounters::VERSION,
            synced_at_ms,
            calls: self.calls.get(),
            services,
        });
    }

    /// Saves the tracker (and with it the counters) now; nothing to do in racy mode.
    fn flush(&self) {
        if let Store::Locked(locked) = &self.store {
            if let Err(error) = locked.tracker.flush() {
                leptos::logging::warn!("dashboard: sync failed: {error}");
            }
            if let Some(at_ms) = locked.synced.take() {
                self.save_counters(locked, at_ms);
            }
        }
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
            Store::Locked(locked) => locked.tracker.snapshot(),
            Store::Racy(counts) => counts.snapshot(now_ms),
        }
    }

    /// The tracker's store counters; `None` in racy mode (no store).
    fn stats(&self) -> Option<StoreStats> {
        match &self.store {
            Store::Locked(locked) => Some(locked.tracker.stats()),
            Store::Racy(_) => None,
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
    /// Where locked runs save, and the outage switch.
    persistence: Persistence,
    /// Bumped whenever the workers must stop (pause, reset, new settings); a worker of an older
    /// generation finishes the call it started and exits.
    generation: Cell<u64>,
    running: Cell<bool>,
    /// Started since the last reset (on this page or, restored, on an earlier one).
    started: Cell<bool>,
    /// Worker tasks that have not exited yet.
    active: Cell<usize>,
}

impl Engine {
    /// A paused engine in locked mode, with [`Workload::even`] settings, saving under the
    /// `localStorage` key `key` (see [`persist`](crate::persist)).
    ///
    /// If an earlier engine saved under `key`, this one continues where it was: its config,
    /// the simulated time and the counts of its last successful sync. Otherwise it runs
    /// `config` from `clock`'s time.
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`] for an invalid config.
    pub fn new(
        config: TrackerConfig,
        clock: SimClock,
        key: &str,
    ) -> Result<Rc<Engine>, QuotaError> {
        let persistence = Persistence::new(key);
        let saved = persistence.load();
        let mut config = config;
        if let Some(state) = &saved.tracker {
            let stored = TrackerConfig::new(state.services.iter().map(|s| s.config.clone()));
            match check_config(&stored) {
                Ok(()) => config = stored,
                Err(error) => {
                    leptos::logging::warn!("dashboard: not restoring the config: {error}")
                }
            }
            clock.set(state.updated_at_ms);
        }
        check_config(&config)?;
        let settings = Settings {
            workload: Workload::even(&config),
            mode: Mode::Locked,
            speed: clock.speed(),
        };
        let run = Run::new(
            config,
            settings.mode,
            &clock,
            &persistence,
            saved.counters.as_ref(),
        )?;
        let started = run.calls.get() > 0;
        Ok(Rc::new(Engine {
            clock,
            settings: RefCell::new(settings),
            run: RefCell::new(Rc::new(run)),
            persistence,
            generation: Cell::new(0),
            running: Cell::new(false),
            started: Cell::new(started),
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

    /// Where locked runs save.
    pub fn persistence(&self) -> &Persistence {
        &self.persistence
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

    /// Stops the workers; each finishes the call it started. The simulated clock stops too,
    /// and the tracker syncs (so a reload continues from here, unless the store is out).
    pub fn pause(&self) {
        self.running.set(false);
        self.generation.set(self.generation.get() + 1);
        self.clock.pause();
        self.flush();
    }

    /// Syncs the tracker now (the page calls this when it is hidden). No effect before the
    /// first call of a run (a page that was only opened saves nothing) or in racy mode.
    pub fn flush(&self) {
        let run = Rc::clone(&self.run.borrow());
        if run.calls.get() > 0 {
            run.flush();
        }
    }

    /// Turns the simulated store outage on or off: while on, the tracker's loads and saves
    /// fail. The switch outlives resets; it has no effect in racy mode (no store).
    pub fn set_outage(&self, on: bool) {
        self.persistence.outage().set(on);
    }

    /// Whether the simulated store outage is on.
    pub fn outage(&self) -> bool {
        self.persistence.outage().is_on()
    }

    /// Starts over: a new, empty store, counters at 0, what was saved cleared, the simulated
    /// clock back at real time. Workers keep running if they were.
    pub fn reset(self: &Rc<Self>) {
        if let Err(error) = self.start_over(self.config()) {
            unreachable!("the running config was valid: {error}");
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
    /// config, counters and saved state stay.
    pub fn apply_config(self: &Rc<Self>, config: TrackerConfig) -> Result<(), QuotaError> {
        check_config(&config)?;
        let old_mix = std::mem::take(&mut self.settings.borrow_mut().workload.mix);
        let weight = |name: &str| {
            old_mix
                .iter()
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
        self.settings.borrow_mut().workload.mix = mix;
        self.start_over(config)
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
            .zip(issued.iter().zip(&run.recorded_before))
            .map(|(usage, (&issued, &before))| {
                let mut usage = usage.clone();
                usage.total_recorded += before;
                ServiceView { usage, issued }
            })
            .collect();
        let changes = std::mem::take(&mut *lock(&run.changes));
        let frame = Frame {
            at_ms: now,
            status: self.status(),
            mode: self.settings.borrow().mode,
            services,
            calls: run.calls.get(),
            store: run.stats(),
            outage: self.outage(),
        };
        (frame, changes)
    }

    /// Reduced-rate mode starting and ending since the last call, oldest first.
    pub fn take_store_events(&self) -> Vec<StoreEvent> {
        match &self.run.borrow().store {
            Store::Locked(locked) => std::mem::take(&mut *lock(&locked.events)),
            Store::Racy(_) => Vec::new(),
        }
    }

    fn status(&self) -> Status {
        match (self.running.get(), self.active.get(), self.started.get()) {
            (true, _, _) => Status::Running,
            (false, 0, true) => Status::Paused,
            (false, 0, false) => Status::Ready,
            (false, _, _) => Status::Pausing,
        }
    }

    /// A new run of `config` in the current mode, from nothing: clears what was saved and sets
    /// the clock to real time first, so the new tracker neither restores nor starts in the
    /// past or future of the old run.
    fn start_over(self: &Rc<Self>, config: TrackerConfig) -> Result<(), QuotaError> {
        check_config(&config)?;
        let mode = self.settings.borrow().mode;
        self.persistence.clear();
        self.clock.set(
            web_time::SystemTime::now()
                .duration_since(web_time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
        );
        let run = Run::new(config, mode, &self.clock, &self.persistence, None)?;
        *self.run.borrow_mut() = Rc::new(run);
        self.started.set(self.running.get());
        if self.running.get() {
            self.restart_workers();
        }
        Ok(())
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
