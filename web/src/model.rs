//! What the page shows, as plain values: one [`Frame`] per animation frame (and one
//! [`InstancesFrame`] for the instances view), the bounded [`Timeline`] and [`StoreLog`], and
//! the bounded [`History`] behind the chart.

use crate::settings::SyncMode;
use quota_core::sim::Mode;
use quota_core::{Level, ServiceUsage, StoreEvent, StoreStats, Transition};
use std::collections::VecDeque;

/// Whether the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Not started since the last reset.
    #[default]
    Ready,
    /// Workers are issuing calls.
    Running,
    /// Paused, but some workers are finishing the call they started.
    Pausing,
    /// Paused: every worker has stopped, the counters are final.
    Paused,
}

impl Status {
    /// The lowercase word shown on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Running => "running",
            Status::Pausing => "pausing",
            Status::Paused => "paused",
        }
    }
}

/// One service on one frame: its usage (from the run's counter), the units issued to it and
/// the units the tracker refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    /// The counter's usage of the service, `total_recorded` included: for a service of several
    /// limits, the binding limit's at the service's level.
    pub usage: ServiceUsage<'static>,
    /// Every limit's usage, the service's own first, each at its own level; empty for a
    /// service of one limit (`usage` is that limit's) and in racy mode, whose counts know
    /// only the service's own limit.
    pub limits: Vec<ServiceUsage<'static>>,
    /// Which of `limits` binds: the least headroom (`limit - used`), the first of equals, as
    /// the core picks `usage`'s.
    pub binding: usize,
    /// Units the workers attempted since the reset.
    pub issued: u64,
    /// Units of those that `try_record` refused (never sent, never counted) since the reset.
    pub denied: u64,
    /// What the service counts in (see [`Unit::of`]).
    pub unit: Unit,
    /// A token service's holds since the reset (all 0 for a service counted in calls).
    pub holds: HoldCounts,
}

impl ServiceView {
    /// The usage of the limit at `index` (0: the service's own), if counted.
    pub fn limit(&self, index: usize) -> Option<&ServiceUsage<'static>> {
        if self.limits.is_empty() {
            (index == 0).then_some(&self.usage)
        } else {
            self.limits.get(index)
        }
    }

    /// How many limits are counted (see [`limits`](Self::limits)).
    pub fn limit_count(&self) -> usize {
        self.limits.len().max(1)
    }

    /// Units the counter recorded since the reset, across windows.
    pub fn recorded(&self) -> u64 {
        self.usage.total_recorded
    }

    /// Admitted units the counter does not have. In calls: `issued - denied - recorded`. In
    /// tokens: what the counter should hold (settled actuals, estimates in flight and those
    /// kept, see [`HoldCounts::counted`]) minus what it recorded.
    pub fn lost(&self) -> u64 {
        match self.unit {
            Unit::Calls => self
                .issued
                .saturating_sub(self.denied)
                .saturating_sub(self.recorded()),
            Unit::Tokens => self.holds.counted().saturating_sub(self.recorded()),
        }
    }

    /// Whether the token identity holds (see [`HoldCounts::identity_holds`]); always for a
    /// service counted in calls.
    pub fn identity_holds(&self) -> bool {
        self.unit == Unit::Calls || self.holds.identity_holds(self.issued, self.denied)
    }
}

/// What a service counts. The core's config has no unit: the dashboard takes a service whose
/// name ends in `-tokens` (the simulation's `llm-tokens`) to count an LLM's tokens, whose
/// workers hold an estimate and settle what the response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// One unit per API call (or e-mail): recorded as the call is made.
    #[default]
    Calls,
    /// An LLM's tokens: held at an estimate, settled at the actual count.
    Tokens,
}

impl Unit {
    /// The unit of the service called `name`: tokens if it ends in `-tokens`.
    pub fn of(name: &str) -> Unit {
        if name.ends_with("-tokens") {
            Unit::Tokens
        } else {
            Unit::Calls
        }
    }

    /// The word the counters table shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Calls => "calls",
            Unit::Tokens => "tokens",
        }
    }
}

/// A token service's holds since the reset, in tokens. With `issued` (every estimate the
/// workers asked to hold) and `denied` (the estimates refused), the identity
///
/// `issued + added = denied + settled + given_back + in_flight + kept`
///
/// holds exactly at every frame: a refused estimate is denied; one in flight is held; a
/// settled hold of estimate `e` and actual `a` gave back `g` and added `x` with
/// `e + x = a + g + k`, `k` being what the tracker kept counted beyond `a` (0 unless a
/// give-back was forfeited). In racy mode nothing is held: a call's estimate counts as settled
/// (see [`engine`](crate::engine)'s token calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HoldCounts {
    /// Tokens added past the estimates (settled above them), even past the limit.
    pub added: u64,
    /// The actual tokens of the settled holds (a cancelled hold: 0).
    pub settled: u64,
    /// Tokens the settlements gave back (estimate - actual, where below the estimate).
    pub given_back: u64,
    /// Estimates of the holds not settled yet.
    pub in_flight: u64,
    /// Tokens counted beyond the actuals for good: give-backs a settlement did not make
    /// (`estimate + added - given_back - actual` of a settled hold).
    pub kept: u64,
    /// Tokens of `added` settled after the window the hold was counted in had ended (or a
    /// reconfigure gave the service another window): the core books them to that window (for
    /// the store) but leaves them out of the count's `total_recorded`, so the counters table
    /// adds them to its "recorded".
    pub past_window: u64,
}

impl HoldCounts {
    /// What the counter should hold: `settled + in_flight + kept`.
    pub fn counted(&self) -> u64 {
        self.settled + self.in_flight + self.kept
    }

    /// `issued + added == denied + settled + given_back + in_flight + kept`.
    pub fn identity_holds(&self, issued: u64, denied: u64) -> bool {
        issued + self.added == denied + self.settled + self.given_back + self.in_flight + self.kept
    }
}

/// Everything the cards, counters and footer show on one frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// The simulated clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// Whether the workers run.
    pub status: Status,
    /// How the calls are counted.
    pub mode: Mode,
    /// Per service, in config order.
    pub services: Vec<ServiceView>,
    /// Calls issued since the reset (each of one or more units).
    pub calls: u64,
    /// The tracker's store activity; `None` in racy mode, which has no store.
    pub store: Option<StoreStats>,
    /// Whether the simulated store outage is on.
    pub outage: bool,
}

impl Frame {
    /// The service called `name`, if configured.
    pub fn service(&self, name: &str) -> Option<&ServiceView> {
        self.services.iter().find(|s| s.usage.name == name)
    }
}

/// One service of the instances view: units issued by all instances, and the shared store's
/// total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCounts {
    /// The service's name.
    pub name: String,
    /// Its limit (the instances count past it: they call `record_call`).
    pub limit: u64,
    /// Units the instances' workers issued since the reset (all recorded by their trackers).
    pub issued: u64,
    /// What the shared store holds for the service, summed across windows (read from the
    /// store).
    pub stored: u64,
}

impl SharedCounts {
    /// `issued - stored`: calls the store lost.
    pub fn lost(&self) -> u64 {
        self.issued.saturating_sub(self.stored)
    }
}

/// Everything the instances view shows on one frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstancesFrame {
    /// How the instances share the store.
    pub mode: SyncMode,
    /// Whether their workers run.
    pub status: Status,
    /// Calls the instances' workers made since the reset (each of one or more units).
    pub calls: u64,
    /// Per service, in config order.
    pub services: Vec<SharedCounts>,
    /// Per instance, each service's `used` as that instance's tracker sees it (config order).
    pub views: Vec<Vec<u64>>,
}

impl InstancesFrame {
    /// The service called `name`, if configured.
    pub fn service(&self, name: &str) -> Option<&SharedCounts> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Who caused a level change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Virtual worker number `n` (from 1).
    Worker(usize),
    /// The window ended and the count restarted.
    WindowReset,
    /// A config change (Apply in the config editor): a new limit or threshold, or a new window.
    Config,
}

impl Cause {
    /// The actor while a config change is applied: its level changes are the config's doing.
    pub(crate) const CONFIG_ACTOR: usize = usize::MAX;

    /// The cause of `transition`, seen while `actor` called the tracker: a worker (from 1),
    /// none (0: a read rolled a window) or [`CONFIG_ACTOR`](Self::CONFIG_ACTOR). A level that
    /// went down to a count of 0 is a window's reset; to a higher count, a worker's settled
    /// hold that gave tokens back.
    pub(crate) fn of(transition: &Transition, actor: usize) -> Cause {
        if actor == Self::CONFIG_ACTOR {
            Cause::Config
        } else if actor == 0 || (transition.to < transition.from && transition.used == 0) {
            Cause::WindowReset
        } else {
            Cause::Worker(actor)
        }
    }
}

/// The binding limit of `limits`: the least headroom, the first of equals (the core's rule for
/// [`QuotaTracker::usage`](quota_core::QuotaTracker::usage)); 0 for none.
pub(crate) fn binding(limits: &[ServiceUsage<'_>]) -> usize {
    let mut binding = 0;
    for (index, usage) in limits.iter().enumerate() {
        if usage.remaining < limits[binding].remaining {
            binding = index;
        }
    }
    binding
}

/// One level change, as the timeline lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Unique and increasing, for keyed rendering.
    pub id: u64,
    /// The change itself.
    pub transition: Transition,
    /// Who caused it.
    pub cause: Cause,
}

impl TimelineEntry {
    /// Critical or exhausted: highlighted.
    pub fn is_critical(&self) -> bool {
        self.transition.to >= Level::Critical
    }
}

/// The latest level changes, newest first, at most [`Timeline::CAPACITY`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeline {
    entries: VecDeque<TimelineEntry>,
    /// The next entry's id; ids never repeat, even across [`clear`](Self::clear).
    next_id: u64,
    /// `next_id` at the last clear.
    first_id: u64,
}

impl Timeline {
    /// Entries kept; older ones are dropped (and counted).
    pub const CAPACITY: usize = 100;

    /// Adds changes in the order they happened.
    pub fn extend(&mut self, changes: impl IntoIterator<Item = (Transition, Cause)>) {
        for (transition, cause) in changes {
            self.entries.push_front(TimelineEntry {
                id: self.next_id,
                transition,
                cause,
            });
            self.next_id += 1;
        }
        self.entries.truncate(Self::CAPACITY);
    }

    /// The kept entries, newest first.
    pub fn entries(&self) -> impl Iterator<Item = &TimelineEntry> {
        self.entries.iter()
    }

    /// How many entries were added since the last clear.
    pub fn total(&self) -> u64 {
        self.next_id - self.first_id
    }

    /// How many of those were dropped to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        self.total() - self.entries.len() as u64
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.first_id = self.next_id;
    }
}

/// Reduced-rate mode starting and ending, newest first, at most [`StoreLog::CAPACITY`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreLog {
    entries: VecDeque<(u64, StoreEvent)>,
    next_id: u64,
}

impl StoreLog {
    /// Entries kept; older ones are dropped.
    pub const CAPACITY: usize = 20;

    /// Adds events in the order they happened.
    pub fn extend(&mut self, events: impl IntoIterator<Item = StoreEvent>) {
        for event in events {
            self.entries.push_front((self.next_id, event));
            self.next_id += 1;
        }
        self.entries.truncate(Self::CAPACITY);
    }

    /// The kept events with unique, increasing ids (for keyed rendering), newest first.
    pub fn entries(&self) -> impl Iterator<Item = &(u64, StoreEvent)> {
        self.entries.iter()
    }

    /// Forgets every event.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Usage over time for the chart: one sample per [`History::INTERVAL_MS`] of real time, at most
/// [`History::CAPACITY`] samples, so memory stays flat however long the run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// The services sampled, in config order.
    pub services: Vec<ServiceLine>,
    samples: VecDeque<Vec<f64>>,
}

/// One service's line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceLine {
    /// The service.
    pub name: String,
    /// Its warn threshold, as a fraction of the limit.
    pub warn: f64,
    /// Its critical threshold, as a fraction of the limit.
    pub critical: f64,
}

impl History {
    /// Samples kept (a minute at [`INTERVAL_MS`](Self::INTERVAL_MS)).
    pub const CAPACITY: usize = 240;
    /// Real ms between samples.
    pub const INTERVAL_MS: f64 = 250.0;

    /// Adds one sample: each service's `used / limit` (may exceed 1). Starts over when the
    /// services changed.
    pub fn push(&mut self, services: &[ServiceView]) {
        let lines: Vec<ServiceLine> = services
            .iter()
            .map(|s| ServiceLine {
                name: s.usage.name.to_string(),
                warn: s.usage.warn_threshold,
                critical: s.usage.critical_threshold,
            })
            .collect();
        if lines != self.services {
            self.services = lines;
            self.samples.clear();
        }
        self.samples.push_back(
            services
                .iter()
                .map(|s| s.usage.percent_used() / 100.0)
                .collect(),
        );
        while self.samples.len() > Self::CAPACITY {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first; each holds one fraction per service.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &Vec<f64>> {
        self.samples.iter()
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// Measured rates, updated about once a second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Calls the simulation's workers issued per second.
    pub calls_per_second: f64,
    /// Calls the instances' workers made per second.
    pub instances_calls_per_second: f64,
    /// Animation frames per second.
    pub frames_per_second: f64,
}
