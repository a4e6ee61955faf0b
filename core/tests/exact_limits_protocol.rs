//! Hostile input to the store protocol of several windows, straight to the stores (no tracker):
//! an `also` that repeats the request's window, extreme counts and caps, answers of every odd
//! shape in a stored record, and Redis keys of an `also` window holding garbage.

#[path = "support/redis_server.rs"]
mod redis_server;

use quota_core::{
    AdmitReply, AdmitRequest, AdmitWindow, GiveBack, GiveBackWindow, InstanceId, MemoryStore,
    Period, RedisStore, Store, WindowKey,
};
use redis_server::Server;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    now.as_millis() as u64
}

fn window(service: &str, period: Period) -> WindowKey {
    let window = period.window_at(now_ms());
    WindowKey {
        service: service.into(),
        spec: period.into(),
        start_ms: window.start_ms,
        end_ms: window.reset_at_ms,
    }
}

fn admit(seq: u64, first: &WindowKey, also: &[&WindowKey], count: u64, cap: u64) -> AdmitRequest {
    AdmitRequest {
        instance: InstanceId::from_u128(1),
        seq,
        done_below: 0,
        window: first.clone(),
        count,
        below: cap,
        cap,
        force: false,
        also: also
            .iter()
            .map(|&window| AdmitWindow {
                window: window.clone(),
                below: cap,
                cap,
            })
            .collect(),
    }
}

fn give_back(seq: u64, first: &WindowKey, also: &[&WindowKey], unused: u64) -> GiveBack {
    GiveBack {
        instance: InstanceId::from_u128(1),
        seq,
        done_below: 0,
        window: first.clone(),
        unused,
        raise_count: 0,
        also: also
            .iter()
            .map(|&window| GiveBackWindow {
                window: window.clone(),
                raise_count: 0,
            })
            .collect(),
    }
}

fn total(store: &dyn Store, window: &WindowKey) -> u64 {
    // A `can_call`-like question: 0 calls, never counted (each its own `seq`).
    static SEQ: AtomicU64 = AtomicU64::new(1_000_000);
    let seq = SEQ.fetch_add(1, Ordering::SeqCst);
    match store.admit(&admit(seq, window, &[], 0, u64::MAX)) {
        Ok(AdmitReply::Admitted { total, .. } | AdmitReply::Denied { total, .. }) => total,
        other => panic!("{other:?}"),
    }
}

/// An `also` that repeats the request's window (or names another service's) is refused by
/// every store with `StoreError::Invalid`, nothing applied: checked against the total before
/// the call, it would be counted twice, past its cap (and keys of two services would break the
/// scripts' one-slot rule on a cluster).
#[test]
fn a_request_repeating_its_window_is_refused_or_counted_once_alike_everywhere() {
    let server = Server::start();
    let redis = RedisStore::new(&server.url()).unwrap().prefix("repeat");
    let memory = MemoryStore::new();
    let minute = window("api", Period::Minute);
    let stores: [&dyn Store; 2] = [&redis, &memory];
    let answers: Vec<_> = stores
        .iter()
        .map(|store| {
            let admitted = store.admit(&admit(1, &minute, &[&minute], 3, 5));
            let after_admit = total(*store, &minute);
            let back = store.give_back(&give_back(2, &minute, &[&minute], 1));
            (
                admitted.ok(),
                after_admit,
                back.ok(),
                total(*store, &minute),
            )
        })
        .collect();
    assert_eq!(answers[0], answers[1], "Redis, then StoredState");
    let (_, after_admit, _, _) = answers[1].clone();
    assert!(
        after_admit <= 5,
        "3 calls admitted under a cap of 5 left {after_admit}"
    );
}

#[test]
fn extreme_counts_and_caps_get_the_same_answers_from_redis_and_stored_state() {
    let server = Server::start();
    let redis = RedisStore::new(&server.url()).unwrap().prefix("extreme");
    let memory = MemoryStore::new();
    let (minute, hour) = (window("api", Period::Minute), window("api", Period::Hour));
    let cases: [(u64, u64, bool); 8] = [
        (u64::MAX, u64::MAX, false),
        (u64::MAX, u64::MAX, true),
        (1 << 62, u64::MAX, false),
        (1 << 62, u64::MAX, true),
        (u64::MAX - 1, 0, true),
        (5, u64::MAX, false),
        (0, 0, false),
        (1, 0, true),
    ];
    for store in [&redis as &dyn Store, &memory] {
        let mut answers = Vec::new();
        for (seq, &(count, cap, force)) in cases.iter().enumerate() {
            let mut request = admit(seq as u64 + 1, &minute, &[&hour], count, cap);
            request.force = force;
            answers.push((
                store.admit(&request).ok(),
                total(store, &minute),
                total(store, &hour),
            ));
            // A resend gets the same answer and counts nothing again.
            assert_eq!(store.admit(&request).ok(), answers.last().unwrap().0);
        }
        for (at, answer) in answers.iter().enumerate() {
            let (_, minute_total, hour_total) = answer;
            assert_eq!(
                minute_total, hour_total,
                "case {at}: counted in both or neither"
            );
        }
        // Every window ends at the store's ceiling, both alike.
        assert_eq!(total(store, &minute), 1 << 62);
    }
}

#[test]
fn redis_refuses_an_admission_whose_other_window_holds_garbage_and_changes_nothing() {
    let server = Server::start();
    let redis = RedisStore::new(&server.url()).unwrap().prefix("garbage");
    let (minute, hour) = (window("api", Period::Minute), window("api", Period::Hour));
    redis.admit(&admit(1, &minute, &[&hour], 2, 10)).unwrap();
    let mut raw = server.raw();
    let hour_key = redis.window_key(&hour);
    let garbage: [(String, &str); 4] = [
        (hour_key.clone(), "not a number"),
        (hour_key.clone(), "-1"),
        (format!("{hour_key}:raises"), "x"),
        (format!("{hour_key}:raises"), "1e3"),
    ];
    for (seq, (key, value)) in garbage.iter().enumerate() {
        let before: Option<String> = redis::cmd("GET").arg(key).query(&mut raw).unwrap();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut raw)
            .unwrap();
        let seq = 10 + seq as u64;
        let error = redis
            .admit(&admit(seq, &minute, &[&hour], 1, 10))
            .unwrap_err();
        assert!(error.to_string().contains(key.as_str()), "{error}");
        let back = redis.give_back(&give_back(seq + 100, &minute, &[&hour], 1));
        assert!(back.is_err(), "{back:?}");
        // The first window is untouched: the script fails before its first write.
        assert_eq!(total(&redis, &minute), 2, "{key} = {value}");
        match before {
            Some(before) => redis::cmd("SET").arg(key).arg(before).query::<()>(&mut raw),
            None => redis::cmd("DEL").arg(key).query::<()>(&mut raw),
        }
        .unwrap();
    }
    // A record answer of every odd shape: refused, nothing counted.
    let ops: Vec<String> = redis::cmd("KEYS")
        .arg("garbage:*:ops:*")
        .query(&mut raw)
        .unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    for (seq, answer) in hostile_answers().iter().enumerate() {
        let seq = 500 + seq as u64;
        redis::cmd("HSET")
            .arg(&ops[0])
            .arg(seq)
            .arg(answer)
            .query::<()>(&mut raw)
            .unwrap();
        let reply = redis.admit(&admit(seq, &minute, &[&hour], 1, 10));
        assert!(reply.is_err(), "{answer:?} answered {reply:?}");
        redis::cmd("HDEL")
            .arg(&ops[0])
            .arg(seq)
            .query::<()>(&mut raw)
            .unwrap();
        assert_eq!((total(&redis, &minute), total(&redis, &hour)), (2, 2));
    }
}

/// Answers no store writes: a record holding one is corrupt.
fn hostile_answers() -> Vec<String> {
    let texts = [
        "",
        "a",
        "a5",
        "a5/",
        "a/5",
        "a5/0,",
        "a5/0/1",
        "a5/0,,40/1",
        "d",
        "d,",
        "d5,",
        "g5",
        "g/1",
        "g5/",
        "b",
        "b1,2",
        "b-1",
        "x5",
        "1a",
        "a٥/0",
        "a18446744073709551616/0",
        "d99999999999999999999999",
        " a5/0",
        "a5/0 ",
        "a+5/0",
        "a0x5/0",
    ];
    texts.iter().map(|t| t.to_string()).collect()
}

#[test]
fn stored_records_of_every_odd_answer_never_panic_the_document_reader() {
    let memory = MemoryStore::new();
    let (minute, hour) = (window("api", Period::Minute), window("api", Period::Hour));
    memory.admit(&admit(1, &minute, &[&hour], 2, 10)).unwrap();
    let good = memory.raw().unwrap();
    assert!(good.contains("\"a2/0,2/0\""), "{good}");
    for answer in hostile_answers() {
        let text = serde_json::to_string(&answer).unwrap();
        memory.set_raw(Some(good.replace("\"a2/0,2/0\"", &text)));
        // No panic. (The document reader skips a record it cannot read, by design, as it does
        // every entry: the resend of seq 1 is then counted again, at most once.)
        let _ = memory.admit(&admit(1, &minute, &[&hour], 2, 10));
        let _ = memory.admit(&admit(2, &minute, &[&hour], 1, 10));
        if let Ok(state) = memory.state() {
            for window in [&minute, &hour] {
                let total = state.total(window);
                assert!(total <= 5, "{answer:?}: {total}");
            }
        }
    }
    // The good record: a resend gets its first answer and counts nothing again.
    memory.set_raw(Some(good));
    let again = memory.admit(&admit(1, &minute, &[&hour], 2, 10)).unwrap();
    assert!(
        matches!(again, AdmitReply::Admitted { total: 2, .. }),
        "{again:?}"
    );
    assert_eq!((total(&memory, &minute), total(&memory, &hour)), (2, 2));
}
