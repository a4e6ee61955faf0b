//! The one place the crate takes its synchronization primitives from.
//!
//! Normally these are `std`'s; under `RUSTFLAGS="--cfg loom"` they are loom's, so the loom
//! tests model-check the real tracker rather than a copy of it (the tokio pattern).

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex, MutexGuard,
};
#[cfg(loom)]
pub(crate) use loom::thread_local;
#[cfg(loom)]
pub(crate) use std::sync::TryLockError;

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex, MutexGuard, TryLockError,
};
#[cfg(not(loom))]
pub(crate) use std::thread_local;

/// Locks `mutex`, ignoring poison.
///
/// Nothing inside the tracker's critical sections can panic half-way through an update
/// (observers run outside every lock), so a poisoned flag carries no information here and the
/// data behind it is always consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lets another thread run while this one waits its turn (see `observers::DeliveryGate`).
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(all(not(loom), not(target_arch = "wasm32")))]
    std::thread::yield_now();
    #[cfg(all(not(loom), target_arch = "wasm32"))]
    core::hint::spin_loop();
}
