//! One service's slot: its settings (config and rules, replaced only by `reconfigure`), its
//! lock-guarded state (with the fast path's word taken with the lock) and the usage,
//! transitions and errors built from it.

use super::{fast_path, shared, FastPath, Ledger, SHARED};
use crate::config::Admission;
use crate::config::ServiceConfig;
use crate::error::{DenyReason, QuotaError};
use crate::locks::{AtomicPtr, Mutex, MutexGuard, Ordering};
use crate::observers::Outbox;
use crate::rules::{Ask, Change, Refusal, Request, ServiceRules, ServiceState, Step};
use crate::usage::{ServiceUsage, Transition};
use crossbeam_utils::CachePadded;
use std::sync::Arc;

/// A service's config and the rules computed from it: immutable once made. A reconfigure
/// that changes them makes new settings and points the slot at them (see
/// [`ServiceSlot::settings`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settings {
    pub(super) config: ServiceConfig,
    /// The rules of the service's own limit (`limit` per `window`).
    pub(super) rules: ServiceRules,
    /// The rules of its [`more_limits`](ServiceConfig::more_limits), in order (empty for a
    /// service of one limit).
    pub(super) more: Vec<ServiceRules>,
    /// Removed by a reconfigure: every call answers `UnknownService`.
    pub(super) removed: bool,
    /// Whether a counting call may try the fast path: `Local` admission (or a build without
    /// shared admission), one limit, and not removed. The hot path's one test of the
    /// settings.
    pub(super) fast: bool,
}

impl Settings {
    pub(super) fn new(config: ServiceConfig, reduced_fraction: f64, removed: bool) -> Self {
        let more = (1..config.limit_count())
            .map(|at| ServiceRules::of_limit(config.limit_rule(at), at as u8, reduced_fraction))
            .collect::<Vec<_>>();
        Settings {
            rules: ServiceRules::new(&config, reduced_fraction),
            fast: !removed && more.is_empty() && (!SHARED || config.admission == Admission::Local),
            more,
            config,
            removed,
        }
    }

    /// The rules of the limit at `at` (0: the service's own).
    pub(super) fn limit(&self, at: usize) -> &ServiceRules {
        match at {
            0 => &self.rules,
            more => &self.more[more - 1],
        }
    }
}

/// One service: its settings, its guarded state, its queued transitions.
pub(super) struct ServiceSlot {
    /// Shared with every transition of the service (cloning it copies no text). A position's
    /// name never changes.
    pub(super) name: Arc<str>,
    /// The settings in force: one of `kept`'s. Written only under `state`'s lock (by
    /// `reconfigure`); read with or without it.
    settings: AtomicPtr<Settings>,
    /// The calls queued by `until_ready` (`tracker/wait/`): priority ones in the high 32
    /// bits, normal ones in the low. Beside `settings`, which every call reads: checking it
    /// costs no other cache line. Written under the wait queue's lock only. `std`'s even under
    /// loom: the wait queue is no part of the modelled protocol, and a loom atomic would make
    /// every modelled admission one more point to interleave at.
    pub(super) waiting: std::sync::atomic::AtomicU64,
    /// Every settings this slot was ever given, kept until the tracker drops, so a reference
    /// read from `settings` stays valid for as long as the slot is borrowed. A leaf lock, taken
    /// only by `reconfigure`.
    #[allow(clippy::vec_box)] // boxed: the settings must not move when the vector grows
    kept: Mutex<Vec<Box<Settings>>>,
    /// Padded to its own cache line so threads on different services do not contend. Taken
    /// only through [`lock`](Self::lock), which also takes the fast path's word.
    pub(super) state: CachePadded<Mutex<SlotState>>,
    /// The lock-free count of calls that change nothing else (its own cache line).
    pub(super) fast: FastPath,
    /// Transitions waiting for the observers, queued under `state`'s lock.
    pub(super) outbox: Outbox<Transition>,
    /// Denials not counted in the metrics yet.
    #[cfg(feature = "metrics")]
    pub(super) denials: crate::metrics::Denials,
}

/// What a service's lock guards.
pub(super) struct SlotState {
    pub(super) service: ServiceState,
    /// What a shared store has not acknowledged yet (kept only with a store).
    pub(super) sync: Ledger,
    /// The block in hand (`Leased` admission only).
    pub(super) lease: shared::LeaseState,
    /// What the fast path's word was released with (`None`: left taken).
    pub(super) published: Option<fast_path::Published>,
    /// The counts of the service's other limits (`Settings::more`, in order): empty for a
    /// service of one limit, whose count is `service`.
    pub(super) more: Vec<LimitState>,
}

/// One more limit's count and its ledger (the service's own limit's are `SlotState::service`
/// and `SlotState::sync`).
pub(super) struct LimitState {
    pub(super) service: ServiceState,
    pub(super) sync: Ledger,
}

impl LimitState {
    pub(super) fn new(window: &crate::window::WindowSpec, now: u64) -> Self {
        LimitState {
            service: ServiceState::new(window, now),
            sync: Ledger::default(),
        }
    }
}

impl SlotState {
    /// How many limits the service counts in (its own and `more`).
    pub(super) fn limit_count(&self) -> usize {
        1 + self.more.len()
    }

    /// The count of the limit at `at` (0: the service's own).
    pub(super) fn count(&self, at: usize) -> &ServiceState {
        match at {
            0 => &self.service,
            more => &self.more[more - 1].service,
        }
    }

    /// The count and the ledger of the limit at `at` (0: the service's own).
    pub(super) fn limit_mut(&mut self, at: usize) -> (&mut ServiceState, &mut Ledger) {
        match at {
            0 => (&mut self.service, &mut self.sync),
            more => {
                let limit = &mut self.more[more - 1];
                (&mut limit.service, &mut limit.sync)
            }
        }
    }
}

/// A service's lock, held: its state, with the calls the fast path counted before the lock
/// was taken already in it. Dropping it publishes the state for the fast path, then unlocks.
pub(super) struct SlotGuard<'a> {
    pub(super) guard: MutexGuard<'a, SlotState>,
    pub(super) slot: &'a ServiceSlot,
    /// The fast path's word as the lock took it.
    pub(super) taken: u64,
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = SlotState;
    fn deref(&self) -> &SlotState {
        &self.guard
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotState {
        &mut self.guard
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let settings = self.slot.settings();
        let state = &mut *self.guard;
        state.published = self.slot.fast.release(
            self.taken,
            &state.service,
            &settings.rules,
            settings.fast,
            state.published,
        );
    }
}

/// What [`QuotaTracker::step_at`] leaves for the caller.
pub(super) struct StepResult {
    pub(super) step: Step,
    pub(super) state: ServiceState,
    pub(super) reset: Option<Transition>,
    pub(super) recorded: Option<Transition>,
}

impl ServiceSlot {
    /// A slot of `config` whose state starts at `now` (its fast path taken until the first
    /// lock releases it).
    pub(super) fn new(config: ServiceConfig, reduced_fraction: f64, now: u64) -> Self {
        let state = SlotState {
            service: ServiceState::new(&config.window, now),
            sync: Ledger::default(),
            lease: shared::LeaseState::default(),
            published: None,
            more: config
                .more_limits
                .iter()
                .map(|limit| LimitState::new(&limit.window, now))
                .collect(),
        };
        let kept = vec![Box::new(Settings::new(config, reduced_fraction, false))];
        let pointer: *const Settings = &*kept[0];
        ServiceSlot {
            name: Arc::from(kept[0].config.name.as_str()),
            settings: AtomicPtr::new(pointer.cast_mut()),
            waiting: std::sync::atomic::AtomicU64::new(0),
            kept: Mutex::new(kept),
            state: CachePadded::new(Mutex::new(state)),
            fast: FastPath::new(),
            outbox: Outbox::new(),
            #[cfg(feature = "metrics")]
            denials: crate::metrics::Denials::default(),
        }
    }

    /// Whether calls queued by `until_ready` come before a new call of `request`'s kind: a
    /// normal call waits behind every queued call, a priority call behind queued priority
    /// calls; records, reads and a queued call served in its turn never do. Always `false`
    /// on wasm32, which has no waiting.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn queued_ahead(&self, request: Request) -> bool {
        if cfg!(target_arch = "wasm32") || request.served {
            return false;
        }
        let waiting = match request.ask {
            Ask::Normal => u64::MAX,
            Ask::Priority => u64::MAX << 32,
            Ask::Read | Ask::Record => return false,
        };
        self.waiting.load(std::sync::atomic::Ordering::Relaxed) & waiting != 0
    }

    /// The settings in force. Read without the lock they may be replaced right after (a
    /// reconfigure): the fast path's swap and the locked paths decide on what they read under
    /// the lock or validate by the swap; a lock-free read only picks a path or describes.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn settings(&self) -> &Settings {
        let settings = self.settings.load(Ordering::Acquire);
        // SAFETY: `settings` always points into a `Box` held by `kept` (set by `new` and
        // `set_settings`, which push the box first), and nothing ever removes a box from
        // `kept` or changes the settings in one: they live, unchanged, until the slot drops.
        // The reference borrows `self`, so it cannot outlive the slot. The `Acquire` load pairs
        // with the `Release` store in `set_settings`: the box's contents are visible.
        unsafe { &*settings }
    }

    /// Puts `settings` in force (call it holding this slot's lock, so that lock holders see one
    /// settings for their whole critical section): settings equal to some kept before are
    /// reused, so toggling between configs allocates nothing after the first time.
    pub(super) fn set_settings(&self, _locked: &SlotGuard<'_>, settings: Settings) {
        let mut kept = self.kept.lock();
        let at = match kept.iter().position(|k| **k == settings) {
            Some(at) => at,
            None => {
                kept.push(Box::new(settings));
                kept.len() - 1
            }
        };
        let pointer: *const Settings = &*kept[at];
        self.settings.store(pointer.cast_mut(), Ordering::Release);
    }

    /// Takes the service's lock, the only way to it: the calls the fast path counted since
    /// the lock was last released go into the state first (and, with a store, `booking`,
    /// into what the store has not acknowledged yet), as if each had taken the lock.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn lock(&self, booking: bool) -> SlotGuard<'_> {
        let mut guard = self.state.lock();
        let (taken, counted) = self.fast.take(guard.published);
        if counted > 0 {
            Self::absorb(&mut guard, counted, booking);
        }
        SlotGuard {
            guard,
            slot: self,
            taken,
        }
    }

    /// Adds `counted` fast calls (all in the current window, at the same level) to `state`.
    #[inline(never)]
    pub(super) fn absorb(state: &mut SlotState, counted: u64, booking: bool) {
        state.service.used = state.service.used.saturating_add(counted);
        state.service.total = state.service.total.saturating_add(counted);
        if booking {
            let window = state.service.window;
            state.sync.book(window, &Step::default(), counted);
        }
    }

    pub(super) fn transition(&self, change: Change) -> Transition {
        let settings = self.settings();
        let rules = settings.limit(usize::from(change.limit));
        let several = !settings.more.is_empty();
        Transition::of(&self.name, rules.limit, &rules.window, change, several)
    }

    #[inline]
    pub(super) fn usage(&self, state: &ServiceState) -> ServiceUsage<'_> {
        self.usage_of(self.settings(), state)
    }

    /// The usage of `state` under `settings` (read once by the caller).
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn usage_of<'s>(
        &'s self,
        settings: &'s Settings,
        state: &ServiceState,
    ) -> ServiceUsage<'s> {
        ServiceUsage::of(&self.name, &settings.config, state)
    }

    /// The usage of a locked `state` under `settings`: a service of one limit's as
    /// [`usage_of`](Self::usage_of) says; one of several limits' describes the binding limit
    /// (the least headroom, `limit - used`, of the limits that enforce; the first of equals) at
    /// the service's level (the highest of its limits').
    pub(super) fn usage_locked<'s>(
        &'s self,
        settings: &'s Settings,
        state: &SlotState,
    ) -> ServiceUsage<'s> {
        if state.more.is_empty() {
            return self.usage_of(settings, &state.service);
        }
        let mut binding = 0;
        let mut level = crate::level::Level::Normal;
        // A limit in shadow mode (`enforce = false`) refuses nothing: it binds only where
        // every limit is in shadow mode.
        let rank = |at| {
            let rules = settings.limit(at);
            (
                !rules.enforce,
                rules.limit.saturating_sub(state.count(at).used),
            )
        };
        for at in 0..state.limit_count() {
            if rank(at) < rank(binding) {
                binding = at;
            }
            level = level.max(settings.limit(at).level(state.count(at).used));
        }
        let rule = settings.config.limit_rule(binding);
        ServiceUsage::of_limit(&self.name, rule, state.count(binding)).at_level(level)
    }

    /// Every limit's usage, the service's own first, each at its own level.
    pub(super) fn usage_of_limits<'s>(
        &'s self,
        settings: &'s Settings,
        state: &SlotState,
    ) -> Vec<ServiceUsage<'s>> {
        (0..state.limit_count())
            .map(|at| {
                let rule = settings.config.limit_rule(at);
                ServiceUsage::of_limit(&self.name, rule, state.count(at))
            })
            .collect()
    }

    /// The error of a refused step.
    #[cold]
    #[inline(never)]
    pub(super) fn refused(&self, refusal: Refusal, count: u64) -> QuotaError {
        match refusal {
            Refusal::Overflow => self.invalid_count(count, "the counter would overflow"),
            Refusal::Denied { used, reason } => {
                self.denied(count, used, self.settings().rules.limit, reason)
            }
            Refusal::Removed => self.removed(),
            Refusal::Shared => unreachable!("update_locked takes the shared path instead"),
        }
    }

    /// The error of a call on a removed service.
    #[cold]
    pub(super) fn removed(&self) -> QuotaError {
        QuotaError::UnknownService(self.name.to_string())
    }

    /// The error of a call denied by the limit of `limit` calls (with feature `metrics`,
    /// counted). Call it with no lock held.
    #[cold]
    pub(super) fn denied(
        &self,
        count: u64,
        used: u64,
        limit: u64,
        reason: DenyReason,
    ) -> QuotaError {
        #[cfg(feature = "metrics")]
        self.denials.deny(&self.name, reason);
        QuotaError::Denied {
            service: Arc::clone(&self.name),
            count,
            used,
            limit,
            reason,
        }
    }

    /// A call shadow mode admitted that `reason` would have denied (with feature `metrics`,
    /// counted). Call it with no lock held.
    #[cold]
    pub(super) fn shadow_denied(&self, reason: DenyReason) {
        #[cfg(feature = "metrics")]
        self.denials.shadow(&self.name, reason);
        log::debug!(
            "quota: {} would have been denied ({}); admitted in shadow mode",
            self.name,
            reason.as_str()
        );
    }

    #[cold]
    pub(super) fn invalid_count(&self, count: u64, reason: &'static str) -> QuotaError {
        QuotaError::InvalidCount {
            service: Arc::clone(&self.name),
            count,
            reason,
        }
    }
}
