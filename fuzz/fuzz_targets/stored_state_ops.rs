//! Sequences of sync batches, exact admissions, leases and give-backs applied to one
//! `StoredState`, as concurrent trackers would send them to a store (retries included).
//!
//! Checks, after every operation:
//! - nothing panics;
//! - no total exceeds `StoredState::MAX_TOTAL`, stored or in a reply;
//! - re-applying a sync batch (same instance and seq) changes no total, at once and later,
//!   while the store still remembers the instance (at most `INSTANCES_KEPT` of them);
//! - a lease retried with the same `(instance, seq)` grants the same and adds nothing; a
//!   give-back retried subtracts nothing;
//! - the state survives `to_json`/`from_json` with equal totals and a fixed-point JSON; the
//!   operations go on from the re-read state, so lost dedup records would show as double counts.
//!
//! The inputs are `arbitrary`-derived mirrors of the quota-core types (which do not derive
//! `Arbitrary`), drawn from small domains so that services, windows, instances and seqs collide.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quota_core::{
    AdmitReply, AdmitRequest, Delta, GiveBack, InstanceId, LeaseRequest, Period, StoredState,
    StoredWindow, SyncBatch, WindowKey,
};
use std::collections::{BTreeMap, BTreeSet};

/// Operations per input, at most (keeps each run fast).
const MAX_OPS: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Sync(FuzzBatch),
    /// Re-sends the batch synced this many syncs ago (modulo how many there were).
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
    at_ms: u64,
    deltas: Vec<(FuzzWindow, FuzzCount)>,
    read: Vec<FuzzWindow>,
}

#[derive(Arbitrary, Debug)]
struct FuzzAdmit {
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
    window: FuzzWindow,
    block: FuzzCount,
    ceiling: FuzzCount,
}

#[derive(Arbitrary, Debug)]
struct FuzzGiveBack {
    instance: FuzzInstance,
    seq: FuzzSeq,
    window: FuzzWindow,
    unused: FuzzCount,
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
            FuzzCount::NearCap(n) => StoredState::MAX_TOTAL - u64::from(n % 8) + 4,
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
            period,
            start_ms,
            end_ms,
        }
    }
}

impl FuzzBatch {
    fn batch(&self) -> SyncBatch {
        SyncBatch {
            instance: self.instance.id(),
            seq: self.seq.value(),
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
            raises: Vec::new(),
        }
    }
}

/// The state under test and what the checks need to remember.
struct Run {
    state: StoredState,
    synced: Vec<SyncBatch>,
    /// Instances that sent a sync with deltas: past `INSTANCES_KEPT` of them, a store may forget
    /// one and count its retry again (documented), so late retries are not checked then.
    instances: BTreeSet<InstanceId>,
    /// The last admission number used.
    admit_seq: u64,
    /// The highest lease seq the store has a record of, per service and instance (a give-back
    /// without a lease makes one at seq 0): a lease above it is fresh, one at or below a retry.
    lease_seqs: BTreeMap<(String, InstanceId), u64>,
}

fn windows(state: &StoredState) -> Vec<StoredWindow> {
    state.windows().cloned().collect()
}

impl Run {
    fn check_totals(&self, after: &str) {
        for window in self.state.windows() {
            assert!(
                window.total <= StoredState::MAX_TOTAL,
                "after {after}: total {} of {window:?} exceeds MAX_TOTAL",
                window.total
            );
        }
    }

    fn check_reply(total: u64, what: &str) {
        assert!(
            total <= StoredState::MAX_TOTAL,
            "{what} replied total {total} > MAX_TOTAL"
        );
    }

    fn sync(&mut self, batch: SyncBatch) {
        let read = self.state.apply(&batch);
        assert_eq!(
            read.len(),
            batch.read.len(),
            "apply read back a wrong count"
        );
        for (total, window) in read.iter().zip(&batch.read) {
            Self::check_reply(*total, "apply");
            assert_eq!(
                *total,
                self.state.total(window),
                "apply read {window:?} wrong"
            );
        }
        self.check_totals("a sync");
        if !batch.deltas.is_empty() {
            self.instances.insert(batch.instance);
        }
        // The reply was lost: the same batch comes again, and counts once.
        self.retry(&batch, "an immediate retry");
        self.synced.push(batch);
    }

    fn retry(&mut self, batch: &SyncBatch, what: &str) {
        let before = windows(&self.state);
        let read = self.state.apply(batch);
        for total in read {
            Self::check_reply(total, what);
        }
        assert_eq!(
            before,
            windows(&self.state),
            "{what} of {batch:?} changed totals"
        );
    }

    fn late_retry(&mut self, back: u8) {
        if self.synced.is_empty() {
            return;
        }
        let index = self.synced.len() - 1 - usize::from(back) % self.synced.len();
        let batch = self.synced[index].clone();
        if self.instances.len() <= StoredState::INSTANCES_KEPT {
            self.retry(&batch, "a late retry");
        } else {
            self.state.apply(&batch);
        }
        self.check_totals("a late retry");
    }

    fn admit(&mut self, admit: &FuzzAdmit) {
        // A fresh number each time (the store answers a repeated one from its record).
        self.admit_seq += 1;
        let request = AdmitRequest {
            instance: InstanceId::from_u128(u128::MAX),
            seq: self.admit_seq,
            window: admit.window.key(),
            count: admit.count.value(),
            below: admit.below.value(),
            cap: admit.cap.value(),
            force: admit.force,
        };
        let before = self.state.total(&request.window);
        let reply = self.state.admit(&request);
        match reply {
            AdmitReply::Admitted { total } => {
                Self::check_reply(total, "admit");
                assert_eq!(total, self.state.total(&request.window));
            }
            AdmitReply::Denied { total } => {
                Self::check_reply(total, "admit");
                assert_eq!(total, before, "a denied admit changed the total");
                assert_eq!(before, self.state.total(&request.window));
            }
        }
        // A retry (its answer lost) gets the same answer and counts nothing more.
        let after = windows(&self.state);
        assert_eq!(self.state.admit(&request), reply, "a retried admit answered differently");
        assert_eq!(after, windows(&self.state), "a retried admit changed totals");
        self.check_totals("an admit");
    }

    fn lease(&mut self, lease: &FuzzLease) {
        let request = LeaseRequest {
            instance: lease.instance.id(),
            seq: lease.seq.value(),
            window: lease.window.key(),
            block: lease.block.value(),
            ceiling: lease.ceiling.value(),
        };
        let key = (request.window.service.clone(), request.instance);
        let fresh = self
            .lease_seqs
            .get(&key)
            .is_none_or(|&seq| seq < request.seq);
        let before = self.state.total(&request.window);
        let reply = self.state.lease(&request);
        Self::check_reply(reply.total, "lease");
        assert_eq!(reply.total, self.state.total(&request.window));
        if fresh {
            // A retry (same seq, any block) gets the first grant; a fresh lease gets at most
            // its block, and only headroom below the ceiling.
            assert!(
                reply.granted <= request.block,
                "granted more than the block"
            );
            assert!(
                reply.granted <= request.ceiling.saturating_sub(before),
                "granted past the ceiling"
            );
            self.lease_seqs.insert(key, request.seq);
        } else {
            assert_eq!(reply.total, before, "a lease retry changed the total");
        }
        self.check_totals("a lease");
        // A retry (the reply was lost) gets the same grant and adds nothing.
        let before = windows(&self.state);
        let again = self.state.lease(&request);
        assert_eq!(
            again.granted, reply.granted,
            "a lease retry granted differently"
        );
        assert_eq!(again.total, reply.total, "a lease retry saw another total");
        assert_eq!(before, windows(&self.state), "a lease retry changed totals");
    }

    fn give_back(&mut self, give: &FuzzGiveBack) {
        let request = GiveBack {
            instance: give.instance.id(),
            seq: give.seq.value(),
            window: give.window.key(),
            unused: give.unused.value(),
        };
        self.lease_seqs
            .entry((request.window.service.clone(), request.instance))
            .or_insert(0);
        self.state.give_back(&request);
        self.check_totals("a give-back");
        let before = windows(&self.state);
        self.state.give_back(&request);
        assert_eq!(
            before,
            windows(&self.state),
            "a give-back retry changed totals"
        );
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
        assert_eq!(json, again.to_json(), "to_json is not a fixed point");
        self.state = again;
    }
}

fuzz_target!(|input: Input| {
    let mut run = Run {
        state: StoredState::new(),
        synced: Vec::new(),
        instances: BTreeSet::new(),
        admit_seq: 0,
        lease_seqs: BTreeMap::new(),
    };
    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Sync(batch) => run.sync(batch.batch()),
            Op::Retry(back) => run.late_retry(*back),
            Op::Admit(admit) => run.admit(admit),
            Op::Lease(lease) => run.lease(lease),
            Op::GiveBack(give) => run.give_back(give),
            Op::RoundTrip => run.round_trip(),
        }
    }
    run.round_trip();
});
