//! Sequences of sync batches (deltas and floors), exact admissions, leases and give-backs
//! applied to one `StoredState`, as concurrent trackers would send them to a store: each
//! resent at once, older ones resent late, in any order, with `done_below` marks, and one
//! `seq` space per instance shared by every kind of operation.
//!
//! The rule under test (`Store`, "Exactly once"; `StoredState`'s module doc): per service and
//! instance one record; an operation whose `seq` that record holds, or whose `seq` is below a
//! `done_below` it was sent, changes nothing (a sync's floors still apply); any other applies.
//! A record is kept until `until` (the end of the last window it counted in, plus
//! `RECORD_GRACE_MS`) has passed: until a window of its service starts from `until` to two
//! periods and a grace after it (a window further ahead, from a clock far ahead, does not
//! count), or the service's `WINDOWS_KEPT` kept windows of a period all start at or after it;
//! at most `RECORDS_KEPT` records in all. The target remembers, per service and instance, every
//! `seq` and `done_below` sent with its window's end, and every window start that may have been
//! stored, so it knows per service whether an operation is
//! - **fresh** (no operation of the instance on the service ever sent its `seq`, nor a
//!   `done_below` above it): it must apply exactly as a model of the windows says: deltas
//!   added and capped at `MAX_TOTAL`; an admission by the `admit` rule, answering the window's
//!   raise count; a lease grants `min(block, ceiling - total)` and the total rises by it
//!   (capped); a give-back takes off `min(unused, total)`, or nothing if the window's raise
//!   count is no longer the one it carries; new windows created (not by a give-back); each
//!   service keeps its `WINDOWS_KEPT` latest windows per period;
//! - **a resend** (an operation that sent its `seq`, or a `done_below` above it, wrote a record
//!   that cannot have expired by that rule, and no record was evicted): nothing changes but by
//!   floors (so a stale operation never applies), and an admission, lease or give-back answers
//!   as the first send did (or as a stale one: `Denied` with the total now, a grant of 0 with
//!   the raise count now, 0 taken off);
//! - otherwise either of the two, all or nothing per service.
//!
//! A sync's floors apply either way: each window's largest floor above 0 makes its total at
//! least that and counts one more raise, once per batch.
//!
//! Checks, after every operation:
//! - nothing panics;
//! - no total exceeds `StoredState::MAX_TOTAL`, stored or in a reply;
//! - the windows (totals, raise counts) of each service are as above, the other services'
//!   unchanged;
//! - an immediate retry (the same request again) is a resend on every service, whatever the
//!   windows: it changes no total and answers the same (a stale answer if the operation's own
//!   `done_below` is above its `seq`);
//! - a late retry of any earlier operation (`Retry`) changes no total while its record cannot
//!   have expired, and then answers as the first send or as a stale one;
//! - a read answers the stored totals; a lease answers the total after; a lease that raised a
//!   total granted at most its block and the headroom below its ceiling, and the total rose by
//!   exactly the grant (capped); a give-back lowers a total by at most `unused`, by exactly what
//!   it answers or not at all; an admission that raised a total was admitted by the rule and
//!   answered that total;
//! - the state survives `to_json`/`from_json` with equal windows and a fixed-point JSON; the
//!   operations go on from the re-read state, so lost records would show as double counts.
//!
//! The inputs are `arbitrary`-derived mirrors of the quota-core types (which do not derive
//! `Arbitrary`), drawn from small domains so that services, windows, instances and seqs collide.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quota_core::{
    AdmitReply, AdmitRequest, Delta, GiveBack, InstanceId, LeaseReply, LeaseRequest, Period, Raise,
    StoredState, StoredWindow, SyncBatch, WindowKey, WindowSpec,
};
use std::collections::{BTreeMap, BTreeSet};

/// Operations per input, at most (keeps each run fast).
const MAX_OPS: usize = 64;

const MAX_TOTAL: u64 = StoredState::MAX_TOTAL;

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Sync(FuzzBatch),
    /// Re-sends the operation sent this many operations ago (modulo how many there were).
    Retry(u8),
    Admit(FuzzAdmit),
    Lease(FuzzLease),
    GiveBack(FuzzGiveBack),
    /// Replaces the state with `from_json(to_json())`.
    RoundTrip,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzService {
    Few(u8),
    Any(u32),
    Empty,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzPeriod {
    Minute,
    Hour,
    Day,
    Month,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzTime {
    /// The n-th window of the period (n small, so windows repeat and pass the kept count).
    Nth(u8),
    Any(u64),
    Max,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzCount {
    Small(u8),
    Any(u64),
    NearCap(u8),
    Max,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzInstance {
    Few(u8),
    Any(u128),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzSeq {
    Small(u8),
    Any(u64),
}

/// An operation's `done_below`: mostly 0 (as a first send), sometimes its own seq or below (as
/// a tracker sends), sometimes above it or anything (a store must not trust it).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzDoneBelow {
    Zero,
    Zero2,
    Zero3,
    Zero4,
    Seq,
    Below(u8),
    Above(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone)]
struct FuzzWindow {
    service: FuzzService,
    period: FuzzPeriod,
    start: FuzzTime,
    /// Usually the period's end; sometimes another value (a store must not trust it).
    odd_end: Option<u64>,
}

#[derive(Arbitrary, Debug, Clone)]
struct FuzzBatch {
    instance: FuzzInstance,
    seq: FuzzSeq,
    done_below: FuzzDoneBelow,
    at_ms: u64,
    deltas: Vec<(FuzzWindow, FuzzCount)>,
    read: Vec<FuzzWindow>,
    /// Floors (usually none).
    raises: Option<Vec<(FuzzWindow, FuzzCount)>>,
}

#[derive(Arbitrary, Debug)]
struct FuzzAdmit {
    instance: FuzzInstance,
    seq: FuzzSeq,
    done_below: FuzzDoneBelow,
    window: FuzzWindow,
    count: FuzzCount,
    below: FuzzCount,
    cap: FuzzCount,
    force: bool,
}

#[derive(Arbitrary, Debug)]
struct FuzzLease {
    instance: FuzzInstance,
    seq: FuzzSeq,
    done_below: FuzzDoneBelow,
    window: FuzzWindow,
    block: FuzzCount,
    ceiling: FuzzCount,
}

#[derive(Arbitrary, Debug)]
struct FuzzGiveBack {
    instance: FuzzInstance,
    seq: FuzzSeq,
    done_below: FuzzDoneBelow,
    window: FuzzWindow,
    unused: FuzzCount,
    raise_count: FuzzRaiseCount,
}

/// A give-back's `raise_count`: mostly the window's now (no floor since the calls were
/// counted), sometimes another (a floor came since: forfeited).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzRaiseCount {
    Now,
    Now2,
    Now3,
    Any(u8),
}

impl FuzzService {
    fn name(self) -> String {
        match self {
            FuzzService::Few(n) => {
                ["api", "tiingo", "finnhub", "sendgrid"][usize::from(n % 4)].into()
            }
            FuzzService::Any(n) => format!("svc-{n}\u{e9}\"\\\n"),
            FuzzService::Empty => String::new(),
        }
    }
}

impl FuzzPeriod {
    fn period(self) -> Period {
        match self {
            FuzzPeriod::Minute => Period::Minute,
            FuzzPeriod::Hour => Period::Hour,
            FuzzPeriod::Day => Period::Day,
            FuzzPeriod::Month => Period::Month,
        }
    }
}

impl FuzzCount {
    fn value(self) -> u64 {
        match self {
            FuzzCount::Small(n) => u64::from(n),
            FuzzCount::Any(n) => n,
            FuzzCount::NearCap(n) => MAX_TOTAL - u64::from(n % 8) + 4,
            FuzzCount::Max => u64::MAX,
        }
    }
}

impl FuzzInstance {
    fn id(self) -> InstanceId {
        match self {
            FuzzInstance::Few(n) => InstanceId::from_u128(u128::from(n % 8)),
            FuzzInstance::Any(n) => InstanceId::from_u128(n),
        }
    }
}

impl FuzzSeq {
    fn value(self) -> u64 {
        match self {
            FuzzSeq::Small(n) => u64::from(n % 16),
            FuzzSeq::Any(n) => n,
        }
    }
}

impl FuzzDoneBelow {
    fn value(self, seq: u64) -> u64 {
        match self {
            FuzzDoneBelow::Zero
            | FuzzDoneBelow::Zero2
            | FuzzDoneBelow::Zero3
            | FuzzDoneBelow::Zero4 => 0,
            FuzzDoneBelow::Seq => seq,
            FuzzDoneBelow::Below(n) => seq.saturating_sub(u64::from(n % 4) + 1),
            FuzzDoneBelow::Above(n) => seq.saturating_add(u64::from(n % 4) + 1),
            FuzzDoneBelow::Any(n) => n,
        }
    }
}

impl FuzzWindow {
    fn key(&self) -> WindowKey {
        let period = self.period.period();
        let start_ms = match self.start {
            FuzzTime::Nth(n) => u64::from(n % 16) * period.max_ms(),
            FuzzTime::Any(ms) => ms,
            FuzzTime::Max => u64::MAX,
        };
        let end_ms = self
            .odd_end
            .unwrap_or_else(|| start_ms.saturating_add(period.max_ms()));
        WindowKey {
            service: self.service.name(),
            spec: period.into(),
            start_ms,
            end_ms,
        }
    }
}

impl FuzzBatch {
    fn batch(&self) -> SyncBatch {
        let seq = self.seq.value();
        SyncBatch {
            instance: self.instance.id(),
            seq,
            done_below: self.done_below.value(seq),
            at_ms: self.at_ms,
            deltas: self
                .deltas
                .iter()
                .map(|(window, calls)| Delta {
                    window: window.key(),
                    calls: calls.value(),
                })
                .collect(),
            read: self.read.iter().map(FuzzWindow::key).collect(),
            raises: self
                .raises
                .iter()
                .flatten()
                .map(|(window, at_least)| Raise {
                    window: window.key(),
                    at_least: at_least.value(),
                })
                .collect(),
        }
    }
}

impl FuzzAdmit {
    fn request(&self) -> AdmitRequest {
        let seq = self.seq.value();
        AdmitRequest {
            instance: self.instance.id(),
            seq,
            done_below: self.done_below.value(seq),
            window: self.window.key(),
            count: self.count.value(),
            below: self.below.value(),
            cap: self.cap.value(),
            force: self.force,
            also: Vec::new(),
        }
    }
}

impl FuzzLease {
    fn request(&self) -> LeaseRequest {
        let seq = self.seq.value();
        LeaseRequest {
            instance: self.instance.id(),
            seq,
            done_below: self.done_below.value(seq),
            window: self.window.key(),
            block: self.block.value(),
            ceiling: self.ceiling.value(),
            also: Vec::new(),
        }
    }
}

impl FuzzGiveBack {
    fn request(&self, state: &StoredState) -> GiveBack {
        let seq = self.seq.value();
        let window = self.window.key();
        let raise_count = match self.raise_count {
            FuzzRaiseCount::Now | FuzzRaiseCount::Now2 | FuzzRaiseCount::Now3 => {
                raise_count(&windows(state), &window)
            }
            FuzzRaiseCount::Any(n) => u64::from(n % 4),
        };
        GiveBack {
            instance: self.instance.id(),
            seq,
            done_below: self.done_below.value(seq),
            window,
            unused: self.unused.value(),
            raise_count,
            also: Vec::new(),
        }
    }
}

/// Stored windows by service, period and start (as `StoredState` keys them).
type Windows = BTreeMap<(String, WindowSpec, u64), StoredWindow>;

fn windows(state: &StoredState) -> Windows {
    state
        .windows()
        .map(|w| ((w.service.clone(), w.spec.clone(), w.start_ms), w.clone()))
        .collect()
}

fn slot(key: &WindowKey) -> (String, WindowSpec, u64) {
    (key.service.clone(), key.spec.clone(), key.start_ms)
}

fn total(windows: &Windows, key: &WindowKey) -> u64 {
    windows.get(&slot(key)).map_or(0, |w| w.total)
}

fn raise_count(windows: &Windows, key: &WindowKey) -> u64 {
    windows.get(&slot(key)).map_or(0, |w| w.raise_count)
}

fn window_mut<'a>(windows: &'a mut Windows, key: &WindowKey) -> &'a mut StoredWindow {
    windows.entry(slot(key)).or_insert_with(|| StoredWindow {
        service: key.service.clone(),
        spec: key.spec.clone(),
        start_ms: key.start_ms,
        end_ms: key.end_ms,
        total: 0,
        raise_count: 0,
    })
}

/// Keeps the service's `WINDOWS_KEPT` latest windows per period.
fn prune(windows: &mut Windows, service: &str) {
    for period in Period::ALL {
        let starts: Vec<u64> = windows
            .keys()
            .filter(|(s, p, _)| s == service && p.as_period() == Some(period))
            .map(|(_, _, start)| *start)
            .collect();
        for start in starts
            .iter()
            .take(starts.len().saturating_sub(StoredState::WINDOWS_KEPT))
        {
            windows.remove(&(service.to_owned(), period.into(), *start));
        }
    }
}

/// The period of a spec this target made (it makes plain periods only).
fn plain(spec: &WindowSpec) -> Period {
    spec.as_period()
        .expect("the target makes windows of plain periods only")
}

fn of_service<'a>(windows: &'a Windows, service: &str) -> Vec<&'a StoredWindow> {
    windows.values().filter(|w| w.service == service).collect()
}

/// One operation, as sent.
#[derive(Clone, Debug)]
enum Request {
    Sync(SyncBatch),
    Admit(AdmitRequest),
    Lease(LeaseRequest),
    GiveBack(GiveBack),
}

/// What it answered.
#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Read(Vec<u64>),
    Admit(AdmitReply),
    Lease(LeaseReply),
    /// The calls taken off.
    GaveBack(u64),
}

impl Request {
    fn instance(&self) -> InstanceId {
        match self {
            Request::Sync(r) => r.instance,
            Request::Admit(r) => r.instance,
            Request::Lease(r) => r.instance,
            Request::GiveBack(r) => r.instance,
        }
    }

    fn seq(&self) -> u64 {
        match self {
            Request::Sync(r) => r.seq,
            Request::Admit(r) => r.seq,
            Request::Lease(r) => r.seq,
            Request::GiveBack(r) => r.seq,
        }
    }

    fn done_below(&self) -> u64 {
        match self {
            Request::Sync(r) => r.done_below,
            Request::Admit(r) => r.done_below,
            Request::Lease(r) => r.done_below,
            Request::GiveBack(r) => r.done_below,
        }
    }

    /// Every window it names but for reads (the windows it may create).
    fn keys(&self) -> Vec<&WindowKey> {
        match self {
            Request::Sync(batch) => batch
                .deltas
                .iter()
                .map(|d| &d.window)
                .chain(batch.raises.iter().map(|r| &r.window))
                .collect(),
            Request::Admit(r) => vec![&r.window],
            Request::Lease(r) => vec![&r.window],
            Request::GiveBack(r) => vec![&r.window],
        }
    }

    /// The services whose records it writes, each with the latest end of its windows in it
    /// (a sync that only reads writes none).
    fn services(&self) -> BTreeMap<String, u64> {
        let mut services = BTreeMap::new();
        for key in self.keys() {
            let end = services.entry(key.service.clone()).or_insert(0);
            *end = (*end).max(key.end_ms);
        }
        services
    }

    fn send(&self, state: &mut StoredState) -> Reply {
        match self {
            Request::Sync(batch) => Reply::Read(state.apply(batch)),
            Request::Admit(request) => Reply::Admit(state.admit(request)),
            Request::Lease(request) => Reply::Lease(state.lease(request)),
            Request::GiveBack(request) => Reply::GaveBack(state.give_back(request)),
        }
    }

    /// The windows after it, by the documented rules, if its deltas, admission, grant or
    /// give-back apply (`apply`) or not (a resend: floors still apply), and the reply if they
    /// apply.
    fn model(&self, before: &Windows, apply: bool) -> (Windows, Reply) {
        let mut windows = before.clone();
        let reply = match self {
            Request::Sync(batch) => {
                if apply {
                    for delta in &batch.deltas {
                        let window = window_mut(&mut windows, &delta.window);
                        window.total = window.total.saturating_add(delta.calls).min(MAX_TOTAL);
                    }
                }
                // Each window's largest floor above 0, once per batch (a resend too): the
                // total at least that, the raise count one more. A window a delta made and the
                // bound dropped at once ends dropped after a floor too: pruning once at the end
                // is the same.
                let mut floors: BTreeMap<(String, WindowSpec, u64), (u64, &WindowKey)> =
                    BTreeMap::new();
                for raise in batch.raises.iter().filter(|r| r.at_least > 0) {
                    let floor = floors
                        .entry(slot(&raise.window))
                        .or_insert((0, &raise.window));
                    floor.0 = floor.0.max(raise.at_least.min(MAX_TOTAL));
                }
                for (at_least, key) in floors.values() {
                    let window = window_mut(&mut windows, key);
                    window.total = window.total.max(*at_least);
                    window.raise_count = window.raise_count.saturating_add(1);
                }
                for service in self.services().keys() {
                    prune(&mut windows, service);
                }
                Reply::Read(batch.read.iter().map(|k| total(&windows, k)).collect())
            }
            Request::Admit(request) => {
                let before = total(&windows, &request.window);
                let admitted = before.checked_add(request.count).filter(|&after| {
                    request.force || (before < request.below && after <= request.cap)
                });
                let reply = match admitted {
                    Some(after) if apply => {
                        let window = window_mut(&mut windows, &request.window);
                        window.total = after.min(MAX_TOTAL);
                        AdmitReply::Admitted {
                            total: window.total,
                            raise_count: window.raise_count,
                            also: Vec::new(),
                        }
                    }
                    _ => AdmitReply::Denied {
                        total: before,
                        also: Vec::new(),
                    },
                };
                prune(&mut windows, &request.window.service);
                Reply::Admit(reply)
            }
            Request::Lease(request) => {
                let before = total(&windows, &request.window);
                let raise_count = raise_count(&windows, &request.window);
                // Never more than the total can count (it stops at MAX_TOTAL).
                let granted = request
                    .block
                    .min(request.ceiling.saturating_sub(before))
                    .min(MAX_TOTAL.saturating_sub(before));
                if apply && granted > 0 {
                    window_mut(&mut windows, &request.window).total =
                        before.saturating_add(granted).min(MAX_TOTAL);
                }
                prune(&mut windows, &request.window.service);
                Reply::Lease(LeaseReply {
                    granted,
                    total: total(&windows, &request.window),
                    raise_count,
                    also: Vec::new(),
                })
            }
            Request::GiveBack(request) => {
                // At most the total; nothing (forfeited) if a floor came since the calls were
                // counted (the window's raise count moved). No window is made.
                let raised = raise_count(&windows, &request.window) != request.raise_count;
                let taken = request.unused.min(total(&windows, &request.window));
                let taken = if raised { 0 } else { taken };
                if apply && taken > 0 {
                    window_mut(&mut windows, &request.window).total -= taken;
                }
                prune(&mut windows, &request.window.service);
                Reply::GaveBack(taken)
            }
        };
        (windows, reply)
    }

    /// What a stale operation (or one whose `seq` another kind used) answers now.
    fn stale_reply(&self, windows: &Windows) -> Option<Reply> {
        match self {
            Request::Admit(r) => Some(Reply::Admit(AdmitReply::Denied {
                total: total(windows, &r.window),
                also: Vec::new(),
            })),
            Request::Lease(r) => Some(Reply::Lease(LeaseReply {
                granted: 0,
                total: total(windows, &r.window),
                raise_count: raise_count(windows, &r.window),
                also: Vec::new(),
            })),
            Request::GiveBack(_) => Some(Reply::GaveBack(0)),
            Request::Sync(_) => None,
        }
    }
}

/// One operation on one service, as the target remembers it.
struct Mark {
    /// The index in `Run::sent` of a first send (not of a retry).
    origin: Option<usize>,
    seq: u64,
    done_below: u64,
    /// The end of the operation's last window on the service plus the grace (not saturated:
    /// past `u64::MAX`, no window can start there): the record written then is kept until at
    /// least this, and no window that starts before it expires the record.
    alive_until: u128,
}

/// A first send, for late retries.
struct Sent {
    request: Request,
    reply: Reply,
    /// Every service it touched took it as fresh.
    fresh: bool,
}

/// Where an operation stands on one service (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Fresh,
    Resend,
    Either,
}

/// What a resend must answer.
enum Known {
    Same(Reply),
    SameOrStale(Reply),
    Stale,
}

/// The state under test and what the checks need to remember.
struct Run {
    state: StoredState,
    sent: Vec<Sent>,
    marks: BTreeMap<(String, InstanceId), Vec<Mark>>,
    /// The start of every window that may ever have been stored, per service and period: each
    /// stored after an operation, and each an operation named.
    starts: BTreeMap<(String, Period), BTreeSet<u64>>,
}

impl Run {
    fn check_totals(&self, after: &str) {
        for window in self.state.windows() {
            assert!(
                window.total <= MAX_TOTAL,
                "after {after}: total {} of {window:?} exceeds MAX_TOTAL",
                window.total
            );
        }
    }

    fn marks(&self, service: &str, instance: InstanceId) -> &[Mark] {
        self.marks
            .get(&(service.to_owned(), instance))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the record that `mark` wrote (or updated) cannot have expired since, nor been
    /// evicted. It expires only when, for some period, a window of the service starts from its
    /// `until` to two periods and a grace after it, or the service keeps `WINDOWS_KEPT`
    /// windows of the period, all starting at or after its `until`; its `until` is at least
    /// `mark.alive_until` and at most the greatest of every mark of its service and instance.
    fn alive(&self, service: &str, instance: InstanceId, mark: &Mark) -> bool {
        if self.state.evicted() > 0 {
            return false;
        }
        let least = mark.alive_until;
        let most = self
            .marks(service, instance)
            .iter()
            .map(|m| m.alive_until)
            .max()
            .unwrap_or(least);
        Period::ALL.iter().all(|&period| {
            let horizon =
                2 * u128::from(period.max_ms()) + u128::from(StoredState::RECORD_GRACE_MS);
            let near = self
                .starts
                .get(&(service.to_owned(), period))
                .is_some_and(|starts| {
                    starts
                        .iter()
                        .any(|&start| (least..=most + horizon).contains(&u128::from(start)))
                });
            let kept: Vec<u64> = self
                .state
                .windows()
                .filter(|w| w.service == service && w.spec.as_period() == Some(period))
                .map(|w| w.start_ms)
                .collect();
            // Once the service keeps that many windows of the period, the oldest kept start
            // only rises: if they were all after `until` once, they are now.
            let all_later = kept.len() >= StoredState::WINDOWS_KEPT
                && kept.iter().all(|&start| u128::from(start) >= least);
            !near && !all_later
        })
    }

    fn expect(&self, service: &str, instance: InstanceId, seq: u64) -> Expect {
        let marks = self.marks(service, instance);
        let covers = |mark: &&Mark| mark.seq == seq || mark.done_below > seq;
        if marks
            .iter()
            .filter(covers)
            .any(|mark| self.alive(service, instance, mark))
        {
            Expect::Resend
        } else if marks.iter().any(|mark| covers(&mark)) {
            Expect::Either
        } else {
            Expect::Fresh
        }
    }

    /// Sends `request` and checks what it did; `known` is what a resend must answer. An
    /// immediate retry (`at_once`) is a resend on every service, whatever the windows: the
    /// record its first send wrote must be there (`Store`: "a `seq` in the set is a resend").
    fn send(
        &mut self,
        request: &Request,
        origin: Option<usize>,
        known: Option<Known>,
        at_once: bool,
        what: &str,
    ) -> (Reply, bool) {
        let services = request.services();
        let (instance, seq) = (request.instance(), request.seq());
        let expects: BTreeMap<&str, Expect> = services
            .keys()
            .map(|service| {
                let expect = if at_once {
                    Expect::Resend
                } else {
                    self.expect(service, instance, seq)
                };
                (service.as_str(), expect)
            })
            .collect();
        let before = windows(&self.state);
        for key in request.keys() {
            self.starts
                .entry((key.service.clone(), plain(&key.spec)))
                .or_default()
                .insert(key.start_ms);
        }
        let (fresh_windows, fresh_reply) = request.model(&before, true);
        let (resent_windows, _) = request.model(&before, false);

        let reply = request.send(&mut self.state);

        let after = windows(&self.state);
        let evicted = self.state.evicted() > 0;
        self.check_totals(what);
        let context = || format!("{what} of {request:?} replied {reply:?}\nbefore: {before:?}");
        let fresh_reply_ok = match request {
            Request::Sync(_) => true,
            _ => reply == fresh_reply,
        };
        let names: BTreeSet<&str> = before
            .keys()
            .chain(after.keys())
            .chain(fresh_windows.keys())
            .map(|(service, _, _)| service.as_str())
            .collect();
        for name in names {
            let got = of_service(&after, name);
            let fresh = of_service(&fresh_windows, name);
            let resent = of_service(&resent_windows, name);
            let expect = match expects.get(name) {
                // The records of others may go; their windows stay as they were.
                None => Expect::Resend,
                Some(_) if evicted => Expect::Either,
                Some(&expect) => expect,
            };
            match expect {
                Expect::Fresh => {
                    assert_eq!(
                        got,
                        fresh,
                        "a fresh operation did not apply as the rules say on {name:?}: {}",
                        context()
                    );
                    assert!(
                        fresh_reply_ok,
                        "a fresh operation answered other than the rules say ({fresh_reply:?}): {}",
                        context()
                    );
                }
                Expect::Resend => assert_eq!(
                    got,
                    resent,
                    "a resend (or a stale operation) changed totals of {name:?}: {}",
                    context()
                ),
                Expect::Either => assert!(
                    (got == fresh && fresh_reply_ok) || got == resent,
                    "an operation neither applied as the rules say nor changed nothing on \
                     {name:?}: {}",
                    context()
                ),
            }
        }
        let all_resend =
            !evicted && !expects.is_empty() && expects.values().all(|e| *e == Expect::Resend);
        self.check_reply(request, &reply, &before, &after, &context);
        if let (true, Some(known)) = (all_resend, known) {
            let stale = request.stale_reply(&after);
            let ok = match &known {
                Known::Same(first) => same_answer(first, &reply),
                Known::SameOrStale(first) => {
                    same_answer(first, &reply) || stale.as_ref() == Some(&reply)
                }
                Known::Stale => stale.is_none() || stale.as_ref() == Some(&reply),
            };
            let expected = match known {
                Known::Same(first) => format!("{first:?}"),
                Known::SameOrStale(first) => format!("{first:?} or {stale:?}"),
                Known::Stale => format!("{stale:?}"),
            };
            assert!(ok, "a resend answered other than {expected}: {}", context());
        }

        for (service, end) in &services {
            let alive_until = u128::from(*end) + u128::from(StoredState::RECORD_GRACE_MS);
            self.marks
                .entry((service.clone(), instance))
                .or_default()
                .push(Mark {
                    origin,
                    seq,
                    done_below: request.done_below(),
                    alive_until,
                });
        }
        self.note_starts();
        let fresh = !expects.is_empty() && expects.values().all(|e| *e == Expect::Fresh);
        (reply, fresh)
    }

    fn note_starts(&mut self) {
        for window in self.state.windows() {
            self.starts
                .entry((window.service.clone(), plain(&window.spec)))
                .or_default()
                .insert(window.start_ms);
        }
    }

    /// The checks of a reply that hold whatever the operation's history.
    fn check_reply(
        &self,
        request: &Request,
        reply: &Reply,
        before: &Windows,
        after: &Windows,
        context: &dyn Fn() -> String,
    ) {
        match (request, reply) {
            (Request::Sync(batch), Reply::Read(read)) => {
                let stored: Vec<u64> = batch.read.iter().map(|k| total(after, k)).collect();
                assert_eq!(
                    read,
                    &stored,
                    "a sync read back other totals: {}",
                    context()
                );
                assert!(read.iter().all(|&t| t <= MAX_TOTAL), "{}", context());
            }
            (Request::Admit(request), Reply::Admit(admit)) => {
                // `AdmitReply` is non-exhaustive: a reply this target does not know fails it.
                let t = match admit {
                    AdmitReply::Admitted { total, .. } | AdmitReply::Denied { total, .. } => *total,
                    other => panic!("an admit reply this target does not know: {other:?}"),
                };
                assert!(
                    t <= MAX_TOTAL,
                    "admit replied a total past MAX_TOTAL: {}",
                    context()
                );
                let (was, now) = (
                    total(before, &request.window),
                    total(after, &request.window),
                );
                if now > was {
                    assert_eq!(
                        *admit,
                        AdmitReply::Admitted {
                            total: now,
                            raise_count: raise_count(after, &request.window),
                            also: Vec::new(),
                        },
                        "an admission that raised the total answered otherwise: {}",
                        context()
                    );
                    let after = was.checked_add(request.count);
                    assert!(
                        after
                            .is_some_and(|after| request.force
                                || (was < request.below && after <= request.cap)),
                        "an admission raised a total the rule refuses: {}",
                        context()
                    );
                }
            }
            (Request::Lease(request), Reply::Lease(lease)) => {
                let (was, now) = (
                    total(before, &request.window),
                    total(after, &request.window),
                );
                assert_eq!(
                    lease.total,
                    now,
                    "a lease answered another total: {}",
                    context()
                );
                if now > was {
                    assert!(
                        lease.granted <= request.block,
                        "granted more than the block: {}",
                        context()
                    );
                    assert!(
                        lease.granted <= request.ceiling.saturating_sub(was)
                            && lease.granted <= MAX_TOTAL.saturating_sub(was),
                        "granted past the ceiling or what the total can count: {}",
                        context()
                    );
                    assert_eq!(
                        now,
                        was.saturating_add(lease.granted).min(MAX_TOTAL),
                        "the total rose by other than the grant: {}",
                        context()
                    );
                }
            }
            (Request::GiveBack(request), Reply::GaveBack(taken)) => {
                let (was, now) = (
                    total(before, &request.window),
                    total(after, &request.window),
                );
                // A resend answers its first send's count and takes nothing off.
                assert!(
                    now <= was
                        && was - now <= request.unused
                        && (was - now == *taken || now == was),
                    "a give-back answered {taken} and moved a total from {was} to {now}: {}",
                    context()
                );
            }
            _ => unreachable!("a reply of another kind"),
        }
    }

    /// Sends a new operation, then again at once (its reply lost).
    fn op(&mut self, request: Request) {
        let origin = self.sent.len();
        let (reply, fresh) = self.send(&request, Some(origin), None, false, "a send");
        self.sent.push(Sent {
            request: request.clone(),
            reply: reply.clone(),
            fresh,
        });
        self.retry_at_once(&request, reply);
    }

    fn retry_at_once(&mut self, request: &Request, reply: Reply) {
        let known = match request {
            Request::Admit(_) | Request::Lease(_) | Request::GiveBack(_)
                if request.done_below() > request.seq() =>
            {
                Known::Stale
            }
            _ => Known::Same(reply),
        };
        self.send(request, None, Some(known), true, "an immediate retry");
    }

    /// Sends an earlier operation again (and again at once).
    fn late_retry(&mut self, back: u8) {
        if self.sent.is_empty() {
            return;
        }
        let index = self.sent.len() - 1 - usize::from(back) % self.sent.len();
        let Sent {
            request,
            reply,
            fresh,
        } = &self.sent[index];
        let (request, reply, fresh) = (request.clone(), reply.clone(), *fresh);
        let (instance, seq) = (request.instance(), request.seq());
        // While the record it wrote lives, it holds the seq with the first answer, or the seq
        // went below the record's mark; the first answer for sure if it applied then and no
        // done_below above it was ever sent.
        let known = request.services().keys().next().and_then(|service| {
            let marks = self.marks(service, instance);
            let own = marks
                .iter()
                .any(|m| m.origin == Some(index) && self.alive(service, instance, m));
            let never_stale = marks.iter().all(|m| m.done_below <= seq);
            match request {
                Request::Admit(_) | Request::Lease(_) | Request::GiveBack(_) if own => {
                    Some(if fresh && never_stale {
                        Known::Same(reply.clone())
                    } else {
                        Known::SameOrStale(reply.clone())
                    })
                }
                _ => None,
            }
        });
        let (again, _) = self.send(&request, None, known, false, "a late retry");
        self.retry_at_once(&request, again);
    }

    fn round_trip(&mut self) {
        let json = self.state.to_json();
        let again = StoredState::from_json(&json)
            .unwrap_or_else(|error| panic!("to_json output does not parse: {error}\n{json}"));
        assert!(
            again.skipped().is_empty(),
            "to_json output has entries from_json skips: {:?}",
            again.skipped()
        );
        assert_eq!(
            windows(&self.state),
            windows(&again),
            "windows differ after a JSON round trip"
        );
        assert_eq!(
            self.state.evicted(),
            again.evicted(),
            "evictions differ after a JSON round trip"
        );
        assert_eq!(json, again.to_json(), "to_json is not a fixed point");
        self.state = again;
        self.note_starts();
    }
}

/// The same answer (a lease's total aside: it is the total now, checked apart).
fn same_answer(first: &Reply, reply: &Reply) -> bool {
    match (first, reply) {
        (Reply::Lease(a), Reply::Lease(b)) => {
            (a.granted, a.raise_count) == (b.granted, b.raise_count)
        }
        _ => first == reply,
    }
}

fuzz_target!(|input: Input| {
    let mut run = Run {
        state: StoredState::new(),
        sent: Vec::new(),
        marks: BTreeMap::new(),
        starts: BTreeMap::new(),
    };
    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Sync(batch) => run.op(Request::Sync(batch.batch())),
            Op::Retry(back) => run.late_retry(*back),
            Op::Admit(admit) => run.op(Request::Admit(admit.request())),
            Op::Lease(lease) => run.op(Request::Lease(lease.request())),
            Op::GiveBack(give) => run.op(Request::GiveBack(give.request(&run.state))),
            Op::RoundTrip => run.round_trip(),
        }
    }
    run.round_trip();
});
