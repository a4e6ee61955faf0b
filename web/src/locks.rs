//! The dashboard's one way to take a `std` mutex: [`lock`], which ignores poison.
//!
//! The dashboard is single-threaded (wasm32). Its mutexes exist only because what the core
//! calls must be `Send + Sync`: the simulated clock (a `Clock`), the stores (`Store`), and the
//! queues the tracker's observers fill. Poison would say that a panic unwound out of a critical
//! section, leaving the data half-changed; here none can: wasm32 has no unwinding (a panic
//! aborts), and no critical section panics half-way anyway (each copies, adds or takes plain
//! values). So the flag carries no information and the data behind it is always whole, as in
//! the core's own helper for its deliberate exceptions (`lock_std` in `core/src/locks.rs`,
//! crate-private there, hence this one).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, waiting for the holder, and ignores poison (see the module docs).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
