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
mod protocol;
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
pub use protocol::{
    AdmitReply, AdmitRequest, AdmitWindow, Delta, GiveBack, GiveBackWindow, InstanceId, LeaseReply,
    LeaseRequest, LeaseWindow, Raise, SyncBatch, WindowKey, WindowTotal,
};

use std::sync::Arc;

/// Why a store could not sync.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
// Non-exhaustive: new store kinds (cluster, sentinel) may add failures.
#[non_exhaustive]
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
    /// The request is not one a store can apply as asked (an operation naming one window
    /// twice, or windows of two services): nothing was applied.
    #[error("invalid store request: {0}")]
    Invalid(String),
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
    /// `request.cap` (or always, if `request.force`), and each window of `request.also` by
    /// its own `below` and `cap` (see [`several_windows`](Self::several_windows)), and adds
    /// them to every window only if all admit. Stores that cannot do this atomically across
    /// instances answer [`StoreError::Unsupported`].
    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let _ = request;
        Err(StoreError::Unsupported("exact admission"))
    }

    /// `Leased` admission: in one atomic step, grants `request.instance` up to
    /// `request.block` calls of the headroom below `request.ceiling` in `request.window` (and
    /// below each ceiling of `request.also` in its window), and adds what it grants to every
    /// window's stored total at once. A retry of the same
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
    /// count is no longer `request.raise_count` (then forfeited: nothing taken off); the same
    /// for each window of `request.also`, each forfeited on its own. Returns the fewest calls
    /// any of its windows took off (a retry gets the first answer; a stale copy 0): the
    /// tracker counts the rest as forfeited.
    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        let _ = request;
        Err(StoreError::Unsupported("leased admission"))
    }

    /// Whether [`admit`](Self::admit), [`lease`](Self::lease) and
    /// [`give_back`](Self::give_back) honour their requests' `also` windows (a service of
    /// several limits: every window checked and counted in one atomic step). `false` unless a
    /// store says so: a tracker refuses `Exact` or `Leased` admission of a service of several
    /// limits on a store that would check only the first window.
    fn several_windows(&self) -> bool {
        false
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

            fn several_windows(&self) -> bool {
                (**self).several_windows()
            }
        }
    )*};
}

forward_store!(Arc, Box);

/// The message, as `Display` writes it: a `main` returning `Result<(), Box<dyn Error>>`
/// prints `Error: ` and this, and `unwrap` shows it too, rather than a struct dump.
impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
