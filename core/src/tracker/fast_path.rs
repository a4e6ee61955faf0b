//! The counting fast path: a call that changes nothing but the count (no roll-over, no level
//! change, no refusal) is one compare-and-swap on an atomic word beside the service's lock.
//!
//! The word holds the window's count and an epoch. Everything else a fast call needs (the
//! window, and the counts below which the level stays the same and admission says yes) sits
//! beside it, written only by the holder of the service's lock while the word is *taken*:
//!
//! - Taking the service's lock also takes the word ([`FastPath::take`]: `fetch_or(TAKEN)`).
//!   From then on no fast call counts, and the lock holder adds the calls the fast path
//!   counted since the last release to the locked state, booked for a store like any call.
//! - Releasing ([`FastPath::release`], when the lock guard drops) writes the parameters for
//!   the state the lock leaves (if they changed), then the word: that count, the epoch (the
//!   next one if the parameters changed), not taken.
//! - A fast call ([`FastPath::try_count`]) loads the word, reads the parameters, checks that
//!   counting changes nothing but the count, and swaps the word it loaded for that plus its
//!   count. The swap succeeds only if nobody took the word in between, so the parameters it
//!   read belong to the count it added to (a seqlock read, validated by the swap itself).
//!
//! So a service still has one state and one writer of everything but the count, and the count
//! is only ever changed by an atomic read-modify-write: no update is lost. Anything else (a
//! window to roll over, a level to change, a denial, a count too large for the word, shared
//! admission, reduced rate) takes the lock as before.
//!
//! The epoch moves only when a release changes the parameters (a window or level change, a
//! raise): a release that changes nothing else leaves a fast call that loaded the word before
//! it right, or failing on the count, which only grows within an epoch. So the epoch's 25 bits
//! would have to wrap, through 2^25 such changes on one service while one thread stalls
//! between two instructions, and the count be the same again, before a swap could succeed on
//! parameters that are no longer in force.

use crate::locks::{AtomicU64, Ordering};
use crate::rules::{Ask, Request, ServiceRules, ServiceState};
use crate::window::Window;

const COUNT_BITS: u32 = 38;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Set while the service's lock holder owns the word (and for good while a service cannot use
/// the fast path).
const TAKEN: u64 = 1 << 63;
const EPOCH_ONE: u64 = 1 << COUNT_BITS;
const EPOCH_MASK: u64 = !TAKEN & !COUNT_MASK;
/// How often a fast call retries a swap that another fast call beat before it takes the lock.
const RETRIES: usize = 4;

/// The atomic word and the parameters of one service's fast path; one cache line.
#[repr(align(64))]
pub(crate) struct FastPath {
    word: AtomicU64,
    /// Readings from here (one period before the window) to `reset_at_ms` count in the window.
    from_ms: AtomicU64,
    start_ms: AtomicU64,
    reset_at_ms: AtomicU64,
    /// `total - used` of the released state (wrapping): a fast call's total is its count plus
    /// this.
    total_offset: AtomicU64,
    /// Counts below these change no level and (for the two admissions) are admitted.
    record_below: AtomicU64,
    normal_below: AtomicU64,
    priority_below: AtomicU64,
}

/// What a fast call leaves: the service's state right after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counted {
    pub(crate) used: u64,
    pub(crate) total: u64,
    pub(crate) window: Window,
}

impl Counted {
    pub(crate) fn state(self) -> ServiceState {
        ServiceState {
            used: self.used,
            total: self.total,
            window: self.window,
            left: None,
        }
    }
}

impl FastPath {
    /// A fast path that is taken: every call takes the lock until a lock holder releases it.
    pub(crate) fn new() -> Self {
        FastPath {
            word: AtomicU64::new(TAKEN),
            from_ms: AtomicU64::new(0),
            start_ms: AtomicU64::new(0),
            reset_at_ms: AtomicU64::new(0),
            total_offset: AtomicU64::new(0),
            record_below: AtomicU64::new(0),
            normal_below: AtomicU64::new(0),
            priority_below: AtomicU64::new(0),
        }
    }

    /// Counts the `request`'s calls at `now_ms` if that changes nothing but the count; `None`
    /// if the caller must take the lock: a read or reduced rate always does.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(crate) fn try_count(&self, now_ms: u64, request: Request) -> Option<Counted> {
        let count = request.count;
        let mut word = self.word.load(Ordering::Acquire);
        for _ in 0..RETRIES {
            if word & TAKEN != 0 {
                return None;
            }
            // Relaxed: ordered by the Acquire load before and the swap after (module docs).
            let from_ms = self.from_ms.load(Ordering::Relaxed);
            let reset_at_ms = self.reset_at_ms.load(Ordering::Relaxed);
            if now_ms < from_ms || now_ms >= reset_at_ms {
                return None;
            }
            let below = match (request.ask, request.reduced_rate) {
                (Ask::Record, _) => &self.record_below,
                (Ask::Normal, false) => &self.normal_below,
                (Ask::Priority, false) => &self.priority_below,
                // Reads and reduced rate (rare) take the lock.
                _ => return None,
            }
            .load(Ordering::Relaxed);
            let used = word & COUNT_MASK;
            // `below` is at most COUNT_MASK + 1, so `used + count` stays in the count's bits.
            if count >= below.saturating_sub(used) {
                return None;
            }
            let start_ms = self.start_ms.load(Ordering::Relaxed);
            let total_offset = self.total_offset.load(Ordering::Relaxed);
            match self.word.compare_exchange(
                word,
                word + count,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let used = used + count;
                    return Some(Counted {
                        used,
                        total: used.wrapping_add(total_offset),
                        window: Window {
                            start_ms,
                            reset_at_ms,
                        },
                    });
                }
                Err(now_word) => word = now_word,
            }
        }
        None
    }

    /// Takes the word (call it holding the service's lock): no fast call counts until
    /// [`release`](Self::release). Returns the word as taken and the calls the fast path
    /// counted since `published` (the count the last release left; `None` if it left the
    /// word taken).
    pub(crate) fn take(&self, published: Option<Published>) -> (u64, u64) {
        let word = self.word.fetch_or(TAKEN, Ordering::Acquire);
        let counted = match published {
            Some(published) if word & TAKEN == 0 => {
                (word & COUNT_MASK).wrapping_sub(published.used)
            }
            _ => 0,
        };
        (word, counted)
    }

    /// Publishes `state` for fast calls and gives the word back (call it holding the service's
    /// lock, after [`take`](Self::take) returned `taken`). `last` is what the last release
    /// published. Returns what this one published, or `None` if the word stays taken
    /// (`enabled` false, or a count the word cannot hold).
    ///
    /// The epoch moves only when the parameters change or the count goes back: a fast call
    /// that loaded the word before a release that changed neither cannot tell the difference,
    /// and needs none (its parameters are still the ones in force, and the count it swaps
    /// from is still the count). So the epoch's 25 bits count changes of window or level, not
    /// lock acquisitions (reads take the lock too), and reads write nothing but the word.
    pub(crate) fn release(
        &self,
        taken: u64,
        state: &ServiceState,
        rules: &ServiceRules,
        enabled: bool,
        last: Option<Published>,
    ) -> Option<Published> {
        let fits = state.used <= COUNT_MASK && state.total < u64::MAX - COUNT_MASK;
        if !enabled || !fits {
            // Still taken (it was taken by `take`): every call takes the lock.
            return None;
        }
        let params = Params::of(state, rules);
        let same = last.is_some_and(|last| last.params == params && last.used <= state.used);
        let mut epoch = taken & EPOCH_MASK;
        if !same {
            let relaxed = Ordering::Relaxed;
            self.from_ms.store(params.from_ms, relaxed);
            self.start_ms.store(params.start_ms, relaxed);
            self.reset_at_ms.store(params.reset_at_ms, relaxed);
            self.total_offset.store(params.total_offset, relaxed);
            self.record_below.store(params.record_below, relaxed);
            self.normal_below.store(params.normal_below, relaxed);
            self.priority_below.store(params.priority_below, relaxed);
            epoch = epoch.wrapping_add(EPOCH_ONE) & EPOCH_MASK;
        }
        self.word.store(epoch | state.used, Ordering::Release);
        Some(Published {
            used: state.used,
            params,
        })
    }
}

/// What a release published: the count and the parameters beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) used: u64,
    params: Params,
}

/// The fast path's parameters for one state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    from_ms: u64,
    start_ms: u64,
    reset_at_ms: u64,
    total_offset: u64,
    record_below: u64,
    normal_below: u64,
    priority_below: u64,
}

impl Params {
    /// The rules' boundaries and clock test for `state`, and no count the word cannot hold.
    fn of(state: &ServiceState, rules: &ServiceRules) -> Self {
        let below = |ask| rules.quiet_below(state.used, ask).min(COUNT_MASK + 1);
        let window = state.window;
        Params {
            from_ms: rules.earliest_reading(window),
            start_ms: window.start_ms,
            reset_at_ms: window.reset_at_ms,
            total_offset: state.total.wrapping_sub(state.used),
            record_below: below(Ask::Record),
            normal_below: below(Ask::Normal),
            priority_below: below(Ask::Priority),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
