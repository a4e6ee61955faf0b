//! The stored state of the text stores (memory, file, `localStorage`): JSON, version 2, and the
//! one `apply` that adds a sync batch to it.
//!
//! Rules, per entry (one bad entry never voids the rest):
//! - An entry that does not parse is skipped and noted ([`StoredState::skipped`]).
//! - Two entries for one window keep the larger total (two copies of one count are not two
//!   counts).
//! - Totals are capped at [`StoredState::MAX_TOTAL`] (2^62), so later additions never overflow.
//! - A service keeps its [`StoredState::WINDOWS_KEPT`] latest windows: old windows go without
//!   reading any clock, so a bogus clock reading cannot purge the current window.
//! - Exactly once, in any order (the rule of [`Store`](super::Store)): per service and
//!   instance an operations record (`ops`) keeps a low-water mark and the `seq`s applied at or
//!   above it, with their answers. A record lives until a window of its service starts
//!   [`StoredState::RECORD_GRACE_MS`] after the end of the last window it counted in (but no
//!   more than two periods after: a window from a host whose clock is far ahead does not
//!   count), or until the service's kept windows are all later than that (no clock is read); at
//!   most [`StoredState::RECORDS_KEPT`] records are kept in all, the least
//!   recently seen going first, each eviction counted ([`StoredState::evicted`]) and logged.
//! - Records of older builds (`applied`, `leases`, `admits`: the last `seq` per instance) are
//!   read and written back as they are, for those builds' instances; this build does not use
//!   them. A build before this one that rewrites the document drops `ops` (it does not know
//!   them): in a fleet of old and new builds, a resend in flight then may count twice (an
//!   over-count only; totals are never lost).
//! - Version 1 (snapshots of one tracker) is read and converted: each service's count becomes
//!   its window's total. A store converts it under its lock and writes version 2 back, so it is
//!   converted once, never re-added by every process.

use super::{InstanceId, StoreError, SyncBatch, WindowKey};
use crate::sorted::{between, Map};
use crate::window::Period;
use serde::{Deserialize, Serialize};
#[cfg(not(all(target_arch = "wasm32", feature = "js")))]
use serde_json::Value;

#[cfg(all(target_arch = "wasm32", feature = "js"))]
mod engine;

/// One window's stored total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWindow {
    /// The service's name.
    pub service: String,
    /// The service's period.
    pub period: Period,
    /// Start of the window, ms since the Unix epoch.
    pub start_ms: u64,
    /// End of the window, ms since the Unix epoch.
    pub end_ms: u64,
    /// Calls recorded in it, by every instance.
    pub total: u64,
    /// Raises applied to it (see [`GiveBack::raise_count`](super::GiveBack::raise_count)).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub raise_count: u64,
}

/// The last batch applied for one service from one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Applied {
    instance: InstanceId,
    service: String,
    seq: u64,
    /// Rises with every apply: the least recently seen instances are forgotten first.
    seen: u64,
}

/// The last lease granted to one instance for one service, and the last give-back applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    instance: InstanceId,
    service: String,
    seq: u64,
    granted: u64,
    returned_seq: u64,
    /// Rises with every change: the least recently seen instances are forgotten first.
    #[serde(default)]
    seen: u64,
}

/// The last admission answered to one instance for one service (a retry gets it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Admitted {
    instance: InstanceId,
    service: String,
    seq: u64,
    admitted: bool,
    total: u64,
    seen: u64,
}

/// What one instance's operation on one service was answered: kept so that a resend gets the
/// same answer. Written as text, as the Redis scripts write it: `1`, `a<total>/<raise_count>`,
/// `d<total>`, `g<granted>/<raise_count>`, `b<taken>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A sync's deltas, applied.
    Applied,
    /// An admission, admitted: the total after, the window's raise count then.
    Admitted { total: u64, raise_count: u64 },
    /// An admission, refused; the total seen.
    Denied(u64),
    /// A lease: the calls granted, the window's raise count then.
    Granted { granted: u64, raise_count: u64 },
    /// A give-back: the calls taken off (0: forfeited).
    GivenBack(u64),
}

impl Answer {
    fn text(self) -> String {
        match self {
            Answer::Applied => "1".into(),
            Answer::Admitted { total, raise_count } => format!("a{total}/{raise_count}"),
            Answer::Denied(total) => format!("d{total}"),
            Answer::Granted {
                granted,
                raise_count,
            } => format!("g{granted}/{raise_count}"),
            Answer::GivenBack(taken) => format!("b{taken}"),
        }
    }

    fn parse(text: &str) -> Option<Answer> {
        if text == "1" {
            return Some(Answer::Applied);
        }
        let (kind, rest) = text.split_at_checked(1)?;
        // Decimal digits by hand: `str::parse` would add its own code to the JS module.
        let number = |digits: &str| -> Option<u64> {
            if digits.is_empty() {
                return None;
            }
            digits.bytes().try_fold(0u64, |n, b| {
                let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
                n.checked_mul(10)?.checked_add(u64::from(digit))
            })
        };
        let pair = || -> Option<(u64, u64)> {
            let (first, second) = rest.split_once('/')?;
            Some((number(first)?, number(second)?))
        };
        match kind {
            "a" => pair().map(|(total, raise_count)| Answer::Admitted { total, raise_count }),
            "d" => number(rest).map(Answer::Denied),
            "g" => pair().map(|(granted, raise_count)| Answer::Granted {
                granted,
                raise_count,
            }),
            "b" => number(rest).map(Answer::GivenBack),
            _ => None,
        }
    }
}

/// One instance's operations on one service (see the module rules).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ops {
    instance: InstanceId,
    service: String,
    /// Every `seq` below this was answered and is never applied again.
    low: u64,
    /// The `seq`s applied at or above `low`, with their answers, by `seq` (a few: the
    /// instance's operations in flight; a vector, which adds no map code to the JS module).
    done: Vec<(u64, Answer)>,
    /// Kept until a window of the service starts at or after this (ms since the Unix epoch):
    /// the end of the last window counted in, plus the grace.
    until_ms: u64,
    /// Rises with every change: the least recently seen records are evicted first.
    seen: u64,
}

/// Where an operation's `seq` stands in its record.
enum Seen {
    /// Below the low-water mark: answered long ago.
    Stale,
    /// Applied already, with this answer.
    Done(Answer),
    /// Not applied yet.
    New,
}

/// What a text store holds: every service's recent windows and who synced what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    windows: Map<(String, Period, u64), StoredWindow>,
    ops: Map<(String, InstanceId), Ops>,
    /// Records evicted by the bound (information: each one may let a late resend count twice).
    evicted: u64,
    applied: Map<(String, InstanceId), Applied>,
    leases: Map<(String, InstanceId), Lease>,
    admits: Map<(String, InstanceId), Admitted>,
    /// The latest `at_ms` of a batch applied, ms since the Unix epoch (information only).
    pub updated_at_ms: u64,
    applies: u64,
    skipped: Vec<String>,
    converted: bool,
    /// A window was created since the last `forget_old`: records may have expired (they only
    /// do when a newer window starts, so the scan runs only then).
    new_window: bool,
}

/// The JSON shape, version 2.
#[cfg(not(all(target_arch = "wasm32", feature = "js")))]
#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    updated_at_ms: u64,
    windows: Vec<&'a StoredWindow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ops: Vec<OpsEntry<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    evicted: u64,
    applied: Vec<&'a Applied>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    leases: Vec<&'a Lease>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    admits: Vec<&'a Admitted>,
    applies: u64,
}

/// An operations record as JSON: `done` is a list of `[seq, answer]`.
#[cfg(not(all(target_arch = "wasm32", feature = "js")))]
#[derive(Serialize)]
struct OpsEntry<'a> {
    instance: InstanceId,
    service: &'a str,
    low: u64,
    done: Vec<(u64, String)>,
    until_ms: u64,
    seen: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StoredState {
    /// The format version this build writes.
    pub const VERSION: u32 = 2;
    /// Totals never exceed this (2^62).
    pub const MAX_TOTAL: u64 = 1 << 62;
    /// Windows kept per service and period (the latest by start).
    pub const WINDOWS_KEPT: usize = 8;
    /// Operations records kept in all (one per service and instance that sent an operation);
    /// past it the least recently seen go, down to nine tenths of it, counted in
    /// [`evicted`](Self::evicted).
    pub const RECORDS_KEPT: usize = 250_000;
    /// How long an operations record outlives the last window it counted in: a resend later
    /// than this would count again.
    pub const RECORD_GRACE_MS: u64 = 3_600_000;

    /// Nothing stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored window, by service, period and start.
    pub fn windows(&self) -> impl Iterator<Item = &StoredWindow> {
        self.windows.values()
    }

    /// The stored total of `window` (0 if none is stored).
    pub fn total(&self, window: &WindowKey) -> u64 {
        self.windows
            .get(&(window.service.clone(), window.period, window.start_ms))
            .map_or(0, |w| w.total)
    }

    /// What was skipped while parsing (one note per bad entry).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Operations records evicted by [`RECORDS_KEPT`](Self::RECORDS_KEPT) since the document
    /// was created.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// How many operations records are kept (one per service and instance).
    pub fn records(&self) -> usize {
        self.ops.len()
    }

    /// Whether this state was read from version 1 (and should be written back as version 2).
    pub fn converted(&self) -> bool {
        self.converted
    }

    /// Adds `batch`: each service's deltas unless `(batch.instance, batch.seq)` was already
    /// applied for that service (in any order: see the module rules), then each raise as a
    /// maximum; returns the totals of `batch.read`, in order.
    pub fn apply(&mut self, batch: &SyncBatch) -> Vec<u64> {
        self.applies += 1;
        self.updated_at_ms = self.updated_at_ms.max(batch.at_ms);
        // Every service the batch changes (a floor too) records the batch, with the latest
        // end of its windows in it; whether its deltas are new is decided before anything
        // changes.
        // (service, latest end, whether new): a vector searched in place, as `floors` below.
        let mut services: Vec<(&str, u64, bool)> = Vec::new();
        if batch.changes() {
            for window in batch
                .deltas
                .iter()
                .map(|d| &d.window)
                .chain(batch.raises.iter().map(|r| &r.window))
            {
                let service = window.service.as_str();
                match services.iter_mut().find(|(s, _, _)| *s == service) {
                    Some(entry) => entry.1 = entry.1.max(window.end_ms),
                    None => {
                        let seen = self.seen(service, batch.instance, batch.seq);
                        services.push((service, window.end_ms, matches!(seen, Seen::New)));
                    }
                }
            }
        }
        for delta in &batch.deltas {
            let service = delta.window.service.as_str();
            if services.iter().any(|&(s, _, fresh)| s == service && fresh) {
                let window = self.window_mut(&delta.window);
                window.total = window
                    .total
                    .saturating_add(delta.calls)
                    .min(Self::MAX_TOTAL);
            }
        }
        // Floors, after the deltas: a maximum, so a resend (whose deltas were skipped above)
        // changes no total. Each window's largest floor, counted once per batch (as the Redis
        // script does): a give-back of calls counted before it is forfeited.
        // A few per batch: a vector searched in place (a map type of its own would add code to
        // the JS module).
        let mut floors: Vec<(u64, &WindowKey)> = Vec::new();
        for raise in batch.raises.iter().filter(|r| r.at_least > 0) {
            let (window, at_least) = (&raise.window, raise.at_least.min(Self::MAX_TOTAL));
            let same = |(_, w): &&mut (u64, &WindowKey)| {
                (&w.service, w.period, w.start_ms)
                    == (&window.service, window.period, window.start_ms)
            };
            match floors.iter_mut().find(same) {
                Some(floor) => floor.0 = floor.0.max(at_least),
                None => floors.push((at_least, window)),
            }
        }
        for (at_least, key) in &floors {
            let window = self.window_mut(key);
            window.total = window.total.max(*at_least);
            window.raise_count = window.raise_count.saturating_add(1);
            self.forget_old(&key.service, None);
        }
        // Last, so that nothing this batch created forgets its own records.
        for &(service, end_ms, fresh) in &services {
            let answer = fresh.then_some(Answer::Applied);
            self.record(
                service,
                batch.instance,
                batch.seq,
                batch.done_below,
                answer,
                end_ms,
            );
        }
        batch.read.iter().map(|window| self.total(window)).collect()
    }

    /// [`Store::admit`](super::Store::admit) on this state.
    pub fn admit(&mut self, request: &super::AdmitRequest) -> super::AdmitReply {
        use super::AdmitReply::{Admitted, Denied};
        self.applies += 1;
        let window = &request.window;
        let total = self.total(window);
        let reply = match self.seen(&window.service, request.instance, request.seq) {
            // A retry whose first answer was lost: the same answer, counted once.
            Seen::Done(Answer::Admitted { total, raise_count }) => Admitted { total, raise_count },
            Seen::Done(Answer::Denied(total)) => Denied { total },
            // Answered long ago (or a number reused for another kind): nothing added.
            Seen::Stale | Seen::Done(_) => Denied { total },
            Seen::New => {
                let reply = match admit_rule(total, request) {
                    Some(after) => {
                        let stored = self.window_mut(window);
                        stored.total = after.min(Self::MAX_TOTAL);
                        Admitted {
                            total: stored.total,
                            raise_count: stored.raise_count,
                        }
                    }
                    None => Denied { total },
                };
                let answer = match reply {
                    Admitted { total, raise_count } => Answer::Admitted { total, raise_count },
                    Denied { total } => Answer::Denied(total),
                };
                self.record(
                    &window.service,
                    request.instance,
                    request.seq,
                    request.done_below,
                    Some(answer),
                    window.end_ms,
                );
                return reply;
            }
        };
        self.record(
            &window.service,
            request.instance,
            request.seq,
            request.done_below,
            None,
            window.end_ms,
        );
        reply
    }

    /// [`Store::lease`](super::Store::lease) on this state.
    pub fn lease(&mut self, request: &super::LeaseRequest) -> super::LeaseReply {
        self.applies += 1;
        let window = &request.window;
        let raise_count_now = self.raise_count(window);
        let (granted, raise_count, answer) =
            match self.seen(&window.service, request.instance, request.seq) {
                Seen::Done(Answer::Granted {
                    granted,
                    raise_count,
                }) => (granted, raise_count, None),
                Seen::Stale | Seen::Done(_) => (0, raise_count_now, None),
                Seen::New => {
                    let total = self.total(window);
                    // Never more than the total can count (it stops at MAX_TOTAL).
                    let granted = request
                        .block
                        .min(request.ceiling.saturating_sub(total))
                        .min(Self::MAX_TOTAL.saturating_sub(total));
                    if granted > 0 {
                        let stored = self.window_mut(window);
                        stored.total = stored.total.saturating_add(granted).min(Self::MAX_TOTAL);
                    }
                    let answer = Answer::Granted {
                        granted,
                        raise_count: raise_count_now,
                    };
                    (granted, raise_count_now, Some(answer))
                }
            };
        self.record(
            &window.service,
            request.instance,
            request.seq,
            request.done_below,
            answer,
            window.end_ms,
        );
        super::LeaseReply {
            granted,
            total: self.total(window),
            raise_count,
        }
    }

    /// [`Store::give_back`](super::Store::give_back) on this state: the calls taken off.
    pub fn give_back(&mut self, request: &super::GiveBack) -> u64 {
        self.applies += 1;
        let window = &request.window;
        let (taken, answer) = match self.seen(&window.service, request.instance, request.seq) {
            Seen::Done(Answer::GivenBack(taken)) => (taken, None),
            Seen::Stale | Seen::Done(_) => (0, None),
            Seen::New => {
                // Raised since the calls were counted: the floor may have absorbed them.
                let raised = self.raise_count(window) != request.raise_count;
                let taken = match request.unused.min(self.total(window)) {
                    0 => 0,
                    _ if raised => 0,
                    taken => {
                        self.window_mut(window).total -= taken;
                        taken
                    }
                };
                (taken, Some(Answer::GivenBack(taken)))
            }
        };
        self.record(
            &window.service,
            request.instance,
            request.seq,
            request.done_below,
            answer,
            window.end_ms,
        );
        taken
    }

    /// The raise count of `window` (0 if none is stored).
    fn raise_count(&self, window: &WindowKey) -> u64 {
        self.windows
            .get(&(window.service.clone(), window.period, window.start_ms))
            .map_or(0, |w| w.raise_count)
    }

    /// Where `seq` stands in the record of `instance` on `service`.
    fn seen(&self, service: &str, instance: InstanceId, seq: u64) -> Seen {
        let Some(ops) = self.ops.get(&(service.to_owned(), instance)) else {
            return Seen::New;
        };
        if seq < ops.low {
            return Seen::Stale;
        }
        match ops.done.iter().find(|(done, _)| *done == seq) {
            Some(&(_, answer)) => Seen::Done(answer),
            None => Seen::New,
        }
    }

    /// Forgets what is old, then updates the record of `instance` on `service` after an
    /// operation: its answer (if it was applied now), the low-water mark, how long it lives.
    fn record(
        &mut self,
        service: &str,
        instance: InstanceId,
        seq: u64,
        done_below: u64,
        answer: Option<Answer>,
        end_ms: u64,
    ) {
        // What is old goes first, but not this record: the operation was judged by it (a late
        // operation for a long-ended window keeps it until the next window starts; a resend
        // comes soon after a lost reply).
        self.forget_old(service, Some(instance));
        let seen = self.applies;
        let until_ms = end_ms.saturating_add(Self::RECORD_GRACE_MS);
        let ops = self
            .ops
            .entry((service.to_owned(), instance))
            .or_insert_with(|| Ops {
                instance,
                service: service.to_owned(),
                low: 0,
                done: Vec::new(),
                until_ms,
                seen,
            });
        if let Some(answer) = answer {
            add_done(&mut ops.done, seq, answer);
        }
        if done_below > ops.low {
            ops.low = done_below;
            let low = ops.low;
            ops.done.retain(|&(seq, _)| seq >= low);
        }
        ops.until_ms = ops.until_ms.max(until_ms);
        ops.seen = seen;
    }

    fn window_mut(&mut self, key: &WindowKey) -> &mut StoredWindow {
        let new_window = &mut self.new_window;
        self.windows
            .entry((key.service.clone(), key.period, key.start_ms))
            .or_insert_with(|| {
                *new_window = true;
                StoredWindow {
                    service: key.service.clone(),
                    period: key.period,
                    start_ms: key.start_ms,
                    end_ms: key.end_ms,
                    total: 0,
                    raise_count: 0,
                }
            })
    }

    /// Keeps the service's latest windows and the records that may still see a resend (and
    /// `keep`'s, whose operation is being recorded); keeps at most
    /// [`RECORDS_KEPT`](Self::RECORDS_KEPT) records in all.
    fn forget_old(&mut self, service: &str, keep: Option<InstanceId>) {
        for period in Period::ALL {
            let first = (service.to_owned(), period, 0);
            let last = (service.to_owned(), period, u64::MAX);
            let starts: Vec<u64> = between(&self.windows, &first, &last)
                .map(|((_, _, start), _)| *start)
                .collect();
            for start in starts
                .iter()
                .take(starts.len().saturating_sub(Self::WINDOWS_KEPT))
            {
                self.windows.remove(&(service.to_owned(), period, *start));
            }
        }
        // Records expire only when a window starts (so the scan runs only then).
        if !std::mem::take(&mut self.new_window) {
            self.evict_over_bound();
            return;
        }
        let first = (service.to_owned(), InstanceId::from_u128(0));
        let last = (service.to_owned(), InstanceId::from_u128(u128::MAX));
        let expired: Vec<(String, InstanceId)> = between(&self.ops, &first, &last)
            .filter(|(_, ops)| Some(ops.instance) != keep && self.outlived(service, ops.until_ms))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.ops.remove(&key);
        }
        self.evict_over_bound();
    }

    /// Whether a record kept until `until_ms` sees no more resends: a window of the service
    /// started at or after it, no later than two periods and a grace after it (time moved on;
    /// a window further off, from a host whose clock is far ahead, does not count), or the
    /// service keeps [`WINDOWS_KEPT`](Self::WINDOWS_KEPT) windows of a period, all after it
    /// (its windows are gone: a resend would only add to a window forgotten again).
    fn outlived(&self, service: &str, until_ms: u64) -> bool {
        if until_ms == u64::MAX {
            // A window ending at the end of time (a bogus clock): kept until evicted.
            return false;
        }
        Period::ALL.iter().any(|&period| {
            let horizon = period
                .max_ms()
                .saturating_mul(2)
                .saturating_add(Self::RECORD_GRACE_MS);
            let first = (service.to_owned(), period, until_ms);
            let last = (service.to_owned(), period, until_ms.saturating_add(horizon));
            if between(&self.windows, &first, &last).next().is_some() {
                return true;
            }
            let all = (service.to_owned(), period, 0);
            let end = (service.to_owned(), period, u64::MAX);
            let mut windows = between(&self.windows, &all, &end).peekable();
            windows
                .peek()
                .is_some_and(|((_, _, start), _)| *start >= until_ms)
                && between(&self.windows, &all, &end).count() >= Self::WINDOWS_KEPT
        })
    }

    /// Past [`RECORDS_KEPT`](Self::RECORDS_KEPT) records, evicts the least recently seen down
    /// to nine tenths of it (so the sort runs once per many operations), counts and logs it.
    fn evict_over_bound(&mut self) {
        if self.ops.len() <= Self::RECORDS_KEPT {
            return;
        }
        // The least `seen` that keeps at most nine tenths: searched by counting, not by sorting
        // (a sort of these keys would add its own code to the JS module).
        let keep = Self::RECORDS_KEPT / 10 * 9;
        let older = |cutoff: u64| self.ops.values().filter(|ops| ops.seen < cutoff).count();
        let (mut low, mut high) = (0, self.applies.saturating_add(1));
        while low < high {
            let mid = low + (high - low) / 2;
            if self.ops.len() - older(mid) <= keep {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        let before = self.ops.len();
        self.ops.retain(|_, ops| ops.seen >= low);
        let gone = before - self.ops.len();
        self.evicted = self.evicted.saturating_add(gone as u64);
        crate::observers::quietly(|| {
            log::warn!(
                "quota: the store kept more than {} operations records; evicted the {gone} least \
                 recently seen (a resend of theirs would count again)",
                Self::RECORDS_KEPT
            )
        });
    }

    /// The state as JSON text, version 2.
    ///
    /// In the JS module (wasm32 with feature `js`) the JS engine's `JSON.stringify` writes it,
    /// so the module carries no JSON writer: numbers above `Number.MAX_SAFE_INTEGER` (2^53 - 1)
    /// are then written rounded, as the JS API reports counts anyway.
    pub fn to_json(&self) -> String {
        #[cfg(all(target_arch = "wasm32", feature = "js"))]
        {
            engine::to_json(self)
        }
        #[cfg(not(all(target_arch = "wasm32", feature = "js")))]
        {
            let document = Document {
                version: Self::VERSION,
                updated_at_ms: self.updated_at_ms,
                windows: self.windows.values().collect(),
                ops: self
                    .ops
                    .values()
                    .map(|ops| OpsEntry {
                        instance: ops.instance,
                        service: &ops.service,
                        low: ops.low,
                        done: ops.done.iter().map(|&(seq, a)| (seq, a.text())).collect(),
                        until_ms: ops.until_ms,
                        seen: ops.seen,
                    })
                    .collect(),
                evicted: self.evicted,
                applied: self.applied.values().collect(),
                leases: self.leases.values().collect(),
                admits: self.admits.values().collect(),
                applies: self.applies,
            };
            // Plain structs of strings, numbers and enums always serialize.
            serde_json::to_string_pretty(&document).unwrap_or_default()
        }
    }

    /// Parses JSON text, version 2 or 1, entry by entry (see the module rules). Text that is
    /// not a JSON object with a known `"version"` is [`StoreError::Corrupt`] with the reason.
    ///
    /// In the JS module (wasm32 with feature `js`) the JS engine's `JSON.parse` reads it, so the
    /// module carries no JSON parser: a number above `Number.MAX_SAFE_INTEGER` (2^53 - 1) is
    /// then read as the nearest JS number, as the JS API reports counts anyway.
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        if text.trim().is_empty() {
            return Err(StoreError::Corrupt("empty data".into()));
        }
        #[cfg(all(target_arch = "wasm32", feature = "js"))]
        let value = engine::parse(text)?;
        #[cfg(not(all(target_arch = "wasm32", feature = "js")))]
        let value = &serde_json::from_str::<Value>(text)
            .map_err(|error| StoreError::Corrupt(format!("not valid JSON: {error}")))?;
        Self::read(&value)
    }

    /// The state of a parsed document (see [`from_json`](Self::from_json)).
    fn read<J: Json>(value: &J) -> Result<Self, StoreError> {
        if !value.is_object() {
            return Err(StoreError::Corrupt("not a JSON object".into()));
        }
        let mut state = StoredState::new();
        match value.field("version").and_then(|version| version.as_u64()) {
            Some(2) => state.read_v2(value),
            Some(1) => state.read_v1(value),
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "unsupported version {other} (this build reads versions 1 and 2)"
                )))
            }
            None => return Err(StoreError::Corrupt("no numeric \"version\" field".into())),
        }
        Ok(state)
    }

    fn entries<J: Json>(object: &J, field: &str, skipped: &mut Vec<String>) -> Vec<J> {
        match object.field(field) {
            None => Vec::new(),
            Some(value) => value.items().unwrap_or_else(|| {
                skipped.push(format!("\"{field}\" is not an array"));
                Vec::new()
            }),
        }
    }

    fn read_v2<J: Json>(&mut self, object: &J) {
        self.updated_at_ms = object.number("updated_at_ms").unwrap_or(0);
        self.applies = object.number("applies").unwrap_or(0);
        let mut skipped = Vec::new();
        for (index, entry) in Self::entries(object, "windows", &mut skipped)
            .iter()
            .enumerate()
        {
            match window_entry(entry) {
                Ok(window) => self.add_window(window),
                Err(error) => skipped.push(format!("windows[{index}]: {error}")),
            }
        }
        self.evicted = object.number("evicted").unwrap_or(0);
        for (index, entry) in Self::entries(object, "ops", &mut skipped)
            .iter()
            .enumerate()
        {
            match ops_entry(entry) {
                Ok(ops) => {
                    self.applies = self.applies.max(ops.seen);
                    self.ops.insert((ops.service.clone(), ops.instance), ops);
                }
                Err(error) => skipped.push(format!("ops[{index}]: {error}")),
            }
        }
        for (index, entry) in Self::entries(object, "applied", &mut skipped)
            .iter()
            .enumerate()
        {
            match applied_entry(entry) {
                Ok(applied) => {
                    self.applies = self.applies.max(applied.seen);
                    let key = (applied.service.clone(), applied.instance);
                    let keep = self
                        .applied
                        .get(&key)
                        .is_none_or(|existing| existing.seq < applied.seq);
                    if keep {
                        self.applied.insert(key, applied);
                    }
                }
                Err(error) => skipped.push(format!("applied[{index}]: {error}")),
            }
        }
        for (index, entry) in Self::entries(object, "admits", &mut skipped)
            .iter()
            .enumerate()
        {
            match admitted_entry(entry) {
                Ok(admitted) => {
                    self.applies = self.applies.max(admitted.seen);
                    self.admits
                        .insert((admitted.service.clone(), admitted.instance), admitted);
                }
                Err(error) => skipped.push(format!("admits[{index}]: {error}")),
            }
        }
        for (index, entry) in Self::entries(object, "leases", &mut skipped)
            .iter()
            .enumerate()
        {
            match lease_entry(entry) {
                Ok(lease) => {
                    self.leases
                        .insert((lease.service.clone(), lease.instance), lease);
                }
                Err(error) => skipped.push(format!("leases[{index}]: {error}")),
            }
        }
        self.skipped = skipped;
    }

    /// Version 1: `{ "version": 1, "services": [{ "name", "used", "window_start_ms",
    /// "config": { "period", ... }, "previous"?: { "window_start_ms", "used" } }] }`.
    fn read_v1<J: Json>(&mut self, object: &J) {
        self.converted = true;
        self.updated_at_ms = object.number("updated_at_ms").unwrap_or(0);
        let mut skipped = Vec::new();
        for (index, entry) in Self::entries(object, "services", &mut skipped)
            .iter()
            .enumerate()
        {
            match v1_windows(entry) {
                Ok(windows) => windows.into_iter().for_each(|w| self.add_window(w)),
                Err(reason) => skipped.push(format!("services[{index}]: {reason}")),
            }
        }
        self.skipped = skipped;
    }

    fn add_window(&mut self, mut window: StoredWindow) {
        window.total = window.total.min(Self::MAX_TOTAL);
        let key = (window.service.clone(), window.period, window.start_ms);
        match self.windows.get_mut(&key) {
            Some(existing) => {
                existing.total = existing.total.max(window.total);
                existing.raise_count = existing.raise_count.max(window.raise_count);
            }
            None => {
                self.windows.insert(key, window);
            }
        }
    }
}

/// The [`Store::admit`](super::Store::admit) rule on a stored `total`: the total after, if
/// admitted.
pub(crate) fn admit_rule(total: u64, request: &super::AdmitRequest) -> Option<u64> {
    let after = total.checked_add(request.count)?;
    (request.force || (total < request.below && after <= request.cap)).then_some(after)
}

/// A parsed JSON document, read: serde_json's [`Value`], or in the JS module the JS engine's
/// own `JSON.parse` result ([`engine`]), so that one reader serves both.
trait Json: Sized {
    /// The field `name` of an object (`None` if this is no object or has no such field).
    fn field(&self, name: &str) -> Option<Self>;
    /// A whole number from 0 to `u64::MAX` (`None` for anything else).
    fn as_u64(&self) -> Option<u64>;
    fn as_text(&self) -> Option<String>;
    fn as_bool(&self) -> Option<bool>;
    /// An array's items (`None` if this is no array).
    fn items(&self) -> Option<Vec<Self>>;
    fn is_object(&self) -> bool;
    fn is_null(&self) -> bool;

    /// The whole-number field `name`.
    fn number(&self, name: &str) -> Option<u64> {
        self.field(name)?.as_u64()
    }
}

#[cfg(not(all(target_arch = "wasm32", feature = "js")))]
impl Json for &Value {
    fn field(&self, name: &str) -> Option<Self> {
        self.get(name)
    }
    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_text(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }
    fn as_bool(&self) -> Option<bool> {
        Value::as_bool(self)
    }
    fn items(&self) -> Option<Vec<Self>> {
        self.as_array().map(|items| items.iter().collect())
    }
    fn is_object(&self) -> bool {
        Value::is_object(self)
    }
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
}

/// The whole-number field `name` of `entry`, or why not.
fn number<J: Json>(entry: &J, name: &str) -> Result<u64, String> {
    entry
        .number(name)
        .ok_or_else(|| format!("\"{name}\" is not a whole number"))
}

/// The text field `name` of `entry`, or why not.
fn text<J: Json>(entry: &J, name: &str) -> Result<String, String> {
    entry
        .field(name)
        .and_then(|value| value.as_text())
        .ok_or_else(|| format!("\"{name}\" is not a string"))
}

fn period<J: Json>(entry: &J, name: &str) -> Result<Period, String> {
    text(entry, name)?
        .parse()
        .map_err(|error: crate::window::UnknownPeriod| error.to_string())
}

fn instance<J: Json>(entry: &J) -> Result<InstanceId, String> {
    InstanceId::try_from(text(entry, "instance")?)
}

fn window_entry<J: Json>(entry: &J) -> Result<StoredWindow, String> {
    Ok(StoredWindow {
        service: text(entry, "service")?,
        period: period(entry, "period")?,
        start_ms: number(entry, "start_ms")?,
        end_ms: number(entry, "end_ms")?,
        total: number(entry, "total")?,
        // Written since give-backs check raise_count; older documents have none.
        raise_count: match entry.field("raise_count") {
            None => 0,
            Some(_) => number(entry, "raise_count")?,
        },
    })
}

/// Puts `seq`'s answer in `done`, kept in `seq` order (a second answer for a `seq` replaces the
/// first).
fn add_done(done: &mut Vec<(u64, Answer)>, seq: u64, answer: Answer) {
    let at = done.partition_point(|(other, _)| *other < seq);
    match done.get_mut(at) {
        Some(entry) if entry.0 == seq => entry.1 = answer,
        _ => done.insert(at, (seq, answer)),
    }
}

fn ops_entry<J: Json>(entry: &J) -> Result<Ops, String> {
    let mut done = Vec::new();
    let items = entry
        .field("done")
        .and_then(|done| done.items())
        .ok_or("\"done\" is not an array")?;
    for item in items {
        let pair = item.items().unwrap_or_default();
        let parsed = match pair.as_slice() {
            [seq, answer] => seq
                .as_u64()
                .zip(answer.as_text().as_deref().and_then(Answer::parse)),
            _ => None,
        };
        let (seq, answer) = parsed.ok_or("\"done\" holds an entry that is not [seq, answer]")?;
        add_done(&mut done, seq, answer);
    }
    Ok(Ops {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        low: number(entry, "low")?,
        done,
        until_ms: number(entry, "until_ms")?,
        seen: number(entry, "seen")?,
    })
}

fn applied_entry<J: Json>(entry: &J) -> Result<Applied, String> {
    Ok(Applied {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        seq: number(entry, "seq")?,
        seen: number(entry, "seen")?,
    })
}

fn lease_entry<J: Json>(entry: &J) -> Result<Lease, String> {
    Ok(Lease {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        seq: number(entry, "seq")?,
        granted: number(entry, "granted")?,
        returned_seq: number(entry, "returned_seq")?,
        // Written since leases could be forgotten; older documents have none.
        seen: match entry.field("seen") {
            None => 0,
            Some(_) => number(entry, "seen")?,
        },
    })
}

fn admitted_entry<J: Json>(entry: &J) -> Result<Admitted, String> {
    Ok(Admitted {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        seq: number(entry, "seq")?,
        admitted: entry
            .field("admitted")
            .and_then(|value| value.as_bool())
            .ok_or("\"admitted\" is not a boolean")?,
        total: number(entry, "total")?,
        seen: number(entry, "seen")?,
    })
}

/// The windows of one version 1 service entry.
fn v1_windows<J: Json>(entry: &J) -> Result<Vec<StoredWindow>, String> {
    let service = text(entry, "name")?;
    let period: Period = entry
        .field("config")
        .and_then(|config| config.field("period"))
        .and_then(|period| period.as_text())
        .ok_or("\"config.period\" is missing")?
        .parse()
        .map_err(|error: crate::window::UnknownPeriod| error.to_string())?;
    let mut windows = Vec::new();
    let mut push = |start_ms: u64, total: u64| {
        let window = period.window_at(start_ms);
        windows.push(StoredWindow {
            service: service.clone(),
            period,
            start_ms,
            end_ms: window.reset_at_ms,
            total,
            raise_count: 0,
        });
    };
    push(number(entry, "window_start_ms")?, number(entry, "used")?);
    if let Some(previous) = entry.field("previous").filter(|p| !p.is_null()) {
        let field = |name| {
            number(&previous, name)
                .map_err(|_| format!("\"previous.{name}\" is not a whole number"))
        };
        push(field("window_start_ms")?, field("used")?);
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Delta;

    /// A version 2 document with every kind of entry, as serde_json writes it. The JS module
    /// (`engine`) must read and write it the same: see `tests/tests/suite/document.rs`.
    const FIXTURE: &str = include_str!("document/fixture_v2.json");

    #[test]
    fn the_fixture_reads_and_writes_back_byte_for_byte() {
        let state = StoredState::from_json(FIXTURE).unwrap();
        assert!(state.skipped().is_empty(), "{:?}", state.skipped());
        assert_eq!(state.to_json(), FIXTURE.trim_end());
        assert_eq!(state.windows().count(), 3);
        assert_eq!(
            state.total(&key("search", 1_709_164_800_000)),
            (1 << 53) - 1
        );
    }

    fn key(service: &str, start_ms: u64) -> WindowKey {
        WindowKey {
            service: service.into(),
            period: Period::Day,
            start_ms,
            end_ms: start_ms + 86_400_000,
        }
    }

    fn batch(instance: u128, seq: u64, deltas: &[(&str, u64, u64)]) -> SyncBatch {
        SyncBatch {
            instance: InstanceId::from_u128(instance),
            seq,
            done_below: 0,
            at_ms: 0,
            deltas: deltas
                .iter()
                .map(|&(service, start, calls)| Delta {
                    window: key(service, start),
                    calls,
                })
                .collect(),
            read: vec![key("a", 0), key("b", 0)],
            raises: Vec::new(),
        }
    }

    #[test]
    fn deltas_add_up_across_instances_and_a_retry_counts_once() {
        let mut state = StoredState::new();
        assert_eq!(state.apply(&batch(1, 1, &[("a", 0, 5)])), [5, 0]);
        assert_eq!(
            state.apply(&batch(2, 1, &[("a", 0, 3), ("b", 0, 1)])),
            [8, 1]
        );
        // Instance 1 retries seq 1 (its reply was lost): applied once.
        assert_eq!(state.apply(&batch(1, 1, &[("a", 0, 5)])), [8, 1]);
        assert_eq!(state.apply(&batch(1, 2, &[("a", 0, 1)])), [9, 1]);
        // A round trip through JSON keeps totals and the dedup records.
        let mut again = StoredState::from_json(&state.to_json()).unwrap();
        assert_eq!(again.apply(&batch(2, 1, &[("a", 0, 3)])), [9, 1]);
    }

    fn admit(instance: u128, seq: u64, done_below: u64, count: u64) -> super::super::AdmitRequest {
        super::super::AdmitRequest {
            instance: InstanceId::from_u128(instance),
            seq,
            done_below,
            window: key("a", 0),
            count,
            below: 100,
            cap: 100,
            force: false,
        }
    }

    #[test]
    fn every_kind_of_operation_counts_once_in_any_order() {
        use super::super::{AdmitReply, GiveBack, LeaseRequest};
        let mut state = StoredState::new();
        // Admissions 1 and 2 answered; 1 resent after 2 landed (the old bug: counted 3).
        assert_eq!(
            state.admit(&admit(1, 1, 1, 1)),
            AdmitReply::Admitted {
                total: 1,
                raise_count: 0
            }
        );
        assert_eq!(
            state.admit(&admit(1, 2, 1, 1)),
            AdmitReply::Admitted {
                total: 2,
                raise_count: 0
            }
        );
        assert_eq!(
            state.admit(&admit(1, 1, 1, 1)),
            AdmitReply::Admitted {
                total: 1,
                raise_count: 0
            }
        );
        assert_eq!(state.total(&key("a", 0)), 2);
        // A sync batch resent after a newer admission.
        let mut sync = batch(1, 3, &[("a", 0, 5)]);
        sync.done_below = 1;
        assert_eq!(state.apply(&sync)[0], 7);
        assert_eq!(
            state.admit(&admit(1, 4, 1, 1)),
            AdmitReply::Admitted {
                total: 8,
                raise_count: 0
            }
        );
        assert_eq!(state.apply(&sync)[0], 8);
        // A lease resent after a newer one gets its own grant again, not 0, and adds nothing.
        let lease = |seq, block| LeaseRequest {
            instance: InstanceId::from_u128(1),
            seq,
            done_below: 1,
            window: key("a", 0),
            block,
            ceiling: 100,
        };
        assert_eq!(state.lease(&lease(5, 10)).granted, 10);
        assert_eq!(state.lease(&lease(6, 10)).granted, 10);
        assert_eq!(state.lease(&lease(5, 10)).granted, 10);
        assert_eq!(state.total(&key("a", 0)), 28);
        // A give-back resent after a newer one takes nothing twice.
        let back = |seq| GiveBack {
            instance: InstanceId::from_u128(1),
            seq,
            done_below: 1,
            window: key("a", 0),
            unused: 3,
            raise_count: 0,
        };
        state.give_back(&back(7));
        state.give_back(&back(8));
        state.give_back(&back(7));
        assert_eq!(state.total(&key("a", 0)), 22);
        // The record survives JSON: the resends still count once.
        let mut state = StoredState::from_json(&state.to_json()).unwrap();
        state.give_back(&back(8));
        assert_eq!(state.lease(&lease(6, 10)).granted, 10);
        assert_eq!(
            state.admit(&admit(1, 2, 1, 1)),
            AdmitReply::Admitted {
                total: 2,
                raise_count: 0
            }
        );
        assert_eq!(state.total(&key("a", 0)), 22);
        // done_below 9: everything below is forgotten, and a stale copy changes nothing.
        assert_eq!(
            state.admit(&admit(1, 9, 9, 1)),
            AdmitReply::Admitted {
                total: 23,
                raise_count: 0
            }
        );
        assert_eq!(
            state.admit(&admit(1, 4, 1, 1)),
            AdmitReply::Denied { total: 23 }
        );
        assert_eq!(state.lease(&lease(5, 10)).granted, 0);
        state.give_back(&back(7));
        assert_eq!(state.total(&key("a", 0)), 23);
        let text = state.to_json();
        assert!(text.contains("\"low\": 9"), "{text}");
        assert!(
            !text.contains("\"a1\""),
            "answers below low are forgotten: {text}"
        );
    }

    #[test]
    fn thousands_of_instances_keep_their_records_while_their_window_lives() {
        let mut state = StoredState::new();
        for instance in 1..=3_000 {
            state.apply(&batch(instance, 1, &[("a", 0, 1)]));
        }
        // Instance 1's resend, 2,999 instances later: counted once.
        state.apply(&batch(1, 1, &[("a", 0, 1)]));
        assert_eq!(state.total(&key("a", 0)), 3_000);
        assert_eq!(state.records(), 3_000);
        // The next day is within the grace of this one's end; the day after is not.
        state.apply(&batch(1, 2, &[("a", 86_400_000, 1)]));
        assert_eq!(state.records(), 3_000);
        state.apply(&batch(2, 2, &[("a", 2 * 86_400_000, 1)]));
        assert_eq!(
            state.records(),
            2,
            "instances 1 and 2 counted in a later window"
        );
        assert_eq!(state.evicted(), 0);
    }

    #[test]
    fn a_window_from_a_clock_far_ahead_forgets_no_record() {
        let mut state = StoredState::new();
        state.apply(&batch(1, 1, &[("a", 0, 5)]));
        // A host whose clock says 2100 syncs once.
        state.apply(&batch(2, 1, &[("a", 4_102_444_800_000, 1)]));
        // Instance 1's resend (its reply was lost) still counts once.
        state.apply(&batch(1, 1, &[("a", 0, 5)]));
        assert_eq!(state.total(&key("a", 0)), 5);
        assert_eq!(state.records(), 2);
    }

    #[test]
    fn answers_read_back_as_written() {
        for answer in [
            Answer::Applied,
            Answer::Admitted {
                total: 0,
                raise_count: 3,
            },
            Answer::Denied(41),
            Answer::Granted {
                granted: u64::MAX,
                raise_count: 0,
            },
            Answer::GivenBack(7),
        ] {
            assert_eq!(Answer::parse(&answer.text()), Some(answer));
        }
        for bad in [
            "",
            "a",
            "a1",
            "x1",
            "a-1/0",
            "a1.5/0",
            "g18446744073709551616/0",
            "2",
            "b",
            "d1/2",
        ] {
            assert_eq!(Answer::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_raise_keeps_the_larger_total_and_a_resend_changes_nothing() {
        let mut state = StoredState::new();
        state.apply(&batch(1, 1, &[("a", 0, 5)]));
        // Instance 2 adds 3 and reports a floor of 20 seen at the provider.
        let mut raising = batch(2, 1, &[("a", 0, 3)]);
        raising.raises.push(super::super::Raise {
            window: key("a", 0),
            at_least: 20,
        });
        assert_eq!(state.apply(&raising), [20, 0], "max(5 + 3, 20)");
        // The same batch again (its reply was lost): deltas skipped, the floor holds as is.
        assert_eq!(state.apply(&raising), [20, 0]);
        // A floor below the total changes nothing; deltas after it add on top.
        raising.seq = 2;
        raising.raises[0].at_least = 4;
        assert_eq!(state.apply(&raising), [23, 0]);
        // A floor past the cap is capped.
        raising.seq = 3;
        raising.deltas.clear();
        raising.raises[0].at_least = u64::MAX;
        assert_eq!(state.apply(&raising)[0], StoredState::MAX_TOTAL);
    }

    #[test]
    fn a_delta_for_an_ended_window_goes_to_that_window() {
        let mut state = StoredState::new();
        state.apply(&batch(1, 1, &[("a", 86_400_000, 2), ("a", 0, 7)]));
        assert_eq!(state.total(&key("a", 0)), 7);
        assert_eq!(state.total(&key("a", 86_400_000)), 2);
    }

    #[test]
    fn bad_entries_are_skipped_one_by_one() {
        let text = r#"{"version": 2, "windows": [
            {"service": "a", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 30},
            {"service": "a", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 30},
            {"service": "b", "period": "weekly", "start_ms": 0, "end_ms": 1, "total": 1},
            {"service": "c", "period": "day", "start_ms": 0, "end_ms": 86400000,
             "total": 18446744073709551615}
        ]}"#;
        let state = StoredState::from_json(text).unwrap();
        assert_eq!(
            state.total(&key("a", 0)),
            30,
            "duplicates keep the larger, not the sum"
        );
        assert_eq!(state.total(&key("c", 0)), StoredState::MAX_TOTAL);
        assert_eq!(state.skipped().len(), 1, "{:?}", state.skipped());
        for bad in ["", "nope", "[]", r#"{"windows": []}"#, r#"{"version": 9}"#] {
            assert!(matches!(
                StoredState::from_json(bad),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn version_1_is_converted_entry_by_entry() {
        let text = r#"{"version": 1, "updated_at_ms": 5, "services": [
            {"name": "a", "used": 30, "window_start_ms": 0,
             "config": {"name": "a", "limit": 100, "period": "day",
                        "warn_threshold": 0.5, "critical_threshold": 0.8,
                        "reserve_fraction": 0.1}},
            {"name": "z", "used": 1, "window_start_ms": 0, "config": {"limit": 0, "period": "day"}},
            {"name": "bad", "used": -1, "window_start_ms": 0, "config": {"period": "day"}}
        ]}"#;
        let state = StoredState::from_json(text).unwrap();
        assert!(state.converted());
        assert_eq!(state.total(&key("a", 0)), 30);
        assert_eq!(
            state.total(&key("z", 0)),
            1,
            "a config v2 does not need is not checked"
        );
        assert_eq!(state.skipped().len(), 1);
    }

    #[test]
    fn old_windows_go_by_count_not_by_clock() {
        let mut state = StoredState::new();
        for day in 0..20u64 {
            state.apply(&batch(1, day + 1, &[("a", day * 86_400_000, 1)]));
        }
        assert_eq!(state.windows().count(), StoredState::WINDOWS_KEPT);
        assert_eq!(state.total(&key("a", 19 * 86_400_000)), 1);
        // A bogus far-future window pushes out only the oldest.
        state.apply(&batch(1, 100, &[("a", u64::MAX / 2, 1)]));
        assert_eq!(state.total(&key("a", 19 * 86_400_000)), 1);
    }
}
