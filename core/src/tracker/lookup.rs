//! Finding a service by name: a word compare per service for a few, a hash map for many,
//! among the build's services; a removed one, or a name the build did not have, is looked
//! for among the services reconfigures added (a cold path).

use super::QuotaTracker;
use crate::error::QuotaError;

/// Up to this many services, names are looked up by comparing them in order.
pub(super) const LINEAR_LOOKUP_MAX: usize = 8;

/// A name's length and its bytes packed into one word, compared before the name itself.
///
/// Up to 8 bytes the packing is exact (equal keys, equal names: no text is compared at all);
/// for longer names the word holds the first and the last 8 bytes folded together, and a
/// matching key is confirmed by comparing the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NameKey {
    pub(super) len: usize,
    pub(super) bytes: u64,
}

impl NameKey {
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn of(name: &str) -> NameKey {
        let b = name.as_bytes();
        let len = b.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let bytes = if len > 8 {
            // Only a filter: the first 8 bytes, and the last 8 rotated.
            word(0) ^ word(len - 8).rotate_left(32)
        } else if len >= 4 {
            // The first 4 and the last 4 bytes (overlapping below 8) cover all of them.
            half(0) | half(len - 4) << 32
        } else if len > 0 {
            // The first, middle and last byte cover up to 3.
            u64::from(b[0]) | u64::from(b[len / 2]) << 8 | u64::from(b[len - 1]) << 16
        } else {
            0
        };
        NameKey { len, bytes }
    }

    /// Whether equal keys mean equal names.
    #[inline]
    pub(super) fn is_exact(self) -> bool {
        self.len <= 8
    }
}

/// Kept out of line: the lookups inline, their error does not.
#[cold]
#[inline(never)]
pub(super) fn unknown_service(service: &str) -> QuotaError {
    QuotaError::UnknownService(service.to_owned())
}

impl QuotaTracker {
    /// The position of the service in force named `service`.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn position(&self, service: &str) -> Result<usize, QuotaError> {
        match self.find(service) {
            Some(position) if !self.services[position].settings().removed => Ok(position),
            _ => self
                .find_added(service)
                .ok_or_else(|| unknown_service(service)),
        }
    }

    /// The position of the latest service named `service` among those reconfigures added,
    /// unless it was removed: a scan, newest first (names are unique among the services in
    /// force, and a name added again is the newest of its name).
    #[cold]
    #[inline(never)]
    pub(super) fn find_added(&self, service: &str) -> Option<usize> {
        let base = self.services.len();
        (0..self.added.len())
            .rev()
            .filter_map(|index| Some((base + index, self.added.get(index)?)))
            .find(|(_, slot)| *slot.name == *service)
            .and_then(|(position, slot)| (!slot.settings().removed).then_some(position))
    }

    /// Among the build's services: a few names are found by their keys (a word compare each,
    /// no text compared up to 8 bytes), many through the map. The service found may have been
    /// removed since (its settings say so).
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn find(&self, service: &str) -> Option<usize> {
        if self.keys.len() > LINEAR_LOOKUP_MAX {
            return self.index.get(service).copied();
        }
        let key = NameKey::of(service);
        self.keys.iter().enumerate().find_map(|(position, k)| {
            (*k == key && (key.is_exact() || *self.services[position].name == *service))
                .then_some(position)
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
