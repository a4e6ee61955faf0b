//! The instances view: [`INSTANCES`] simulated instances of an app, each with its own
//! [`QuotaTracker`], sharing one in-browser store, fed by virtual workers like the main
//! simulation's. A switch picks how they share it:
//!
//! - [`SyncMode::Delta`]: the real [`Store`] protocol through one
//!   [`MemoryStore`]: each instance sends the calls it recorded since its last sync, the store
//!   adds them, and nothing is lost.
//! - [`SyncMode::Snapshot`] (DEMONSTRATION ONLY): the old protocol, through a
//!   [`SnapshotStore`]: each instance writes its whole view over the store, so the instances
//!   overwrite each other and the shared total loses calls.
//!
//! Every instance syncs after each of its calls (`interval_ms` 0), so what the store holds is
//! never behind the calls made: the difference between issued and stored is what the store
//! lost, nothing else. The instances' clock stands still (one [`ManualClock`] reading, taken
//! at the reset), so every call of a service lands in one window and the two numbers compare
//! exactly. The instances count every call ([`QuotaTracker::record_call`]): the view is about
//! what the store keeps, not about admission.
//!
//! The stored totals are read from the store itself, never from the workers' tallies; only
//! "issued" is the workers' own count (calls they made).

mod snapshot_store;

pub use snapshot_store::SnapshotStore;

use crate::engine::{take_due, Lifecycle, Pace};
use crate::model::{InstancesFrame, SharedCounts};
use crate::settings::SyncMode;
use gloo_timers::future::TimeoutFuture;
use leptos::task::spawn_local;
use quota_core::sim::{OpStream, Workload};
use quota_core::{
    ManualClock, MemoryStore, QuotaError, QuotaTracker, Store, SyncPolicy, TrackerConfig,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Simulated instances sharing the store.
pub const INSTANCES: usize = 3;
/// Virtual workers per instance.
pub const WORKERS_PER_INSTANCE: usize = 2;
/// Calls per second per worker.
pub const RATE: u32 = 100;

/// The store the instances of one run share.
enum Shared {
    /// The real protocol.
    Delta(MemoryStore),
    /// DEMONSTRATION ONLY: the overwriting store.
    Snapshot(Arc<SnapshotStore>),
}

impl Shared {
    fn new(mode: SyncMode) -> Self {
        match mode {
            SyncMode::Delta => Shared::Delta(MemoryStore::new()),
            SyncMode::Snapshot => Shared::Snapshot(Arc::new(SnapshotStore::new())),
        }
    }

    /// A handle for one more tracker.
    fn handle(&self) -> Box<dyn Store> {
        match self {
            Shared::Delta(store) => Box::new(store.clone()),
            Shared::Snapshot(store) => Box::new(Arc::clone(store)),
        }
    }

    /// What the store holds per service of `config` (config order), summed across the windows
    /// of the service's own limit: a service of several limits stores every call once per
    /// limit, and each limit's windows hold them all.
    fn totals(&self, config: &TrackerConfig) -> Vec<u64> {
        match self {
            Shared::Delta(store) => {
                let state = store.state().unwrap_or_else(|error| {
                    leptos::logging::warn!("instances: the shared store is unreadable: {error}");
                    quota_core::StoredState::new()
                });
                config
                    .services
                    .iter()
                    .map(|service| {
                        state
                            .windows()
                            .filter(|window| {
                                window.service == service.name && window.spec == service.window
                            })
                            .map(|window| window.total)
                            .sum()
                    })
                    .collect()
            }
            Shared::Snapshot(store) => config
                .services
                .iter()
                .map(|service| store.total(&service.name, &service.window))
                .collect(),
        }
    }
}

/// One run of the instances, from one reset to the next.
struct Run {
    config: TrackerConfig,
    mode: SyncMode,
    shared: Shared,
    trackers: Vec<QuotaTracker>,
    /// Units the workers issued per service (config order), all instances together.
    issued: RefCell<Vec<u64>>,
    /// Calls the workers made, all instances together.
    calls: Cell<u64>,
}

impl Run {
    fn new(config: TrackerConfig, mode: SyncMode) -> Result<Run, QuotaError> {
        let clock = ManualClock::new(crate::clock::wall_ms());
        let shared = Shared::new(mode);
        let mut trackers = Vec::with_capacity(INSTANCES);
        for _ in 0..INSTANCES {
            trackers.push(
                QuotaTracker::builder(config.clone())
                    .clock(clock.clone())
                    .boxed_store(shared.handle())
                    .sync_policy(SyncPolicy {
                        interval_ms: 0,
                        ..SyncPolicy::default()
                    })
                    .build()?,
            );
        }
        Ok(Run {
            issued: RefCell::new(vec![0; config.services.len()]),
            calls: Cell::new(0),
            config,
            mode,
            shared,
            trackers,
        })
    }

    /// Instance `instance` makes its due calls, each one [`QuotaTracker::record_call`] (which
    /// syncs right after).
    fn record(&self, instance: usize, ops: &[quota_core::sim::Op]) {
        for op in ops {
            let name = &self.config.services[op.service].name;
            if let Err(error) = self.trackers[instance].record_call(name, op.count) {
                leptos::logging::warn!("instance {}: record refused: {error}", instance + 1);
            }
            self.issued.borrow_mut()[op.service] += op.count;
        }
        self.calls.set(self.calls.get() + ops.len() as u64);
    }
}

/// The instances view's simulation. Shared (`Rc`) by the page and the worker tasks.
pub struct Instances {
    run: RefCell<Rc<Run>>,
    /// Whether the workers run (stopped on pause and reset).
    workers: Lifecycle,
}

impl Instances {
    /// Paused instances of `config`, sharing a store in `mode`.
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`].
    pub fn new(config: TrackerConfig, mode: SyncMode) -> Result<Rc<Instances>, QuotaError> {
        Ok(Rc::new(Instances {
            run: RefCell::new(Rc::new(Run::new(config, mode)?)),
            workers: Lifecycle::new(false),
        }))
    }

    /// How the instances share the store.
    pub fn mode(&self) -> SyncMode {
        self.run().mode
    }

    /// Starts the workers (no effect while running): [`WORKERS_PER_INSTANCE`] per instance at
    /// [`RATE`] calls per second, with `workload`'s mix, call sizes, bursts and seed (each
    /// instance its own seed).
    pub fn start(self: &Rc<Self>, workload: &Workload) {
        if self.workers.start() {
            self.spawn_workers(workload);
        }
    }

    /// Stops the workers (each finishes the calls it started, then exits), and has every
    /// instance sync once more, so each sees what the store holds now.
    pub fn pause(&self) {
        self.workers.stop();
        for tracker in &self.run().trackers {
            if let Err(error) = tracker.flush() {
                leptos::logging::warn!("instances: sync failed: {error}");
            }
        }
    }

    /// Starts over with `config` in `mode`: new trackers, a new empty store, counts at 0. The
    /// workers stop.
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`]; nothing changed.
    pub fn reset(&self, config: TrackerConfig, mode: SyncMode) -> Result<(), QuotaError> {
        let run = Run::new(config, mode)?;
        self.workers.stop();
        // Stopped: the new run counts as not started.
        self.workers.new_run();
        *self.run.borrow_mut() = Rc::new(run);
        Ok(())
    }

    /// Whether the workers run (or were told to: [`pause`](Self::pause) stops them).
    pub fn is_running(&self) -> bool {
        self.workers.is_running()
    }

    /// What the view shows now: per service, the units issued by all instances and the
    /// store's total; and what each instance sees.
    pub fn frame(&self) -> InstancesFrame {
        let run = self.run();
        let stored = run.shared.totals(&run.config);
        let issued = run.issued.borrow();
        let services = run
            .config
            .services
            .iter()
            .enumerate()
            .map(|(index, service)| SharedCounts {
                name: service.name.clone(),
                limit: service.limit,
                issued: issued[index],
                stored: stored[index],
            })
            .collect();
        let views = run
            .trackers
            .iter()
            .map(|tracker| {
                tracker
                    .snapshot()
                    .services()
                    .iter()
                    .map(|usage| usage.used)
                    .collect()
            })
            .collect();
        InstancesFrame {
            mode: run.mode,
            status: self.workers.status(),
            calls: run.calls.get(),
            services,
            views,
        }
    }

    fn run(&self) -> Rc<Run> {
        Rc::clone(&self.run.borrow())
    }

    fn spawn_workers(self: &Rc<Self>, workload: &Workload) {
        let run = self.run();
        for instance in 0..INSTANCES {
            let mut instance_workload = Workload {
                workers: WORKERS_PER_INSTANCE,
                calls_per_second: RATE,
                seed: workload.seed.wrapping_add(instance as u64),
                ..workload.clone()
            };
            if instance_workload.stream(&run.config, 0).is_err() {
                // A workload of another config: every service, evenly.
                instance_workload.mix = Workload::even(&run.config).mix;
            }
            for worker in 0..WORKERS_PER_INSTANCE {
                match instance_workload.stream(&run.config, worker) {
                    Ok(stream) => self.spawn(&run, instance, stream),
                    Err(error) => leptos::logging::warn!("instances: no workload: {error}"),
                }
            }
        }
    }

    fn spawn(self: &Rc<Self>, run: &Rc<Run>, instance: usize, mut stream: OpStream) {
        let generation = self.workers.enter();
        let instances = Rc::clone(self);
        let run = Rc::clone(run);
        spawn_local(async move {
            let mut pace = Pace::new(RATE);
            while instances.workers.is_current(generation) {
                let ops = take_due(&mut stream, pace.due(RATE));
                run.record(instance, &ops);
                TimeoutFuture::new(pace.tick_ms()).await;
            }
            instances.workers.exit();
        });
    }
}
