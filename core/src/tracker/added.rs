//! Services added by `reconfigure` after the build: an append-only list whose slots never
//! move, so a `&ServiceSlot` (and a `Service` handle's position) stays valid for the
//! tracker's life. The build's services stay in the tracker's boxed slice, so the hot path's
//! index is still one bounds check; only a position past it comes here (a cold path).

use super::ServiceSlot;
use crate::locks::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Slots in the first bucket; each next bucket doubles.
const FIRST: usize = 8;
/// Buckets: room for `FIRST x (2^BUCKETS - 1)` services, more than a `ServiceId` names.
const BUCKETS: usize = 29;

/// An append-only list of slots: buckets of doubling size, each allocated once and never
/// moved; each cell set once. One writer at a time (`reconfigure` pushes under its mutex);
/// readers take no lock.
pub(super) struct Added {
    buckets: [OnceLock<Box<[OnceLock<ServiceSlot>]>>; BUCKETS],
    /// How many cells are set (stored after the cell, so a reader that sees it sees them).
    len: AtomicUsize,
}

/// The bucket and the index in it of the `index`-th added slot.
fn locate(index: usize) -> (usize, usize) {
    let bucket = (index / FIRST + 1).ilog2() as usize;
    (bucket, index - FIRST * ((1 << bucket) - 1))
}

impl Added {
    pub(super) fn new() -> Self {
        Added {
            buckets: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// The `index`-th added slot, if it was added.
    pub(super) fn get(&self, index: usize) -> Option<&ServiceSlot> {
        let (bucket, at) = locate(index);
        self.buckets.get(bucket)?.get()?.get(at)?.get()
    }

    /// How many were added.
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Appends `slot` at `index` (which must be [`len`](Self::len); one writer at a time).
    pub(super) fn push(&self, index: usize, slot: ServiceSlot) {
        let (bucket, at) = locate(index);
        let cells = self.buckets[bucket].get_or_init(|| {
            (0..FIRST << bucket)
                .map(|_| OnceLock::new())
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        if cells[at].set(slot).is_err() {
            unreachable!("an added slot is set once, by the one reconfigure running");
        }
        self.len.store(index + 1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn buckets_double_and_follow_each_other() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(7), (0, 7));
        assert_eq!(locate(8), (1, 0));
        assert_eq!(locate(23), (1, 15));
        assert_eq!(locate(24), (2, 0));
        assert_eq!(locate(55), (2, 31));
        assert_eq!(locate(56), (3, 0));
    }
}
