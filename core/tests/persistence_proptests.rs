//! proptest, model-based: random records, try_records, failing and recovering stores, injected
//! failures, lost replies, clock moves across windows, flushes and restarts, with one tracker or
//! three sharing one store. A spy between the trackers and the store sees every batch and its
//! outcome; the model checks, after every step:
//! - every tracker's live counts equal the model's (stored total at its last acknowledged
//!   sync plus what it recorded since);
//! - a batch resent has the same deltas as the first send, and the deltas of one tracker's
//!   batches never add up to more than it recorded in each window (no call sent twice);
//! - each stored window total is exactly the sum of the batches the store applied (each once),
//!   at least what was acknowledged and at most what was recorded;
//! - a tracker whose last sync succeeded with nothing recorded since has all its calls
//!   acknowledged.
//!
//! and at the end, once the store works and every tracker flushed successfully, the stored
//! totals equal every call recorded (less only what a tracker dropped while the store failed
//! never synced), and every tracker sees them.

use proptest::prelude::*;
use quota_core::{
    Clock, InstanceId, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store,
    StoreError, SyncBatch, SyncPolicy, TrackerConfig,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Services of three periods, so windows roll over at different times.
const SERVICES: [(&str, Period); 3] = [
    ("a", Period::Minute),
    ("b", Period::Hour),
    ("c", Period::Month),
];
const LIMIT: u64 = 100;
/// June 10 2024, 2.5 minutes before an hour ends (30 s into a minute). A run moves the clock
/// by at most `MAX_OPS` x `MAX_ADVANCE_MS` (6.5 minutes), so a service touches at most 8
/// windows, all of which the store keeps (`StoredState::WINDOWS_KEPT`).
const START_MS: u64 = 1_718_002_650_000;
const MAX_ADVANCE_MS: u64 = 3_000;
const MAX_OPS: usize = 130;

#[derive(Debug, Clone)]
enum Op {
    Record(usize, usize, u64),
    TryRecord(usize, usize, u64),
    StoreFails(bool),
    FailNext(u64),
    LoseReplies(u64),
    Advance(u64),
    Flush(usize),
    Restart(usize),
}

fn op(trackers: usize) -> impl Strategy<Value = Op> {
    let t = 0..trackers;
    let s = 0..SERVICES.len();
    prop_oneof![
        6 => (t.clone(), s.clone(), 1..20u64).prop_map(|(t, s, n)| Op::Record(t, s, n)),
        2 => (t.clone(), s, 1..20u64).prop_map(|(t, s, n)| Op::TryRecord(t, s, n)),
        1 => any::<bool>().prop_map(Op::StoreFails),
        1 => (1..4u64).prop_map(Op::FailNext),
        1 => (1..3u64).prop_map(Op::LoseReplies),
        3 => (0..MAX_ADVANCE_MS).prop_map(Op::Advance),
        2 => t.clone().prop_map(Op::Flush),
        1 => t.prop_map(Op::Restart),
    ]
}

/// One store call as the spy saw it.
#[derive(Debug)]
struct Call {
    batch: SyncBatch,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    /// Applied; the totals read.
    Replied(Vec<u64>),
    /// Applied nothing.
    Failed,
    /// Applied, then the reply was lost.
    Lost,
}

/// The store the trackers use: a `MemoryStore` (with its switches) that logs every call.
#[derive(Clone, Default)]
struct Spy {
    store: MemoryStore,
    log: Arc<Mutex<Vec<Call>>>,
}

impl Store for Spy {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let result = self.store.sync(batch);
        let outcome = match &result {
            Ok(totals) => Outcome::Replied(totals.clone()),
            Err(StoreError::Injected) => Outcome::Failed,
            Err(StoreError::Io(_)) => Outcome::Lost,
            Err(other) => panic!("unexpected store error {other:?}"),
        };
        self.log.lock().unwrap().push(Call {
            batch: batch.clone(),
            outcome,
        });
        result
    }
}

/// A window of a service: (service index, window start).
type Key = (usize, u64);

fn key_now(service: usize, now_ms: u64) -> Key {
    (service, SERVICES[service].1.window_at(now_ms).start_ms)
}

fn service_index(name: &str) -> usize {
    SERVICES.iter().position(|(n, _)| *n == name).unwrap()
}

/// One tracker instance, live or dropped, as the model sees it.
#[derive(Debug, Default)]
struct Instance {
    id: Option<InstanceId>,
    recorded: BTreeMap<Key, u64>,
    /// Each batch with deltas by seq, as first sent.
    sent: BTreeMap<u64, BTreeMap<Key, u64>>,
    applied: BTreeSet<u64>,
    acked: BTreeSet<u64>,
    /// Per service: the window the model's view is in, and `used` there.
    view: [(u64, u64); SERVICES.len()],
    /// Whether its last store call succeeded, and nothing was recorded since.
    clean: bool,
}

impl Instance {
    fn sum(&self, seqs: impl Iterator<Item = u64>) -> BTreeMap<Key, u64> {
        let mut sum = BTreeMap::new();
        for seq in seqs {
            for (key, calls) in &self.sent[&seq] {
                *sum.entry(*key).or_insert(0) += calls;
            }
        }
        sum
    }

    fn applied(&self) -> BTreeMap<Key, u64> {
        self.sum(self.applied.iter().copied())
    }

    fn acked(&self) -> BTreeMap<Key, u64> {
        self.sum(self.acked.iter().copied())
    }

    /// The model's view moves to the window of `now_ms` (no run skips a window, so a move is
    /// a roll-over to 0).
    fn align(&mut self, now_ms: u64) {
        for (service, view) in self.view.iter_mut().enumerate() {
            let start = key_now(service, now_ms).1;
            if view.0 != start {
                *view = (start, 0);
            }
        }
    }
}

fn get(map: &BTreeMap<Key, u64>, key: Key) -> u64 {
    map.get(&key).copied().unwrap_or(0)
}

struct Harness {
    clock: ManualClock,
    spy: Spy,
    trackers: Vec<Option<QuotaTracker>>,
    /// Which instance each tracker slot is now.
    live: Vec<usize>,
    instances: Vec<Instance>,
    /// How much of the spy's log the model has taken in.
    seen: usize,
}

impl Harness {
    fn new(trackers: usize) -> Result<Self, TestCaseError> {
        let mut harness = Harness {
            clock: ManualClock::new(START_MS),
            spy: Spy::default(),
            trackers: (0..trackers).map(|_| None).collect(),
            live: vec![0; trackers],
            instances: Vec::new(),
            seen: 0,
        };
        for slot in 0..trackers {
            harness.start(slot)?;
        }
        Ok(harness)
    }

    fn tracker(&self, slot: usize) -> &QuotaTracker {
        self.trackers[slot].as_ref().unwrap()
    }

    /// Builds the tracker of `slot` (its first read is the new instance's first call).
    fn start(&mut self, slot: usize) -> Result<(), TestCaseError> {
        let tracker = QuotaTracker::builder(TrackerConfig::new(
            SERVICES.map(|(name, period)| ServiceConfig::new(name, LIMIT, period)),
        ))
        .clock(self.clock.clone())
        .store(self.spy.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 1_000,
            // The model fails and heals the store itself: one try per flush.
            flush_timeout_ms: 0,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
        let id = self.spy.log.lock().unwrap()[self.seen].batch.instance;
        prop_assert!(
            self.instances.iter().all(|i| i.id != Some(id)),
            "instance ids are unique"
        );
        let mut instance = Instance {
            id: Some(id),
            clean: true,
            ..Instance::default()
        };
        instance.align(self.clock.now_ms());
        self.instances.push(instance);
        self.live[slot] = self.instances.len() - 1;
        self.trackers[slot] = Some(tracker);
        self.take_in_log()
    }

    /// Takes in the store calls made since the last look.
    fn take_in_log(&mut self) -> Result<(), TestCaseError> {
        let log = self.spy.log.lock().unwrap();
        for call in &log[self.seen..] {
            let index = self
                .instances
                .iter()
                .position(|i| i.id == Some(call.batch.instance))
                .expect("every batch comes from a known instance");
            let instance = &mut self.instances[index];
            let batch = &call.batch;
            if !batch.deltas.is_empty() {
                let mut deltas = BTreeMap::new();
                for delta in &batch.deltas {
                    let service = service_index(&delta.window.service);
                    prop_assert_eq!(delta.window.spec.as_period(), Some(SERVICES[service].1));
                    prop_assert!(delta.calls > 0, "an empty delta: {:?}", batch);
                    let previous = deltas.insert((service, delta.window.start_ms), delta.calls);
                    prop_assert!(previous.is_none(), "two deltas for one window: {:?}", batch);
                }
                match instance.sent.get(&batch.seq) {
                    Some(first) => {
                        prop_assert_eq!(first, &deltas, "a resend differs from the first send");
                        prop_assert!(!instance.acked.contains(&batch.seq), "resent after its ack");
                    }
                    None => {
                        let last = instance.sent.keys().next_back().copied().unwrap_or(0);
                        prop_assert!(batch.seq > last, "seq {} after {}", batch.seq, last);
                        instance.sent.insert(batch.seq, deltas);
                    }
                }
                if !matches!(call.outcome, Outcome::Failed) {
                    instance.applied.insert(batch.seq);
                }
                if matches!(call.outcome, Outcome::Replied(_)) {
                    instance.acked.insert(batch.seq);
                }
            }
            instance.clean = matches!(call.outcome, Outcome::Replied(_));
            if let Outcome::Replied(totals) = &call.outcome {
                prop_assert_eq!(totals.len(), batch.read.len());
                // The tracker takes each total of its current window in: `used` rises to the
                // total plus what it recorded and has not had acknowledged.
                let acked = instance.acked();
                for (read, &total) in batch.read.iter().zip(totals) {
                    let service = service_index(&read.service);
                    let view = &mut instance.view[service];
                    if view.0 == read.start_ms {
                        let key = (service, read.start_ms);
                        let unacked = get(&instance.recorded, key) - get(&acked, key);
                        view.1 = view.1.max(total + unacked);
                    }
                }
            }
        }
        self.seen = log.len();
        Ok(())
    }

    fn record(&mut self, slot: usize, service: usize, n: u64, try_only: bool) {
        let now = self.clock.now_ms();
        let tracker = self.tracker(slot);
        let name = SERVICES[service].0;
        let counted = if try_only {
            tracker.try_record(name, n).is_ok()
        } else {
            tracker.record_call(name, n).unwrap();
            true
        };
        if counted {
            // Recorded before the sync the call may trigger: the model counts it first.
            let instance = &mut self.instances[self.live[slot]];
            *instance.recorded.entry(key_now(service, now)).or_insert(0) += n;
            instance.view[service].1 += n;
            instance.clean = false;
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.clock.now_ms();
        for &index in &self.live {
            self.instances[index].align(now);
        }
        let store = &self.spy.store;
        match *op {
            Op::Record(t, s, n) => self.record(t, s, n, false),
            Op::TryRecord(t, s, n) => self.record(t, s, n, true),
            Op::StoreFails(failing) => store.set_failing(failing),
            Op::FailNext(n) => store.fail_next(n),
            Op::LoseReplies(n) => store.lose_next_replies(n),
            Op::Advance(ms) => self.clock.advance(ms),
            Op::Flush(t) => {
                let result = self.tracker(t).flush();
                self.take_in_log()?;
                let instance = &self.instances[self.live[t]];
                prop_assert_eq!(result.is_ok(), instance.clean, "{:?}", result);
            }
            Op::Restart(t) => {
                // Drop first (it syncs what it recorded, best effort), then build anew.
                self.trackers[t] = None;
                self.take_in_log()?;
                let dead = &self.instances[self.live[t]];
                if dead.clean {
                    prop_assert_eq!(
                        &dead.recorded,
                        &dead.applied(),
                        "a clean drop loses nothing"
                    );
                }
                self.start(t)?;
            }
        }
        self.take_in_log()?;
        self.check()
    }

    /// The invariants that hold after every step.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let now = self.clock.now_ms();
        let state = self.spy.store.state().unwrap();
        let mut applied: BTreeMap<Key, u64> = BTreeMap::new();
        let mut acked: BTreeMap<Key, u64> = BTreeMap::new();
        let mut recorded: BTreeMap<Key, u64> = BTreeMap::new();
        for instance in &self.instances {
            let sent = instance.sum(instance.sent.keys().copied());
            for (key, calls) in &sent {
                prop_assert!(
                    *calls <= get(&instance.recorded, *key),
                    "{:?}: sent {} of {} recorded (a call sent twice or to the wrong window)",
                    key,
                    calls,
                    get(&instance.recorded, *key)
                );
            }
            for (key, calls) in instance.applied() {
                *applied.entry(key).or_insert(0) += calls;
            }
            for (key, calls) in instance.acked() {
                *acked.entry(key).or_insert(0) += calls;
            }
            for (key, calls) in &instance.recorded {
                *recorded.entry(*key).or_insert(0) += calls;
            }
            if instance.clean {
                prop_assert_eq!(
                    &instance.recorded,
                    &instance.acked(),
                    "synced, yet unacked calls"
                );
            }
        }
        let mut stored: BTreeMap<Key, u64> = BTreeMap::new();
        for window in state.windows() {
            let service = service_index(&window.service);
            prop_assert_eq!(window.spec.as_period(), Some(SERVICES[service].1));
            stored.insert((service, window.start_ms), window.total);
        }
        prop_assert_eq!(
            stored.len(),
            applied.len(),
            "stored windows {:?}, applied {:?}",
            &stored,
            &applied
        );
        for (key, total) in &stored {
            prop_assert_eq!(
                *total,
                get(&applied, *key),
                "{:?}: stored != applied once",
                key
            );
            prop_assert!(get(&acked, *key) <= *total && *total <= get(&recorded, *key));
        }
        for (slot, &index) in self.live.iter().enumerate() {
            let tracker = self.trackers[slot].as_ref().unwrap();
            let instance = &mut self.instances[index];
            instance.align(now);
            for (service, (name, _)) in SERVICES.iter().enumerate() {
                let used = tracker.usage(name).unwrap().used;
                prop_assert_eq!(
                    used,
                    instance.view[service].1,
                    "tracker {} service {}: live count vs model",
                    slot,
                    name
                );
            }
        }
        Ok(())
    }

    /// Heals the store, flushes every tracker twice, and checks nothing was lost or counted
    /// twice and every tracker sees the stored totals.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        let store = &self.spy.store;
        store.set_failing(false);
        store.fail_next(0);
        store.lose_next_replies(0);
        for _ in 0..2 {
            for slot in 0..self.trackers.len() {
                let result = self.tracker(slot).flush();
                prop_assert!(result.is_ok(), "{:?}", result);
                self.take_in_log()?;
                self.check()?;
            }
        }
        let state = self.spy.store.state().unwrap();
        let mut expected: BTreeMap<Key, u64> = BTreeMap::new();
        for (index, instance) in self.instances.iter().enumerate() {
            // A live tracker has all its calls stored; a dropped one, what it synced (all of
            // them unless its last sync failed).
            let kept = if self.live.contains(&index) {
                prop_assert_eq!(&instance.recorded, &instance.applied());
                instance.recorded.clone()
            } else {
                instance.applied()
            };
            for (key, calls) in kept {
                *expected.entry(key).or_insert(0) += calls;
            }
        }
        for (key, calls) in &expected {
            let (service, start) = *key;
            let total = state
                .windows()
                .find(|w| w.service == SERVICES[service].0 && w.start_ms == start)
                .map_or(0, |w| w.total);
            prop_assert_eq!(total, *calls, "{:?}", key);
        }
        let now = self.clock.now_ms();
        for slot in 0..self.trackers.len() {
            for (service, (name, _)) in SERVICES.iter().enumerate() {
                let used = self.tracker(slot).usage(name).unwrap().used;
                prop_assert_eq!(used, get(&expected, key_now(service, now)), "{}", name);
            }
        }
        Ok(())
    }
}

fn run(trackers: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    prop_assert!(ops.len() <= MAX_OPS);
    let mut harness = Harness::new(trackers)?;
    harness.check()?;
    for op in ops {
        harness.apply(op)?;
    }
    harness.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn one_tracker_stores_exactly_what_it_recorded(
        ops in prop::collection::vec(op(1), 1..80)
    ) {
        run(1, &ops)?;
    }

    #[test]
    fn three_trackers_on_one_store_lose_nothing_and_count_nothing_twice(
        ops in prop::collection::vec(op(3), 1..MAX_OPS)
    ) {
        run(3, &ops)?;
    }
}

#[allow(dead_code)]
fn assert_store_is_object_safe(_: &dyn Store) {}
