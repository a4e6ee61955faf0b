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
//! Three modules deliberately use `std` directly and say why: `sim::racy` (the demonstration
//! of the bug is not what loom checks), `store` (a store's own data, outside the tracker) and
//! `clock` (the system clock's calibration, which no tracker protocol depends on).

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
    Arc,
};
#[cfg(loom)]
pub(crate) use loom::thread_local;

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
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
