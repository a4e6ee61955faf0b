//! The page's state: the engine, and the signals the components read. The signals change once
//! per animation frame at most, however many calls the workers make in between.
//!
//! Every change the page makes to the engine goes through one place (`AppState::change`), which
//! then refreshes the frame and has the settings and config [`Memo`]s read the engine again, so
//! no action copies engine state into signals by hand. The components get read-only signals
//! ([`ReadOnly`], [`Memo`]): only this state's own methods write them.

use crate::clock::{self, SimClock};
use crate::engine::{Applied, Engine};
use crate::instances::Instances;
use crate::model::{Frame, History, InstancesFrame, Rates, Status, StoreLog, Timeline};
use crate::persist::DEFAULT_KEY;
use crate::settings::{CallMode, Settings, SyncMode};
use leptos::prelude::*;
use quota_core::sim::{Mode, Workload, WorkloadError};
use quota_core::{QuotaError, TrackerConfig};
use std::cell::RefCell;
use std::rc::Rc;
use web_time::Instant;

/// The page's state, provided as context to every component (see [`use_app`]). `Copy`: it holds
/// only arena handles.
#[derive(Clone, Copy)]
pub struct AppState {
    engine: StoredValue<Rc<Engine>, LocalStorage>,
    /// Notified after each change made through this state; the memos read from the engine
    /// track it (the engine itself is not reactive).
    engine_changed: Trigger,
    meter: StoredValue<RefCell<Meter>, LocalStorage>,
    /// The instances view's simulation (several trackers sharing one store).
    instances: StoredValue<Rc<Instances>, LocalStorage>,
    // The signals this state writes; the accessors below hand them out read-only.
    frame: RwSignal<Frame>,
    instances_frame: RwSignal<InstancesFrame>,
    timeline: RwSignal<Timeline>,
    store_log: RwSignal<StoreLog>,
    history: RwSignal<History>,
    rates: RwSignal<Rates>,
    settings: Memo<Settings>,
    config: Memo<TrackerConfig>,
    workload_error: RwSignal<Option<String>>,
}

/// One of [`AppState`]'s signals, read-only: it reads and tracks like the signal (`with`,
/// `get`, `with_untracked`, ...) but cannot be set, so only `AppState`'s methods write page
/// state. A view of the same signal rather than a Leptos [`ReadSignal`], which would be a
/// second arena entry per signal and a second copy of the reading code in the `.wasm`.
pub struct ReadOnly<T: 'static>(RwSignal<T>);

impl<T> Clone for ReadOnly<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ReadOnly<T> {}

impl<T> DefinedAt for ReadOnly<T> {
    fn defined_at(&self) -> Option<&'static std::panic::Location<'static>> {
        self.0.defined_at()
    }
}

impl<T> Track for ReadOnly<T>
where
    RwSignal<T>: Track,
{
    fn track(&self) {
        self.0.track();
    }
}

impl<T> ReadUntracked for ReadOnly<T>
where
    RwSignal<T>: ReadUntracked,
{
    type Value = <RwSignal<T> as ReadUntracked>::Value;

    fn try_read_untracked(&self) -> Option<Self::Value> {
        self.0.try_read_untracked()
    }
}

/// Frame and call counts behind [`Rates`], and when the chart was last sampled.
struct Meter {
    since: Instant,
    frames: u64,
    /// The simulation's calls at `since`.
    calls: u64,
    /// The instances' calls at `since`.
    instances_calls: u64,
    last_sample: Option<Instant>,
    /// When the timeline's list was last told of new entries.
    timeline_shown: Option<Instant>,
    /// The timeline has entries its list was not told of yet.
    timeline_pending: bool,
}

/// Real ms between two updates of the timeline's list while the page runs its frames: at the
/// fastest speeds dozens of level changes come on every frame, more than anyone reads, and
/// redrawing the list for each frame was most of the page's element churn.
pub const TIMELINE_INTERVAL_MS: f64 = 250.0;

/// The [`AppState`] provided by an ancestor.
///
/// # Panics
/// Outside a component tree that called [`AppState::provide`].
pub fn use_app() -> AppState {
    use_context::<AppState>().expect("AppState is provided by the App")
}

impl AppState {
    /// State for `config` on a simulated clock at the current time, saved under
    /// [`DEFAULT_KEY`] (continuing from what an earlier page saved there). Call inside a
    /// reactive owner (a component).
    ///
    /// Errors: the core's [`QuotaError::InvalidConfig`].
    pub fn new(config: TrackerConfig) -> Result<AppState, QuotaError> {
        Self::with_clock(config, SimClock::new(clock::wall_ms()), DEFAULT_KEY)
    }

    /// State for `config` reading `clock`, saved under the `localStorage` key `key` (see
    /// [`Engine::new`]).
    pub fn with_clock(
        config: TrackerConfig,
        clock: SimClock,
        key: &str,
    ) -> Result<AppState, QuotaError> {
        let engine = Engine::new(config, clock, key)?;
        let (frame, _) = engine.frame();
        let instances = Instances::new(engine.config(), SyncMode::default())?;
        let instances_frame = instances.frame();
        let engine = StoredValue::new_local(engine);
        let engine_changed = Trigger::new();
        // Memos: after a change they notify only if the value is a different one.
        Ok(AppState {
            settings: Memo::new(move |_| {
                engine_changed.track();
                engine.with_value(|engine| engine.settings())
            }),
            config: Memo::new(move |_| {
                engine_changed.track();
                engine.with_value(|engine| engine.config())
            }),
            engine,
            engine_changed,
            meter: StoredValue::new_local(RefCell::new(Meter {
                since: Instant::now(),
                frames: 0,
                calls: 0,
                instances_calls: 0,
                last_sample: None,
                timeline_shown: None,
                timeline_pending: false,
            })),
            instances: StoredValue::new_local(instances),
            frame: RwSignal::new(frame),
            instances_frame: RwSignal::new(instances_frame),
            timeline: RwSignal::new(Timeline::default()),
            store_log: RwSignal::new(StoreLog::default()),
            history: RwSignal::new(History::default()),
            rates: RwSignal::new(Rates::default()),
            workload_error: RwSignal::new(None),
        })
    }

    /// What the cards, counters and footer show.
    pub fn frame(&self) -> ReadOnly<Frame> {
        ReadOnly(self.frame)
    }

    /// What the instances view shows.
    pub fn instances_frame(&self) -> ReadOnly<InstancesFrame> {
        ReadOnly(self.instances_frame)
    }

    /// Level changes, newest first.
    pub fn timeline(&self) -> ReadOnly<Timeline> {
        ReadOnly(self.timeline)
    }

    /// Reduced-rate mode starting and ending, newest first.
    pub fn store_log(&self) -> ReadOnly<StoreLog> {
        ReadOnly(self.store_log)
    }

    /// Usage over time, for the chart.
    pub fn history(&self) -> ReadOnly<History> {
        ReadOnly(self.history)
    }

    /// Measured calls and frames per second.
    pub fn rates(&self) -> ReadOnly<Rates> {
        ReadOnly(self.rates)
    }

    /// The workload and mode, as the engine has them.
    pub fn settings(&self) -> Memo<Settings> {
        self.settings
    }

    /// The running config, as the engine has it.
    pub fn config(&self) -> Memo<TrackerConfig> {
        self.config
    }

    /// The last invalid workload input, shown beside the controls.
    pub fn workload_error(&self) -> ReadOnly<Option<String>> {
        ReadOnly(self.workload_error)
    }

    /// Makes this state the context of the current component and its children.
    pub fn provide(self) -> AppState {
        provide_context(self);
        self
    }

    /// The engine. The page changes it only through this state's methods, which then refresh
    /// the signals; the component tests also drive it directly.
    pub fn engine(&self) -> Rc<Engine> {
        self.engine.with_value(Rc::clone)
    }

    /// Reads the engine into the signals: one frame's update. Signals whose value did not
    /// change are left alone, so a paused page does no work.
    pub fn refresh(&self) {
        self.refresh_with(false);
    }

    /// [`refresh`](Self::refresh); with `pace_timeline`, the timeline's list is told of new
    /// entries at most every [`TIMELINE_INTERVAL_MS`] (the entries are kept meanwhile).
    fn refresh_with(&self, pace_timeline: bool) {
        let engine = self.engine();
        let (frame, changes) = engine.frame();
        if !changes.is_empty() {
            self.timeline
                .update_untracked(|timeline| timeline.extend(changes));
            self.meter
                .with_value(|meter| meter.borrow_mut().timeline_pending = true);
        }
        let show_timeline = self.meter.with_value(|meter| {
            let mut meter = meter.borrow_mut();
            let due = !pace_timeline
                || meter
                    .timeline_shown
                    .is_none_or(|at| at.elapsed().as_secs_f64() * 1_000.0 >= TIMELINE_INTERVAL_MS);
            let show = meter.timeline_pending && due;
            if show {
                meter.timeline_pending = false;
                meter.timeline_shown = Some(Instant::now());
            }
            show
        });
        if show_timeline {
            self.timeline.notify();
        }
        let events = engine.take_store_events();
        if !events.is_empty() {
            self.store_log.update(|log| log.extend(events));
        }
        if self.frame.with_untracked(|old| *old != frame) {
            self.frame.set(frame);
        }
        let instances = self.instances.with_value(|instances| instances.frame());
        if self.instances_frame.with_untracked(|old| *old != instances) {
            self.instances_frame.set(instances);
        }
    }

    /// The instances view's simulation.
    fn instances(&self) -> Rc<Instances> {
        self.instances.with_value(Rc::clone)
    }

    /// Refreshes on every animation frame from now on, measures the rates, and samples the
    /// chart while the workers run. Stops when the state is disposed.
    pub fn run_frames(self) {
        request_animation_frame(move || {
            if self.engine.try_with_value(|_| ()).is_none() {
                return; // disposed: the page is gone
            }
            self.on_frame();
            self.run_frames();
        });
    }

    /// Syncs the tracker whenever the page is hidden (a reload, a closed tab), so the next page
    /// continues from there. Stops when the calling owner is cleaned up.
    pub fn sync_on_page_hide(self) {
        let handle = window_event_listener(leptos::ev::pagehide, move |_| {
            if let Some(engine) = self.engine.try_with_value(Rc::clone) {
                engine.flush();
            }
        });
        on_cleanup(move || handle.remove());
    }

    fn on_frame(&self) {
        self.refresh_with(true);
        let now = Instant::now();
        let (calls, status) = self.frame.with_untracked(|f| (f.calls, f.status));
        let instances_calls = self.instances_frame.with_untracked(|f| f.calls);
        let sample = self.meter.with_value(|meter| {
            let mut meter = meter.borrow_mut();
            meter.frames += 1;
            let elapsed = now.duration_since(meter.since).as_secs_f64();
            if elapsed >= 1.0 {
                let rates = Rates {
                    calls_per_second: calls.saturating_sub(meter.calls) as f64 / elapsed,
                    instances_calls_per_second: instances_calls
                        .saturating_sub(meter.instances_calls)
                        as f64
                        / elapsed,
                    frames_per_second: meter.frames as f64 / elapsed,
                };
                self.rates.set(rates);
                meter.since = now;
                meter.frames = 0;
                meter.calls = calls;
                meter.instances_calls = instances_calls;
            }
            // A reset restarted the count.
            meter.calls = meter.calls.min(calls);
            meter.instances_calls = meter.instances_calls.min(instances_calls);
            let due = meter.last_sample.is_none_or(|last| {
                now.duration_since(last).as_secs_f64() * 1_000.0 >= History::INTERVAL_MS
            });
            let sample = due && matches!(status, Status::Running | Status::Pausing);
            if sample {
                meter.last_sample = Some(now);
            }
            sample
        });
        if sample {
            self.sample_history();
        }
    }

    /// Adds the frame's usage to the chart's history (each animation frame does, every
    /// [`History::INTERVAL_MS`] while the workers run).
    pub fn sample_history(&self) {
        self.frame
            .with_untracked(|frame| self.history.update(|h| h.push(&frame.services)));
    }

    /// Runs `change` on the engine, then shows its effect: the settings and config read again,
    /// and the frame. Every action of the page goes through here.
    fn change<T>(&self, change: impl FnOnce(&Rc<Engine>) -> T) -> T {
        let result = change(&self.engine());
        self.engine_changed.notify();
        self.refresh();
        result
    }

    /// Starts the workers.
    pub fn start(&self) {
        self.change(|engine| engine.start());
    }

    /// Pauses the workers.
    pub fn pause(&self) {
        self.change(|engine| engine.pause());
    }

    /// Turns the simulated store outage on or off.
    pub fn set_outage(&self, on: bool) {
        self.change(|engine| engine.set_outage(on));
    }

    /// Syncs the tracker now (see [`Engine::flush`]).
    pub fn flush(&self) {
        self.change(|engine| engine.flush());
    }

    /// Starts over with empty counters and nothing saved.
    pub fn reset(&self) {
        self.change(|engine| {
            engine.reset();
            self.clear_logs();
        });
    }

    /// Switches mode (and starts over).
    pub fn set_mode(&self, mode: Mode) {
        self.change(|engine| {
            engine.set_mode(mode);
            self.clear_logs();
        });
    }

    /// Sets how locked-mode workers ask the tracker (the counters continue).
    pub fn set_call_mode(&self, call_mode: CallMode) {
        self.change(|engine| engine.set_call_mode(call_mode));
    }

    /// Starts the instances view's workers, with the simulation's mix, call sizes, bursts and
    /// seed.
    pub fn start_instances(&self) {
        self.change(|engine| self.instances().start(&engine.settings().workload));
    }

    /// Pauses the instances view's workers.
    pub fn pause_instances(&self) {
        self.change(|_| self.instances().pause());
    }

    /// Starts the instances view over in `mode`, with the running config (its workers stop).
    pub fn reset_instances(&self, mode: SyncMode) {
        self.change(|engine| {
            if let Err(error) = self.instances().reset(engine.config(), mode) {
                unreachable!("the running config is valid: {error}");
            }
        });
    }

    /// Switches how the instances share the store: a new, empty store in `mode`, counts from
    /// zero; workers that ran run on in the new mode. Returns whether they did.
    pub fn set_instances_mode(&self, mode: SyncMode) -> bool {
        let running = self.instances().is_running();
        self.reset_instances(mode);
        if running {
            self.start_instances();
        }
        running
    }

    /// Sets the simulated speed.
    pub fn set_speed(&self, speed: f64) {
        self.change(|engine| engine.set_speed(speed));
    }

    /// Changes the workload; an invalid one is refused and its error shown.
    pub fn update_workload(&self, change: impl FnOnce(&mut Workload)) {
        let result = self.change(|engine| engine.update_workload(change));
        self.workload_error
            .set(result.err().map(|WorkloadError(message)| message));
    }

    /// Shows an input that could not be read as the workload error.
    pub fn reject_input(&self, message: String) {
        self.workload_error.set(Some(message));
    }

    /// Runs `config`: locked mode changes the running tracker (counts kept), racy mode starts
    /// over (see [`Engine::apply_config`]); the instances view starts over with it.
    ///
    /// Errors: the core's error; the running config and counters stay as they were.
    pub fn apply_config(&self, config: TrackerConfig) -> Result<Applied, QuotaError> {
        self.change(|engine| {
            let applied = engine.apply_config(config)?;
            if applied == Applied::StartedOver {
                self.clear_logs();
            }
            // The instances view starts over with the new config.
            let instances = self.instances();
            instances.reset(engine.config(), instances.mode())?;
            Ok(applied)
        })
    }

    /// Forgets the old run's timeline, store log and chart (before the refresh that follows,
    /// so the new run's first changes are kept).
    fn clear_logs(&self) {
        self.timeline.update(Timeline::clear);
        self.store_log.update(StoreLog::clear);
        self.history.update(History::clear);
    }
}
