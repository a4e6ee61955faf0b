//! The stored state of the text stores (memory, file, `localStorage`): JSON, version 2, and the
//! one `apply` that adds a sync batch to it.
//!
//! Rules, per entry (one bad entry never voids the rest):
//! - An entry that does not parse is skipped and noted ([`StoredState::skipped`]).
//! - Two entries for one window keep the larger total (two copies of one count are not two
//!   counts).
//! - Totals are capped at [`StoredState::MAX_TOTAL`] (2^62), so later additions never overflow.
//! - A service keeps its [`StoredState::WINDOWS_KEPT`] latest windows of each window spec: old windows go without
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
//! - A store that never applies a sync without answering it (`LocalStorageStore`: one
//!   synchronous read-add-write in the page's one thread) keeps no records at all:
//!   [`StoredState::apply_counts`] counts every delta, [`StoredState::from_json_counts`] reads
//!   a document's windows only and [`StoredState::to_json_counts`] writes them (records another
//!   store wrote are dropped, their counts kept).
//! - Version 1 (snapshots of one tracker) is read and converted: each service's count becomes
//!   its window's total. A store converts it under its lock and writes version 2 back, so it is
//!   converted once, never re-added by every process.

#[cfg(target_arch = "wasm32")]
mod engine;
mod expiry;
mod json;
mod records;
#[cfg(test)]
mod tests;

use self::records::{Answer, Ops, Seen};
use super::{InstanceId, SyncBatch, WindowKey};
use crate::sorted::Map;
use crate::window::WindowSpec;
use serde::{Deserialize, Serialize};

/// One window's stored total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWindow {
    /// The service's name.
    pub service: String,
    /// The service's window spec, stored as its key (`"day"`, `"day@America/Los_Angeles"`)
    /// under the name `period` (the key of a plain period is its word, as before).
    #[serde(rename = "period", with = "spec_key")]
    pub spec: WindowSpec,
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

/// What a text store holds: every service's recent windows and who synced what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// By service, window spec key ([`WindowSpec::key`]: plain ASCII, so `"~"` sorts after
    /// every key) and start.
    windows: Map<(String, String, u64), StoredWindow>,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StoredState {
    /// The format version this build writes.
    pub const VERSION: u32 = 2;
    /// Totals never exceed this (2^62).
    pub const MAX_TOTAL: u64 = 1 << 62;
    /// Windows kept per service and window spec (the latest by start).
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
            .get(&(window.service.clone(), window.spec.key(), window.start_ms))
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
                self.add(&delta.window, delta.calls);
            }
        }
        self.raise_floors(batch, |state, service| state.forget_old(service, None));
        // Last, so that nothing this batch created forgets its own records.
        for &(service, end_ms, fresh) in &services {
            let answer = fresh.then_some(Answer::APPLIED);
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

    /// Adds `batch` as [`apply`](Self::apply) does, but keeps no exactly-once records: every
    /// delta counts, whatever its `seq`. Only for a store that never applies a sync without
    /// answering it (`LocalStorageStore`: one synchronous
    /// read-add-write in the page's one thread, where a failure writes nothing), so that a
    /// resend only ever follows a sync that counted nothing. Floors, and the windows kept, are
    /// `apply`'s; returns the totals of `batch.read`, in order.
    pub fn apply_counts(&mut self, batch: &SyncBatch) -> Vec<u64> {
        self.updated_at_ms = self.updated_at_ms.max(batch.at_ms);
        for delta in &batch.deltas {
            self.add(&delta.window, delta.calls);
        }
        self.raise_floors(batch, |state, service| state.forget_old_windows(service));
        for delta in &batch.deltas {
            self.forget_old_windows(&delta.window.service);
        }
        batch.read.iter().map(|window| self.total(window)).collect()
    }

    /// Adds `calls` to `window`'s total (capped at [`MAX_TOTAL`](Self::MAX_TOTAL)).
    fn add(&mut self, window: &WindowKey, calls: u64) {
        let window = self.window_mut(window);
        window.total = window.total.saturating_add(calls).min(Self::MAX_TOTAL);
    }

    /// The batch's floors, after its deltas: a maximum, so a resend (whose deltas were skipped)
    /// changes no total. Each window's largest floor, counted once per batch (as the Redis
    /// script does): a give-back of calls counted before it is forfeited. Then `forget` on the
    /// floor's service.
    fn raise_floors(&mut self, batch: &SyncBatch, forget: impl Fn(&mut Self, &str)) {
        // A few per batch: a vector searched in place (a map type of its own would add code to
        // the JS module).
        let mut floors: Vec<(u64, &WindowKey)> = Vec::new();
        for raise in batch.raises.iter().filter(|r| r.at_least > 0) {
            let (window, at_least) = (&raise.window, raise.at_least.min(Self::MAX_TOTAL));
            let same = |(_, w): &&mut (u64, &WindowKey)| {
                (&w.service, &w.spec, w.start_ms)
                    == (&window.service, &window.spec, window.start_ms)
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
            forget(self, &key.service);
        }
    }

    fn window_mut(&mut self, key: &WindowKey) -> &mut StoredWindow {
        let new_window = &mut self.new_window;
        self.windows
            .entry((key.service.clone(), key.spec.key(), key.start_ms))
            .or_insert_with(|| {
                *new_window = true;
                StoredWindow {
                    service: key.service.clone(),
                    spec: key.spec.clone(),
                    start_ms: key.start_ms,
                    end_ms: key.end_ms,
                    total: 0,
                    raise_count: 0,
                }
            })
    }
}

/// The [`Store::admit`](super::Store::admit) rule on a stored `total`: the total after, if
/// admitted.
pub(crate) fn admit_rule(total: u64, count: u64, below: u64, cap: u64, force: bool) -> Option<u64> {
    let after = total.checked_add(count)?;
    (force || (total < below && after <= cap)).then_some(after)
}

/// A [`WindowSpec`] in a stored document: its key string (a plain period's is its word, so
/// documents written before window specs read as they are).
mod spec_key {
    use crate::window::WindowSpec;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(spec: &WindowSpec, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str(&spec.key())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<WindowSpec, D::Error> {
        let key = String::deserialize(input)?;
        WindowSpec::from_key(&key).map_err(de::Error::custom)
    }
}
