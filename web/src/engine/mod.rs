//! The simulation in the browser: one run's counter, the virtual workers that call it, and the
//! counters they keep.
//!
//! Each virtual worker is an async task ([`leptos::task::spawn_local`]) that wakes on a timer,
//! issues the calls its rate says are due, and sleeps again, so workers interleave on the event
//! loop. Calls are counted through a [`Counter`](quota_core::sim::Counter). In locked mode a
//! call is, as the [`CallMode`] setting (the page's "admission" select) says, one
//! [`QuotaTracker::try_record`](quota_core::QuotaTracker::try_record) (the default: a careful
//! client, whose refused calls are counted as denied and never sent) or one
//! [`QuotaTracker::record_call`](quota_core::QuotaTracker::record_call) (count only). In racy
//! mode a worker copies the whole [`RacyCounts`](quota_core::sim::RacyCounts) state, awaits a
//! real timer ([`TimeoutFuture::new(0)`](gloo_timers::future::TimeoutFuture), since an
//! already-resolved promise would not let other workers run), records its due calls in the copy
//! and writes the whole copy back: the workers that ran in between lose their updates.
//!
//! In locked mode the tracker syncs its deltas through the [`DashboardStorage`] every
//! [`SYNC_INTERVAL_MS`] of simulated time, at once on entering Critical, and when the workers
//! pause or the page is hidden; the syncs go to a copy of the store in memory, which the engine
//! writes to `localStorage` with its own counters (and the config and the simulated time) right
//! after a successful sync, at most a few times a second of real time and at once after a flush
//! (see [`persist`](crate::persist)); a new engine on the same key continues from the last
//! write. A new run (reset, mode, or a config change in racy mode) clears what was saved; a
//! config change in locked mode goes on in the same run (see [`Engine::apply_config`]).
//!
//! Nothing here touches the DOM: [`Engine::frame`] reads everything the page shows, once per
//! animation frame.
//!
//! The parts: this module runs the engine (start, pause, reset, settings); `run` counts one run
//! (from one reset to the next); `worker` paces the virtual workers.

mod lifecycle;
mod run;
mod tokens;
mod worker;

use crate::clock::{self, SimClock};
use crate::model::{Cause, Frame};
use crate::persist::DashboardStorage;
use crate::settings::{CallMode, Settings};
pub(crate) use lifecycle::Lifecycle;
use quota_core::sim::{Mode, Op, Share, Workload, WorkloadError};
use quota_core::{Clock, QuotaError, Reconfigured, StoreEvent, TrackerConfig, Transition};
use run::Run;
use std::cell::RefCell;
use std::rc::Rc;
pub use tokens::{CANCEL_ONE_IN, ESTIMATE_TOKENS, RESPONSE_MS};
use worker::Worker;
pub(crate) use worker::{take_due, Pace};

/// The tracker syncs when this much *simulated* time passed since its last successful sync (the
/// tracker reads the simulated clock). At 1x that is two syncs a second: reduced-rate mode
/// starts within a second of an outage (a failed sync is retried after a back-off of 100 ms of
/// simulated time, doubling with each failure) and ends 5 good syncs, 2.5 s, after it.
pub const SYNC_INTERVAL_MS: u64 = 500;

/// Calls per second per worker on a new page. With [`Workload::even`]'s 4 workers and four
/// services, each gets about 8 calls a second: on the simulation's services
/// ([`simulation_config`](crate::app::simulation_config)) tiingo's hour (50) reaches its
/// warning level about 3 s after Start and finnhub's minute (60) about 4 s after, Critical
/// 2 to 3 s later, and the LLM's 16,000 tokens a second held fill its minute's 100,000 within
/// seconds, so a newcomer sees levels change at once (at `even`'s 2 calls/s the first change
/// took over 10 s).
pub const DEFAULT_CALLS_PER_SECOND: u32 = 8;

/// The dashboard runs configs the core accepts that have at least one service.
fn check_config(config: &TrackerConfig) -> Result<(), QuotaError> {
    if config.services.is_empty() {
        return Err(QuotaError::InvalidConfig {
            service: None,
            field: "services",
            value: "[]".to_owned(),
            reason: "must not be empty on the dashboard".to_owned(),
        });
    }
    config.validate()
}

/// What [`Engine::apply_config`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Locked mode: the running tracker took the new config; these services were added,
    /// removed and changed, every other count goes on.
    Reconfigured(Reconfigured),
    /// Racy mode (no reconfigure): the demonstration started over with the new config.
    StartedOver,
}

/// The running simulation. Shared (`Rc`) by the page and the worker tasks.
pub struct Engine {
    clock: SimClock,
    settings: RefCell<Settings>,
    run: RefCell<Rc<Run>>,
    /// Where locked runs save, and the outage switch.
    storage: DashboardStorage,
    /// Whether the workers run (stopped on pause, reset and new settings).
    workers: Lifecycle,
}

impl Engine {
    /// A paused engine in locked mode, with [`Workload::even`] settings at
    /// [`DEFAULT_CALLS_PER_SECOND`] per worker, saving under the
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
        let storage = DashboardStorage::new(key);
        let saved = storage.load();
        let mut config = config;
        if let Some(counters) = &saved.counters {
            let stored = TrackerConfig::new(counters.config.iter().cloned());
            match check_config(&stored) {
                Ok(()) => config = stored,
                Err(error) => {
                    leptos::logging::warn!("dashboard: not restoring the config: {error}")
                }
            }
            clock.set(counters.clock_ms);
        } else if let Some(stored_at_ms) = saved.stored_at_ms.filter(|&at| at > 0) {
            // Counts without their counters: at least the time of their last sync.
            clock.set(stored_at_ms);
        }
        check_config(&config)?;
        let settings = Settings {
            workload: Workload {
                calls_per_second: DEFAULT_CALLS_PER_SECOND,
                ..Workload::even(&config)
            },
            mode: Mode::Locked,
            call_mode: CallMode::default(),
            speed: clock.speed(),
        };
        let run = Run::new(
            config,
            settings.mode,
            &clock,
            &storage,
            saved.counters.as_ref(),
        )?;
        let started = run.calls() > 0;
        Ok(Rc::new(Engine {
            clock,
            settings: RefCell::new(settings),
            run: RefCell::new(Rc::new(run)),
            storage,
            workers: Lifecycle::new(started),
        }))
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings.borrow().clone()
    }

    /// The running config.
    pub fn config(&self) -> TrackerConfig {
        self.run().config().clone()
    }

    /// The simulated clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Where locked runs save.
    pub fn storage(&self) -> &DashboardStorage {
        &self.storage
    }

    /// Starts the workers (no effect while running).
    pub fn start(self: &Rc<Self>) {
        if !self.workers.start() {
            return;
        }
        self.clock.start();
        self.spawn_workers();
    }

    /// Stops the workers; each finishes the call it started. The simulated clock stops too,
    /// and the tracker syncs (so a reload continues from here, unless the store is out).
    pub fn pause(&self) {
        self.workers.stop();
        self.clock.pause();
        self.flush();
    }

    /// Syncs the tracker now (the page calls this when it is hidden). No effect before the
    /// first call of a run (a page that was only opened saves nothing) or in racy mode.
    pub fn flush(&self) {
        let run = self.run();
        if run.calls() > 0 {
            run.flush();
        }
    }

    /// Turns the simulated store outage on or off: while on, the tracker's syncs fail. The switch outlives resets; it has no effect in racy mode (no store).
    pub fn set_outage(&self, on: bool) {
        self.storage.outage().set(on);
    }

    /// Whether the simulated store outage is on.
    pub fn outage(&self) -> bool {
        self.storage.outage().is_on()
    }

    /// Starts over: a new, empty counter, counters at 0, what was saved cleared, the simulated
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

    /// How locked-mode workers ask the tracker from now on. The counters continue.
    pub fn set_call_mode(&self, call_mode: CallMode) {
        self.settings.borrow_mut().call_mode = call_mode;
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
        workload.stream(&self.run().config(), 0)?;
        self.settings.borrow_mut().workload = workload;
        if self.workers.is_running() {
            self.restart_workers();
        }
        Ok(())
    }

    /// Runs `config` from now on. Services keep their mix weight; new ones get weight 1;
    /// running workers restart with the new services.
    ///
    /// - Locked mode: the running tracker takes the new config
    ///   ([`QuotaTracker::reconfigure`](quota_core::QuotaTracker::reconfigure)): a service in
    ///   both keeps its counts (its window's count too, unless its window changed: then it
    ///   starts fresh in the new window), added services start at 0 and removed ones go; a
    ///   lower limit may change a level at once (one transition, caused by the config). The
    ///   tracker then syncs and the page saves, so a reload continues with the new config.
    /// - Racy mode: the demonstration has no reconfigure, so it starts over (see
    ///   [`reset`](Self::reset)) with the new config.
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`] for an invalid config; the running
    /// config, counters and saved state stay.
    pub fn apply_config(self: &Rc<Self>, config: TrackerConfig) -> Result<Applied, QuotaError> {
        check_config(&config)?;
        let mix = {
            let settings = self.settings.borrow();
            let weight = |name: &str| {
                settings
                    .workload
                    .mix
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
            mix
        };
        let run = self.run();
        let applied = match run.reconfigure(config.clone()) {
            Some(result) => {
                let changes = result?;
                self.settings.borrow_mut().workload.mix = mix;
                self.flush();
                if self.workers.is_running() {
                    self.restart_workers();
                }
                Applied::Reconfigured(changes)
            }
            None => {
                // Before the workers restart with it (a failed start changes nothing).
                let old_mix = std::mem::replace(&mut self.settings.borrow_mut().workload.mix, mix);
                if let Err(error) = self.start_over(config) {
                    self.settings.borrow_mut().workload.mix = old_mix;
                    return Err(error);
                }
                Applied::StartedOver
            }
        };
        Ok(applied)
    }

    /// Records one call of `count` units to service `service` (config index) as worker
    /// `worker` (from 1), at once, in the current mode and admission: what a worker does,
    /// without the wait.
    pub fn record(&self, worker: usize, service: usize, count: u64) {
        let op = Op {
            service,
            count,
            follows: false,
        };
        self.run()
            .record_now(worker, &[op], self.clock.now_ms(), self.call_mode());
    }

    /// How locked-mode workers ask the tracker now.
    pub fn call_mode(&self) -> CallMode {
        self.settings.borrow().call_mode
    }

    /// Everything the page shows now, and the level changes since the last call.
    pub fn frame(&self) -> (Frame, Vec<(Transition, Cause)>) {
        let run = self.run();
        let now = self.clock.now_ms();
        // Before taking the changes: reading may roll a window over, which is a change too.
        let services = run.services(now);
        let frame = Frame {
            at_ms: now,
            status: self.workers.status(),
            mode: self.settings.borrow().mode,
            services,
            calls: run.calls(),
            store: run.stats(),
            outage: self.outage(),
        };
        (frame, run.take_changes())
    }

    /// Reduced-rate mode starting and ending since the last call, oldest first.
    pub fn take_store_events(&self) -> Vec<StoreEvent> {
        self.run().take_store_events()
    }

    /// The current run. A clone of the `Rc`, so no borrow of `self.run` outlives the call (a
    /// reset may replace the run meanwhile).
    fn run(&self) -> Rc<Run> {
        Rc::clone(&self.run.borrow())
    }

    /// A new run of `config` in the current mode, from nothing: clears what was saved and sets
    /// the clock to real time first, so the new tracker neither restores nor starts in the
    /// past or future of the old run.
    fn start_over(self: &Rc<Self>, config: TrackerConfig) -> Result<(), QuotaError> {
        check_config(&config)?;
        let mode = self.settings.borrow().mode;
        self.storage.clear();
        self.clock.set(clock::wall_ms());
        let run = Run::new(config, mode, &self.clock, &self.storage, None)?;
        *self.run.borrow_mut() = Rc::new(run);
        self.workers.new_run();
        if self.workers.is_running() {
            self.restart_workers();
        }
        Ok(())
    }

    fn restart_workers(self: &Rc<Self>) {
        self.workers.next_generation();
        self.spawn_workers();
    }

    fn spawn_workers(self: &Rc<Self>) {
        let run = self.run();
        let workload = self.settings.borrow().workload.clone();
        for index in 0..workload.workers {
            match workload.stream(&run.config(), index) {
                Ok(stream) => Worker::spawn(self, &run, index + 1, stream),
                Err(error) => unreachable!("the workload was validated: {error}"),
            }
        }
    }

    fn rate(&self) -> u32 {
        self.settings.borrow().workload.calls_per_second
    }
}
