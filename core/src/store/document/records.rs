//! Exactly once: each instance's operations record on a service (a low-water mark and the
//! answers of the operations above it, written as the Redis scripts write them), and the
//! operations that read and update it (admit, lease, give-back; `apply` in `mod.rs`).

use super::{admit_rule, StoredState};
use crate::store::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseReply, LeaseRequest, WindowKey,
    WindowTotal,
};

/// What one instance's operation on one service was answered: kept so that a resend gets the
/// same answer. Written as text, as the Redis scripts write it: `1` (a sync's deltas, applied),
/// `a<total>/<raise_count>` (an admission, admitted: the total after, the window's raise count
/// then), `d<total>` (refused: the total seen), `g<granted>/<raise_count>` (a lease), `b<taken>`
/// (a give-back: the calls taken off, 0 if forfeited). An admission or lease of several windows
/// (a service of several limits) adds each other window's after a comma: `a5/0,40/1`, `d9,40`,
/// `g5/0,1`. Kept as its kind and its numbers in the order the text lists them: the JS module
/// reads and writes these too, and this form costs it the least code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    kind: u8,
    numbers: Vec<u64>,
}

impl Answer {
    pub(super) const APPLIED: Answer = Answer {
        kind: b'1',
        numbers: Vec::new(),
    };

    /// Admitted: each window's total after and raise count then (the request's first).
    pub(super) fn admitted(windows: &[WindowTotal]) -> Answer {
        let numbers = windows
            .iter()
            .flat_map(|w| [w.total, w.raise_count])
            .collect();
        Answer {
            kind: b'a',
            numbers,
        }
    }

    /// Refused: each window's total seen.
    pub(super) fn denied(totals: &[u64]) -> Answer {
        Answer {
            kind: b'd',
            numbers: totals.to_vec(),
        }
    }

    /// A lease: the calls granted, each window's raise count then.
    pub(super) fn granted(granted: u64, raise_counts: &[u64]) -> Answer {
        let mut numbers = vec![granted];
        numbers.extend_from_slice(raise_counts);
        Answer {
            kind: b'g',
            numbers,
        }
    }

    /// A give-back: the calls taken off.
    pub(super) fn given_back(taken: u64) -> Answer {
        Answer {
            kind: b'b',
            numbers: vec![taken],
        }
    }

    /// The windows of an admission of `windows` windows that was admitted.
    pub(super) fn as_admitted(&self, windows: usize) -> Option<Vec<WindowTotal>> {
        (self.kind == b'a' && self.numbers.len() == 2 * windows).then(|| {
            self.numbers
                .chunks_exact(2)
                .map(|pair| WindowTotal {
                    total: pair[0],
                    raise_count: pair[1],
                })
                .collect()
        })
    }

    /// The totals seen by a refused admission of `windows` windows.
    pub(super) fn as_denied(&self, windows: usize) -> Option<&[u64]> {
        (self.kind == b'd' && self.numbers.len() == windows).then_some(&self.numbers[..])
    }

    /// The grant and raise counts of a lease of `windows` windows.
    pub(super) fn as_granted(&self, windows: usize) -> Option<(u64, &[u64])> {
        (self.kind == b'g' && self.numbers.len() == 1 + windows)
            .then(|| (self.numbers[0], &self.numbers[1..]))
    }

    /// The calls a give-back took off.
    pub(super) fn as_given_back(&self) -> Option<u64> {
        (self.kind == b'b' && self.numbers.len() == 1).then(|| self.numbers[0])
    }

    /// The mark a `kind` puts before its `at`th number.
    fn mark(kind: u8, at: usize) -> u8 {
        match kind {
            _ if at == 0 => kind,
            b'a' if at % 2 == 1 => b'/',
            b'g' if at == 1 => b'/',
            _ => b',',
        }
    }

    pub(super) fn text(&self) -> String {
        // By hand, byte by byte: iterator adapters and `fmt` would add their code to the JS
        // module.
        if self.kind == b'1' {
            return "1".into();
        }
        let mut out = String::new();
        for (at, &number) in self.numbers.iter().enumerate() {
            out.push(char::from(Self::mark(self.kind, at)));
            push_decimal(&mut out, number);
        }
        out
    }

    pub(super) fn parse(text: &str) -> Option<Answer> {
        if text == "1" {
            return Some(Answer::APPLIED);
        }
        let kind = *text.as_bytes().first()?;
        let mut numbers = Vec::new();
        let mut number: Option<u64> = None;
        for (at, &byte) in text.as_bytes().iter().enumerate() {
            if byte.is_ascii_digit() {
                let digit = u64::from(byte - b'0');
                number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(digit)?);
            } else {
                // A mark ends the number before it (the kind, first, ends none), and is the one
                // the kind puts before the next.
                if at > 0 {
                    numbers.push(number.take()?);
                }
                if byte != Self::mark(kind, numbers.len()) {
                    return None;
                }
            }
        }
        numbers.push(number?);
        let count = numbers.len();
        let whole = match kind {
            b'a' => count % 2 == 0,
            b'd' => true,
            b'g' => count >= 2,
            b'b' => count == 1,
            _ => false,
        };
        whole.then_some(Answer { kind, numbers })
    }
}

/// `number` in decimal digits at the end of `out`.
fn push_decimal(out: &mut String, mut number: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
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
    /// [`Store::admit`](crate::Store::admit) on this state: every window of the request
    /// (its own, then `also`) admits the calls, or none is counted. The windows are distinct
    /// windows of one service ([`AdmitRequest::check`], which the stores ask first).
    pub fn admit(&mut self, request: &AdmitRequest) -> AdmitReply {
        self.applies += 1;
        let op = (request.instance, request.seq, request.done_below);
        let rules: Vec<(&WindowKey, u64, u64)> =
            std::iter::once((&request.window, request.below, request.cap))
                .chain(request.also.iter().map(|w| (&w.window, w.below, w.cap)))
                .collect();
        let windows: Vec<&WindowKey> = rules.iter().map(|&(window, ..)| window).collect();
        let totals: Vec<u64> = windows.iter().map(|w| self.total(w)).collect();
        let (reply, answer) =
            match self.seen(&request.window.service, request.instance, request.seq) {
                Seen::Done(answer) => {
                    let n = windows.len();
                    match (answer.as_admitted(n), answer.as_denied(n)) {
                        // A retry whose first answer was lost: the same answer, counted once.
                        (Some(counted), _) => (admitted(counted), None),
                        (None, Some(seen)) => (denied(seen), None),
                        // A number reused for another operation: nothing added.
                        (None, None) => (denied(&totals), None),
                    }
                }
                // Answered long ago: nothing added.
                Seen::Stale => (denied(&totals), None),
                Seen::New => {
                    let fits = rules.iter().zip(&totals).all(|(&(_, below, cap), &total)| {
                        admit_rule(total, request.count, below, cap, request.force).is_some()
                    });
                    if fits {
                        let counted: Vec<WindowTotal> = windows
                            .iter()
                            .map(|&window| {
                                let stored = self.window_mut(window);
                                stored.total = stored
                                    .total
                                    .saturating_add(request.count)
                                    .min(Self::MAX_TOTAL);
                                WindowTotal {
                                    total: stored.total,
                                    raise_count: stored.raise_count,
                                }
                            })
                            .collect();
                        let answer = Answer::admitted(&counted);
                        (admitted(counted), Some(answer))
                    } else {
                        (denied(&totals), Some(Answer::denied(&totals)))
                    }
                }
            };
        self.record_op(&windows, op, answer);
        reply
    }

    /// [`Store::lease`](crate::Store::lease) on this state: the most every window of the
    /// request has room for, granted in all of them.
    pub fn lease(&mut self, request: &LeaseRequest) -> LeaseReply {
        self.applies += 1;
        let op = (request.instance, request.seq, request.done_below);
        let ceilings: Vec<(&WindowKey, u64)> = std::iter::once((&request.window, request.ceiling))
            .chain(request.also.iter().map(|w| (&w.window, w.ceiling)))
            .collect();
        let windows: Vec<&WindowKey> = ceilings.iter().map(|&(window, _)| window).collect();
        let raise_counts_now: Vec<u64> = windows.iter().map(|w| self.raise_count(w)).collect();
        let seen = self.seen(&request.window.service, request.instance, request.seq);
        let first_grant = match &seen {
            Seen::Done(answer) => answer.as_granted(windows.len()),
            _ => None,
        };
        let (granted, raise_counts, answer) = match (first_grant, &seen) {
            // A resend: the first grant again.
            (Some((granted, raise_counts)), _) => (granted, raise_counts.to_vec(), None),
            (None, Seen::New) => {
                // Never more than a total can count (it stops at MAX_TOTAL).
                let granted = ceilings
                    .iter()
                    .fold(request.block, |granted, &(window, ceiling)| {
                        let total = self.total(window);
                        granted
                            .min(ceiling.saturating_sub(total))
                            .min(Self::MAX_TOTAL.saturating_sub(total))
                    });
                if granted > 0 {
                    for window in &windows {
                        let stored = self.window_mut(window);
                        stored.total = stored.total.saturating_add(granted).min(Self::MAX_TOTAL);
                    }
                }
                let answer = Answer::granted(granted, &raise_counts_now);
                (granted, raise_counts_now, Some(answer))
            }
            // Answered long ago, or a number reused for another operation: nothing granted.
            (None, _) => (0, raise_counts_now, None),
        };
        self.record_op(&windows, op, answer);
        let mut now = windows
            .iter()
            .zip(raise_counts)
            .map(|(window, raise_count)| WindowTotal {
                total: self.total(window),
                raise_count,
            });
        let first = now.next().unwrap_or(WindowTotal {
            total: 0,
            raise_count: 0,
        });
        LeaseReply {
            granted,
            total: first.total,
            raise_count: first.raise_count,
            also: now.collect(),
        }
    }

    /// [`Store::give_back`](crate::Store::give_back) on this state: each window takes the
    /// calls off, or forfeits them, on its own; returns the fewest any window took off.
    pub fn give_back(&mut self, request: &GiveBack) -> u64 {
        self.applies += 1;
        let op = (request.instance, request.seq, request.done_below);
        let windows: Vec<(&WindowKey, u64)> =
            std::iter::once((&request.window, request.raise_count))
                .chain(request.also.iter().map(|w| (&w.window, w.raise_count)))
                .collect();
        let keys: Vec<&WindowKey> = windows.iter().map(|&(window, _)| window).collect();
        let (taken, answer) =
            match self.seen(&request.window.service, request.instance, request.seq) {
                // A resend: the first answer (a number reused for another operation: nothing).
                Seen::Done(answer) => (answer.as_given_back().unwrap_or(0), None),
                Seen::Stale => (0, None),
                Seen::New => {
                    let mut fewest: Option<u64> = None;
                    for &(window, raise_count) in &windows {
                        // Raised since the calls were counted: the floor may have absorbed them.
                        let raised = self.raise_count(window) != raise_count;
                        let taken = match request.unused.min(self.total(window)) {
                            0 => 0,
                            _ if raised => 0,
                            taken => {
                                self.window_mut(window).total -= taken;
                                taken
                            }
                        };
                        fewest = Some(fewest.map_or(taken, |fewest| fewest.min(taken)));
                    }
                    let taken = fewest.unwrap_or(0);
                    (taken, Some(Answer::given_back(taken)))
                }
            };
        self.record_op(&keys, op, answer);
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
            Some((_, answer)) => Seen::Done(answer.clone()),
            None => Seen::New,
        }
    }

    /// [`record`](Self::record) after an admission, lease or give-back on `windows` (of one
    /// service; the record lives until the last of them ends), whose `(instance, seq,
    /// done_below)` is `op`.
    fn record_op(
        &mut self,
        windows: &[&WindowKey],
        (instance, seq, done_below): (InstanceId, u64, u64),
        answer: Option<Answer>,
    ) {
        let Some(first) = windows.first() else {
            return;
        };
        let end_ms = windows
            .iter()
            .map(|w| w.end_ms)
            .max()
            .unwrap_or(first.end_ms);
        self.record(&first.service, instance, seq, done_below, answer, end_ms);
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

/// An admission's reply from its windows' totals and raise counts (the request's window first).
fn admitted(mut windows: Vec<WindowTotal>) -> AdmitReply {
    let first = if windows.is_empty() {
        WindowTotal {
            total: 0,
            raise_count: 0,
        }
    } else {
        windows.remove(0)
    };
    AdmitReply::Admitted {
        total: first.total,
        raise_count: first.raise_count,
        also: windows,
    }
}

/// A refusal's reply from its windows' totals (the request's window first).
fn denied(totals: &[u64]) -> AdmitReply {
    let (total, also) = totals.split_first().unwrap_or((&0, &[]));
    AdmitReply::Denied {
        total: *total,
        also: also
            .iter()
            .map(|&total| WindowTotal {
                total,
                raise_count: 0,
            })
            .collect(),
    }
}
