//! Who is calling on this thread (native): a call of the async API decided in place, on the
//! thread that polls it (an executor's), where no store I/O may run. A due sync found there
//! goes to the background syncer; a call that reaches the store's path (a reconfigure made
//! its service `Exact` or `Leased` since the twin looked) returns at once, deferred, and the
//! twin runs it again on an I/O thread. Observers run as plain callers: their own calls
//! block as any blocking call does.

use std::cell::Cell;

std::thread_local! {
    /// Set while a call of the async API runs on its caller's thread.
    static ASYNC_CALLER: Cell<bool> = const { Cell::new(false) };
    /// Set when such a call reached the store's path: it changed nothing.
    static DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the call running on this thread is an async caller's.
pub(crate) fn is_async() -> bool {
    ASYNC_CALLER.with(Cell::get)
}

/// Asked where a call is about to take the store's path, before it changes anything: `true`
/// on an async caller's thread, where it must not (the call is marked deferred and returns at
/// once; its answer is discarded).
pub(crate) fn defers_store_call() -> bool {
    let defers = is_async();
    if defers {
        DEFERRED.with(|deferred| deferred.set(true));
    }
    defers
}

/// Runs `call` as an async caller: `None` if it was deferred (it needs the store).
pub(crate) fn as_async<R>(call: impl FnOnce() -> R) -> Option<R> {
    let _restore = Restore::set(true, false);
    let answer = call();
    (!DEFERRED.with(Cell::get)).then_some(answer)
}

/// Runs `call` (an observer) as a plain caller, whatever the thread's caller was.
pub(crate) fn as_plain<R>(call: impl FnOnce() -> R) -> R {
    let _restore = Restore::set(false, false);
    call()
}

/// Puts the caller's marks back when dropped (unwinding included): calls nest (an observer of
/// an async call makes calls of its own).
struct Restore(bool, bool);

impl Restore {
    fn set(async_caller: bool, deferred: bool) -> Self {
        Restore(
            ASYNC_CALLER.with(|caller| caller.replace(async_caller)),
            DEFERRED.with(|marked| marked.replace(deferred)),
        )
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        ASYNC_CALLER.with(|caller| caller.set(self.0));
        DEFERRED.with(|marked| marked.set(self.1));
    }
}
