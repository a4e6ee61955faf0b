//! The tracker's side of store sync: flush, stats, the save (cut a batch under every
//! service's lock, take in the totals, settle late answers) and the drop that flushes.

use super::flush_retry::FlushRetry;
use super::{describe_store_event, QuotaTracker, SlotGuard, SHARED};
use crate::locks::thread_local;
use crate::observers::quietly;
use crate::persistence::{Books, Cut, Late, Persistence, Queued, SaveReason, Settled, StoreStats};
use crate::store::{Delta, GiveBackWindow, InstanceId, Raise, StoreError, SyncBatch, WindowKey};
use crate::window::Window;
use std::cell::RefCell;

// Not `const`-initialized: loom's `thread_local!` (used under `cfg(loom)`) does not take it.
thread_local! {
    /// The trackers (by address) whose save is running on this thread, so that a store that
    /// calls `flush` on its own tracker gets an error instead of waiting for itself.
    #[allow(clippy::missing_const_for_thread_local)]
    static SAVING: RefCell<Vec<usize>> = RefCell::new(Vec::new());
}

/// Marks a tracker's save as running on this thread until dropped (unwinding included).
pub(super) struct SavingGuard(usize);

impl SavingGuard {
    pub(super) fn enter(tracker: &QuotaTracker) -> Self {
        let address = tracker as *const QuotaTracker as usize;
        SAVING.with(|saving| saving.borrow_mut().push(address));
        SavingGuard(address)
    }

    pub(super) fn is_saving(tracker: &QuotaTracker) -> bool {
        let address = tracker as *const QuotaTracker as usize;
        SAVING.with(|saving| saving.borrow().contains(&address))
    }
}

impl Drop for SavingGuard {
    fn drop(&mut self) {
        SAVING.with(|saving| {
            let mut saving = saving.borrow_mut();
            if let Some(position) = saving.iter().rposition(|&a| a == self.0) {
                saving.remove(position);
            }
        });
    }
}

impl QuotaTracker {
    /// Saves every count to the store now, resends every operation whose outcome is unknown,
    /// gives unused leased calls back. `Ok(())` without a store, or once the store answered all.
    ///
    /// While the store fails it tries again, pausing 10 ms doubling to 500 ms, until
    /// [`SyncPolicy::flush_timeout_ms`](crate::SyncPolicy::flush_timeout_ms) (3 s by default) has passed (a try under way runs to
    /// its end, bounded by the store's timeouts; on wasm it tries once), then returns the last
    /// error; each failed try counts as a failed save. What stays unresolved is in
    /// [`stats`](Self::stats) (`unresolved_ops`, `unresolved_calls`) and logged.
    ///
    /// The one call of the tracker that may wait: for a save in flight on another thread and
    /// for those retries, never for an observer. Called from inside this tracker's own save (a
    /// store that calls back), it returns [`StoreError::Reentrant`] instead of waiting for
    /// itself.
    pub fn flush(&self) -> Result<(), StoreError> {
        let Some(persistence) = &self.persistence else {
            return Ok(());
        };
        let mut retry = FlushRetry::new(persistence.policy.flush_timeout_ms);
        loop {
            let result = self
                .save_until(SaveReason::Flush, self.now(), &|| retry.expired())
                .unwrap_or(Ok(()));
            let Err(error) = result else {
                return Ok(());
            };
            if error == StoreError::Reentrant {
                return Err(error);
            }
            // Operations whose outcome is unknown stay queued: resend them for a while (the
            // store may be back in a moment), then report what is left.
            if retry.pause() {
                continue;
            }
            let stats = self.stats();
            if stats.unresolved_ops > 0 {
                quietly(|| {
                    log::warn!(
                        "quota: flush gave up with {} store operations unresolved ({} calls \
                         may be counted wrongly in the store): {error}",
                        stats.unresolved_ops,
                        stats.unresolved_calls
                    )
                });
            }
            return Err(error);
        }
    }

    /// The sync policy in force (`None` without a store).
    pub(crate) fn sync_policy(&self) -> Option<&crate::config::SyncPolicy> {
        self.persistence
            .as_ref()
            .map(|persistence| &persistence.policy)
    }

    /// Whether reduced-rate mode is on (the store failed too often in a row).
    pub fn is_reduced_rate(&self) -> bool {
        self.persistence
            .as_ref()
            .is_some_and(Persistence::is_reduced)
    }

    /// Counters of the store activity; all zero without a store. The unresolved operations
    /// include those still queued under the services' locks (not cut into a sync yet, for
    /// instance while an earlier batch's resend keeps failing): one lock acquisition per
    /// service.
    pub fn stats(&self) -> StoreStats {
        let Some(persistence) = &self.persistence else {
            return StoreStats::default();
        };
        let mut stats = persistence.stats();
        // Without shared admission nothing is queued under the services' locks.
        for position in (0..self.slot_count()).filter(|_| SHARED) {
            let (ops, calls) = self.slot(position).lock(true).sync.queued.unresolved();
            stats.unresolved_ops += ops;
            stats.unresolved_calls = stats.unresolved_calls.saturating_add(calls);
        }
        stats
    }

    /// Sets the metrics' gauges (`quota_used`, `quota_limit`, `quota_remaining`, `quota_level`
    /// of every service, and `quota_reduced_rate`) from one snapshot: call it before each
    /// scrape. Feature `metrics`; see [`describe_metrics`](crate::describe_metrics) for the
    /// full list.
    ///
    /// The gauges are also set when the tracker is built, after each sync with the store, and
    /// for one service when its level changes, but never on the plain recording path, so
    /// between refreshes `quota_used` may lag. Takes every service's lock once (in config
    /// order, like [`snapshot`](Self::snapshot)); the recorder is called after they are
    /// released. Syncs and denials not counted yet (made from inside the recorder) are counted
    /// too. Called back from inside the recorder while this thread reports (a
    /// refresh, or a sync's counts), it does nothing: the report in progress is what it would
    /// emit, and a sync the recorder caused is counted by the next report.
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use quota_core::QuotaTracker;
    ///
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let handle = recorder.handle();
    /// metrics::with_local_recorder(&recorder, || {
    ///     let tracker = QuotaTracker::with_defaults();
    ///     tracker.record_call("finnhub", 12).unwrap();
    ///     tracker.publish_metrics();
    /// });
    /// assert!(handle.render().contains(r#"quota_used{service="finnhub"} 12"#));
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        crate::metrics::report(|| {
            self.unreported.report();
            self.publish_gauges();
        });
    }

    /// [`publish_metrics`](Self::publish_metrics)' gauges, and the denials left for the next
    /// report (made from inside the recorder). Call it inside `metrics::report`.
    #[cfg(feature = "metrics")]
    pub(super) fn publish_gauges(&self) {
        for position in 0..self.slot_count() {
            let slot = self.slot(position);
            slot.denials.report(&slot.name);
        }
        let read = self.read_all(self.now(), true, true);
        // Every lock is released: the keys are made and the recorder called out here.
        let gauges = read.iter().flat_map(|read| {
            let service = crate::metrics::Gauges {
                service: &read.slot.name,
                limit_key: None,
                used: read.usage.used,
                limit: read.usage.limit,
                level: read.usage.level(),
            };
            let rules = read.settings.config.limit_rules();
            let limits = rules
                .zip(&read.limits)
                .map(|(rule, usage)| crate::metrics::Gauges {
                    service: &read.slot.name,
                    limit_key: Some(rule.window.key()),
                    used: usage.used,
                    limit: usage.limit,
                    level: usage.level(),
                });
            std::iter::once(service).chain(limits)
        });
        crate::metrics::publish(
            gauges,
            self.is_reduced_rate(),
            self.persistence
                .as_ref()
                .map(|_| self.stats().unresolved_calls),
        );
    }

    /// What the metrics register for `slot` when it is built or changed: its name, whether it
    /// is in shadow mode, and its limits' window keys where it has several (else none).
    #[cfg(feature = "metrics")]
    pub(super) fn metrics_entry(
        slot: &super::ServiceSlot,
    ) -> (&std::sync::Arc<str>, bool, Vec<String>) {
        let settings = slot.settings();
        let keys = if settings.more.is_empty() {
            Vec::new()
        } else {
            let rules = settings.config.limit_rules();
            rules.map(|rule| rule.window.key()).collect()
        };
        (&slot.name, !settings.config.enforce, keys)
    }

    /// The tracker's own observers, feeding the metrics as transitions and store events are
    /// delivered (outside every lock, in order).
    #[cfg(feature = "metrics")]
    pub(super) fn subscribe_metrics(&self) {
        self.observers
            .subscribe(std::sync::Arc::new(crate::metrics::transition));
        self.store_observers
            .subscribe(std::sync::Arc::new(crate::metrics::store_event));
    }
    /// Syncs with the store if there is one; `None` if there is none or the sync coalesced
    /// into one in flight. Runs with no service lock held; observers run only after the save
    /// lock is released.
    pub(super) fn save(&self, reason: SaveReason, now: u64) -> Option<Result<(), StoreError>> {
        self.save_until(reason, now, &|| false)
    }

    /// [`save`](Self::save); a flush that waited for the lock while another sync ran takes that
    /// sync's outcome once `out_of_time` says its time is up.
    pub(super) fn save_until(
        &self,
        reason: SaveReason,
        now: u64,
        out_of_time: &dyn Fn() -> bool,
    ) -> Option<Result<(), StoreError>> {
        let persistence = self.persistence.as_ref()?;
        if reason == SaveReason::Flush && SavingGuard::is_saving(self) {
            return Some(Err(StoreError::Reentrant));
        }
        let outcome = {
            let _saving = SavingGuard::enter(self);
            let books = Saving {
                tracker: self,
                now,
                return_leases: reason == SaveReason::Flush,
            };
            persistence.save(reason, now, &self.store_observers, &books, out_of_time)
        };
        // The save lock is released: deliver what the sync queued (its reads, replies, and
        // calls its store made), then its events; unless this is a sync nested in one of this
        // tracker's own, which delivers it all when it ends.
        if !SavingGuard::is_saving(self) {
            self.pump(&(0..self.slot_count()).collect::<Vec<_>>());
            persistence
                .events
                .pump(&self.store_observers, describe_store_event);
            // Every lock is released. The load's view is published when the build ends. A
            // save made from inside a report (a recorder calling back) is reported by the next.
            #[cfg(feature = "metrics")]
            if let Some(outcome) = &outcome {
                self.unreported.add(outcome.synced, outcome.failed);
                crate::metrics::report(|| {
                    self.unreported.report();
                    if reason != SaveReason::Load {
                        self.publish_gauges();
                    }
                });
            }
        }
        outcome.map(|outcome| outcome.result)
    }

    /// A new batch under all service locks (removed services' too, in position order): each
    /// service's ended windows' calls and its current window's unacknowledged calls, which
    /// become the batch's `cut`, and the calls a reconfigure detached from a window it left;
    /// it reads every current window of the services in force.
    pub(super) fn cut(&self, instance: InstanceId, now: u64, return_leases: bool) -> Cut {
        let mut deltas = Vec::new();
        let mut raises = Vec::new();
        let mut queued = Queued::default();
        let positions: Vec<usize> = (0..self.slot_count()).collect();
        let mut read = Vec::with_capacity(positions.len());
        let mut guards: Vec<SlotGuard<'_>> = self.lock_all(&positions);
        self.read_locked(&mut guards, now, &mut |slot, settings, guard| {
            guard.sync.hand_over(&mut queued);
            deltas.append(&mut guard.sync.detached);
            raises.append(&mut guard.sync.detached_raises);
            if SHARED && return_leases {
                let (back, step) = guard.give_lease_back(slot, self, now);
                queued.give_backs.extend(back);
                self.queue_transitions(slot, &step);
            }
            for at in 0..guard.limit_count() {
                let rules = settings.limit(at);
                let (state, sync) = guard.limit_mut(at);
                let key = |window: Window| slot.limit_window_key(&rules.window, window);
                for (window, calls) in sync.ended.drain(..) {
                    deltas.push(Delta {
                        window: key(window),
                        calls,
                    });
                }
                let raised = sync.raise;
                for (window, at_least) in sync.ended_raises.drain(..).chain(raised) {
                    raises.push(Raise {
                        window: key(window),
                        at_least,
                    });
                }
                if settings.removed {
                    // Nothing to read, and nothing unacknowledged: its removal detached it.
                    continue;
                }
                let window = state.window;
                if sync.unacked > 0 {
                    deltas.push(Delta {
                        window: key(window),
                        calls: sync.unacked,
                    });
                }
                sync.cut = sync.unacked;
                sync.cut_window = Some(window);
                read.push(key(window));
            }
        });
        let mut batch = SyncBatch {
            instance,
            seq: 0,
            done_below: 0,
            at_ms: now,
            deltas,
            read,
            raises,
        };
        if batch.changes() {
            (batch.seq, batch.done_below) = self.issue();
        }
        Cut { batch, queued }
    }

    /// A late answer a sync learned: releases the calls booked for it; calls the store applied
    /// or granted that the caller never got are given back (the store forfeits them if a raise
    /// was applied to their window since: see [`GiveBack::raise_count`]).
    pub(super) fn settle(&self, late: Late<'_>) -> Settled {
        let (window, booked, calls, raise_count, also) = match late {
            Late::Admit { request, admitted } => {
                let (calls, raise_count, also) = match admitted {
                    Some((raise_count, counted)) => (
                        request.count,
                        raise_count,
                        others(request.windows(), counted),
                    ),
                    None => (0, 0, Vec::new()),
                };
                (&request.window, request.count, calls, raise_count, also)
            }
            Late::Lease {
                request,
                granted,
                raise_count,
                also,
            } => {
                let also = others(request.windows(), also);
                (&request.window, request.block, granted, raise_count, also)
            }
        };
        if let Ok(position) = self.position(&window.service) {
            // Booked on every limit's ledger when asked.
            let mut guard = self.slot(position).lock(self.persistence.is_some());
            super::shared::release_asked(&mut guard, booked);
        }
        match calls {
            0 => Settled::Nothing,
            calls => {
                let mut back = self.give_back_of(window.clone(), calls, raise_count);
                back.also = also;
                Settled::GiveBack(back)
            }
        }
    }

    /// Takes in a reply: each service's cut acknowledged, `used` up to the stored total plus
    /// what was recorded since the cut (less what was given back since: `Queued::giving_back`).
    pub(super) fn take_totals(&self, batch: &SyncBatch, totals: &[u64], now: u64) {
        let reads: Vec<(&WindowKey, u64)> = batch.read.iter().zip(totals.iter().copied()).collect();
        // A cut reads a service's limits one after another: one lock acquisition for them all.
        for service in reads.chunk_by(|a, b| a.0.service == b.0.service) {
            let Ok(position) = self.position(&service[0].0.service) else {
                continue;
            };
            let slot = self.slot(position);
            let mut guard = slot.lock(self.persistence.is_some());
            let settings = slot.settings();
            for &(read, total) in service {
                // The limit counted in the read's windows (none: a reconfigure left them).
                let Some(at) =
                    (0..guard.limit_count()).find(|&at| settings.limit(at).window == read.spec)
                else {
                    continue;
                };
                let rules = settings.limit(at);
                // Calls given back since the cut: in `total` until their give-back is sent.
                let given_back = guard.sync.queued.giving_back(read);
                let (state, sync) = guard.limit_mut(at);
                // The read of this limit's window as it is now: not one of a window a
                // reconfigure left, nor one of a removed namesake.
                let ours = |window: Window| slot.limit_window_key(&rules.window, window) == *read;
                let window = state.window;
                if sync.cut_window.is_some_and(ours) {
                    sync.unacked = sync.unacked.saturating_sub(sync.cut);
                }
                // The floor is in the store once a reply acknowledges the value it holds now
                // (no call counted since the batch was cut), and no call asked of the store
                // meanwhile is still unanswered (the store may have added it before the floor,
                // which then absorbed it: the floor goes again with it on top).
                if let Some((raised, floor)) = sync.raise.filter(|_| sync.floor_asked == 0) {
                    let acknowledged = batch.raises.iter().any(|r| {
                        r.window.service == read.service
                            && r.window.spec == read.spec
                            && r.window.start_ms == raised.start_ms
                            && r.at_least == floor
                    });
                    if acknowledged {
                        sync.raise = None;
                    }
                }
                sync.cut = 0;
                sync.cut_window = None;
                if ours(window) {
                    let stored = total.saturating_sub(given_back);
                    let step = rules.observe(state, stored.saturating_add(sync.unacked), now);
                    self.queue_transitions(slot, &step);
                }
            }
        }
    }
}

/// A tracker with a store flushes when dropped (native builds): it syncs what it recorded,
/// resends what is unresolved and gives leased calls back, retrying for up to
/// [`SyncPolicy::flush_timeout_ms`](crate::SyncPolicy::flush_timeout_ms) while the store fails (so a drop may take that long); a
/// failure is logged. On wasm the page decides when to `flush`.
#[cfg(not(target_arch = "wasm32"))]
impl Drop for QuotaTracker {
    fn drop(&mut self) {
        // `flush` resends for at most `SyncPolicy::flush_timeout_ms` and logs what it leaves.
        if let Err(error) = self.flush() {
            quietly(|| log::warn!("quota: the last sync before drop failed: {error}"));
        }
    }
}

/// One save of a tracker at `now`: the tracker's [`Books`] for the save loop.
pub(super) struct Saving<'t> {
    tracker: &'t QuotaTracker,
    now: u64,
    /// A flush gives leased blocks back.
    return_leases: bool,
}

impl Books for Saving<'_> {
    fn cut(&self, instance: InstanceId) -> Cut {
        self.tracker.cut(instance, self.now, self.return_leases)
    }

    fn take_totals(&self, batch: &SyncBatch, totals: &[u64]) {
        self.tracker.take_totals(batch, totals, self.now);
    }

    fn settle(&self, late: Late<'_>) -> Settled {
        // Late answers come only with shared admission (not in the JS module).
        match SHARED {
            true => self.tracker.settle(late),
            false => Settled::Nothing,
        }
    }
}

/// A give-back's other windows: each of an operation's windows after its first, with the raise
/// count its answer gave.
fn others<'a>(
    windows: impl Iterator<Item = &'a WindowKey>,
    counted: Vec<crate::store::WindowTotal>,
) -> Vec<GiveBackWindow> {
    windows
        .skip(1)
        .zip(counted)
        .map(|(window, counted)| GiveBackWindow {
            window: window.clone(),
            raise_count: counted.raise_count,
        })
        .collect()
}
