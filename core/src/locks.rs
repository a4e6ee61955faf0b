//! The one place the crate takes its synchronization primitives from.
//!
//! Normally these are `std`'s; under `RUSTFLAGS="--cfg loom"` they are loom's, so the loom
//! tests model-check the real tracker rather than a copy of it (the tokio pattern).
//!
//! [`Mutex`] is a poison-free wrapper, as tokio's shim has: nothing inside the crate's
//! critical sections can panic half-way through an update (observers, stores, clocks and
//! logging all run outside every lock), so a poisoned flag carries no information here and the
//! data behind it is always whole.
//!
//! A few locks are deliberately `std`'s even under loom, because no tracker protocol depends on
//! them: a store's own data (`MemoryStore`, the Redis pool and server clock), the racy
//! demonstration (`sim::racy`: the bug is shown, not model-checked) and the JS module's queue
//! of transitions. They take [`lock_std`] / [`try_lock_std`], which ignore poison for the same
//! reason. (The dashboard, a crate of its own, has its one helper in `web/src/locks.rs`.)

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc,
};
#[cfg(loom)]
pub(crate) use loom::thread_local;

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc,
};
#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
use loom::sync as imp;
#[cfg(not(loom))]
use std::sync as imp;

pub(crate) use imp::MutexGuard;

/// A mutex whose `lock` ignores poison (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(imp::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(imp::Mutex::new(value))
    }

    /// Locks, waiting for the holder. Never call it twice on one thread.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks if nobody holds the lock; `None` if somebody does.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Locks a `std` mutex (one of the deliberate exceptions listed in the module docs), ignoring
/// poison.
pub(crate) fn lock_std<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock_std`] if nobody holds the lock; `None` if somebody does.
#[cfg_attr(
    not(all(feature = "redis", not(target_arch = "wasm32"))),
    allow(dead_code)
)]
pub(crate) fn try_lock_std<T>(mutex: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}
