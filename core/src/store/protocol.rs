//! The words of the store protocol: what a tracker sends a [`Store`] (a [`SyncBatch`] of
//! [`Delta`]s and [`Raise`]s, an [`AdmitRequest`], a [`LeaseRequest`], a [`GiveBack`]) and what
//! it answers, and the keys both sides name: an instance ([`InstanceId`]) and a window
//! ([`WindowKey`]).

#[cfg(doc)]
use super::Store;
use super::StoreError;
use crate::window::WindowSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

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
    /// The other windows of a service of several limits (Tiingo: an hour and a day), each with
    /// its own rule: the calls are admitted only if every window admits them, and then added
    /// to every window, in the same atomic step (with `force`, added to all). Empty for a
    /// service of one limit. A store that does not check these answers
    /// [`Store::several_windows`] with `false`, and trackers refuse such a service on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<AdmitWindow>,
}

impl AdmitRequest {
    /// Its windows: `window`, then each of `also`.
    pub fn windows(&self) -> impl Iterator<Item = &WindowKey> + Clone {
        std::iter::once(&self.window).chain(self.also.iter().map(|w| &w.window))
    }

    /// [`StoreError::Invalid`] unless its windows are distinct windows of one service (what
    /// every store needs: one record per service, one Redis Cluster slot, each window counted
    /// once).
    pub fn check(&self) -> Result<(), StoreError> {
        check_windows(self.windows())
    }
}

/// Another window an [`AdmitRequest`] must fit in, with its rule (as the request's own
/// `below` and `cap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmitWindow {
    /// The window.
    pub window: WindowKey,
    /// Admit only while its stored total is below this.
    pub below: u64,
    /// Admit only if its total + count is at most this.
    pub cap: u64,
}

/// A window's stored total and raise count, as an operation on it answers them (see
/// [`GiveBack::raise_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTotal {
    /// The stored total (after the operation).
    pub total: u64,
    /// The window's raise count when the calls were counted (a retry gets the first answer's).
    pub raise_count: u64,
}

/// What [`Store::admit`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Non-exhaustive: admission may gain answers (a pause until an instant).
#[non_exhaustive]
pub enum AdmitReply {
    /// Added; the stored total after.
    Admitted {
        /// The window's stored total after adding.
        total: u64,
        /// The window's raise count when the calls were added (see [`GiveBack::raise_count`]); a
        /// retry gets the first answer's.
        raise_count: u64,
        /// The same of each of [`AdmitRequest::also`], in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also: Vec<WindowTotal>,
    },
    /// Not added; the stored total seen.
    Denied {
        /// The window's stored total.
        total: u64,
        /// The stored total of each of [`AdmitRequest::also`], in order (a raise count of 0).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also: Vec<WindowTotal>,
    },
}

impl AdmitReply {
    /// [`StoreError::Io`] (maybe applied) unless it answers every window of `request`: a store
    /// that left one out may still have counted the calls there.
    pub(crate) fn answering(self, request: &AdmitRequest) -> Result<Self, StoreError> {
        let (AdmitReply::Admitted { also, .. } | AdmitReply::Denied { also, .. }) = &self;
        wrong_shape(also.len(), request.also.len(), "admission")?;
        Ok(self)
    }
}

/// [`StoreError::Io`] if a reply answered `answered` other windows for `asked`.
fn wrong_shape(answered: usize, asked: usize, what: &str) -> Result<(), StoreError> {
    if answered == asked {
        return Ok(());
    }
    Err(StoreError::Io(format!(
        "the store answered an {what} of {} windows for {} (it may have been applied)",
        answered + 1,
        asked + 1
    )))
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
    /// The other windows of a service of several limits, each with its ceiling: the grant is
    /// the most every window has room for, added to every window in the same atomic step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<LeaseWindow>,
}

impl LeaseRequest {
    /// Its windows: `window`, then each of `also`.
    pub fn windows(&self) -> impl Iterator<Item = &WindowKey> + Clone {
        std::iter::once(&self.window).chain(self.also.iter().map(|w| &w.window))
    }

    /// As [`AdmitRequest::check`].
    pub fn check(&self) -> Result<(), StoreError> {
        check_windows(self.windows())
    }
}

/// Another window a [`LeaseRequest`] grants in, with its ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseWindow {
    /// The window.
    pub window: WindowKey,
    /// Grant only below this stored total of it.
    pub ceiling: u64,
}

/// What [`Store::lease`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReply {
    /// Calls granted (0 when there is no headroom below the ceiling).
    pub granted: u64,
    /// The window's stored total now (after the grant; for a resend, as it is now).
    pub total: u64,
    /// The window's raise count when the calls were granted (see [`GiveBack::raise_count`]); a retry
    /// gets the first answer's.
    pub raise_count: u64,
    /// The total now and the raise count when granted of each of [`LeaseRequest::also`], in
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<WindowTotal>,
}

impl LeaseReply {
    /// As [`AdmitReply::answering`].
    pub(crate) fn answering(self, request: &LeaseRequest) -> Result<Self, StoreError> {
        wrong_shape(self.also.len(), request.also.len(), "lease")?;
        Ok(self)
    }
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
    /// The other windows of a service of several limits the same calls were counted in, each
    /// with its raise count then: `unused` comes off each of them too, each forfeited on its
    /// own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<GiveBackWindow>,
}

impl GiveBack {
    /// Its windows: `window`, then each of `also`.
    pub fn windows(&self) -> impl Iterator<Item = &WindowKey> + Clone {
        std::iter::once(&self.window).chain(self.also.iter().map(|w| &w.window))
    }

    /// As [`AdmitRequest::check`].
    pub fn check(&self) -> Result<(), StoreError> {
        check_windows(self.windows())
    }
}

/// [`StoreError::Invalid`] unless `windows` are distinct windows (by spec and start) of one
/// service.
fn check_windows<'a>(
    windows: impl Iterator<Item = &'a WindowKey> + Clone,
) -> Result<(), StoreError> {
    for (at, window) in windows.clone().enumerate() {
        let mut before = windows.clone().take(at);
        if let Some(first) = before.clone().next() {
            if first.service != window.service {
                return Err(StoreError::Invalid(format!(
                    "an operation's windows are of one service (got {:?} and {:?})",
                    first.service, window.service
                )));
            }
        }
        if before.any(|b| b.spec == window.spec && b.start_ms == window.start_ms) {
            return Err(StoreError::Invalid(format!(
                "an operation names each window once (got the {} window from {} twice)",
                window.spec.key(),
                window.start_ms
            )));
        }
    }
    Ok(())
}

/// Another window a [`GiveBack`] takes its calls off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiveBackWindow {
    /// The window.
    pub window: WindowKey,
    /// Its raise count when the calls were counted.
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
            // On wasm32 a panic's message is printed nowhere (the module traps), and getrandom's
            // error text would be linked into the `.wasm` for it.
            #[cfg(target_arch = "wasm32")]
            let error = {
                let _ = error;
                "crypto.getRandomValues failed"
            };
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
    /// The service's window spec (its key, [`WindowSpec::key`], names it in a store: an hour
    /// in UTC and an hour in Europe/Paris never share a key).
    pub spec: WindowSpec,
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
