//! Where counts are shared and kept: the [`Store`] protocol and its stores.
//!
//! A tracker never writes its counts over a store's: it sends *deltas*, the calls it recorded
//! per service and window since its last acknowledged sync, and the store adds them atomically
//! and answers with the stored totals. So any number of trackers (threads, processes, hosts)
//! can share one store without losing each other's calls (the lost-update bug, one level up).
//! A sync that may have been applied although its reply was lost is retried identically: the
//! store applies a given `(instance, seq)` at most once per service.
//!
//! Stores: [`MemoryStore`] (in process, with fault injection), [`FileStore`] (one JSON file
//! shared by any number of processes on one machine), [`LocalStorageStore`] (a browser tab).

mod document;
#[cfg(not(target_arch = "wasm32"))]
mod file;
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
mod local_storage;
mod memory;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
mod redis;
pub(crate) mod redis_text;

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
pub use self::redis::{RedisClock, RedisStore};
pub use document::{StoredState, StoredWindow};
#[cfg(not(target_arch = "wasm32"))]
pub use file::FileStore;
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub use local_storage::LocalStorageStore;
pub use memory::MemoryStore;

use crate::window::Period;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Why a store could not sync.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stored data is not a valid [`StoredState`]; the message says what was wrong (a
    /// store that keeps data moves the bad data aside, never drops it).
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// The call was sent but no answer came (a lost reply, a timeout, a connection closed
    /// after sending): it **may have been applied**. The tracker keeps the operation and
    /// resends it, identically, until the store answers; the store applies it once. A store
    /// returns this, never [`Unavailable`](Self::Unavailable), whenever the call may have
    /// reached the data, even if reconnecting fails afterwards.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The call was **not applied**: the store could not be reached at all (no connection, no
    /// `localStorage` in this runtime), so nothing was sent.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A failure injected on purpose by [`MemoryStore`]'s switches.
    #[error("injected store failure")]
    Injected,
    /// The store panicked; the tracker caught it and counted a failed sync.
    #[error("the store panicked: {0}")]
    Panicked(String),
    /// [`flush`](crate::QuotaTracker::flush) was called from inside that tracker's own sync
    /// (a store that calls back into its tracker): waiting for the sync would wait forever.
    #[error("flush called from inside the tracker's own save")]
    Reentrant,
    /// The store cannot do this (for instance shared admission in a store without atomic
    /// scripts).
    #[error("not supported by this store: {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// Whether the operation may have been applied although it failed: [`Io`](Self::Io) (sent,
    /// no answer) and [`Panicked`](Self::Panicked) (the store stopped half way). The tracker
    /// resends such an operation until it is answered; every other error means nothing was
    /// applied.
    pub fn maybe_applied(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Panicked(_))
    }
}

/// Shares and keeps counts. Object-safe; `Send + Sync` so a tracker holding one stays so.
///
/// # Exactly once
/// Every operation that changes the store (a [`SyncBatch`] with deltas or raises, an
/// [`AdmitRequest`], a [`LeaseRequest`], a [`GiveBack`]) carries its instance's `seq`, one
/// number per operation from one rising sequence per instance, and `done_below`: every
/// operation of that instance numbered below it has been answered and will never be sent
/// again. A store applies each `(instance, seq)` at most once per service, **in whatever
/// order** first sends, resends and newer operations arrive:
/// - per service and instance it keeps a record: a low-water mark `low` (the largest
///   `done_below` seen) and the set of `seq`s at or above `low` it has applied, each with its
///   answer (an admission's, a lease's grant);
/// - a `seq` below `low` was answered long ago: nothing is applied (a sync's floors still are,
///   being maxima), an admission answers `Denied`, a lease grants 0;
/// - a `seq` in the set is a resend: nothing is applied again, and an admission or lease gets
///   its first answer again;
/// - any other `seq` is applied and joins the set; then `low` rises to `done_below` and the
///   set forgets what is below it (so the set holds only the instance's operations in flight);
/// - each window keeps a *raise count*, the raises applied to it, which admissions and
///   leases report and give-backs check (see [`GiveBack::raise_count`]);
/// - the record lives at least until the last window it counted in ends, plus a grace: a
///   resend can only come while its window is live.
///
/// A lost reply must surface as [`StoreError::Io`] (maybe applied); answer
/// [`StoreError::Unavailable`] only when nothing reached the data.
/// [`StoredState`] implements all of this for stores that keep a document.
///
/// The tracker calls it from whichever thread triggered a sync, never while holding a service
/// lock, and never twice at once (per tracker: many trackers may call one store at once).
///
/// # Moving a store of your own to this protocol
/// Before, a store loaded and saved a whole snapshot. Now it implements one method, `sync`:
/// add each delta to the stored total of its window (creating it at 0), unless this `(instance,
/// seq)` was already applied for that service, then raise each window of `batch.raises` to at
/// least its floor, and return the totals of `batch.read`. Keep a
/// [`StoredState`] (JSON text, with `apply` doing exactly that) in your database under one
/// lock or transaction, as [`FileStore`] does with a file.
pub trait Store: Send + Sync {
    /// Adds `batch.deltas` (each service's at most once per `(batch.instance, batch.seq)`),
    /// then raises each window of `batch.raises` to at least its `at_least` (a maximum, never
    /// a sum; applied on a resend too, which changes nothing), atomically, and returns the
    /// stored total of each window of `batch.read`, in order. A batch without deltas or
    /// raises only reads.
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError>;

    /// `Exact` admission: in one atomic step, admits `request.count` calls if the stored
    /// total of `request.window` is below `request.below` and total + count is at most
    /// `request.cap` (or always, if `request.force`), and adds them only if admitted. Stores
    /// that cannot do this atomically across instances answer [`StoreError::Unsupported`].
    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let _ = request;
        Err(StoreError::Unsupported("exact admission"))
    }

    /// `Leased` admission: in one atomic step, grants `request.instance` up to
    /// `request.block` calls of the headroom below `request.ceiling` in `request.window`, and
    /// adds what it grants to the stored total at once. A retry of the same
    /// `(instance, seq)` gets the same grant, not a second one.
    ///
    /// A store that leases should also [`admit`](Self::admit): a priority call that the block
    /// in hand does not cover is admitted that way (a lease never hands out the reserve).
    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        let _ = request;
        Err(StoreError::Unsupported("leased admission"))
    }

    /// Gives back `request.unused` calls of `request.window` (subtracts them from the stored
    /// total, never below 0), at most once per `(instance, seq)`, unless the window's raise
    /// count is no longer `request.raise_count` (then forfeited: nothing taken off). Returns
    /// the calls taken off (a retry gets the first answer; a stale copy 0).
    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        let _ = request;
        Err(StoreError::Unsupported("leased admission"))
    }
}

macro_rules! forward_store {
    ($($pointer:ident),*) => {$(
        /// A shared or boxed store is a store.
        impl<S: Store + ?Sized> Store for $pointer<S> {
            fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
                (**self).sync(batch)
            }

            fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
                (**self).admit(request)
            }

            fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
                (**self).lease(request)
            }

            fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
                (**self).give_back(request)
            }
        }
    )*};
}

forward_store!(Arc, Box);

/// What [`Store::admit`] is asked. A store applies a given `(instance, seq)` once per service:
/// a retry gets the first answer again, not a second count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmitRequest {
    /// Who asks.
    pub instance: InstanceId,
    /// The instance's operation number (a retry sends the same).
    pub seq: u64,
    /// Every operation of the instance numbered below this is answered (see [`Store`]).
    #[serde(default)]
    pub done_below: u64,
    /// The window to count in.
    pub window: WindowKey,
    /// Calls asked for (0 from `can_call`: whether one more would fit).
    pub count: u64,
    /// Admit only while the stored total is below this. Trackers send the same as `cap` (so a
    /// count of 0, from `can_call`, asks whether one more call fits).
    pub below: u64,
    /// Admit only if total + count is at most this: where the call's admission stops (normal:
    /// `min(Critical threshold, limit - reserve)`; priority: the limit; in reduced rate no more
    /// than the reduced allowance), less the calls the tracker has not synced yet.
    pub cap: u64,
    /// Add without asking (`record_call`).
    pub force: bool,
}

/// What [`Store::admit`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdmitReply {
    /// Added; the stored total after.
    Admitted {
        /// The window's stored total after adding.
        total: u64,
        /// The window's raise count when the calls were added (see [`GiveBack::raise_count`]); a
        /// retry gets the first answer's.
        raise_count: u64,
    },
    /// Not added; the stored total seen.
    Denied {
        /// The window's stored total.
        total: u64,
    },
}

/// What [`Store::lease`] is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Who leases.
    pub instance: InstanceId,
    /// The instance's operation number (a retry sends the same).
    pub seq: u64,
    /// Every operation of the instance numbered below this is answered (see [`Store`]).
    #[serde(default)]
    pub done_below: u64,
    /// The window to lease in.
    pub window: WindowKey,
    /// Calls asked for.
    pub block: u64,
    /// Grant only below this stored total: where normal admission stops
    /// (`min(Critical threshold, limit - reserve)`, or the reduced allowance), so a block never
    /// holds calls of the reserve.
    pub ceiling: u64,
}

/// What [`Store::lease`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReply {
    /// Calls granted (0 when there is no headroom below the ceiling).
    pub granted: u64,
    /// The window's stored total now (after the grant; for a resend, as it is now).
    pub total: u64,
    /// The window's raise count when the calls were granted (see [`GiveBack::raise_count`]); a retry
    /// gets the first answer's.
    pub raise_count: u64,
}

/// What [`Store::give_back`] is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiveBack {
    /// Who gives back.
    pub instance: InstanceId,
    /// The instance's operation number (a retry sends the same).
    pub seq: u64,
    /// Every operation of the instance numbered below this is answered (see [`Store`]).
    #[serde(default)]
    pub done_below: u64,
    /// The window the calls were counted in.
    pub window: WindowKey,
    /// Calls to take off the window's total: leased calls not used (also a block granted for
    /// a window that ended while asking, or a lease whose reply was lost), or an admission the
    /// caller was told was refused but the store turned out to have applied.
    pub unused: u64,
    /// The window's *raise count* when those calls were counted: how many raises (floors,
    /// [`Raise`]) had been applied to it. A floor applied since may have absorbed these calls
    /// (`max(total, floor)` counts calls below the floor once), so taking them off could put
    /// the total below the provider's count: if the window's raise count is no longer this,
    /// the store forfeits the give-back (takes nothing off; an over-count only). Every raise
    /// counts, whether it lifted the total or not: one that did not may still hold calls that
    /// were never made above its floor.
    #[serde(default)]
    pub raise_count: u64,
}

/// A tracker instance's identity in a shared store: 128 random bits (from the operating
/// system, or `crypto.getRandomValues` on wasm), written as 32 hex digits. Colliding ids would
/// make a store drop one instance's deltas as duplicates, so they are never counters or times.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct InstanceId(u128);

impl InstanceId {
    /// A fresh random id.
    ///
    /// # Panics
    /// If the system has no source of randomness at all (none of the targets this crate
    /// supports): there is no safe id to fall back on.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        if let Err(error) = getrandom::fill(&mut bytes) {
            panic!("quota: no system randomness for an instance id: {error}");
        }
        InstanceId(u128::from_le_bytes(bytes))
    }

    /// The id of these 128 bits (for tests and tools; trackers use [`random`](Self::random)).
    pub fn from_u128(bits: u128) -> Self {
        InstanceId(bits)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({self})")
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for InstanceId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.len() != 32 {
            return Err(format!(
                "an instance id is 32 hex digits (got {})",
                crate::text::Quoted(&text)
            ));
        }
        u128::from_str_radix(&text, 16)
            .map(InstanceId)
            .map_err(|_| {
                format!(
                    "an instance id is 32 hex digits (got {})",
                    crate::text::Quoted(&text)
                )
            })
    }
}

/// One window of one service, as a store keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowKey {
    /// The service's name.
    pub service: String,
    /// The service's period.
    pub period: Period,
    /// Start of the window, ms since the Unix epoch.
    pub start_ms: u64,
    /// End of the window (a store may forget it some time after), ms since the Unix epoch.
    pub end_ms: u64,
}

/// Calls one instance recorded in one window since its last acknowledged sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Where they were recorded.
    pub window: WindowKey,
    /// How many.
    pub calls: u64,
}

/// One sync of one tracker instance: what to add, and which totals to read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBatch {
    /// The sending instance.
    pub instance: InstanceId,
    /// The instance's operation number, for a batch that changes anything (a retry resends
    /// the same batch with the same number); a batch that only reads may carry any.
    pub seq: u64,
    /// Every operation of the instance numbered below this is answered (see [`Store`]).
    #[serde(default)]
    pub done_below: u64,
    /// When it was cut (the tracker's clock), ms since the Unix epoch.
    pub at_ms: u64,
    /// The calls to add, per window (a window that has ended gets its own calls, never the
    /// next window's).
    pub deltas: Vec<Delta>,
    /// The windows whose stored totals the reply gives, in this order.
    pub read: Vec<WindowKey>,
    /// Counts reported from outside (a provider's remaining-calls header, a 429), each a
    /// floor for its window's total: applied after the deltas, as a maximum (the total becomes
    /// the larger of the two, never their sum), so a resent batch changes nothing twice and
    /// calls the provider counted for every instance are not counted again.
    #[serde(default)]
    pub raises: Vec<Raise>,
}

impl SyncBatch {
    /// Whether the batch changes anything (deltas or raises), rather than only reading: such
    /// a batch takes a new `seq` and is resent until a reply comes.
    pub fn changes(&self) -> bool {
        !self.deltas.is_empty() || !self.raises.is_empty()
    }
}

/// A floor for one window's stored total: the total becomes `max(total, at_least)`.
/// Idempotent, so it needs no deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raise {
    /// The window.
    pub window: WindowKey,
    /// The least total the window holds from now on.
    pub at_least: u64,
}

/// The message, as `Display` writes it: a `main` returning `Result<(), Box<dyn Error>>`
/// prints `Error: ` and this, and `unwrap` shows it too, rather than a struct dump.
impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
