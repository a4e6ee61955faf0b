//! Write-behind sync of the tracker's counts to a [`Store`](crate::Store), and reduced-rate mode.
//!
//! Saves are triggered by the calls themselves (unless `sync_in_background` started the
//! tracker's own thread, natively, which the calls then only wake; none on
//! wasm), after the service locks are released: when `interval_ms` has passed since the last
//! successful save, or at once when a call enters Critical. The save lock is held across the
//! store I/O so at most one save is in flight; a call that finds it taken does not wait (the
//! save *coalesces*). It is always taken before any service lock, never after.
//!
//! [`flush`](crate::QuotaTracker::flush) is the one call that waits: for a save in flight (so
//! for as long as the store's own I/O takes) and for its own retries while the store fails
//! ([`SyncPolicy::flush_timeout_ms`]); never for an observer, since observers run only after
//! the save lock is released. A store that panics is a failed save.

use crate::config::SyncPolicy;

mod ledger;
mod resend;
mod saver;

pub(crate) use ledger::{HeldAdmit, Ledger, Queued};
pub(crate) use resend::{Cut, Late, Settled};
pub(crate) use saver::{guarded, Books, Persistence};

/// Counters of the tracker's store activity, from [`stats`](crate::QuotaTracker::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Non-exhaustive: new counters must not break a downstream struct literal or pattern.
#[non_exhaustive]
pub struct StoreStats {
    /// Loads attempted (one when the tracker was built with a store).
    pub loads: u64,
    /// Loads that failed or found corrupt data (the tracker then started fresh).
    pub load_failures: u64,
    /// Successful saves.
    pub saves: u64,
    /// Failed saves.
    pub save_failures: u64,
    /// Saves started at once because a service entered Critical.
    pub forced_saves: u64,
    /// Save triggers that found a save already in flight and folded into it.
    pub coalesced_saves: u64,
    /// The most recent load or save error, if any.
    pub last_error: Option<String>,
    /// Failed saves since the last success.
    pub consecutive_failures: u32,
    /// Successful saves since the last failure.
    pub consecutive_successes: u32,
    /// Whether reduced-rate mode is on.
    pub reduced_rate: bool,
    /// Operations the store has not answered yet (a reply lost, the store down), queued and
    /// resent until it does: batches, held and refused admissions, leases, give-backs, sent or
    /// still waiting. Read when [`stats`](crate::QuotaTracker::stats) is called. Non-zero after
    /// [`flush`](crate::QuotaTracker::flush) returns means it gave up on them (see
    /// [`SyncPolicy::flush_timeout_ms`]).
    pub unresolved_ops: u64,
    /// The calls those operations carry (recorded calls that may not be stored, refused calls
    /// that may be stored, leased blocks that may be granted, calls to give back). Calls
    /// recorded since the last sync and not sent yet are not among them: they go with the
    /// next sync.
    pub unresolved_calls: u64,
    /// Calls given back (unused leased calls, calls the store applied although the caller was
    /// told they were refused, a lease whose reply was lost) that the store did not take off:
    /// mostly because a raise reached their window after they were counted (its floor may
    /// include them: see [`GiveBack::raise_count`](crate::GiveBack::raise_count)), or because
    /// the total was already lower. An over-count only. A block in hand that this tracker
    /// drops after its own raise is not among them.
    pub forfeited_calls: u64,
}

/// What happened with the store, delivered to
/// [`on_store_event`](crate::QuotaTracker::on_store_event) subscribers (and to those of the
/// builder's [`on_store_event`](crate::QuotaTrackerBuilder::on_store_event), which also hear
/// about the first read).
// Non-exhaustive: the store may gain events, and a new one must not break a downstream `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// The first read of the store, when the tracker was built, failed: the tracker counts
    /// from zero, retries after a short back-off, and adds the stored totals at its first
    /// good sync. A wrong URL, port or password shows here first; see
    /// [`require_store`](crate::QuotaTrackerBuilder::require_store) to fail the build instead
    /// (the event still reaches the builder's observers, then `build` returns the error). A
    /// store that keeps data moves corrupt data aside on this read, so with `require_store` the
    /// next start finds no data and builds from zero: the error names where the data went.
    ReadFailed {
        /// When (the tracker clock), ms since the Unix epoch.
        at_ms: u64,
        /// The store's error.
        error: String,
    },
    /// The store failed `consecutive_failures` times in a row: calls are reduced.
    ReducedRateEntered {
        /// When (the tracker clock), ms since the Unix epoch.
        at_ms: u64,
        /// Failed saves in a row.
        consecutive_failures: u32,
        /// The last error.
        error: String,
    },
    /// The store succeeded `consecutive_successes` times in a row: normal rate again.
    ReducedRateLeft {
        /// When (the tracker clock), ms since the Unix epoch.
        at_ms: u64,
        /// Successful saves in a row.
        consecutive_successes: u32,
    },
}

/// One line for a log: `the first read of the store failed: ...` (the tracker then counts
/// from zero, or with `require_store` the build fails), `reduced rate on after 3
/// failed syncs in a row: ...`, `reduced rate off after 5 good syncs in a row`.
impl std::fmt::Display for StoreEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreEvent::ReadFailed { error, .. } => {
                write!(f, "the first read of the store failed: {error}")
            }
            StoreEvent::ReducedRateEntered {
                consecutive_failures,
                error,
                ..
            } => write!(
                f,
                "reduced rate on after {consecutive_failures} failed syncs in a row: {error}"
            ),
            StoreEvent::ReducedRateLeft {
                consecutive_successes,
                ..
            } => write!(
                f,
                "reduced rate off after {consecutive_successes} good syncs in a row"
            ),
        }
    }
}

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveReason {
    /// The first sync, at build: reads the stored totals (a failure is a failed load).
    Load,
    /// `interval_ms` passed (or the back-off after a failure).
    Interval,
    /// A service entered Critical.
    Critical,
    /// `flush()`: waits for a sync in flight, always syncs.
    Flush,
}
