//! Model-based test of the exactly-once rule of `Store` ("# Exactly once"): one random
//! sequence of operations, from a few hot instances and thousands of others, with replies lost,
//! resends in any order (after newer operations too), stale resends below the low-water mark,
//! and a move to the next window, applied to a real `redis-server` (`RedisStore`), to
//! `StoredState` (the reference) and to a small model of this file. Every answer and every
//! window total must be equal in all three; the model's totals are what each operation,
//! applied at most once, adds.
//!
//! Raise counts too: sync batches carry floors (above the total, at it, below it, several on
//! one window), each window given a floor counts one raise per batch; admissions and leases
//! report the count they were applied under; give-backs return an admission's or a lease's
//! calls with the count it reported (sometimes a wrong one), and are forfeited (0 taken off)
//! exactly when the window was raised since. Every window's raise count, as Redis, StoredState
//! and the model keep it, must be equal.
//!
//! The server is started by the test (`support/redis_server.rs`); one that cannot start fails
//! the test with its log (install it with `cargo xtask test`, or `apt-get install
//! redis-server`).

#[path = "support/redis_server.rs"]
mod redis_server;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use quota_core::{
    AdmitReply, AdmitRequest, Delta, GiveBack, InstanceId, LeaseReply, LeaseRequest, Period, Raise,
    RedisStore, Store, StoredState, SyncBatch, WindowKey,
};
use redis_server::Server;
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The services, each with its own period: two windows each (the current one and the next),
/// so that no store forgets a record during a case (a record lives until the end of its last
/// window plus an hour).
const SERVICES: [(&str, Period); 3] = [
    ("a", Period::Day),
    ("b", Period::Hour),
    ("c", Period::Month),
];
/// Instances that send many operations (the others send one or two).
const HOT: u128 = 4;
/// Operations per case: about 2,400 distinct instances each.
const STEPS: std::ops::Range<usize> = 6_400..7_000;
const CASES: u32 = 8;

// ---------------------------------------------------------------------------------------------
// What the sequence is made of

#[derive(Debug, Clone)]
enum Who {
    Hot(u8),
    /// An id from a large range: mostly an instance not seen before.
    Cold(u32),
}

#[derive(Debug, Clone)]
enum NewOp {
    /// Deltas (service, calls, in the previous window), floors (service, offset from the
    /// total, in the previous window), and whether to read every window back.
    Sync {
        deltas: Vec<(usize, u64, bool)>,
        raises: Vec<(usize, i64, bool)>,
        read: bool,
    },
    /// `cap` (and `below`, as trackers send them) is the total plus `offset`; count 0 is
    /// `can_call`.
    Admit {
        service: usize,
        count: u64,
        offset: i64,
        force: bool,
    },
    /// `ceiling` is the total plus `offset`.
    Lease {
        service: usize,
        block: u64,
        offset: i64,
    },
    /// Gives back calls of one of the latest admissions or leases answered (`pick`, from the
    /// newest), at most `unused`, by its instance, with the raise count it reported, or a
    /// wrong one if `wrong_count`; with none to give back, of `service`'s window, with its
    /// raise count now (or a wrong one).
    GiveBack {
        service: usize,
        unused: u64,
        pick: usize,
        wrong_count: bool,
    },
}

#[derive(Debug, Clone)]
enum Step {
    /// A new operation with the instance's next seq; its reply is lost or not.
    New { who: Who, op: NewOp, lost: bool },
    /// An unanswered operation (any instance's, any age) sent again, identically.
    Resend { pick: usize, lost: bool },
    /// An answered operation below its instance's `done_below` sent again (a client that
    /// breaks its word: the store must not apply it).
    Stale { pick: usize },
    /// New operations go to the next window from here on.
    MoveWindow,
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        1 => (0..HOT as u8).prop_map(Who::Hot),
        4 => (0u32..1_000_000).prop_map(Who::Cold),
    ]
}

fn new_op() -> impl Strategy<Value = NewOp> {
    let service = 0..SERVICES.len();
    prop_oneof![
        4 => (
            prop::collection::vec((0..SERVICES.len(), 0u64..6, prop::bool::weighted(0.2)), 0..3),
            prop_oneof![
                3 => Just(Vec::new()),
                1 => prop::collection::vec(
                    (0..SERVICES.len(), -3i64..6, prop::bool::weighted(0.2)),
                    1..4
                ),
            ],
            any::<bool>(),
        )
            .prop_map(|(deltas, raises, read)| NewOp::Sync { deltas, raises, read }),
        3 => (service.clone(), 0u64..4, -3i64..6, prop::bool::weighted(0.2)).prop_map(
            |(service, count, offset, force)| NewOp::Admit { service, count, offset, force }
        ),
        2 => (service.clone(), 1u64..8, -2i64..10)
            .prop_map(|(service, block, offset)| NewOp::Lease { service, block, offset }),
        2 => (service, 0u64..6, any::<usize>(), prop::bool::weighted(0.15)).prop_map(
            |(service, unused, pick, wrong_count)| NewOp::GiveBack {
                service,
                unused,
                pick,
                wrong_count,
            }
        ),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        60 => (who(), new_op(), prop::bool::weighted(0.3))
            .prop_map(|(who, op, lost)| Step::New { who, op, lost }),
        25 => (any::<usize>(), prop::bool::weighted(0.3))
            .prop_map(|(pick, lost)| Step::Resend { pick, lost }),
        10 => any::<usize>().prop_map(|pick| Step::Stale { pick }),
    ]
}

/// A case: the steps, with the window moving once, somewhere between a fifth and four fifths
/// of the way.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    (prop::collection::vec(step(), STEPS), 0.2f64..0.8).prop_map(|(mut steps, at)| {
        let index = (steps.len() as f64 * at) as usize;
        steps.insert(index, Step::MoveWindow);
        steps
    })
}

// ---------------------------------------------------------------------------------------------
// Requests and answers

#[derive(Debug, Clone)]
enum Request {
    Sync(SyncBatch),
    Admit(AdmitRequest),
    Lease(LeaseRequest),
    GiveBack(GiveBack),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Sync(Vec<u64>),
    Admit(AdmitReply),
    Lease(LeaseReply),
    /// The calls taken off.
    GiveBack(u64),
}

impl Request {
    fn instance(&self) -> InstanceId {
        match self {
            Request::Sync(batch) => batch.instance,
            Request::Admit(request) => request.instance,
            Request::Lease(request) => request.instance,
            Request::GiveBack(request) => request.instance,
        }
    }

    fn seq(&self) -> u64 {
        match self {
            Request::Sync(batch) => batch.seq,
            Request::Admit(request) => request.seq,
            Request::Lease(request) => request.seq,
            Request::GiveBack(request) => request.seq,
        }
    }

    fn redis(&self, store: &RedisStore) -> Result<Reply, String> {
        let reply = match self {
            Request::Sync(batch) => store.sync(batch).map(Reply::Sync),
            Request::Admit(request) => store.admit(request).map(Reply::Admit),
            Request::Lease(request) => store.lease(request).map(Reply::Lease),
            Request::GiveBack(request) => store.give_back(request).map(Reply::GiveBack),
        };
        reply.map_err(|error| error.to_string())
    }

    fn stored_state(&self, state: &mut StoredState) -> Reply {
        match self {
            Request::Sync(batch) => Reply::Sync(state.apply(batch)),
            Request::Admit(request) => Reply::Admit(state.admit(request)),
            Request::Lease(request) => Reply::Lease(state.lease(request)),
            Request::GiveBack(request) => Reply::GiveBack(state.give_back(request)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model: per (service, instance) the largest `done_below` seen and every seq applied with
// its answer (never forgotten: a seq below the mark is stale whether remembered or not), and
// per window the total and the raise count.

#[derive(Debug, Clone, Copy)]
enum Answer {
    Applied,
    /// Total after, raise count then.
    Admitted(u64, u64),
    Denied(u64),
    /// Granted, raise count then.
    Granted(u64, u64),
    /// Taken off.
    GivenBack(u64),
}

enum Seen {
    Stale,
    Done(Answer),
    New,
}

#[derive(Default)]
struct Model {
    totals: HashMap<WindowKey, u64>,
    /// Per window, the batches that gave it a floor (one raise each).
    raises: HashMap<WindowKey, u64>,
    lows: HashMap<(String, InstanceId), u64>,
    done: HashMap<(String, InstanceId, u64), Answer>,
    /// Floors applied: above the total, and at or below it.
    lifting_floors: u64,
    flat_floors: u64,
}

impl Model {
    fn total(&self, window: &WindowKey) -> u64 {
        self.totals.get(window).copied().unwrap_or(0)
    }

    fn raise_count(&self, window: &WindowKey) -> u64 {
        self.raises.get(window).copied().unwrap_or(0)
    }

    fn total_mut(&mut self, window: &WindowKey) -> &mut u64 {
        self.totals.entry(window.clone()).or_insert(0)
    }

    fn seen(&self, service: &str, instance: InstanceId, seq: u64) -> Seen {
        let low = self
            .lows
            .get(&(service.to_owned(), instance))
            .copied()
            .unwrap_or(0);
        if seq < low {
            return Seen::Stale;
        }
        match self.done.get(&(service.to_owned(), instance, seq)) {
            Some(&answer) => Seen::Done(answer),
            None => Seen::New,
        }
    }

    /// Whether `request` was applied already (for a sync: in its first service).
    fn applied_already(&self, request: &Request) -> bool {
        let service = match request {
            Request::Sync(batch) => match (batch.deltas.first(), batch.raises.first()) {
                (Some(delta), _) => &delta.window.service,
                (None, Some(raise)) => &raise.window.service,
                (None, None) => return false,
            },
            Request::Admit(request) => &request.window.service,
            Request::Lease(request) => &request.window.service,
            Request::GiveBack(request) => &request.window.service,
        };
        matches!(
            self.seen(service, request.instance(), request.seq()),
            Seen::Done(_)
        )
    }

    fn record(
        &mut self,
        service: &str,
        request: &Request,
        done_below: u64,
        answer: Option<Answer>,
    ) {
        let (instance, seq) = (request.instance(), request.seq());
        if let Some(answer) = answer {
            self.done
                .insert((service.to_owned(), instance, seq), answer);
        }
        let low = self.lows.entry((service.to_owned(), instance)).or_insert(0);
        *low = (*low).max(done_below);
    }

    fn apply(&mut self, request: &Request) -> Reply {
        match request {
            Request::Sync(batch) => {
                if batch.changes() {
                    let services: BTreeSet<&str> = batch
                        .deltas
                        .iter()
                        .map(|d| &d.window)
                        .chain(batch.raises.iter().map(|r| &r.window))
                        .map(|w| w.service.as_str())
                        .collect();
                    for service in services {
                        let fresh =
                            matches!(self.seen(service, batch.instance, batch.seq), Seen::New);
                        if fresh {
                            for delta in batch.deltas.iter().filter(|d| d.window.service == service)
                            {
                                *self.total_mut(&delta.window) += delta.calls;
                            }
                        }
                        let answer = fresh.then_some(Answer::Applied);
                        self.record(service, request, batch.done_below, answer);
                    }
                }
                // Floors are maxima: applied whatever the seq. Each window's largest (a floor of
                // 0 is none) counts one raise, lifting its total or not.
                let mut floors: HashMap<&WindowKey, u64> = HashMap::new();
                for raise in batch.raises.iter().filter(|r| r.at_least > 0) {
                    let floor = floors.entry(&raise.window).or_insert(0);
                    *floor = (*floor).max(raise.at_least);
                }
                for (window, floor) in floors {
                    if floor > self.total(window) {
                        self.lifting_floors += 1;
                    } else {
                        self.flat_floors += 1;
                    }
                    let total = self.total_mut(window);
                    *total = (*total).max(floor);
                    *self.raises.entry(window.clone()).or_insert(0) += 1;
                }
                Reply::Sync(batch.read.iter().map(|w| self.total(w)).collect())
            }
            Request::Admit(admit) => {
                let window = &admit.window;
                let total = self.total(window);
                let (reply, answer) = match self.seen(&window.service, admit.instance, admit.seq) {
                    Seen::Done(Answer::Admitted(total, raise_count)) => (
                        AdmitReply::Admitted {
                            total,
                            raise_count,
                            also: Vec::new(),
                        },
                        None,
                    ),
                    Seen::Done(Answer::Denied(total)) => (
                        AdmitReply::Denied {
                            total,
                            also: Vec::new(),
                        },
                        None,
                    ),
                    Seen::Done(_) | Seen::Stale => (
                        AdmitReply::Denied {
                            total,
                            also: Vec::new(),
                        },
                        None,
                    ),
                    Seen::New => {
                        let after = total + admit.count;
                        if admit.force || (total < admit.below && after <= admit.cap) {
                            *self.total_mut(window) = after;
                            let raise_count = self.raise_count(window);
                            (
                                AdmitReply::Admitted {
                                    total: after,
                                    raise_count,
                                    also: Vec::new(),
                                },
                                Some(Answer::Admitted(after, raise_count)),
                            )
                        } else {
                            (
                                AdmitReply::Denied {
                                    total,
                                    also: Vec::new(),
                                },
                                Some(Answer::Denied(total)),
                            )
                        }
                    }
                };
                self.record(&window.service, request, admit.done_below, answer);
                Reply::Admit(reply)
            }
            Request::Lease(lease) => {
                let window = &lease.window;
                let now = self.raise_count(window);
                let seen = self.seen(&window.service, lease.instance, lease.seq);
                let (granted, raise_count, answer) = match seen {
                    Seen::Done(Answer::Granted(granted, raise_count)) => {
                        (granted, raise_count, None)
                    }
                    Seen::Done(_) | Seen::Stale => (0, now, None),
                    Seen::New => {
                        let total = self.total(window);
                        let granted = lease.block.min(lease.ceiling.saturating_sub(total));
                        *self.total_mut(window) += granted;
                        (granted, now, Some(Answer::Granted(granted, now)))
                    }
                };
                self.record(&window.service, request, lease.done_below, answer);
                Reply::Lease(LeaseReply {
                    granted,
                    total: self.total(window),
                    raise_count,
                    also: Vec::new(),
                })
            }
            Request::GiveBack(give_back) => {
                let window = &give_back.window;
                let seen = self.seen(&window.service, give_back.instance, give_back.seq);
                let (taken, answer) = match seen {
                    Seen::Done(Answer::GivenBack(taken)) => (taken, None),
                    Seen::Done(_) | Seen::Stale => (0, None),
                    Seen::New => {
                        // Raised since the calls were counted: forfeited.
                        let taken = match self.raise_count(window) == give_back.raise_count {
                            true => give_back.unused.min(self.total(window)),
                            false => 0,
                        };
                        *self.total_mut(window) -= taken;
                        (taken, Some(Answer::GivenBack(taken)))
                    }
                };
                self.record(&window.service, request, give_back.done_below, answer);
                Reply::GiveBack(taken)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The instances' side: one rising seq each, `done_below` the least unanswered seq

#[derive(Default)]
struct Client {
    /// The seq of the last operation sent (the next is one more).
    last_seq: u64,
    unanswered: BTreeSet<u64>,
}

impl Client {
    /// Every operation below this was answered.
    fn done_below(&self) -> u64 {
        self.unanswered
            .first()
            .copied()
            .unwrap_or(self.last_seq + 1)
    }
}

/// What the cases exercised, to check the sequence does what it says.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    /// Resends of an operation after a newer one of its instance.
    resends_after_newer: u64,
    /// Sends below the instance's own `done_below`.
    stale: u64,
    /// Resends the model found applied already (answered from the record).
    deduplicated: u64,
    /// Operations sent after the window moved.
    after_move: u64,
    /// Floors applied above the total, and at or below it.
    lifting_floors: u64,
    flat_floors: u64,
    /// New give-backs of an answered admission or lease, with the raise count it reported:
    /// forfeited (the window raised since), and taken off a window raised before the grant.
    forfeited: u64,
    taken_after_raise: u64,
    /// New give-backs with a wrong raise count.
    wrong_counts: u64,
}

impl Coverage {
    fn add(&mut self, other: &Coverage) {
        self.resends_after_newer += other.resends_after_newer;
        self.stale += other.stale;
        self.deduplicated += other.deduplicated;
        self.after_move += other.after_move;
        self.lifting_floors += other.lifting_floors;
        self.flat_floors += other.flat_floors;
        self.forfeited += other.forfeited;
        self.taken_after_raise += other.taken_after_raise;
        self.wrong_counts += other.wrong_counts;
    }
}

/// Calls an instance may give back: an admission's or a lease's, as its answer reported them.
#[derive(Debug, Clone)]
struct Returnable {
    instance: InstanceId,
    window: WindowKey,
    calls: u64,
    raise_count: u64,
}

/// One case: the windows, the three stores and the instances.
struct Case {
    coverage: Coverage,
    windows: Vec<[WindowKey; 2]>,
    /// 0 until the window moves, then 1.
    epoch: usize,
    store: RedisStore,
    /// To read the raise counts Redis keeps.
    raw: redis::Connection,
    state: StoredState,
    model: Model,
    clients: HashMap<InstanceId, Client>,
    sent: HashMap<(InstanceId, u64), Request>,
    in_flight: Vec<(InstanceId, u64)>,
    answered: Vec<(InstanceId, u64)>,
    /// Admissions and leases answered, not given back yet, oldest first.
    returnable: Vec<Returnable>,
    /// The give-back being sent: what it returns, and whether its count is the one reported.
    giving_back: Option<(Returnable, bool)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn window(service: &str, period: Period, at_ms: u64) -> WindowKey {
    let window = period.window_at(at_ms);
    WindowKey {
        service: service.into(),
        spec: period.into(),
        start_ms: window.start_ms,
        end_ms: window.reset_at_ms,
    }
}

impl Case {
    fn new(store: RedisStore, raw: redis::Connection) -> Case {
        let now = now_ms();
        let windows = SERVICES
            .iter()
            .map(|&(service, period)| {
                let current = window(service, period, now);
                let next = window(service, period, current.end_ms);
                [current, next]
            })
            .collect();
        Case {
            coverage: Coverage::default(),
            windows,
            epoch: 0,
            store,
            raw,
            state: StoredState::new(),
            model: Model::default(),
            clients: HashMap::new(),
            sent: HashMap::new(),
            in_flight: Vec::new(),
            answered: Vec::new(),
            returnable: Vec::new(),
            giving_back: None,
        }
    }

    fn every_window(&self) -> Vec<WindowKey> {
        self.windows.iter().flatten().cloned().collect()
    }

    /// The window of `service` new operations go to (or the one before, if `previous`).
    fn window(&self, service: usize, previous: bool) -> WindowKey {
        let epoch = if previous { 0 } else { self.epoch };
        self.windows[service][epoch].clone()
    }

    /// A new operation's request, with the instance's next seq (a sync that only reads does
    /// not take it: see `run`).
    fn request(&mut self, who: &Who, op: &NewOp) -> Request {
        let mut instance = InstanceId::from_u128(match *who {
            Who::Hot(n) => 1 + n as u128,
            Who::Cold(n) => 1_000 + n as u128,
        });
        // A give-back comes from the instance whose calls it returns.
        self.giving_back = None;
        if let &NewOp::GiveBack { pick, .. } = op {
            if !self.returnable.is_empty() {
                // One of the latest 16.
                let len = self.returnable.len();
                let at = len - 1 - pick % len.min(16);
                let returned = self.returnable.remove(at);
                instance = returned.instance;
                self.giving_back = Some((returned, true));
            }
        }
        let client = self.clients.entry(instance).or_default();
        let seq = client.last_seq + 1;
        // Unanswered until its reply comes, so the least unanswered is at most this one.
        let done_below = client.done_below().min(seq);
        let near = |model: &Model, window: &WindowKey, offset: i64| {
            model.total(window).saturating_add_signed(offset)
        };
        match op {
            NewOp::Sync {
                deltas,
                raises,
                read,
            } => Request::Sync(SyncBatch {
                instance,
                seq,
                done_below,
                at_ms: 0,
                deltas: deltas
                    .iter()
                    .map(|&(service, calls, previous)| Delta {
                        window: self.window(service, previous),
                        calls,
                    })
                    .collect(),
                read: if *read {
                    self.every_window()
                } else {
                    Vec::new()
                },
                raises: raises
                    .iter()
                    .map(|&(service, offset, previous)| {
                        let window = self.window(service, previous);
                        Raise {
                            at_least: near(&self.model, &window, offset),
                            window,
                        }
                    })
                    .collect(),
            }),
            &NewOp::Admit {
                service,
                count,
                offset,
                force,
            } => {
                let window = self.window(service, false);
                let cap = near(&self.model, &window, offset);
                Request::Admit(AdmitRequest {
                    instance,
                    seq,
                    done_below,
                    window,
                    count,
                    below: cap,
                    cap,
                    force,
                    also: Vec::new(),
                })
            }
            &NewOp::Lease {
                service,
                block,
                offset,
            } => {
                let window = self.window(service, false);
                Request::Lease(LeaseRequest {
                    instance,
                    seq,
                    done_below,
                    ceiling: near(&self.model, &window, offset),
                    window,
                    block,
                    also: Vec::new(),
                })
            }
            &NewOp::GiveBack {
                service,
                unused,
                wrong_count,
                ..
            } => {
                let (window, unused, right) = match &self.giving_back {
                    Some((returned, _)) => (
                        returned.window.clone(),
                        unused.min(returned.calls),
                        returned.raise_count,
                    ),
                    None => {
                        let window = self.window(service, false);
                        let now = self.model.raise_count(&window);
                        (window, unused, now)
                    }
                };
                // A wrong count: one the window had before, or one it never had yet.
                let raise_count = match (wrong_count, right) {
                    (false, right) => right,
                    (true, 0) => 1,
                    (true, right) => right - 1,
                };
                if let Some((_, right)) = &mut self.giving_back {
                    *right = !wrong_count;
                }
                if wrong_count {
                    self.coverage.wrong_counts += 1;
                }
                Request::GiveBack(GiveBack {
                    instance,
                    seq,
                    done_below,
                    window,
                    unused,
                    raise_count,
                    also: Vec::new(),
                })
            }
        }
    }

    /// Sends `request` to all three; every answer must be equal. Returns it.
    fn send(
        &mut self,
        index: usize,
        step: &Step,
        request: &Request,
    ) -> Result<Reply, TestCaseError> {
        if self.epoch == 1 {
            self.coverage.after_move += 1;
        }
        let fail = |what: String| {
            TestCaseError::fail(format!(
                "operation {index} ({step:?}): {request:?}\n  {what}"
            ))
        };
        // A new give-back of an answered admission or lease: whether the window was raised
        // since (by the model's count then and now), and whether there is anything to take.
        let giving_back = match (&self.giving_back, request) {
            (Some((returned, right)), Request::GiveBack(give_back)) => Some((
                *right,
                self.model.raise_count(&returned.window) != returned.raise_count,
                returned.raise_count > 0,
                give_back.unused.min(self.model.total(&give_back.window)) > 0,
            )),
            _ => None,
        };
        self.giving_back = None;
        let redis = request.redis(&self.store);
        let state = request.stored_state(&mut self.state);
        let model = self.model.apply(request);
        if redis.as_ref() != Ok(&state) || state != model {
            return Err(fail(format!(
                "Redis:       {redis:?}\n  StoredState: {state:?}\n  model:       {model:?}"
            )));
        }
        if let (Some((true, raised, before, something)), Reply::GiveBack(taken)) =
            (giving_back, &model)
        {
            // With the count its admission or lease reported: forfeited exactly when the
            // window was raised since.
            if (*taken == 0) != (raised || !something) {
                return Err(fail(format!(
                    "took off {taken}; raised since: {raised}, anything to take: {something}"
                )));
            }
            match raised {
                true if something => self.coverage.forfeited += 1,
                false if *taken > 0 && before => self.coverage.taken_after_raise += 1,
                _ => {}
            }
        }
        Ok(model)
    }

    /// The reply of `(instance, seq)` came: it is answered; what it admitted or granted may
    /// be given back.
    fn answer(&mut self, instance: InstanceId, seq: u64, reply: &Reply) {
        if let Some(client) = self.clients.get_mut(&instance) {
            client.unanswered.remove(&seq);
        }
        self.answered.push((instance, seq));
        let (window, calls, raise_count) = match (&self.sent[&(instance, seq)], reply) {
            (Request::Admit(admit), &Reply::Admit(AdmitReply::Admitted { raise_count, .. })) => {
                (&admit.window, admit.count, raise_count)
            }
            (Request::Lease(lease), Reply::Lease(reply)) => {
                (&lease.window, reply.granted, reply.raise_count)
            }
            _ => return,
        };
        if calls > 0 {
            self.returnable.push(Returnable {
                instance,
                window: window.clone(),
                calls,
                raise_count,
            });
        }
    }

    fn run(&mut self, index: usize, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::New { who, op, lost } => {
                let request = self.request(who, op);
                let (instance, seq) = (request.instance(), request.seq());
                let changes = !matches!(&request, Request::Sync(batch) if !batch.changes());
                if !changes {
                    // Only reads: no seq of its own, nothing to resend.
                    return self.send(index, step, &request).map(drop);
                }
                let client = self.clients.entry(instance).or_default();
                client.last_seq = seq;
                client.unanswered.insert(seq);
                self.sent.insert((instance, seq), request.clone());
                let reply = self.send(index, step, &request)?;
                if *lost {
                    self.in_flight.push((instance, seq));
                } else {
                    self.answer(instance, seq, &reply);
                }
            }
            Step::Resend { pick, lost } => {
                if self.in_flight.is_empty() {
                    return Ok(());
                }
                let at = pick % self.in_flight.len();
                let (instance, seq) = self.in_flight[at];
                let request = self.sent[&(instance, seq)].clone();
                if seq < self.clients[&instance].last_seq {
                    self.coverage.resends_after_newer += 1;
                }
                if self.model.applied_already(&request) {
                    self.coverage.deduplicated += 1;
                }
                let reply = self.send(index, step, &request)?;
                if !lost {
                    self.in_flight.swap_remove(at);
                    self.answer(instance, seq, &reply);
                }
            }
            Step::Stale { pick } => {
                if self.answered.is_empty() {
                    return Ok(());
                }
                let (instance, seq) = self.answered[pick % self.answered.len()];
                if seq < self.clients[&instance].done_below() {
                    self.coverage.stale += 1;
                    let request = self.sent[&(instance, seq)].clone();
                    self.send(index, step, &request)?;
                }
            }
            Step::MoveWindow => self.epoch = 1,
        }
        Ok(())
    }

    /// Every window's total and raise count, read back from Redis, equals `StoredState`'s and
    /// the model's.
    fn check_totals(&mut self, index: usize) -> Result<(), TestCaseError> {
        let windows = self.every_window();
        let redis = self
            .store
            .sync(&SyncBatch {
                instance: InstanceId::from_u128(0),
                seq: 0,
                done_below: 0,
                at_ms: 0,
                deltas: Vec::new(),
                read: windows.clone(),
                raises: Vec::new(),
            })
            .map_err(|error| TestCaseError::fail(format!("reading totals: {error}")))?;
        for (window, redis) in windows.iter().zip(redis) {
            let (state, model) = (self.state.total(window), self.model.total(window));
            if redis != state || state != model {
                return Err(TestCaseError::fail(format!(
                    "after operation {index}: {window:?}: Redis {redis}, StoredState {state}, \
                     model {model}"
                )));
            }
            let key = format!("{}:raises", self.store.window_key(window));
            let redis: Option<u64> = redis::cmd("GET")
                .arg(&key)
                .query(&mut self.raw)
                .map_err(|error| TestCaseError::fail(format!("reading {key}: {error}")))?;
            let redis = redis.unwrap_or(0);
            let state = self
                .state
                .windows()
                .find(|w| {
                    (&w.spec, w.start_ms, &w.service)
                        == (&window.spec, window.start_ms, &window.service)
                })
                .map_or(0, |w| w.raise_count);
            let model = self.model.raise_count(window);
            if redis != state || state != model {
                return Err(TestCaseError::fail(format!(
                    "after operation {index}: {window:?}: raise counts: Redis {redis}, \
                     StoredState {state}, model {model}"
                )));
            }
        }
        Ok(())
    }
}

#[test]
fn redis_and_stored_state_apply_each_operation_exactly_once_in_any_order() {
    let server = Server::start();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        // A case is thousands of operations: keep a failure's shrinking short.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    // The runner takes a `Fn`: counters in cells.
    let case_number = Cell::new(0u32);
    let instances_seen = Cell::new(usize::MAX);
    let coverage = Cell::new(Coverage::default());
    let result = runner.run(&steps(), |steps| {
        case_number.set(case_number.get() + 1);
        let store = RedisStore::new(&server.url())
            .map_err(|error| TestCaseError::fail(error.to_string()))?
            .timeout(Duration::from_secs(5))
            .prefix(format!("model{}", case_number.get()));
        let raw = redis::Client::open(server.url())
            .and_then(|client| client.get_connection())
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let mut case = Case::new(store, raw);
        for (index, step) in steps.iter().enumerate() {
            case.run(index, step)?;
            if index % 500 == 499 {
                case.check_totals(index)?;
            }
        }
        case.check_totals(steps.len())?;
        let instances = case.clients.values().filter(|c| c.last_seq > 0).count();
        instances_seen.set(instances_seen.get().min(instances));
        case.coverage.lifting_floors = case.model.lifting_floors;
        case.coverage.flat_floors = case.model.flat_floors;
        let mut all = coverage.get();
        all.add(&case.coverage);
        coverage.set(all);
        Ok(())
    });
    match result {
        Ok(()) => {}
        // The reason names the operation and the three answers; the steps are thousands.
        Err(TestError::Fail(reason, steps)) => {
            panic!(
                "{reason}\n(the smallest failing case found has {} steps)",
                steps.len()
            )
        }
        Err(TestError::Abort(reason)) => panic!("{reason}"),
    }
    let instances = instances_seen.get();
    assert!(instances >= 2_000, "a case had only {instances} instances");
    let coverage = coverage.get();
    println!("{CASES} cases, at least {instances} instances each: {coverage:?}");
    assert!(
        coverage.resends_after_newer > 100
            && coverage.stale > 100
            && coverage.deduplicated > 100
            && coverage.after_move > 100
            && coverage.lifting_floors > 100
            && coverage.flat_floors > 100
            && coverage.forfeited > 100
            && coverage.taken_after_raise > 100
            && coverage.wrong_counts > 100,
        "{coverage:?}"
    );
}
