//! Changing a running tracker's services: [`QuotaTracker::reconfigure`]. See ARCHITECTURE.md,
//! "Reconfiguring", for why it is safe while other threads record.

use super::builder::validate;
use super::{LimitState, QuotaTracker, SavingGuard, ServiceSlot, Settings, SlotGuard, SHARED};
use crate::config::{Admission, ServiceConfig, TrackerConfig};
use crate::error::QuotaError;
use crate::level::Level;
use crate::observers::quietly;
use crate::persistence::SaveReason;
use crate::rules::{Change, Request};
use crate::sorted::Lookup;
use crate::usage::Transition;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a [`QuotaTracker::reconfigure`] did, by service name: services `added` and `changed`
/// in the new config's order, services `removed` in the old one's. A service whose config is
/// the same is in none of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Reconfigured {
    /// Services the new config has and the old one did not: they start at 0 calls and read
    /// the store's totals at the next sync.
    pub added: Vec<String>,
    /// Services the new config does not have: they answer
    /// [`QuotaError::UnknownService`] from now on, by name, by handle and by id.
    pub removed: Vec<String>,
    /// Services in both whose config differs (limit, thresholds, reserve, admission,
    /// `enforce`, or the window).
    pub changed: Vec<String>,
}

impl Reconfigured {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl QuotaTracker {
    /// Applies `config` to the running tracker, while other threads go on recording: adds the
    /// services it has and the tracker does not, removes those it does not have, and changes
    /// the others' limits, thresholds, reserve, admission and `enforce` without losing a count.
    /// Returns what changed, by name. The config is validated first, exactly as
    /// [`QuotaTrackerBuilder::build`](crate::QuotaTrackerBuilder::build) validates it (shared
    /// admission needs the feature and a store); on any error nothing changes.
    ///
    /// - **Changed** service, same window: the window keeps its count; the level is computed
    ///   again under the new rules, and a level change is one transition, delivered once to
    ///   the observers (a lower limit may make the service Critical or Exhausted at once).
    ///   Handles and ids keep working.
    /// - **Changed window** (its spec: period, N, time zone or anchor day): the limit starts
    ///   at 0 in the new window (its level falls to Normal: one transition if it was higher);
    ///   the calls of the old window that the store has not acknowledged still reach it, under
    ///   the old window's key, with the next sync. `total_recorded` goes on.
    /// - **Several limits** ([`ServiceConfig::more_limits`]): each limit of the new config
    ///   keeps the count of the old limit with the same window spec, wherever either is
    ///   listed; a limit of a new window starts at 0; a window no limit keeps is dropped (its
    ///   unacknowledged calls still reach the store). Each limit's level change is one
    ///   transition naming that limit; a dropped limit above Normal has one down to Normal
    ///   (unless a new window took its place, whose transition reports it).
    /// - **Admission** `Local` / `Exact` / `Leased`: a leased block in hand is given back first
    ///   (with the next sync), then the new admission applies.
    /// - **Removed** service: every call through its name, a [`Service`](crate::Service) handle
    ///   or its [`ServiceId`](crate::ServiceId) answers [`QuotaError::UnknownService`]
    ///   ([`service_by_id`](Self::service_by_id) gives `None`; a handle's infallible
    ///   `usage()` shows the usage as it was removed, `can_call()` is `false`). Its calls not
    ///   synced yet still reach the store. Its position is never reused: a name added again
    ///   later is a new service, at a new position, starting at 0 (and reading the store's
    ///   total of its window at the next sync); the old handles still answer `UnknownService`.
    /// - **Added** service: starts at 0, reads the store's totals at the next sync (as at
    ///   build), and is registered for the metrics.
    ///
    /// [`snapshot`](Self::snapshot) and [`config`](Self::config) list the new config's
    /// services, in its order. A call racing the reconfigure is decided under the old rules
    /// or the new ones, never a mix; one that began on a service being removed may still be
    /// counted there (and synced). Reconfigures run one at a time; observers run after every
    /// lock is released, so they may reconfigure too.
    ///
    /// ```
    /// use quota_core::{Level, ManualClock, Period, QuotaError, QuotaTracker, ServiceConfig,
    ///     TrackerConfig};
    ///
    /// let config = TrackerConfig::new([
    ///     ServiceConfig::new("search", 100, Period::Day),
    ///     ServiceConfig::new("mail", 50, Period::Day),
    /// ]);
    /// let tracker = QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000))?;
    /// let mail = tracker.service("mail")?;
    /// tracker.record_call("search", 60)?;
    ///
    /// // The provider cut the quota to 70 a day; mail is gone, maps is new.
    /// let done = tracker.reconfigure(TrackerConfig::new([
    ///     ServiceConfig::new("search", 70, Period::Day),
    ///     ServiceConfig::new("maps", 10, Period::Day),
    /// ]))?;
    /// assert_eq!((done.changed, done.removed, done.added),
    ///     (vec!["search".to_string()], vec!["mail".to_string()], vec!["maps".to_string()]));
    /// let search = tracker.usage("search")?;
    /// assert_eq!((search.used, search.limit), (60, 70)); // the count is kept
    /// assert_eq!(search.level(), Level::Critical); // 60 of 70: past 80%
    /// assert!(matches!(mail.record(1), Err(QuotaError::UnknownService(_))));
    /// tracker.record_call("maps", 1)?;
    /// # Ok::<(), QuotaError>(())
    /// ```
    pub fn reconfigure(&self, config: TrackerConfig) -> Result<Reconfigured, QuotaError> {
        let several_windows = self
            .persistence
            .as_ref()
            .is_some_and(|p| matches!(p.call(|store| Ok(store.several_windows())), Ok(true)));
        validate(&config, self.persistence.is_some(), several_windows)?;
        let now = self.now();
        let serial = self.reconfiguring.lock();
        let old = self.live();
        // Keyed as the tracker's own index is (one map type in the `.wasm`).
        // Inserted one by one, as the index is built (no sort in the `.wasm`).
        let mut in_force: Lookup<Arc<str>, usize> = Lookup::default();
        for &position in old.iter() {
            in_force.insert(Arc::clone(&self.slot(position).name), position);
        }
        let mut wanted: Lookup<Arc<str>, usize> = Lookup::default();
        for (at, service) in config.services.iter().enumerate() {
            wanted.insert(Arc::from(service.name.as_str()), at);
        }
        let mut done = Reconfigured::default();
        let mut touched = Vec::new();
        let mut critical = false;
        // Whether a leased block went back (queued for the next sync).
        let mut returned = false;
        for &position in old.iter() {
            let slot = self.slot(position);
            if !wanted.contains_key(&*slot.name) {
                returned |= self.remove(slot, now);
                done.removed.push(slot.name.to_string());
                touched.push(position);
            }
        }
        let mut order = Vec::with_capacity(config.services.len());
        for service in config.services {
            let position = match in_force.get(service.name.as_str()) {
                Some(&position) => {
                    let slot = self.slot(position);
                    if slot.settings().config != service {
                        done.changed.push(service.name.clone());
                        let (made_critical, gave_back) = self.change(slot, service, now);
                        critical |= made_critical;
                        returned |= gave_back;
                        touched.push(position);
                    }
                    position
                }
                None => {
                    done.added.push(service.name.clone());
                    self.add(service, now)
                }
            };
            order.push(position);
        }
        *self.order.lock() = order.into();
        drop(serial);
        // Every lock is released: deliver, sync, report.
        if !SavingGuard::is_saving(self) {
            self.pump(&touched);
        }
        if let Some(persistence) = &self.persistence {
            if returned && !SavingGuard::is_saving(self) {
                // A block given back reaches the store now: until then the store counts it,
                // refuses blocks it would grant without it, and answers totals with it in,
                // which the view (it never falls) would take in.
                if let Some(Err(error)) = self.save(SaveReason::Flush, now) {
                    quietly(|| {
                        log::warn!("quota: a reconfigure's give-back is not synced yet: {error}")
                    });
                }
            } else if !done.added.is_empty() || critical || returned {
                // Added services read the store; a service made Critical syncs at once.
                persistence.sync_soon();
            }
        }
        #[cfg(feature = "metrics")]
        self.reconfigured_metrics(&done);
        // New limits may admit calls that wait (or refuse them for good: removed services).
        #[cfg(not(target_arch = "wasm32"))]
        self.waiting.notify();
        Ok(done)
    }

    /// Rolls the window over if due (a read, under the settings in force), booking it and
    /// queueing its transitions: what any call would do first.
    fn catch_up(&self, slot: &ServiceSlot, guard: &mut SlotGuard<'_>, now: u64) {
        let booking = self.persistence.is_some();
        let settings = slot.settings();
        for at in 0..guard.limit_count() {
            let rules = settings.limit(at);
            let (state, ledger) = guard.limit_mut(at);
            let old_window = state.window;
            let step = rules.step(state, now, Request::READ);
            if booking && step.changed {
                ledger.book(old_window, &step, 0);
            }
            self.queue_transitions(slot, &step);
        }
    }

    /// Gives a leased block in hand back (with the next sync), under the settings in force.
    /// Returns whether there was one.
    fn give_back_block(&self, slot: &ServiceSlot, guard: &mut SlotGuard<'_>, now: u64) -> bool {
        if !SHARED {
            return false;
        }
        let (back, step) = guard.give_lease_back(slot, self, now);
        let returned = back.is_some();
        guard.sync.queued.give_backs.extend(back);
        self.queue_transitions(slot, &step);
        returned
    }

    /// Removes the service of `slot`: one acquisition of its lock, after which every call
    /// there is refused; what the store has not acknowledged is detached for the next sync.
    /// Returns whether a leased block went back.
    fn remove(&self, slot: &ServiceSlot, now: u64) -> bool {
        let mut guard = slot.lock(self.persistence.is_some());
        self.catch_up(slot, &mut guard, now);
        let returned = self.give_back_block(slot, &mut guard, now);
        if self.persistence.is_some() {
            let window = guard.service.window;
            guard.sync.detach(window, &|w| slot.window_key(w));
            let settings = slot.settings();
            let state: &mut super::SlotState = &mut guard;
            for (rules, limit) in settings.more.iter().zip(&mut state.more) {
                let window = limit.service.window;
                limit
                    .sync
                    .detach(window, &|w| slot.limit_window_key(&rules.window, w));
                state.sync.take_owed(&mut limit.sync);
            }
            state.more.clear();
        }
        let removed = Settings {
            removed: true,
            fast: false,
            ..slot.settings().clone()
        };
        // The guard's drop leaves the fast path's word taken (`fast` is false).
        slot.set_settings(&guard, removed);
        returned
    }

    /// Puts `config` in force for the service of `slot` (same name): one acquisition of its
    /// lock. Returns whether that made the service Critical (or beyond) from below, and
    /// whether a leased block went back.
    fn change(&self, slot: &ServiceSlot, config: ServiceConfig, now: u64) -> (bool, bool) {
        let new = Settings::new(config, self.reduced_fraction, false);
        let mut guard = slot.lock(self.persistence.is_some());
        self.catch_up(slot, &mut guard, now);
        let old = slot.settings();
        // Any change of a leased service returns the block in hand: it was granted under
        // the old rules (a lower limit must not leave it spendable), or for the old window.
        let returned = matches!(old.config.admission, Admission::Leased { .. })
            && self.give_back_block(slot, &mut guard, now);
        let (critical, transitions) = self.carry_limits(slot, &mut guard, old, &new, now);
        let epoch = self.observers.epoch();
        for transition in transitions {
            slot.outbox.push(transition, epoch);
        }
        // Lock holders from now on step under the new rules; the guard's drop publishes the
        // fast path's boundaries for them (a new epoch: fast calls of the old rules fail).
        slot.set_settings(&guard, new);
        (critical, returned)
    }

    /// Moves the counts of `old`'s limits to `new`'s: a limit of the same window spec keeps its
    /// count and ledger; a new window starts at 0 (`total_recorded` goes on); the ledger of a
    /// window no limit keeps is detached (its calls not acknowledged still reach the store,
    /// under its key). What a ledger owes the store outside its windows (detached calls,
    /// queued operations) ends up in the first limit's, the one a cut sends them from.
    ///
    /// Returns whether a limit went from below Critical to Critical or beyond, and the level
    /// changes, each once: a kept limit's against its old level; a new window's against the
    /// old limit at its place if that one is dropped (so a service of one limit whose window
    /// changes has one transition, as before), else against Normal; and a dropped limit no new
    /// one took the place of, above Normal, down to Normal (it binds no more).
    fn carry_limits(
        &self,
        slot: &ServiceSlot,
        guard: &mut SlotGuard<'_>,
        old: &Settings,
        new: &Settings,
        now: u64,
    ) -> (bool, Vec<Transition>) {
        let total = guard.service.total;
        let own = LimitState {
            service: guard.service,
            sync: std::mem::take(&mut guard.sync),
        };
        // The old limits' counts, in their order: a kept one's ledger is taken (left empty) by
        // the new limit of its window; the others are dropped below.
        let mut left = std::mem::take(&mut guard.more);
        left.insert(0, own);
        let count = new.config.limit_count();
        // The old limit each new one keeps: the one of its window spec (no two alike).
        let keeps: Vec<Option<usize>> = (0..count)
            .map(|at| {
                (0..left.len()).find(|&old_at| old.limit(old_at).window == new.limit(at).window)
            })
            .collect();
        let kept = |old_at: usize| keeps.contains(&Some(old_at));
        // Dropped limits whose level a new one's transition reports.
        let mut reported = vec![false; left.len()];
        let transition = |settings: &Settings, change: Change| {
            let rules = settings.limit(usize::from(change.limit));
            let several = !settings.more.is_empty();
            Transition::of(&slot.name, rules.limit, &rules.window, change, several)
        };
        // The new limits' counts go straight to their place: the first is the service's own.
        let mut more = Vec::with_capacity(count - 1);
        let mut transitions = Vec::new();
        let mut critical = false;
        for (at, keep) in keeps.iter().enumerate() {
            let rules = new.limit(at);
            let (before, state) = match *keep {
                Some(old_at) => {
                    let taken = &mut left[old_at];
                    let state = LimitState {
                        service: taken.service,
                        sync: std::mem::take(&mut taken.sync),
                    };
                    (old.limit(old_at).level(state.service.used), state)
                }
                None => {
                    let before = match left.get(at) {
                        Some(state) if !kept(at) => {
                            reported[at] = true;
                            old.limit(at).level(state.service.used)
                        }
                        _ => Level::Normal,
                    };
                    let mut fresh = LimitState::new(&rules.window, now);
                    fresh.service.total = total;
                    // A hold counted in an earlier count of this window never was in this
                    // one: its give-back is forfeited, as after a raise.
                    fresh.sync.raises = fresh_raises();
                    (before, fresh)
                }
            };
            let used = state.service.used;
            let after = rules.level(used);
            if before != after {
                let change = Change {
                    from: before,
                    to: after,
                    limit: rules.index,
                    used,
                    at_ms: now,
                };
                transitions.push(transition(new, change));
            }
            critical |= before < Level::Critical && after >= Level::Critical;
            if at == 0 {
                guard.service = state.service;
                guard.sync = state.sync;
            } else {
                more.push(state);
            }
        }
        guard.more = more;
        let state: &mut super::SlotState = guard;
        for limit in &mut state.more {
            state.sync.take_owed(&mut limit.sync);
        }
        // What no limit keeps: detached, for the next cut (from the service's own ledger).
        for (old_at, dropped) in left.iter_mut().enumerate() {
            if kept(old_at) {
                continue;
            }
            let level = old.limit(old_at).level(dropped.service.used);
            if !reported[old_at] && level != Level::Normal {
                let change = Change {
                    from: level,
                    to: Level::Normal,
                    limit: old.limit(old_at).index,
                    used: 0,
                    at_ms: now,
                };
                transitions.push(transition(old, change));
            }
            if self.persistence.is_some() {
                let window = dropped.service.window;
                let spec = &old.limit(old_at).window;
                dropped
                    .sync
                    .detach(window, &|w| slot.limit_window_key(spec, w));
            }
            guard.sync.take_owed(&mut dropped.sync);
        }
        (critical, transitions)
    }

    /// Adds a service at the next position (the reconfigure's mutex is held: one writer).
    fn add(&self, config: ServiceConfig, now: u64) -> usize {
        let index = self.added.len();
        self.added
            .push(index, ServiceSlot::new(config, self.reduced_fraction, now));
        self.services.len() + index
    }

    /// Metrics after a reconfigure: added services' series (and shadow counters of services
    /// now in shadow mode) registered at 0, as at build, then every gauge refreshed.
    #[cfg(feature = "metrics")]
    fn reconfigured_metrics(&self, done: &Reconfigured) {
        let named: Vec<_> = done
            .added
            .iter()
            .chain(&done.changed)
            .filter_map(|name| self.position(name).ok())
            .map(|position| self.slot(position))
            .collect();
        crate::metrics::built(
            named.iter().map(|slot| QuotaTracker::metrics_entry(slot)),
            self.persistence.is_some(),
        );
        self.publish_metrics();
    }
}

/// The raise counter of a fresh count a reconfigure starts, unlike that of every count before
/// it (each counts up by one a raise from 0, or from an earlier fresh count's start, 2^32
/// apart): a hold counted in an earlier count of the same window (the window changed and
/// changed back, or a limit dropped and added again) forfeits its give-back, which would take
/// calls made since off a count that never held it.
fn fresh_raises() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1 << 63);
    NEXT.fetch_add(1 << 32, Ordering::Relaxed)
}
