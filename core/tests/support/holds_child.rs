//! What the multi-process hold suites' children share (`shared.rs` on a file, `shared_redis.rs`
//! on Redis): a store that loses replies after applying them, and the holds a child makes.

#![allow(dead_code)]

use quota_core::{
    AdmitReply, AdmitRequest, GiveBack, LeaseReply, LeaseRequest, QuotaError, QuotaTracker, Store,
    StoreError, SyncBatch,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// A real store whose every `every`-th reply is lost after the store applied the operation:
/// the tracker must resend it, and the store apply it once.
pub struct LosesReplies<S> {
    inner: S,
    every: u64,
    calls: AtomicU64,
}

impl<S> LosesReplies<S> {
    pub fn new(inner: S, every: u64) -> Self {
        LosesReplies {
            inner,
            every,
            calls: AtomicU64::new(0),
        }
    }

    fn answer<T>(&self, answer: Result<T, StoreError>) -> Result<T, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(_) if n % self.every == self.every - 1 => Err(StoreError::Io("reply lost".into())),
            answer => answer,
        }
    }
}

impl<S: Store> Store for LosesReplies<S> {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.answer(self.inner.sync(batch))
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        self.answer(self.inner.admit(request))
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        self.answer(self.inner.lease(request))
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        self.answer(self.inner.give_back(request))
    }

    fn several_windows(&self) -> bool {
        self.inner.several_windows()
    }
}

/// `calls` holds of 1 to 20 calls on `api`, each settled at 0 to twice its estimate, or
/// cancelled, or (1 in 10) dropped and so kept at its estimate; `between` runs after each (a
/// clock step). Seeded by the process id. Returns the calls owed to the store: the settled
/// actuals and the estimates kept.
pub fn hold_and_settle(tracker: &QuotaTracker, calls: u64, mut between: impl FnMut()) -> u64 {
    let mut seed = u64::from(std::process::id()) | 1;
    let mut next = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut owed = 0;
    for _ in 0..calls {
        between();
        let estimate = 1 + next(20);
        let hold = match tracker.hold("api", estimate) {
            Ok(hold) => hold,
            Err(QuotaError::Denied { .. }) => continue,
            Err(other) => panic!("{other}"),
        };
        owed += match next(10) {
            0 => {
                drop(hold);
                estimate
            }
            1 => {
                hold.cancel().unwrap();
                0
            }
            _ => {
                let actual = next(2 * estimate + 1);
                hold.settle(actual).unwrap();
                actual
            }
        };
    }
    owed
}
