//! Exactly once: each instance's operations record on a service (a low-water mark and the
//! answers of the operations above it, written as the Redis scripts write them), and the
//! operations that read and update it (admit, lease, give-back; `apply` in `mod.rs`).

use super::{admit_rule, StoredState};
use crate::store::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseReply, LeaseRequest, WindowKey,
};

/// What one instance's operation on one service was answered: kept so that a resend gets the
/// same answer. Written as text, as the Redis scripts write it: `1`, `a<total>/<raise_count>`,
/// `d<total>`, `g<granted>/<raise_count>`, `b<taken>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// A sync's deltas, applied.
    Applied,
    /// An admission, admitted: the total after, the window's raise count then.
    Admitted { total: u64, raise_count: u64 },
    /// An admission, refused; the total seen.
    Denied(u64),
    /// A lease: the calls granted, the window's raise count then.
    Granted { granted: u64, raise_count: u64 },
    /// A give-back: the calls taken off (0: forfeited).
    GivenBack(u64),
}

impl Answer {
    pub(super) fn text(self) -> String {
        match self {
            Answer::Applied => "1".into(),
            Answer::Admitted { total, raise_count } => format!("a{total}/{raise_count}"),
            Answer::Denied(total) => format!("d{total}"),
            Answer::Granted {
                granted,
                raise_count,
            } => format!("g{granted}/{raise_count}"),
            Answer::GivenBack(taken) => format!("b{taken}"),
        }
    }

    pub(super) fn parse(text: &str) -> Option<Answer> {
        if text == "1" {
            return Some(Answer::Applied);
        }
        let (kind, rest) = text.split_at_checked(1)?;
        // Decimal digits by hand: `str::parse` would add its own code to the JS module.
        let number = |digits: &str| -> Option<u64> {
            if digits.is_empty() {
                return None;
            }
            digits.bytes().try_fold(0u64, |n, b| {
                let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
                n.checked_mul(10)?.checked_add(u64::from(digit))
            })
        };
        let pair = || -> Option<(u64, u64)> {
            let (first, second) = rest.split_once('/')?;
            Some((number(first)?, number(second)?))
        };
        match kind {
            "a" => pair().map(|(total, raise_count)| Answer::Admitted { total, raise_count }),
            "d" => number(rest).map(Answer::Denied),
            "g" => pair().map(|(granted, raise_count)| Answer::Granted {
                granted,
                raise_count,
            }),
            "b" => number(rest).map(Answer::GivenBack),
            _ => None,
        }
    }
}

/// One instance's operations on one service (see the module rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ops {
    pub(super) instance: InstanceId,
    pub(super) service: String,
    /// Every `seq` below this was answered and is never applied again.
    pub(super) low: u64,
    /// The `seq`s applied at or above `low`, with their answers, by `seq` (a few: the
    /// instance's operations in flight; a vector, which adds no map code to the JS module).
    pub(super) done: Vec<(u64, Answer)>,
    /// Kept until a window of the service starts at or after this (ms since the Unix epoch):
    /// the end of the last window counted in, plus the grace.
    pub(super) until_ms: u64,
    /// Rises with every change: the least recently seen records are evicted first.
    pub(super) seen: u64,
}

/// Where an operation's `seq` stands in its record.
pub(super) enum Seen {
    /// Below the low-water mark: answered long ago.
    Stale,
    /// Applied already, with this answer.
    Done(Answer),
    /// Not applied yet.
    New,
}

/// Puts `seq`'s answer in `done`, kept in `seq` order (a second answer for a `seq` replaces the
/// first).
pub(super) fn add_done(done: &mut Vec<(u64, Answer)>, seq: u64, answer: Answer) {
    let at = done.partition_point(|(other, _)| *other < seq);
    match done.get_mut(at) {
        Some(entry) if entry.0 == seq => entry.1 = answer,
        _ => done.insert(at, (seq, answer)),
    }
}

impl StoredState {
    /// [`Store::admit`](crate::Store::admit) on this state.
    pub fn admit(&mut self, request: &AdmitRequest) -> AdmitReply {
        use AdmitReply::{Admitted, Denied};
        self.applies += 1;
        let window = &request.window;
        let op = (request.instance, request.seq, request.done_below);
        let total = self.total(window);
        let reply = match self.seen(&window.service, request.instance, request.seq) {
            // A retry whose first answer was lost: the same answer, counted once.
            Seen::Done(Answer::Admitted { total, raise_count }) => Admitted { total, raise_count },
            Seen::Done(Answer::Denied(total)) => Denied { total },
            // Answered long ago (or a number reused for another kind): nothing added.
            Seen::Stale | Seen::Done(_) => Denied { total },
            Seen::New => {
                let reply = match admit_rule(total, request) {
                    Some(after) => {
                        let stored = self.window_mut(window);
                        stored.total = after.min(Self::MAX_TOTAL);
                        Admitted {
                            total: stored.total,
                            raise_count: stored.raise_count,
                        }
                    }
                    None => Denied { total },
                };
                let answer = match reply {
                    Admitted { total, raise_count } => Answer::Admitted { total, raise_count },
                    Denied { total } => Answer::Denied(total),
                };
                self.record_op(window, op, Some(answer));
                return reply;
            }
        };
        self.record_op(window, op, None);
        reply
    }

    /// [`Store::lease`](crate::Store::lease) on this state.
    pub fn lease(&mut self, request: &LeaseRequest) -> LeaseReply {
        self.applies += 1;
        let window = &request.window;
        let op = (request.instance, request.seq, request.done_below);
        let raise_count_now = self.raise_count(window);
        let (granted, raise_count, answer) =
            match self.seen(&window.service, request.instance, request.seq) {
                Seen::Done(Answer::Granted {
                    granted,
                    raise_count,
                }) => (granted, raise_count, None),
                Seen::Stale | Seen::Done(_) => (0, raise_count_now, None),
                Seen::New => {
                    let total = self.total(window);
                    // Never more than the total can count (it stops at MAX_TOTAL).
                    let granted = request
                        .block
                        .min(request.ceiling.saturating_sub(total))
                        .min(Self::MAX_TOTAL.saturating_sub(total));
                    if granted > 0 {
                        let stored = self.window_mut(window);
                        stored.total = stored.total.saturating_add(granted).min(Self::MAX_TOTAL);
                    }
                    let answer = Answer::Granted {
                        granted,
                        raise_count: raise_count_now,
                    };
                    (granted, raise_count_now, Some(answer))
                }
            };
        self.record_op(window, op, answer);
        LeaseReply {
            granted,
            total: self.total(window),
            raise_count,
        }
    }

    /// [`Store::give_back`](crate::Store::give_back) on this state: the calls taken off.
    pub fn give_back(&mut self, request: &GiveBack) -> u64 {
        self.applies += 1;
        let window = &request.window;
        let op = (request.instance, request.seq, request.done_below);
        let (taken, answer) = match self.seen(&window.service, request.instance, request.seq) {
            Seen::Done(Answer::GivenBack(taken)) => (taken, None),
            Seen::Stale | Seen::Done(_) => (0, None),
            Seen::New => {
                // Raised since the calls were counted: the floor may have absorbed them.
                let raised = self.raise_count(window) != request.raise_count;
                let taken = match request.unused.min(self.total(window)) {
                    0 => 0,
                    _ if raised => 0,
                    taken => {
                        self.window_mut(window).total -= taken;
                        taken
                    }
                };
                (taken, Some(Answer::GivenBack(taken)))
            }
        };
        self.record_op(window, op, answer);
        taken
    }

    /// The raise count of `window` (0 if none is stored).
    fn raise_count(&self, window: &WindowKey) -> u64 {
        self.windows
            .get(&(window.service.clone(), window.spec.key(), window.start_ms))
            .map_or(0, |w| w.raise_count)
    }

    /// Where `seq` stands in the record of `instance` on `service`.
    pub(super) fn seen(&self, service: &str, instance: InstanceId, seq: u64) -> Seen {
        let Some(ops) = self.ops.get(&(service.to_owned(), instance)) else {
            return Seen::New;
        };
        if seq < ops.low {
            return Seen::Stale;
        }
        match ops.done.iter().find(|(done, _)| *done == seq) {
            Some(&(_, answer)) => Seen::Done(answer),
            None => Seen::New,
        }
    }

    /// [`record`](Self::record) after an admission, lease or give-back on `window`, whose
    /// `(instance, seq, done_below)` is `op`.
    fn record_op(
        &mut self,
        window: &WindowKey,
        (instance, seq, done_below): (InstanceId, u64, u64),
        answer: Option<Answer>,
    ) {
        let (service, end_ms) = (&window.service, window.end_ms);
        self.record(service, instance, seq, done_below, answer, end_ms);
    }

    /// Forgets what is old, then updates the record of `instance` on `service` after an
    /// operation: its answer (if it was applied now), the low-water mark, how long it lives.
    pub(super) fn record(
        &mut self,
        service: &str,
        instance: InstanceId,
        seq: u64,
        done_below: u64,
        answer: Option<Answer>,
        end_ms: u64,
    ) {
        // What is old goes first, but not this record: the operation was judged by it (a late
        // operation for a long-ended window keeps it until the next window starts; a resend
        // comes soon after a lost reply).
        self.forget_old(service, Some(instance));
        let seen = self.applies;
        let until_ms = end_ms.saturating_add(Self::RECORD_GRACE_MS);
        let ops = self
            .ops
            .entry((service.to_owned(), instance))
            .or_insert_with(|| Ops {
                instance,
                service: service.to_owned(),
                low: 0,
                done: Vec::new(),
                until_ms,
                seen,
            });
        if let Some(answer) = answer {
            add_done(&mut ops.done, seq, answer);
        }
        if done_below > ops.low {
            ops.low = done_below;
            let low = ops.low;
            ops.done.retain(|&(seq, _)| seq >= low);
        }
        ops.until_ms = ops.until_ms.max(until_ms);
        ops.seen = seen;
    }
}
