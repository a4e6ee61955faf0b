//! A service's ledger: what a shared store has not acknowledged yet (calls of the current
//! window and of ended ones, raises, calls asked of the store whose answer is not in, and the
//! operations queued for the next sync). It lives inside the service's lock-guarded state and
//! is booked in the same acquisition as the count.

use crate::config::SHARED_ADMISSION;
use crate::rules::Step;
use crate::store::{AdmitRequest, Delta, GiveBack, LeaseRequest, Raise, WindowKey};
use crate::window::Window;

/// A service's calls a store has not acknowledged yet. `service.used` is the store's total of
/// the current window at the last sync plus `unacked`.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Calls of the current window not acknowledged by a reply.
    pub(crate) unacked: u64,
    /// How many of `unacked` are in the batch in flight (or whose reply was lost), and their
    /// window: once the window moves on, those calls belong to the batch alone.
    pub(crate) cut: u64,
    pub(crate) cut_window: Option<Window>,
    /// Calls of ended windows not cut into a batch yet (a delta for a window that ended is
    /// added to that window, never to the next).
    pub(crate) ended: Vec<(Window, u64)>,
    /// Operations for the next sync to send (give-backs, and admissions and leases whose
    /// answer was lost: those refused to the caller stay booked in `floor_asked` until then).
    pub(crate) queued: Queued,
    /// A raise of the current window that no reply has acknowledged as it is now: the window
    /// and the floor to send (`used` right after the raise, plus the calls counted since).
    /// Every batch carries it (a maximum: resending it is harmless) until a reply
    /// acknowledges this very value: calls a store adds before it applies the floor (shared
    /// admission, or a batch resent late) would otherwise be absorbed by it.
    pub(crate) raise: Option<(Window, u64)>,
    /// Raises of windows that ended before they were cut.
    pub(crate) ended_raises: Vec<(Window, u64)>,
    /// How many raises lifted this limit's count, ever (a hold settled after one forfeits its
    /// give-back: the floor may hold its calls).
    pub(crate) raises: u64,
    /// Calls asked of the store (`Exact` admissions, leased blocks) whose answer is not taken
    /// in yet. While any is unanswered no reply acknowledges a floor (the store may have added
    /// the call before the floor, which absorbed it); and the store cannot hold a floor it has
    /// not seen against a call, so admission checks the floor plus these here first.
    pub(crate) floor_asked: u64,
    /// Calls and raises of windows this service no longer counts in (a reconfigure changed its
    /// window spec or removed it), keyed as they were counted; the next cut sends them.
    pub(crate) detached: Vec<Delta>,
    pub(crate) detached_raises: Vec<Raise>,
    /// Calls in give-backs handed to a sync so far (a running sum): a store reply computed
    /// before they reached the store, and taken in after, still counts them (see
    /// `QuotaTracker::take_total`).
    pub(crate) backs_sent: u64,
}

impl Ledger {
    /// Books a step: counted calls, and a window that moved (the old window's calls not cut
    /// yet go to `ended`; the new one starts with what the step carried into it).
    pub(crate) fn book(&mut self, old_window: Window, step: &Step, counted: u64) {
        if let Some(carried) = step.moved {
            let cut = if self.cut_window == Some(old_window) {
                self.cut
            } else {
                0
            };
            let pending = self.unacked.saturating_sub(cut);
            // The calls cut from the old window now belong to the batch alone: its reply
            // must not take them off the new window's count.
            self.cut = 0;
            self.cut_window = None;
            if pending > 0 {
                match self.ended.iter_mut().find(|(w, _)| *w == old_window) {
                    Some((_, calls)) => *calls = calls.saturating_add(pending),
                    None => self.ended.push((old_window, pending)),
                }
            }
            self.unacked = carried;
            // A raise not cut yet belongs to the window it was seen in.
            if let Some(raise) = self.raise.take() {
                self.ended_raises.push(raise);
            }
        }
        self.unacked = self.unacked.saturating_add(counted);
        if let Some((_, floor)) = &mut self.raise {
            *floor = floor.saturating_add(counted);
        }
    }
}

impl Ledger {
    /// Leaves the current window `current` and every ended one for good (a reconfigure that
    /// changes the window spec or removes the service): what no batch holds yet moves to
    /// `detached`, keyed by `key` (the spec they were counted under), for the next cut to
    /// send. Calls cut into a batch in flight belong to that batch alone, as when a window
    /// moves ([`book`](Self::book)); the new window starts with nothing unacknowledged.
    // `key` as a trait object: one copy of this cold path in the JS module, not one per
    // reconfigure step that detaches.
    pub(crate) fn detach(&mut self, current: Window, key: &dyn Fn(Window) -> WindowKey) {
        self.book(current, &Step::moved_by(0), 0);
        for (window, calls) in self.ended.drain(..) {
            self.detached.push(Delta {
                window: key(window),
                calls,
            });
        }
        for (window, at_least) in self.ended_raises.drain(..) {
            self.detached_raises.push(Raise {
                window: key(window),
                at_least,
            });
        }
    }

    /// Takes what `other` owes the store outside its windows (its detached calls and raises,
    /// its queued operations, its calls asked of the store unanswered), which only the
    /// service's first limit's ledger sends: `other` keeps its windows' calls. For a ledger a
    /// reconfigure moves off the first limit, and for one of a limit it drops or a service it
    /// removes (after [`detach`](Self::detach), so that its windows owe nothing either).
    pub(crate) fn take_owed(&mut self, other: &mut Ledger) {
        self.detached.append(&mut other.detached);
        self.detached_raises.append(&mut other.detached_raises);
        self.queued.append(&mut other.queued);
        self.floor_asked = self
            .floor_asked
            .saturating_add(std::mem::take(&mut other.floor_asked));
    }

    /// Calls counted in `window` outside [`book`](Self::book) (shared admission: admitted by
    /// the store, held, or a leased block, whole, when it is granted) add to a floor not synced
    /// yet, which the store would otherwise absorb; returns the floor.
    pub(crate) fn after_raise(&mut self, window: Window, count: u64) -> Option<u64> {
        let (raised, floor) = self.raise.as_mut()?;
        if *raised != window {
            return None;
        }
        *floor = floor.saturating_add(count);
        Some(*floor)
    }

    /// Moves the queued operations to `sync`'s queue (a cut), counting the give-backs' calls
    /// in `backs_sent`.
    pub(crate) fn hand_over(&mut self, sync: &mut Queued) {
        let (_, backs) = self.queued.unresolved_backs();
        self.backs_sent = self.backs_sent.wrapping_add(backs);
        sync.append(&mut self.queued);
    }

    /// Takes up to `calls` of `window`'s calls this ledger has not sent yet back (`current`:
    /// whether `window` is the current one): the store never sees them. Calls cut into a batch
    /// in flight, or acknowledged, are the store's: returns how many were taken back, and the
    /// caller gives the rest back through the store.
    pub(crate) fn take_back(&mut self, window: Window, current: bool, calls: u64) -> u64 {
        if current {
            let cut = if self.cut_window == Some(window) {
                self.cut
            } else {
                0
            };
            let taken = calls.min(self.unacked.saturating_sub(cut));
            self.unacked -= taken;
            return taken;
        }
        let Some(at) = self.ended.iter().position(|(w, _)| *w == window) else {
            return 0;
        };
        let pending = &mut self.ended[at].1;
        let taken = calls.min(*pending);
        *pending -= taken;
        if *pending == 0 {
            self.ended.remove(at);
        }
        taken
    }

    /// A raise lifted the count of `window` to `floor`: the floor to sync (with a store), and
    /// one more raise (a hold counted before it forfeits its give-back, store or not).
    pub(crate) fn raised(&mut self, window: Window, floor: u64, booking: bool) {
        if booking {
            self.raise = Some((window, floor));
        }
        self.raises = self.raises.wrapping_add(1);
    }

    /// Takes `calls` given back off the unacknowledged floor of `window`, if one is pending:
    /// calls counted after a raise were added to its floor (see [`book`](Self::book)).
    pub(crate) fn lower_floor(&mut self, window: Window, calls: u64) {
        for (raised, floor) in self.raise.iter_mut().chain(self.ended_raises.iter_mut()) {
            if *raised == window {
                *floor = floor.saturating_sub(calls);
            }
        }
    }

    /// Books `calls` counted in `window` after it ended (a hold settled above its estimate):
    /// the next cut sends them to that window, never to the current one.
    pub(crate) fn book_ended(&mut self, window: Window, calls: u64) {
        match self.ended.iter_mut().find(|(w, _)| *w == window) {
            Some((_, pending)) => *pending = pending.saturating_add(calls),
            None => self.ended.push((window, calls)),
        }
    }

    /// The floor of `window` the store may not hold yet, plus the calls asked of the store
    /// since (`None`: no such floor).
    pub(crate) fn floor_seen(&self, window: Window) -> Option<u64> {
        let (raised, floor) = self.raise?;
        (raised == window).then(|| floor.saturating_add(self.floor_asked))
    }
}

/// Operations whose outcome the store has not told yet, each sent as it is until the store
/// answers it. A service's ledger queues them under its lock; a cut moves them to the save
/// lock's queue, which sends them (store I/O is never done under a service's lock).
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// Calls to give back (unused leased calls, admissions applied but refused to the caller).
    pub(crate) give_backs: Vec<GiveBack>,
    /// `Exact` admissions whose answer was lost.
    pub(crate) admits: Vec<HeldAdmit>,
    /// Leases whose answer was lost: asked again, as they are, until the store answers (a
    /// retry gets the same grant, counted once), then given back (or forfeited after a raise):
    /// never stranded, never granted twice.
    pub(crate) leases: Vec<LeaseRequest>,
}

impl Queued {
    /// Moves every operation of `other` to the end of this queue.
    pub(crate) fn append(&mut self, other: &mut Queued) {
        // Only shared admission queues operations: without it this is compiled out.
        if !SHARED_ADMISSION {
            return;
        }
        self.give_backs.append(&mut other.give_backs);
        self.admits.append(&mut other.admits);
        self.leases.append(&mut other.leases);
    }

    /// The calls of `window` these give-backs take off (as their own window, or one of their
    /// others): the store counts them until the give-backs reach it.
    pub(crate) fn giving_back(&self, window: &WindowKey) -> u64 {
        if !SHARED_ADMISSION {
            return 0;
        }
        self.give_backs
            .iter()
            .filter(|back| back.window == *window || back.also.iter().any(|w| w.window == *window))
            .map(|back| back.unused)
            .fold(0, u64::saturating_add)
    }

    /// (give-backs, calls) queued.
    pub(crate) fn unresolved_backs(&self) -> (u64, u64) {
        if !SHARED_ADMISSION {
            return (0, 0);
        }
        let calls = self.give_backs.iter().map(|back| back.unused);
        (
            self.give_backs.len() as u64,
            calls.fold(0, u64::saturating_add),
        )
    }

    /// (operations, calls) queued.
    pub(crate) fn unresolved(&self) -> (u64, u64) {
        if !SHARED_ADMISSION {
            return (0, 0);
        }
        let ops = self.give_backs.len() + self.admits.len() + self.leases.len();
        let calls = self
            .give_backs
            .iter()
            .map(|back| back.unused)
            .chain(self.admits.iter().map(|held| held.request.count))
            .chain(self.leases.iter().map(|lease| lease.block))
            .fold(0u64, u64::saturating_add);
        (ops as u64, calls)
    }
}

/// An `Exact` admission whose answer was lost, kept until the store answers it.
#[derive(Debug, Clone)]
pub(crate) struct HeldAdmit {
    pub(crate) request: AdmitRequest,
    /// Whether the caller was told it was admitted (a `record_call`, counted in the view);
    /// otherwise it was told refused, and calls the store applied anyway are given back.
    pub(crate) counted: bool,
}
