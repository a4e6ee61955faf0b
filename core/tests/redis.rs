//! `RedisStore` against real `redis-server` processes: each test starts its own on a free
//! loopback port (never 6379) and kills it at the end (the harness is
//! `support/redis_server.rs`). A test whose server cannot start fails (install it with
//! `cargo xtask test`, or `apt-get install redis-server`).

#[path = "support/redis_server.rs"]
mod redis_server;

use quota_core::{
    AdmitReply, AdmitRequest, Delta, GiveBack, InstanceId, LeaseReply, LeaseRequest, Period, Raise,
    RedisStore, Store, StoreError, StoredState, SyncBatch, WindowKey,
};
use redis_server::{Options, Proxy, Server};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400_000;
const GRACE: u64 = 3_600_000;

// ---------------------------------------------------------------------------------------------
// Batches

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `service`'s day window `days_ago` days before today's.
fn day(service: &str, days_ago: u64) -> WindowKey {
    let start_ms = now_ms() / DAY * DAY - days_ago * DAY;
    WindowKey {
        service: service.into(),
        spec: Period::Day.into(),
        start_ms,
        end_ms: start_ms + DAY,
    }
}

fn id(n: u128) -> InstanceId {
    InstanceId::from_u128(n)
}

fn batch(instance: u128, seq: u64, deltas: &[(&WindowKey, u64)], read: &[&WindowKey]) -> SyncBatch {
    SyncBatch {
        done_below: 0,
        instance: id(instance),
        seq,
        at_ms: now_ms(),
        deltas: deltas
            .iter()
            .map(|&(window, calls)| Delta {
                window: window.clone(),
                calls,
            })
            .collect(),
        read: read.iter().map(|&w| w.clone()).collect(),
        raises: vec![],
    }
}

fn total(store: &RedisStore, window: &WindowKey) -> u64 {
    store.sync(&batch(0, 0, &[], &[window])).unwrap()[0]
}

fn int(con: &mut redis::Connection, command: &str, key: &str) -> i64 {
    redis::cmd(command).arg(key).query(con).unwrap()
}

/// An operations record's fields and values, sorted by field.
fn record(con: &mut redis::Connection, key: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(con).unwrap();
    fields.sort();
    fields
}

// ---------------------------------------------------------------------------------------------
// Semantics

#[test]
fn deltas_add_up_across_instances_a_retry_counts_once_and_totals_read_back() {
    let server = Server::start();
    let store = server.store();
    let (a, b) = (day("a", 0), day("b", 0));
    let (a_old, never) = (day("a", 1), day("never", 0));
    let read = [&a, &b, &a_old, &never];
    assert_eq!(
        store.sync(&batch(1, 1, &[(&a, 5)], &read)),
        Ok(vec![5, 0, 0, 0])
    );
    assert_eq!(
        store.sync(&batch(2, 1, &[(&a, 3), (&b, 1), (&a_old, 2)], &read)),
        Ok(vec![8, 1, 2, 0])
    );
    // Instance 1 retries seq 1 (its reply was lost): applied once.
    assert_eq!(
        store.sync(&batch(1, 1, &[(&a, 5)], &read)),
        Ok(vec![8, 1, 2, 0])
    );
    // A newer seq is applied; saying every seq below 2 was answered (`done_below`), it makes
    // the older ones stale: not applied, whether they were applied before (1) or never (0).
    let mut newer = batch(1, 2, &[(&a, 1)], &read);
    newer.done_below = 2;
    assert_eq!(store.sync(&newer), Ok(vec![9, 1, 2, 0]));
    for stale in [1, 0] {
        assert_eq!(
            store.sync(&batch(1, stale, &[(&a, 100)], &read)),
            Ok(vec![9, 1, 2, 0]),
            "seq {stale}"
        );
    }
    // One window twice in a batch: both count.
    assert_eq!(
        store.sync(&batch(3, 7, &[(&b, 1), (&b, 2)], &read)),
        Ok(vec![9, 4, 2, 0])
    );
    // Another store on the same server (another process) sees the same totals.
    let other = server.store();
    assert_eq!(other.sync(&batch(9, 0, &[], &read)), Ok(vec![9, 4, 2, 0]));
    // A batch with nothing in it only checks that Redis answers.
    assert_eq!(other.sync(&batch(9, 0, &[], &[])), Ok(vec![]));
}

#[test]
fn keys_are_named_per_service_and_window_and_always_expire() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let service = "we{ir}d%";
    let (today, yesterday) = (day(service, 0), day(service, 1));
    let mut future = day(service, 0);
    future.start_ms += 3650 * DAY; // a bogus clock, ten years ahead
    future.end_ms += 3650 * DAY;
    store
        .sync(&batch(
            0xabc,
            4,
            &[(&today, 2), (&yesterday, 3), (&future, 1)],
            &[],
        ))
        .unwrap();
    let base = "quota:{we%7Bir%7Dd%25}";
    let key = format!("{base}:day:{}", today.start_ms);
    assert_eq!(store.window_key(&today), key);
    let value: String = redis::cmd("GET").arg(&key).query(&mut raw).unwrap();
    assert_eq!(value, "2");
    // Today's window goes an hour after it ends, exactly.
    let expires = int(&mut raw, "PEXPIRETIME", &key);
    assert_eq!(expires as u64, today.end_ms + GRACE);
    // Yesterday's has ended: it goes an hour from now, not in the past.
    let ttl = int(
        &mut raw,
        "PTTL",
        &format!("{base}:day:{}", yesterday.start_ms),
    );
    assert!(
        ttl > (GRACE - 60_000) as i64 && ttl <= GRACE as i64,
        "{ttl}"
    );
    // The bogus future one lives at most two days and an hour.
    let ttl = int(&mut raw, "PTTL", &format!("{base}:day:{}", future.start_ms));
    assert!(ttl > 0 && ttl <= (2 * DAY + GRACE) as i64, "{ttl}");
    // The instance's operations record: the low-water mark and seq 4, applied, expiring no
    // earlier than any window key it counted in.
    let instance = id(0xabc).to_string();
    let ops = format!("{base}:ops:{instance}");
    assert_eq!(
        record(&mut raw, &ops),
        [("4".to_owned(), "1".to_owned()), ("low".into(), "0".into())]
    );
    let record_expires = int(&mut raw, "PEXPIRETIME", &ops);
    for window in [&today, &yesterday, &future] {
        let window = int(&mut raw, "PEXPIRETIME", &store.window_key(window));
        assert!(record_expires >= window, "{record_expires} < {window}");
    }
    // Every key of the service shares one cluster slot (one hash tag) and expires.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for key in &keys {
        assert!(key.starts_with("quota:{we%7Bir%7Dd%25}:"), "{key}");
        assert!(int(&mut raw, "PTTL", key) > 0, "{key} does not expire");
    }
    // A lease goes to the same record, with its grant.
    store
        .lease(&LeaseRequest {
            done_below: 0,
            instance: id(0xabc),
            seq: 5,
            window: today.clone(),
            block: 5,
            ceiling: 100,
            also: Vec::new(),
        })
        .unwrap();
    assert_eq!(
        record(&mut raw, &ops),
        [
            ("4".to_owned(), "1".to_owned()),
            ("5".into(), "g5/0".into()),
            ("low".into(), "0".into())
        ]
    );
    // Names that differ only by escaping stay apart; a prefix of one's own.
    let prefixed = server.store().prefix("app{1}");
    let plain = day("we%7Bir%7Dd%25", 0);
    prefixed.sync(&batch(1, 1, &[(&plain, 7)], &[])).unwrap();
    assert_eq!(
        prefixed.window_key(&plain),
        format!("app%7B1%7D:{{we%257Bir%257Dd%2525}}:day:{}", plain.start_ms)
    );
    assert_eq!(total(&prefixed, &plain), 7);
    assert_eq!(total(&prefixed, &today), 0, "another prefix, other keys");
    assert_eq!(total(&store, &today), 7, "2 synced + 5 leased");
    // The empty name still makes a non-empty hash tag.
    assert_eq!(
        store.window_key(&day("", 0)),
        format!("quota:{{%}}:day:{}", today.start_ms)
    );
}

#[test]
fn admit_lease_and_give_back_match_stored_state() {
    let server = Server::start();
    let store = server.store();
    let w = day("s", 0);
    let admit = |count, below, cap, force| AdmitRequest {
        done_below: 0,
        instance: InstanceId::from_u128(99),
        seq: next_admit_seq(),
        window: w.clone(),
        count,
        below,
        cap,
        force,
        also: Vec::new(),
    };
    assert_eq!(
        store.admit(&admit(3, 8, 10, false)),
        Ok(AdmitReply::Admitted {
            total: 3,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(
        store.admit(&admit(8, 8, 10, false)),
        Ok(AdmitReply::Denied {
            total: 3,
            also: Vec::new()
        }),
        "3 + 8 is over the cap"
    );
    assert_eq!(
        store.admit(&admit(5, 8, 10, false)),
        Ok(AdmitReply::Admitted {
            total: 8,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(
        store.admit(&admit(1, 8, 10, false)),
        Ok(AdmitReply::Denied {
            total: 8,
            also: Vec::new()
        }),
        "not below 8"
    );
    assert_eq!(
        store.admit(&admit(5, 8, 10, true)),
        Ok(AdmitReply::Admitted {
            total: 13,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    // One rising seq per instance for every kind of operation; each says the ones before it
    // were answered (`done_below`).
    let lease = |instance, seq, block, ceiling| LeaseRequest {
        done_below: seq,
        instance: id(instance),
        seq,
        window: w.clone(),
        block,
        ceiling,
        also: Vec::new(),
    };
    assert_eq!(
        store.lease(&lease(1, 1, 10, 20)),
        Ok(LeaseReply {
            granted: 7,
            total: 20,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    // A retry gets the same grant (and adds nothing); a seq below the mark gets nothing.
    assert_eq!(
        store.lease(&lease(1, 1, 10, 20)),
        Ok(LeaseReply {
            granted: 7,
            total: 20,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(
        store.lease(&lease(1, 0, 10, 40)),
        Ok(LeaseReply {
            granted: 0,
            total: 20,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(
        store.lease(&lease(2, 1, 10, 20)),
        Ok(LeaseReply {
            granted: 0,
            total: 20,
            raise_count: 0,
            also: Vec::new(),
        }),
        "no headroom"
    );
    let give_back = |instance, seq, unused| GiveBack {
        done_below: seq,
        instance: id(instance),
        seq,
        window: w.clone(),
        unused,
        raise_count: 0,
        also: Vec::new(),
    };
    assert_eq!(store.give_back(&give_back(1, 2, 4)), Ok(4));
    assert_eq!(store.give_back(&give_back(1, 2, 4)), Ok(4), "a retry");
    assert_eq!(total(&store, &w), 16);
    // The lease's own seq is not a give-back: nothing taken off.
    assert_eq!(store.give_back(&give_back(1, 1, 4)), Ok(0));
    assert_eq!(total(&store, &w), 16);
    assert_eq!(
        store.give_back(&give_back(1, 3, 100)),
        Ok(16),
        "never below zero: what there was"
    );
    assert_eq!(total(&store, &w), 0, "never below zero");
    assert_eq!(
        store.lease(&lease(1, 4, 5, 20)),
        Ok(LeaseReply {
            granted: 5,
            total: 5,
            raise_count: 0,
            also: Vec::new(),
        })
    );
}

/// Was a bug: a give-back took its calls off whatever had happened to the window since they
/// were counted. After another instance's raise (a floor from the provider's count, which may
/// have absorbed those calls) the total went below the provider's count. Now a give-back
/// carries the raise count its admission or lease reported, and the store forfeits it (takes
/// nothing off, answers 0) if the window was raised since; kept in `<window>:raises`.
#[test]
fn a_give_back_after_another_instances_raise_is_forfeited() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let mut reference = StoredState::new();
    let w = day("floor", 0);
    let raises_key = format!("{}:raises", store.window_key(&w));
    let (a, b) = (id(1), id(2));
    // A's admission of 5 is applied: the window was never raised.
    let admit = |seq| AdmitRequest {
        done_below: 1,
        instance: a,
        seq,
        window: w.clone(),
        count: 5,
        below: 100,
        cap: 100,
        force: false,
        also: Vec::new(),
    };
    let admitted = AdmitReply::Admitted {
        total: 5,
        raise_count: 0,
        also: Vec::new(),
    };
    assert_eq!(store.admit(&admit(1)), Ok(admitted.clone()));
    assert_eq!(reference.admit(&admit(1)), admitted);
    // B raises the window to the provider's count, 8, above the total: the floor absorbs A's 5.
    let raise = |seq, at_least| {
        let mut sync = batch(2, seq, &[], &[&w]);
        sync.raises.push(Raise {
            window: w.clone(),
            at_least,
        });
        sync
    };
    assert_eq!(store.sync(&raise(1, 8)), Ok(vec![8]));
    assert_eq!(reference.apply(&raise(1, 8)), [8]);
    // A gives its 5 back (its caller was told the admission failed) with the raise count from
    // its admission: forfeited, the provider's count stands; a resend gets the same answer.
    let give_back = |seq, unused, raise_count| GiveBack {
        done_below: 1,
        instance: a,
        seq,
        window: w.clone(),
        unused,
        raise_count,
        also: Vec::new(),
    };
    for send in 0..2 {
        assert_eq!(store.give_back(&give_back(2, 5, 0)), Ok(0), "send {send}");
        assert_eq!(reference.give_back(&give_back(2, 5, 0)), 0, "send {send}");
        assert_eq!(total(&store, &w), 8, "send {send}");
    }
    // With the window's raise count now: taken off; a resend takes nothing more.
    for send in 0..2 {
        assert_eq!(store.give_back(&give_back(3, 3, 1)), Ok(3), "send {send}");
        assert_eq!(reference.give_back(&give_back(3, 3, 1)), 3, "send {send}");
        assert_eq!(total(&store, &w), 5, "send {send}");
    }
    // The admission's resend still answers the count it was applied under.
    assert_eq!(store.admit(&admit(1)), Ok(admitted.clone()));
    assert_eq!(reference.admit(&admit(1)), admitted);
    // A lease reports the count it was granted under, and a resend the same after a raise.
    let lease = |seq| LeaseRequest {
        done_below: 1,
        instance: a,
        seq,
        window: w.clone(),
        block: 4,
        ceiling: 100,
        also: Vec::new(),
    };
    let granted = LeaseReply {
        granted: 4,
        total: 9,
        raise_count: 1,
        also: Vec::new(),
    };
    assert_eq!(store.lease(&lease(4)), Ok(granted.clone()));
    assert_eq!(reference.lease(&lease(4)), granted);
    // B's next floor, 2, is below the total: it changes no total, but it is a raise too.
    assert_eq!(store.sync(&raise(2, 2)), Ok(vec![9]));
    assert_eq!(reference.apply(&raise(2, 2)), [9]);
    assert_eq!(
        store.lease(&lease(4)),
        Ok(granted.clone()),
        "a resend: the first count"
    );
    assert_eq!(reference.lease(&lease(4)), granted);
    // The lease's unused 4 given back with its count: forfeited, as the window was raised.
    assert_eq!(store.give_back(&give_back(5, 4, 1)), Ok(0));
    assert_eq!(reference.give_back(&give_back(5, 4, 1)), 0);
    assert_eq!(total(&store, &w), 9);
    // A later lease's, with the count now: taken off.
    let later = LeaseReply {
        granted: 4,
        total: 13,
        raise_count: 2,
        also: Vec::new(),
    };
    assert_eq!(store.lease(&lease(6)), Ok(later.clone()));
    assert_eq!(reference.lease(&lease(6)), later);
    assert_eq!(store.give_back(&give_back(7, 4, 2)), Ok(4));
    assert_eq!(reference.give_back(&give_back(7, 4, 2)), 4);
    assert_eq!(total(&store, &w), 9);
    assert_eq!(reference.total(&w), 9);
    assert_eq!(redis_raise_count(&store, &mut raw, &w), 2);
    assert_eq!(stored_raise_count(&reference, &w), 2);
    // The answers as the record keeps them (the mark stayed at 1).
    let ops = format!("quota:{{floor}}:ops:{a}");
    let answers = |answers: &[(&str, &str)]| -> Vec<(String, String)> {
        answers
            .iter()
            .map(|&(seq, answer)| (seq.to_owned(), answer.to_owned()))
            .collect()
    };
    let kept = answers(&[
        ("1", "a5/0"),
        ("2", "b0"),
        ("3", "b3"),
        ("4", "g4/1"),
        ("5", "b0"),
        ("6", "g4/2"),
        ("7", "b4"),
        ("low", "1"),
    ]);
    assert_eq!(record(&mut raw, &ops), kept);
    // The raise count goes with the window: an hour after it ends, exactly as the window.
    let expires = int(&mut raw, "PEXPIRETIME", &raises_key);
    assert_eq!(expires as u64, w.end_ms + GRACE);
    assert_eq!(int(&mut raw, "PEXPIRETIME", &store.window_key(&w)), expires);
    let ttl = int(&mut raw, "PTTL", &raises_key);
    assert!(ttl > 0 && ttl as u64 <= DAY + GRACE, "{ttl}");

    // A raise count that is not one fails every call that reads it, and changes nothing.
    let b_ops = format!("quota:{{floor}}:ops:{b}");
    let b_kept = record(&mut raw, &b_ops);
    // A hash; text; a negative, a padded and an empty number.
    let bad: [(&str, &[&str]); 5] = [
        ("HSET", &["n", "2"]),
        ("SET", &["two"]),
        ("SET", &["-1"]),
        ("SET", &["02"]),
        ("SET", &[""]),
    ];
    let delta = batch(2, 3, &[(&w, 1)], &[&w]);
    for (case, (command, value)) in bad.into_iter().enumerate() {
        let _: () = redis::cmd("DEL").arg(&raises_key).query(&mut raw).unwrap();
        let _: () = redis::cmd(command)
            .arg(&raises_key)
            .arg(value)
            .query(&mut raw)
            .unwrap();
        let dump = |raw: &mut redis::Connection| -> Vec<u8> {
            redis::cmd("DUMP").arg(&raises_key).query(raw).unwrap()
        };
        let before = dump(&mut raw);
        let errors = [
            store.sync(&delta).map(drop),
            store.sync(&raise(3, 100)).map(drop),
            store.admit(&admit(8)).map(drop),
            store.lease(&lease(8)).map(drop),
            store.give_back(&give_back(8, 1, 2)).map(drop),
        ];
        for (call, error) in errors.into_iter().enumerate() {
            assert!(
                matches!(&error, Err(StoreError::Corrupt(m)) if m.contains(&raises_key)),
                "case {case}, call {call}: {error:?}"
            );
        }
        assert_eq!(dump(&mut raw), before, "case {case}");
        assert_eq!(total(&store, &w), 9, "case {case}");
        assert_eq!(record(&mut raw, &ops), kept, "case {case}");
        assert_eq!(record(&mut raw, &b_ops), b_kept, "case {case}");
    }
    // Put right, the same calls are new: applied now, as StoredState applies them.
    let _: () = redis::cmd("SET")
        .arg(&raises_key)
        .arg("2")
        .query(&mut raw)
        .unwrap();
    assert_eq!(store.sync(&delta), Ok(reference.apply(&delta)));
    assert_eq!(store.admit(&admit(8)), Ok(reference.admit(&admit(8))));
    assert_eq!(total(&store, &w), 15);
    assert_eq!(reference.total(&w), 15);
}

/// Was a bug: an ended window's keys go an hour after the last write, but its raise count
/// kept the expiry of its last raise, so it could go first: read as 0 again, a later raise
/// made it a count an older admission had reported, and that admission's give-back was taken
/// off although the window had been raised since.
#[test]
fn an_ended_windows_raise_count_goes_with_the_window() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let w = day("ended", 1);
    let (window_key, raises_key) = (
        store.window_key(&w),
        format!("{}:raises", store.window_key(&w)),
    );
    let mut raise = batch(2, 1, &[], &[&w]);
    raise.raises.push(Raise {
        window: w.clone(),
        at_least: 8,
    });
    store.sync(&raise).unwrap();
    let mut expiries = Vec::new();
    let mut check = |raw: &mut redis::Connection, what: &str| {
        let window = int(raw, "PEXPIRETIME", &window_key);
        assert_eq!(int(raw, "PEXPIRETIME", &raises_key), window, "after {what}");
        expiries.push(window);
        // The next write comes later: the window's expiry moves on.
        thread::sleep(Duration::from_millis(20));
    };
    check(&mut raw, "the raise");
    store.sync(&batch(3, 1, &[(&w, 1)], &[])).unwrap();
    check(&mut raw, "a sync");
    let admit = AdmitRequest {
        done_below: 0,
        instance: id(1),
        seq: 1,
        window: w.clone(),
        count: 1,
        below: 100,
        cap: 100,
        force: false,
        also: Vec::new(),
    };
    store.admit(&admit).unwrap();
    check(&mut raw, "an admission");
    let lease = LeaseRequest {
        done_below: 0,
        instance: id(1),
        seq: 2,
        window: w.clone(),
        block: 2,
        ceiling: 100,
        also: Vec::new(),
    };
    store.lease(&lease).unwrap();
    check(&mut raw, "a lease");
    let give_back = GiveBack {
        done_below: 0,
        instance: id(1),
        seq: 3,
        window: w.clone(),
        unused: 1,
        raise_count: 1,
        also: Vec::new(),
    };
    assert_eq!(store.give_back(&give_back), Ok(1));
    check(&mut raw, "a give-back");
    assert!(
        expiries.windows(2).all(|pair| pair[0] < pair[1]),
        "each write moved the expiry on: {expiries:?}"
    );
}

/// A small deterministic generator (no dependency on a random crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
}

/// The raise count `StoredState` keeps for `window` (0 if none is stored).
fn stored_raise_count(state: &StoredState, window: &WindowKey) -> u64 {
    state
        .windows()
        .find(|w| {
            (&w.service, &w.spec, w.start_ms) == (&window.service, &window.spec, window.start_ms)
        })
        .map_or(0, |w| w.raise_count)
}

/// The `:raises` key of `window` as Redis holds it (0 if none).
fn redis_raise_count(store: &RedisStore, raw: &mut redis::Connection, window: &WindowKey) -> u64 {
    let value: Option<String> = redis::cmd("GET")
        .arg(format!("{}:raises", store.window_key(window)))
        .query(raw)
        .unwrap();
    value.map_or(0, |v| v.parse().unwrap())
}

/// Random syncs (floors above the total and below it), admissions, leases and give-backs
/// (numbers up to `u64::MAX` and around `MAX_TOTAL` included; give-backs carrying the raise
/// count an admission or lease reported, the current one, or a stale one), each answered
/// exactly as `StoredState` answers it, raise counts included.
#[test]
fn every_operation_answers_exactly_as_stored_state() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let mut reference = StoredState::new();
    // Per window, the raise count the last admission or lease reported.
    let mut reported = [0u64; 4];
    // Give-backs answered 0 with a raise count not the window's (forfeited, or stale), and
    // give-backs that took calls off a raised window (with its current count).
    let (mut forfeited, mut taken_after_raise) = (0, 0);
    let windows = [day("a", 0), day("a", 1), day("b", 0), day("b", 1)];
    let max = StoredState::MAX_TOTAL;
    let numbers = [
        0,
        1,
        2,
        5,
        17,
        100,
        (1 << 53) + 1,
        max - 3,
        max - 1,
        max,
        max + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let mut rng = Lcg(7);
    let mut seqs = [0u64; 4];
    let mut lease_seqs = [0u64; 4];
    for step in 0..1_500u32 {
        let instance = rng.next() as usize % 4;
        let next_seq = |seqs: &mut [u64; 4], rng: &mut Lcg| match rng.next() % 5 {
            0 => seqs[instance],                   // a retry
            1 => seqs[instance].saturating_sub(1), // an old one
            _ => {
                seqs[instance] += 1;
                seqs[instance]
            }
        };
        let small = |rng: &mut Lcg| rng.pick(&numbers[..6]);
        let any = |rng: &mut Lcg| {
            if rng.next().is_multiple_of(4) {
                rng.pick(&numbers)
            } else {
                small(rng)
            }
        };
        // Sometimes a low-water mark: up to the seq itself, so older ones turn stale.
        let mark = |rng: &mut Lcg, seq: u64| match rng.next() % 3 {
            0 => rng.next() % (seq + 1),
            _ => 0,
        };
        let index = rng.pick(&[0, 1, 2, 3]);
        let window = &windows[index];
        match rng.next() % 4 {
            0 => {
                let seq = next_seq(&mut seqs, &mut rng);
                let n = 1 + rng.next() % 3;
                let deltas: Vec<Delta> = (0..n)
                    .map(|_| Delta {
                        window: windows[rng.next() as usize % 4].clone(),
                        calls: any(&mut rng),
                    })
                    .collect();
                // Floors too, on retries and old seqs as well (a floor is applied anyway).
                let raises: Vec<Raise> = (0..rng.next() % 3)
                    .map(|_| Raise {
                        window: windows[rng.next() as usize % 4].clone(),
                        at_least: any(&mut rng),
                    })
                    .collect();
                let batch = SyncBatch {
                    done_below: mark(&mut rng, seq),
                    instance: id(instance as u128 + 1),
                    seq,
                    at_ms: 0,
                    deltas,
                    read: windows.to_vec(),
                    raises,
                };
                assert_eq!(
                    store.sync(&batch),
                    Ok(reference.apply(&batch)),
                    "{step}: {batch:?}"
                );
            }
            1 => {
                let request = AdmitRequest {
                    done_below: 0,
                    instance: InstanceId::from_u128(99),
                    seq: next_admit_seq(),
                    window: window.clone(),
                    count: any(&mut rng),
                    below: any(&mut rng).max(small(&mut rng)),
                    cap: any(&mut rng),
                    force: rng.next().is_multiple_of(5),
                    also: Vec::new(),
                };
                let expected = reference.admit(&request);
                assert_eq!(
                    store.admit(&request),
                    Ok(expected.clone()),
                    "{step}: {request:?}"
                );
                if let AdmitReply::Admitted { raise_count, .. } = expected {
                    reported[index] = raise_count;
                }
            }
            2 => {
                let seq = next_seq(&mut lease_seqs, &mut rng);
                let request = LeaseRequest {
                    done_below: mark(&mut rng, seq),
                    instance: id(instance as u128 + 1),
                    seq,
                    window: window.clone(),
                    block: any(&mut rng),
                    ceiling: any(&mut rng),
                    also: Vec::new(),
                };
                let expected = reference.lease(&request);
                assert_eq!(
                    store.lease(&request),
                    Ok(expected.clone()),
                    "{step}: {request:?}"
                );
                reported[index] = expected.raise_count;
            }
            _ => {
                let seq = next_seq(&mut lease_seqs, &mut rng);
                let request = GiveBack {
                    done_below: mark(&mut rng, seq),
                    instance: id(instance as u128 + 1),
                    seq,
                    window: window.clone(),
                    unused: any(&mut rng),
                    raise_count: match rng.next() % 4 {
                        0 => reported[index],
                        1 => rng.next() % 3,
                        _ => stored_raise_count(&reference, window),
                    },
                    also: Vec::new(),
                };
                let expected = reference.give_back(&request);
                if expected == 0 && stored_raise_count(&reference, window) != request.raise_count {
                    forfeited += 1;
                }
                if expected > 0 && request.raise_count > 0 {
                    taken_after_raise += 1;
                }
                assert_eq!(
                    store.give_back(&request),
                    Ok(expected),
                    "{step}: {request:?}"
                );
            }
        }
        if step.is_multiple_of(100) {
            // Totals and raise counts too (not only what operations answered).
            for window in &windows {
                assert_eq!(total(&store, window), reference.total(window), "{step}");
                assert_eq!(
                    redis_raise_count(&store, &mut raw, window),
                    stored_raise_count(&reference, window),
                    "{step}: {window:?}"
                );
            }
        }
    }
    let raises: u64 = windows
        .iter()
        .map(|w| stored_raise_count(&reference, w))
        .sum();
    assert!(
        raises > 10 && forfeited > 10 && taken_after_raise > 10,
        "raises {raises}, forfeited {forfeited}, taken after a raise {taken_after_raise}"
    );
}

#[test]
fn data_of_the_wrong_kind_fails_the_call_and_changes_nothing() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let (good, bad) = (day("s", 0), day("s", 1));
    let _: () = redis::cmd("SET")
        .arg(store.window_key(&bad))
        .arg("twelve")
        .query(&mut raw)
        .unwrap();
    // `good` sorts first: its delta would be written first, were anything checked late.
    let attempt = batch(1, 1, &[(&good, 5), (&bad, 1)], &[]);
    assert!(matches!(store.sync(&attempt), Err(StoreError::Corrupt(_))));
    let _: () = redis::cmd("SET")
        .arg(store.window_key(&bad))
        .arg("12")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        store.sync(&attempt),
        Ok(vec![]),
        "nothing recorded: not a retry"
    );
    assert_eq!(total(&store, &good), 5);
    assert_eq!(total(&store, &bad), 13);
    let _: () = redis::cmd("DEL")
        .arg(store.window_key(&good))
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(store.window_key(&good))
        .arg("x")
        .arg("1")
        .query(&mut raw)
        .unwrap();
    let error = store.sync(&batch(0, 0, &[], &[&good])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
}

/// One script per service (each its own cluster slot): once one has run, a later failure of
/// the batch is `Io` (maybe applied), never `Corrupt` (nothing applied), and the resend of the
/// same batch counts each service once.
#[test]
fn a_batch_that_fails_after_a_service_was_applied_is_io() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let (a, b) = (day("a", 0), day("b", 0));
    let set = |raw: &mut redis::Connection, value: &str| {
        let _: () = redis::cmd("SET")
            .arg(store.window_key(&b))
            .arg(value)
            .query(raw)
            .unwrap();
    };
    set(&mut raw, "twelve");
    // "a" goes first and is applied; "b" fails.
    let both = batch(1, 1, &[(&a, 5), (&b, 1)], &[&a]);
    let error = store.sync(&both).unwrap_err();
    assert!(
        matches!(&error, StoreError::Io(m) if m.contains("part of it was applied")),
        "{error:?}"
    );
    assert_eq!(total(&store, &a), 5);
    set(&mut raw, "12");
    assert_eq!(store.sync(&both), Ok(vec![5]), "a once, b now");
    assert_eq!(total(&store, &b), 13);
    // A corrupt window read back after the batch's changes: applied, so `Io` too.
    set(&mut raw, "twelve");
    let error = store.sync(&batch(1, 2, &[(&a, 1)], &[&a, &b])).unwrap_err();
    assert!(matches!(error, StoreError::Io(_)), "{error:?}");
    assert_eq!(total(&store, &a), 6);
    // Reading only: nothing was applied, so `Corrupt`.
    let error = store.sync(&batch(1, 0, &[], &[&b])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
}

#[test]
fn an_operations_record_that_is_not_valid_fails_the_call_and_changes_nothing() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let w = day("s", 0);
    store.sync(&batch(7, 1, &[(&w, 5)], &[])).unwrap();
    let ops = format!("quota:{{s}}:ops:{}", id(7));
    let bad: [&[(&str, &str)]; 6] = [
        &[("low", "x")],
        &[("low", "18446744073709551616")],
        &[("x", "1")],
        &[("007", "1")],
        &[("9", "z9")],
        &[("9", "a")],
    ];
    for fields in bad {
        let _: () = redis::cmd("DEL").arg(&ops).query(&mut raw).unwrap();
        for (field, value) in fields {
            let _: () = redis::cmd("HSET")
                .arg(&ops)
                .arg(field)
                .arg(value)
                .query(&mut raw)
                .unwrap();
        }
        let before = record(&mut raw, &ops);
        // Each raises the mark past every seq, so the whole record is read.
        let mut sync = batch(7, 9, &[(&w, 1)], &[]);
        sync.done_below = 10;
        let errors = [
            store.sync(&sync).map(drop),
            store
                .admit(&AdmitRequest {
                    done_below: 10,
                    instance: id(7),
                    seq: 9,
                    window: w.clone(),
                    count: 1,
                    below: 100,
                    cap: 100,
                    force: true,
                    also: Vec::new(),
                })
                .map(drop),
            store
                .lease(&LeaseRequest {
                    done_below: 10,
                    instance: id(7),
                    seq: 9,
                    window: w.clone(),
                    block: 1,
                    ceiling: 100,
                    also: Vec::new(),
                })
                .map(drop),
            store
                .give_back(&GiveBack {
                    done_below: 10,
                    instance: id(7),
                    seq: 9,
                    window: w.clone(),
                    unused: 1,
                    raise_count: 0,
                    also: Vec::new(),
                })
                .map(drop),
        ];
        for error in errors {
            assert!(
                matches!(&error, Err(StoreError::Corrupt(m)) if m.contains("operations record")),
                "{fields:?}: {error:?}"
            );
        }
        assert_eq!(record(&mut raw, &ops), before, "{fields:?}");
        assert_eq!(total(&store, &w), 5, "{fields:?}");
    }
    // A key of another type too.
    let _: () = redis::cmd("DEL").arg(&ops).query(&mut raw).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&ops)
        .arg("1")
        .query(&mut raw)
        .unwrap();
    let error = store.sync(&batch(7, 9, &[(&w, 1)], &[])).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    assert_eq!(total(&store, &w), 5);
}

// ---------------------------------------------------------------------------------------------
// Exactly once, in any order (the rule of `Store`, as `StoredState` keeps it)

/// Was a bug: the store kept only an instance's last seq per kind, so a resend of an older
/// one after a newer one (1, 2, then 1 again) counted again, or was refused as old.
#[test]
fn a_resend_of_an_older_seq_after_a_newer_one_is_not_applied_again() {
    let server = Server::start();
    let store = server.store();
    let mut reference = StoredState::new();
    // Seq 1's reply is lost: seq 2 goes with done_below 1, then seq 1 again.
    let order = [1, 2, 1, 2, 1];

    let w = day("sync", 0);
    for seq in order {
        let mut sync = batch(1, seq, &[(&w, 10)], &[&w]);
        sync.done_below = 1;
        assert_eq!(store.sync(&sync), Ok(reference.apply(&sync)), "sync {seq}");
    }
    assert_eq!(total(&store, &w), 20, "sync: 2 ops, 10 calls each");

    let w = day("admit", 0);
    for seq in order {
        let admit = AdmitRequest {
            done_below: 1,
            instance: id(2),
            seq,
            window: w.clone(),
            count: 1,
            below: 100,
            cap: 100,
            force: false,
            also: Vec::new(),
        };
        let answer = store.admit(&admit);
        assert_eq!(answer, Ok(reference.admit(&admit)), "admit {seq}");
        // The first answer again, not a second count.
        assert_eq!(
            answer,
            Ok(AdmitReply::Admitted {
                total: seq,
                raise_count: 0,
                also: Vec::new(),
            }),
            "admit {seq}"
        );
    }
    assert_eq!(total(&store, &w), 2, "admit: 2 ops, 1 call each (was 3)");

    let w = day("lease", 0);
    for (step, seq) in order.into_iter().enumerate() {
        let lease = LeaseRequest {
            done_below: 1,
            instance: id(3),
            seq,
            window: w.clone(),
            block: 5,
            ceiling: 100,
            also: Vec::new(),
        };
        let reply = store.lease(&lease);
        assert_eq!(reply, Ok(reference.lease(&lease)), "lease {seq}");
        // The first grant again, with the total as it is now.
        let total = if step == 0 { 5 } else { 10 };
        assert_eq!(
            reply,
            Ok(LeaseReply {
                granted: 5,
                total,
                raise_count: 0,
                also: Vec::new(),
            }),
            "lease {seq}"
        );
    }
    assert_eq!(total(&store, &w), 10, "lease: 2 grants of 5");

    let w = day("give_back", 0);
    let fill = batch(9, 1, &[(&w, 10)], &[]);
    store.sync(&fill).unwrap();
    reference.apply(&fill);
    for seq in order {
        let give_back = GiveBack {
            done_below: 1,
            instance: id(4),
            seq,
            window: w.clone(),
            unused: 3,
            raise_count: 0,
            also: Vec::new(),
        };
        let taken = store.give_back(&give_back);
        assert_eq!(
            taken,
            Ok(reference.give_back(&give_back)),
            "give-back {seq}"
        );
        // The first answer again, nothing more taken off.
        assert_eq!(taken, Ok(3), "give-back {seq}");
    }
    assert_eq!(total(&store, &w), 4, "give-back: 10 - 2 x 3");
    assert_eq!(reference.total(&w), 4);
}

#[test]
fn an_operation_below_the_low_water_mark_is_not_applied() {
    let server = Server::start();
    let store = server.store();
    let mut reference = StoredState::new();
    let w = day("s", 0);
    // Seq 3 says 1 and 2 were answered: the mark rises to 3.
    let mut first = batch(1, 1, &[(&w, 10)], &[&w]);
    first.done_below = 1;
    let mut third = batch(1, 3, &[(&w, 10)], &[&w]);
    third.done_below = 3;
    for sync in [&first, &third] {
        assert_eq!(store.sync(sync), Ok(reference.apply(sync)));
    }
    assert_eq!(total(&store, &w), 20);
    // Seq 2 never arrived; it is stale now: its calls do not count, its floor does (a
    // maximum, applied whatever the seq).
    let mut stale = batch(1, 2, &[(&w, 100)], &[&w]);
    stale.raises.push(Raise {
        window: w.clone(),
        at_least: 25,
    });
    assert_eq!(store.sync(&stale), Ok(vec![25]));
    assert_eq!(reference.apply(&stale), [25]);
    // Stale admissions are denied with the total now; leases grant nothing; give-backs take
    // nothing off. Seq 1 (applied before) and 2 (never) alike.
    for seq in [1, 2] {
        let admit = AdmitRequest {
            done_below: 3,
            instance: id(1),
            seq,
            window: w.clone(),
            count: 1,
            below: 100,
            cap: 100,
            force: true,
            also: Vec::new(),
        };
        assert_eq!(
            store.admit(&admit),
            Ok(AdmitReply::Denied {
                total: 25,
                also: Vec::new()
            })
        );
        assert_eq!(
            reference.admit(&admit),
            AdmitReply::Denied {
                total: 25,
                also: Vec::new()
            }
        );
        let lease = LeaseRequest {
            done_below: 3,
            instance: id(1),
            seq,
            window: w.clone(),
            block: 5,
            ceiling: 100,
            also: Vec::new(),
        };
        // The window's raise count now (the stale floor raised it).
        let nothing = LeaseReply {
            granted: 0,
            total: 25,
            raise_count: 1,
            also: Vec::new(),
        };
        assert_eq!(store.lease(&lease), Ok(nothing.clone()));
        assert_eq!(reference.lease(&lease), nothing);
        let give_back = GiveBack {
            done_below: 3,
            instance: id(1),
            seq,
            window: w.clone(),
            unused: 7,
            raise_count: 1,
            also: Vec::new(),
        };
        assert_eq!(store.give_back(&give_back), Ok(0));
        assert_eq!(reference.give_back(&give_back), 0);
        assert_eq!(total(&store, &w), 25);
    }
    assert_eq!(reference.total(&w), 25);
}

/// Seqs are compared as decimal text, exactly to `u64::MAX` (2^53 and 2^53 + 1 are one double).
#[test]
fn seqs_compare_exactly_up_to_u64_max() {
    let server = Server::start();
    let store = server.store();
    let w = day("big", 0);
    let two_53 = 1u64 << 53;
    let sync = |seq, done_below| {
        let mut sync = batch(1, seq, &[(&w, 1)], &[&w]);
        sync.done_below = done_below;
        store.sync(&sync).unwrap()[0]
    };
    assert_eq!(sync(two_53, 0), 1);
    assert_eq!(sync(two_53 + 1, 0), 2, "another seq than 2^53");
    assert_eq!(sync(two_53, 0), 2, "a resend");
    assert_eq!(sync(u64::MAX - 1, two_53 + 1), 3);
    assert_eq!(sync(two_53, 0), 3, "below the mark 2^53 + 1");
    assert_eq!(sync(two_53 + 1, 0), 3, "a resend at the mark");
    assert_eq!(sync(u64::MAX, u64::MAX), 4);
    assert_eq!(sync(u64::MAX - 1, 0), 4, "below the mark u64::MAX");
    assert_eq!(sync(u64::MAX, 0), 4, "a resend");
}

#[test]
fn the_record_holds_only_operations_in_flight_and_outlives_its_windows() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let (today, yesterday) = (day("s", 0), day("s", 1));
    let month = {
        let window = Period::Month.window_at(now_ms());
        WindowKey {
            service: "s".into(),
            spec: Period::Month.into(),
            start_ms: window.start_ms,
            end_ms: window.reset_at_ms,
        }
    };
    let ops = format!("quota:{{s}}:ops:{}", id(1));
    let hlen = |raw: &mut redis::Connection| int(raw, "HLEN", &ops);
    // Seq 1's reply is lost: 1 to 10 are in flight (done_below stays 1).
    for seq in 1..=10 {
        let mut sync = batch(1, seq, &[(&today, 1), (&yesterday, 1)], &[]);
        sync.done_below = 1;
        store.sync(&sync).unwrap();
    }
    assert_eq!(hlen(&mut raw), 11, "low and 10 seqs");
    // Seq 1 answered at last, then 2 to 6: the mark rises to 7.
    let mut sync = batch(1, 11, &[(&today, 1)], &[]);
    sync.done_below = 7;
    store.sync(&sync).unwrap();
    let fields = record(&mut raw, &ops);
    let seqs: Vec<&str> = fields.iter().map(|(field, _)| field.as_str()).collect();
    assert_eq!(seqs, ["10", "11", "7", "8", "9", "low"]);
    assert!(fields.contains(&("low".into(), "7".into())), "{fields:?}");
    // An admission and a lease with done_below 12 leave only themselves.
    store
        .admit(&AdmitRequest {
            done_below: 12,
            instance: id(1),
            seq: 12,
            window: today.clone(),
            count: 1,
            below: 100,
            cap: 100,
            force: false,
            also: Vec::new(),
        })
        .unwrap();
    store
        .lease(&LeaseRequest {
            done_below: 12,
            instance: id(1),
            seq: 13,
            window: month.clone(),
            block: 2,
            ceiling: 100,
            also: Vec::new(),
        })
        .unwrap();
    assert_eq!(
        record(&mut raw, &ops),
        [
            ("12".to_owned(), "a12/0".to_owned()),
            ("13".into(), "g2/0".into()),
            ("low".into(), "12".into())
        ]
    );
    // It lives at least until the end of the last window it counted in (the month) plus
    // grace, and at least as long as each of those windows' keys.
    let ttl = int(&mut raw, "PTTL", &ops);
    assert!(
        ttl as u64 + now_ms() >= month.end_ms + GRACE,
        "PTTL {ttl}: goes before the month ends plus grace"
    );
    let expires = int(&mut raw, "PEXPIRETIME", &ops);
    for window in [&today, &yesterday, &month] {
        let window = int(&mut raw, "PEXPIRETIME", &store.window_key(window));
        assert!(expires >= window, "{expires} < {window}");
    }
    // A later operation in a shorter window never shortens it.
    store
        .give_back(&GiveBack {
            done_below: 14,
            instance: id(1),
            seq: 14,
            window: today.clone(),
            unused: 1,
            raise_count: 0,
            also: Vec::new(),
        })
        .unwrap();
    assert_eq!(int(&mut raw, "PEXPIRETIME", &ops), expires);
    assert_eq!(hlen(&mut raw), 2, "low and 14");
}

/// Was a bug: the store remembered only the 1,024 most recently seen instances per service, so
/// a resend from an instance past them counted again.
#[test]
fn two_thousand_instances_keep_two_thousand_records() {
    let server = Server::start();
    let store = server.store();
    let mut raw = server.raw();
    let w = day("crowd", 0);
    for instance in 1..=2_000 {
        store.sync(&batch(instance, 1, &[(&w, 1)], &[])).unwrap();
    }
    let mut records = 0;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("quota:{crowd}:ops:*")
            .arg("COUNT")
            .arg(1_000)
            .query(&mut raw)
            .unwrap();
        records += keys.len();
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(records, 2_000);
    // Instance #1, the least recently seen, resends late: counted once.
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 1)], &[&w])), Ok(vec![2_000]));
}

// ---------------------------------------------------------------------------------------------
// Concurrency and connections

#[test]
fn eight_threads_of_a_thousand_syncs_from_distinct_instances_count_exactly() {
    let server = Server::start();
    let store = Arc::new(server.store());
    let w = day("busy", 0);
    let threads: Vec<_> = (0..8u128)
        .map(|t| {
            let (store, w) = (store.clone(), w.clone());
            thread::spawn(move || {
                for i in 0..1_000u128 {
                    let totals = store
                        .sync(&batch(t * 10_000 + i + 1, 1, &[(&w, 1)], &[&w]))
                        .unwrap();
                    assert!((1..=8_000).contains(&totals[0]));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(total(&store, &w), 8_000);
    assert!(
        store.idle_connections() > 1,
        "threads used their own connections"
    );
}

#[test]
fn a_paused_server_times_out_then_works_again() {
    let server = Server::start();
    let store = server.store().timeout(Duration::from_millis(300));
    let w = day("p", 0);
    store.sync(&batch(1, 1, &[(&w, 1)], &[&w])).unwrap();
    server.signal("-STOP");
    let lost = batch(1, 2, &[(&w, 10)], &[&w]);
    let started = Instant::now();
    let error = store.sync(&lost).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, StoreError::Io(m) if m.contains("did not answer")),
        "{error:?}"
    );
    // A new store cannot even connect (the handshake times out).
    let started = Instant::now();
    let fresh = server.store().timeout(Duration::from_millis(300));
    let error = fresh.sync(&lost).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    server.signal("-CONT");
    // The request sent while paused may have been applied on resuming: the retry counts once.
    assert_eq!(store.sync(&lost), Ok(vec![11]));
    assert_eq!(fresh.sync(&lost), Ok(vec![11]));
}

#[test]
fn totals_survive_a_restart_with_appendonly_and_the_store_reconnects() {
    let mut server = Server::with(Options {
        persistent: true,
        ..Options::default()
    });
    let store = server.store();
    let w = day("r", 0);
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 42)], &[&w])), Ok(vec![42]));
    let lease = LeaseRequest {
        done_below: 0,
        instance: id(1),
        seq: 2,
        window: w.clone(),
        block: 8,
        ceiling: 100,
        also: Vec::new(),
    };
    store.lease(&lease).unwrap();
    server.restart();
    // Same store, pooled connection closed by the restart: reconnected, no error.
    assert_eq!(store.sync(&batch(1, 3, &[(&w, 1)], &[&w])), Ok(vec![51]));
    // The operations record survived too: resends count once, the lease's grant is kept.
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 42)], &[&w])), Ok(vec![51]));
    assert_eq!(
        store.lease(&LeaseRequest {
            done_below: 0,
            instance: id(1),
            seq: 2,
            window: w.clone(),
            block: 8,
            ceiling: 100,
            also: Vec::new(),
        }),
        Ok(LeaseReply {
            granted: 8,
            total: 51,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(
        store.admit(&AdmitRequest {
            done_below: 0,
            instance: InstanceId::from_u128(99),
            seq: next_admit_seq(),
            window: w.clone(),
            count: 1,
            below: 100,
            cap: 100,
            force: false,
            also: Vec::new(),
        }),
        Ok(AdmitReply::Admitted {
            total: 52,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    // Down: an error, not a hang; up again: works.
    server.kill();
    assert!(store.sync(&batch(1, 4, &[(&w, 1)], &[&w])).is_err());
    server.restart();
    assert_eq!(store.sync(&batch(1, 4, &[(&w, 1)], &[&w])), Ok(vec![53]));
}

#[test]
fn a_lost_reply_fails_the_call_and_its_retry_counts_once() {
    let server = Server::start();
    let proxy = Proxy::start(server.port);
    let store = RedisStore::new(&proxy.url())
        .unwrap()
        .timeout(Duration::from_millis(400));
    let direct = server.store();
    let w = day("lossy", 0);
    // The first call of each script loads it (NOSCRIPT, SCRIPT LOAD): later ones are one
    // EVALSHA each.
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 1)], &[&w])), Ok(vec![1]));
    let other = day("other", 0);
    let warm = |seq| LeaseRequest {
        done_below: 0,
        instance: id(9),
        seq,
        window: other.clone(),
        block: 1,
        ceiling: 1,
        also: Vec::new(),
    };
    store.lease(&warm(1)).unwrap();
    store
        .admit(&AdmitRequest {
            done_below: 0,
            instance: InstanceId::from_u128(99),
            seq: next_admit_seq(),
            window: other.clone(),
            count: 1,
            below: 0,
            cap: 0,
            force: false,
            also: Vec::new(),
        })
        .unwrap();

    // The reply is withheld: the sync fails (timeout); it was applied; the retry counts once.
    proxy.lose_next_reply(false);
    let lost = batch(1, 2, &[(&w, 10)], &[&w]);
    let error = store.sync(&lost).unwrap_err();
    assert!(matches!(error, StoreError::Io(_)), "{error:?}");
    assert_eq!(
        total(&direct, &w),
        11,
        "applied although the reply was lost"
    );
    assert_eq!(store.sync(&lost), Ok(vec![11]));

    // The same for a lease: the retry gets the same grant.
    proxy.lose_next_reply(false);
    let lease = LeaseRequest {
        done_below: 0,
        instance: id(1),
        seq: 3,
        window: w.clone(),
        block: 5,
        ceiling: 100,
        also: Vec::new(),
    };
    assert!(store.lease(&lease).is_err());
    assert_eq!(
        total(&direct, &w),
        16,
        "granted although the reply was lost"
    );
    assert_eq!(
        store.lease(&lease),
        Ok(LeaseReply {
            granted: 5,
            total: 16,
            raise_count: 0,
            also: Vec::new(),
        })
    );

    // The connection is cut after the reply arrived: the store sends the sync again on a new
    // connection at once (it counts once), so the caller sees no error.
    proxy.lose_next_reply(true);
    assert_eq!(store.sync(&batch(1, 4, &[(&w, 100)], &[&w])), Ok(vec![116]));
    assert_eq!(total(&direct, &w), 116);

    // An admission has a dedup record too: a cut connection is resent at once, and the
    // store answers the retry from its record (counted once).
    proxy.lose_next_reply(true);
    let admit = AdmitRequest {
        done_below: 0,
        instance: InstanceId::from_u128(99),
        seq: next_admit_seq(),
        window: w.clone(),
        count: 1,
        below: 1_000,
        cap: 1_000,
        force: false,
        also: Vec::new(),
    };
    assert_eq!(
        store.admit(&admit),
        Ok(AdmitReply::Admitted {
            total: 117,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(total(&direct, &w), 117, "applied once, although sent twice");
    // The same request again (a caller's own retry): the same answer, nothing added.
    assert_eq!(
        store.admit(&admit),
        Ok(AdmitReply::Admitted {
            total: 117,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    assert_eq!(total(&direct, &w), 117);
}

/// Was a bug: when the pooled connection dropped after the call was sent and reconnecting
/// failed, the call failed with `Unavailable` (not applied), although the first send was.
#[test]
fn a_lost_reply_whose_reconnect_fails_is_io_and_its_retry_counts_once() {
    let server = Server::start();
    let proxy = Proxy::start(server.port);
    let store = RedisStore::new(&proxy.url())
        .unwrap()
        .timeout(Duration::from_millis(400));
    let direct = server.store();
    let w = day("lossy", 0);
    // Loads the scripts (NOSCRIPT, SCRIPT LOAD) and pools the connection.
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 1)], &[&w])), Ok(vec![1]));
    let admit = |seq| AdmitRequest {
        done_below: 0,
        instance: id(1),
        seq,
        window: w.clone(),
        count: 1,
        below: 1_000,
        cap: 1_000,
        force: false,
        also: Vec::new(),
    };
    store.admit(&admit(2)).unwrap();

    // Each call is applied, its reply cut off, and the reconnect refused.
    let lost = batch(1, 3, &[(&w, 10)], &[&w]);
    proxy.lose_next_reply_and_refuse();
    let error = store.sync(&lost).unwrap_err();
    assert!(
        matches!(&error, StoreError::Io(m) if m.contains("reconnecting failed")),
        "{error:?}"
    );
    assert!(error.maybe_applied());
    assert_eq!(total(&direct, &w), 12, "applied although it failed");
    proxy
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(store.sync(&lost), Ok(vec![12]), "the retry counts once");

    proxy.lose_next_reply_and_refuse();
    let error = store.admit(&admit(4)).unwrap_err();
    assert!(
        matches!(&error, StoreError::Io(m) if m.contains("reconnecting failed")),
        "{error:?}"
    );
    assert_eq!(total(&direct, &w), 13, "applied although it failed");
    proxy
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        store.admit(&admit(4)),
        Ok(AdmitReply::Admitted {
            total: 13,
            raise_count: 0,
            also: Vec::new(),
        }),
        "the first answer, counted once"
    );
    assert_eq!(total(&direct, &w), 13);
    // With nothing sent (no pooled connection, Redis refused), it is `Unavailable`.
    let fresh = RedisStore::new(&proxy.url())
        .unwrap()
        .timeout(Duration::from_millis(400));
    proxy
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let error = fresh.sync(&batch(1, 5, &[(&w, 1)], &[&w])).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(total(&direct, &w), 13);
}

// ---------------------------------------------------------------------------------------------
// Hosted Redis: credentials and TLS

const PASSWORD: &str = "s3cr3t:P@ss%word";
const PASSWORD_IN_URL: &str = "s3cr3t%3AP%40ss%25word";

fn assert_hidden(text: &str) {
    for secret in [PASSWORD, PASSWORD_IN_URL, "wr0ng-Secret", "hunter2-x"] {
        assert!(!text.contains(secret), "{secret:?} shown in {text:?}");
    }
}

#[test]
fn credentials_in_the_url_work_and_the_password_never_shows() {
    let server = Server::with(Options {
        password: Some(PASSWORD.into()),
        ..Options::default()
    });
    let w = day("auth", 0);
    // No password, a wrong one: errors that do not show it.
    for url in [
        server.url(),
        format!("redis://:wr0ng-Secret@127.0.0.1:{}", server.port),
        format!("redis://default:wr0ng-Secret@127.0.0.1:{}/0", server.port),
    ] {
        let store = RedisStore::new(&url).unwrap();
        assert_hidden(&format!("{store:?}"));
        let error = store.sync(&batch(1, 1, &[(&w, 1)], &[&w])).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert_hidden(&error.to_string());
        assert_hidden(&format!("{error:?}"));
    }
    // The right one works.
    let url = format!(
        "redis://default:{PASSWORD_IN_URL}@127.0.0.1:{}/0",
        server.port
    );
    let store = RedisStore::new(&url)
        .unwrap()
        .timeout(Duration::from_millis(300));
    let shown = format!("{store:?}");
    assert_hidden(&shown);
    assert!(
        shown.contains("<redacted>") && shown.contains("default"),
        "{shown}"
    );
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 3)], &[&w])), Ok(vec![3]));
    // Errors after connecting do not show it either.
    server.signal("-STOP");
    let error = store.sync(&batch(1, 2, &[(&w, 3)], &[&w])).unwrap_err();
    server.signal("-CONT");
    assert_hidden(&format!("{error} {error:?}"));
    // Nor does a URL that does not parse.
    for url in [
        "redis://:hunter2-x@127.0.0.1:notaport",
        "redis://u:hunter2-x@[::1/",
        "nope://:hunter2-x@host",
    ] {
        let error = RedisStore::new(url).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert_hidden(&format!("{error} {error:?}"));
    }
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let server = Server::with(Options {
        tls: true,
        password: Some(PASSWORD.into()),
        ..Options::default()
    });
    let certificate = std::fs::read(server.dir.path().join("server.pem")).unwrap();
    let url = format!("rediss://:{PASSWORD_IN_URL}@127.0.0.1:{}", server.port);
    let w = day("tls", 0);
    // Without trusting the certificate: refused.
    let untrusted = RedisStore::new(&url).unwrap();
    let error = untrusted.sync(&batch(1, 1, &[(&w, 1)], &[&w])).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_hidden(&format!("{error} {error:?}"));
    // Trusting it: works, scripts and all.
    let store = RedisStore::new(&url)
        .unwrap()
        .tls_root_certificate(&certificate)
        .unwrap();
    assert_hidden(&format!("{store:?}"));
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 4)], &[&w])), Ok(vec![4]));
    assert_eq!(store.sync(&batch(1, 1, &[(&w, 4)], &[&w])), Ok(vec![4]));
    assert_eq!(
        store.admit(&AdmitRequest {
            done_below: 0,
            instance: InstanceId::from_u128(99),
            seq: next_admit_seq(),
            window: w.clone(),
            count: 2,
            below: 10,
            cap: 10,
            force: false,
            also: Vec::new(),
        }),
        Ok(AdmitReply::Admitted {
            total: 6,
            raise_count: 0,
            also: Vec::new(),
        })
    );
    // A root certificate needs a rediss:// URL.
    assert!(RedisStore::new("redis://127.0.0.1:1")
        .unwrap()
        .tls_root_certificate(&certificate)
        .is_err());
}

/// A fresh admission number for each request built here (a repeated one is answered from the
/// store's record).
fn next_admit_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

#[test]
fn require_store_turns_a_wrong_password_or_port_into_a_build_error() {
    use quota_core::{QuotaError, QuotaTracker, ServiceConfig, TrackerConfig};
    let server = Server::with(Options {
        password: Some(PASSWORD.into()),
        ..Options::default()
    });
    let config = || TrackerConfig::new([ServiceConfig::new("api", 100, Period::Day)]);
    let build = |url: &str| {
        QuotaTracker::builder(config())
            .store(RedisStore::new(url).unwrap())
            .require_store()
            .build()
    };
    // No password: the message says what to put in the URL.
    let error = build(&server.url()).expect_err("no password");
    assert!(
        matches!(&error, QuotaError::Store(StoreError::Unavailable(text)) if text.contains("requires authentication: put the user and password in the URL")),
        "{error}"
    );
    // A wrong password, a port where nothing listens: errors, the password never shown.
    let wrong = format!("redis://:wr0ng-Secret@127.0.0.1:{}", server.port);
    let closed = format!(
        "redis://:{PASSWORD_IN_URL}@127.0.0.1:{}",
        redis_server::free_port()
    );
    for url in [wrong, closed] {
        let error = build(&url).expect_err(&url);
        assert!(
            matches!(error, QuotaError::Store(StoreError::Unavailable(_))),
            "{error}"
        );
        // `Debug` is the message, as `main` prints it.
        assert_eq!(format!("{error:?}"), error.to_string());
        assert_hidden(&format!("{error}"));
    }
    // The right URL builds; without `require_store` a wrong one builds too and says why.
    let right = format!("redis://:{PASSWORD_IN_URL}@127.0.0.1:{}", server.port);
    build(&right).unwrap().record_call("api", 1).unwrap();
    let tracker = QuotaTracker::builder(config())
        .store(RedisStore::new(&server.url()).unwrap())
        .build()
        .unwrap();
    assert_eq!(tracker.stats().load_failures, 1);
    assert!(tracker
        .stats()
        .last_error
        .unwrap()
        .contains("requires authentication"));
}
