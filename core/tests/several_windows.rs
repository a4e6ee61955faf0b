//! The store protocol across several windows of one service (a service of several limits:
//! Tiingo's 50 an hour and 1,000 a day): an admission is admitted only if every window admits
//! it and is counted in all of them; a lease grants what every window has room for, in all of
//! them; a give-back takes its calls off each window unless that window was raised since; a
//! resend gets its first answer and counts nothing twice. The same script of operations runs on
//! `StoredState` (through `MemoryStore` and `FileStore`) and on a real `redis-server`, and a
//! random sequence with resends must get equal answers and totals from both.

#[path = "support/redis_server.rs"]
mod redis_server;

use quota_core::{
    AdmitReply, AdmitRequest, AdmitWindow, FileStore, GiveBack, GiveBackWindow, InstanceId,
    LeaseReply, LeaseRequest, LeaseWindow, MemoryStore, Period, Raise, RedisStore, Store,
    SyncBatch, WindowKey, WindowTotal,
};
use redis_server::Server;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn window(period: Period) -> WindowKey {
    let window = period.window_at(now_ms());
    WindowKey {
        service: "tiingo".into(),
        spec: period.into(),
        start_ms: window.start_ms,
        end_ms: window.reset_at_ms,
    }
}

fn id(n: u128) -> InstanceId {
    InstanceId::from_u128(n)
}

fn totals(total: u64, raise_count: u64) -> WindowTotal {
    WindowTotal { total, raise_count }
}

/// Adds `calls` to each window and raises some, as one sync of instance 9.
fn sync(store: &dyn Store, seq: u64, deltas: &[(&WindowKey, u64)], raises: &[(&WindowKey, u64)]) {
    store
        .sync(&SyncBatch {
            instance: id(9),
            seq,
            done_below: 0,
            at_ms: now_ms(),
            deltas: deltas
                .iter()
                .map(|&(window, calls)| quota_core::Delta {
                    window: window.clone(),
                    calls,
                })
                .collect(),
            read: Vec::new(),
            raises: raises
                .iter()
                .map(|&(window, at_least)| Raise {
                    window: window.clone(),
                    at_least,
                })
                .collect(),
        })
        .unwrap();
}

fn read(store: &dyn Store, windows: &[&WindowKey]) -> Vec<u64> {
    store
        .sync(&SyncBatch {
            instance: id(9),
            seq: 0,
            done_below: 0,
            at_ms: now_ms(),
            deltas: Vec::new(),
            read: windows.iter().map(|&w| w.clone()).collect(),
            raises: Vec::new(),
        })
        .unwrap()
}

/// An admission of `count` by instance 1 under 50 in the hour and 1,000 in the day.
fn admit(hour: &WindowKey, day: &WindowKey, seq: u64, count: u64, force: bool) -> AdmitRequest {
    AdmitRequest {
        instance: id(1),
        seq,
        done_below: 0,
        window: hour.clone(),
        count,
        below: 50,
        cap: 50,
        force,
        also: vec![AdmitWindow {
            window: day.clone(),
            below: 1_000,
            cap: 1_000,
        }],
    }
}

/// The same script on any store that says it honours several windows.
fn all_or_nothing_on(store: &dyn Store) {
    assert!(store.several_windows());
    let (hour, day) = (window(Period::Hour), window(Period::Day));
    sync(store, 1, &[(&day, 995)], &[]);

    // Fits both: counted in both.
    let first = admit(&hour, &day, 10, 3, false);
    let admitted = AdmitReply::Admitted {
        total: 3,
        raise_count: 0,
        also: vec![totals(998, 0)],
    };
    assert_eq!(store.admit(&first).unwrap(), admitted);
    // The hour has room for 3 more, the day for 2: refused, counted in neither.
    assert_eq!(
        store.admit(&admit(&hour, &day, 11, 3, false)).unwrap(),
        AdmitReply::Denied {
            total: 3,
            also: vec![totals(998, 0)],
        }
    );
    assert_eq!(read(store, &[&hour, &day]), [3, 998]);
    // A resend of the first gets its first answer and counts nothing twice.
    assert_eq!(store.admit(&first).unwrap(), admitted);
    assert_eq!(read(store, &[&hour, &day]), [3, 998]);
    // The refusal's resend is refused again.
    assert_eq!(
        store.admit(&admit(&hour, &day, 11, 3, false)).unwrap(),
        AdmitReply::Denied {
            total: 3,
            also: vec![totals(998, 0)],
        }
    );
    // A call the hour refuses, though the day has room: refused.
    sync(store, 2, &[(&hour, 47)], &[]);
    assert_eq!(
        store.admit(&admit(&hour, &day, 12, 1, false)).unwrap(),
        AdmitReply::Denied {
            total: 50,
            also: vec![totals(998, 0)],
        }
    );
    // `force` (record_call) adds to both whatever the rules say.
    assert_eq!(
        store.admit(&admit(&hour, &day, 13, 4, true)).unwrap(),
        AdmitReply::Admitted {
            total: 54,
            raise_count: 0,
            also: vec![totals(1_002, 0)],
        }
    );

    // A lease grants what every window has room for: the next hour has 50, the day none.
    let (next_hour, tomorrow) = (shifted(&hour, Period::Hour), shifted(&day, Period::Day));
    let lease = |seq, block, hour: &WindowKey, day: &WindowKey| LeaseRequest {
        instance: id(1),
        seq,
        done_below: 0,
        window: hour.clone(),
        block,
        ceiling: 40,
        also: vec![LeaseWindow {
            window: day.clone(),
            ceiling: 900,
        }],
    };
    assert_eq!(
        store
            .lease(&lease(14, 10, &next_hour, &day))
            .unwrap()
            .granted,
        0
    );
    // Tomorrow: the day has 900 below its ceiling, the hour 40 below its: a block of 10.
    sync(store, 3, &[(&tomorrow, 895)], &[]);
    let granted = store.lease(&lease(15, 10, &next_hour, &tomorrow)).unwrap();
    assert_eq!(
        granted,
        LeaseReply {
            granted: 5,
            total: 5,
            raise_count: 0,
            also: vec![totals(900, 0)],
        }
    );
    // Its resend: the same grant, the totals as they are now, nothing added.
    assert_eq!(
        store.lease(&lease(15, 10, &next_hour, &tomorrow)).unwrap(),
        granted
    );
    assert_eq!(read(store, &[&next_hour, &tomorrow]), [5, 900]);

    // Tomorrow is raised (a provider's count); the hour is not. Giving 3 of the block back
    // takes them off the hour and forfeits them in the day (the floor may hold them).
    sync(store, 4, &[], &[(&tomorrow, 850)]);
    let back = GiveBack {
        instance: id(1),
        seq: 16,
        done_below: 0,
        window: next_hour.clone(),
        unused: 3,
        raise_count: 0,
        also: vec![GiveBackWindow {
            window: tomorrow.clone(),
            raise_count: 0,
        }],
    };
    // The answer is the fewest any window took off: the day forfeited them.
    assert_eq!(store.give_back(&back).unwrap(), 0);
    assert_eq!(
        store.give_back(&back).unwrap(),
        0,
        "a resend: the first answer"
    );
    assert_eq!(read(store, &[&next_hour, &tomorrow]), [2, 900]);
    // With the day's raise count now (1), the day gives back too.
    let back = GiveBack {
        seq: 17,
        unused: 2,
        also: vec![GiveBackWindow {
            window: tomorrow.clone(),
            raise_count: 1,
        }],
        ..back
    };
    assert_eq!(store.give_back(&back).unwrap(), 2);
    assert_eq!(read(store, &[&next_hour, &tomorrow]), [0, 898]);
}

/// The same window `period` later.
fn shifted(window: &WindowKey, period: Period) -> WindowKey {
    let next = period.window_at(window.end_ms);
    WindowKey {
        start_ms: next.start_ms,
        end_ms: next.reset_at_ms,
        ..window.clone()
    }
}

#[test]
fn stored_state_admits_in_every_window_or_none() {
    all_or_nothing_on(&MemoryStore::new());
    let dir = std::env::temp_dir().join(format!("quota-several-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("quota.json");
    all_or_nothing_on(&FileStore::new(&path));
    // The file keeps each answer: a resend read back from disk is still answered once.
    let again = FileStore::new(&path);
    let (hour, day) = (window(Period::Hour), window(Period::Day));
    assert_eq!(
        again.admit(&admit(&hour, &day, 10, 3, false)).unwrap(),
        AdmitReply::Admitted {
            total: 3,
            raise_count: 0,
            also: vec![totals(998, 0)],
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn redis_admits_in_every_window_or_none() {
    let server = Server::start();
    let store = RedisStore::new(&server.url()).unwrap().prefix("several");
    all_or_nothing_on(&store);
    // The record keeps each window's answer, in the form StoredState writes.
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let answer: String = redis::cmd("HGET")
        .arg(format!("several:{{tiingo}}:ops:{}", id(1)))
        .arg(10)
        .query(&mut raw)
        .unwrap();
    assert_eq!(answer, "a3/0,998/0");
}

/// A small deterministic generator: the same sequence on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn redis_and_stored_state_answer_every_operation_alike() {
    let server = Server::start();
    let redis = RedisStore::new(&server.url()).unwrap().prefix("alike");
    let reference = MemoryStore::new();
    let stores: [&dyn Store; 2] = [&redis, &reference];
    // A new set of windows every 250 steps (the next hour, day and week), so that some start
    // empty and grants and give-backs happen with every number of windows.
    let epochs: Vec<[WindowKey; 3]> = (0..8)
        .scan(
            [
                window(Period::Hour),
                window(Period::Day),
                window(Period::Week),
            ],
            |windows, _| {
                let now = windows.clone();
                *windows = [
                    shifted(&windows[0], Period::Hour),
                    shifted(&windows[1], Period::Day),
                    shifted(&windows[2], Period::Week),
                ];
                Some(now)
            },
        )
        .collect();
    let mut random = Lcg(7);
    let mut sent: Vec<(u128, u64, u8, usize)> = Vec::new();
    let mut seq = 1;
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..2_000u64 {
        // Mostly new operations; a fifth are resends of one sent before (to its windows).
        let (instance, this_seq, kind, epoch) = if !sent.is_empty() && random.below(5) == 0 {
            sent[random.below(sent.len() as u64) as usize]
        } else {
            seq += 1;
            let instance = u128::from(1 + random.below(3) as u8);
            let op = (instance, seq, random.below(5) as u8, (step / 250) as usize);
            sent.push(op);
            op
        };
        let windows = &epochs[epoch];
        // Which windows: the hour alone, or with the day, or with the day and the week
        // (the op's seq picks, so a resend names the same windows).
        let more = (this_seq % 3) as usize;
        let first = &windows[0];
        let also = &windows[1..=more];
        let count = 1 + this_seq % 7;
        // Any window may bind: each op's caps differ, window by window.
        let cap = |at: usize| 30 + (this_seq * [7, 11, 13][at]) % 50;
        // A window's raise count now (as the reference keeps it), or a wrong one every
        // `wrong`th operation: give-backs taken off and forfeited, window by window.
        let counts = reference.state().unwrap();
        let raise_count = |window: &WindowKey, wrong: u64| -> u64 {
            let now = counts
                .windows()
                .find(|w| w.spec == window.spec && w.start_ms == window.start_ms)
                .map_or(0, |w| w.raise_count);
            now + u64::from(this_seq % wrong == 0)
        };
        let answers: Vec<String> = stores
            .iter()
            .map(|store| match kind {
                0 | 1 => format!(
                    "{:?}",
                    store.admit(&AdmitRequest {
                        instance: id(instance),
                        seq: this_seq,
                        done_below: 0,
                        window: first.clone(),
                        count,
                        below: cap(0),
                        cap: cap(0),
                        force: kind == 1 && this_seq % 4 == 0,
                        also: also
                            .iter()
                            .enumerate()
                            .map(|(at, window)| AdmitWindow {
                                window: window.clone(),
                                below: cap(at + 1),
                                cap: cap(at + 1),
                            })
                            .collect(),
                    })
                ),
                2 => format!(
                    "{:?}",
                    store.lease(&LeaseRequest {
                        instance: id(instance),
                        seq: this_seq,
                        done_below: 0,
                        window: first.clone(),
                        block: count * 3,
                        ceiling: cap(0),
                        also: also
                            .iter()
                            .enumerate()
                            .map(|(at, window)| LeaseWindow {
                                window: window.clone(),
                                ceiling: cap(at + 1),
                            })
                            .collect(),
                    })
                ),
                3 => format!(
                    "{:?}",
                    store.give_back(&GiveBack {
                        instance: id(instance),
                        seq: this_seq,
                        done_below: 0,
                        window: first.clone(),
                        unused: count,
                        raise_count: raise_count(first, 7),
                        also: also
                            .iter()
                            .map(|window| GiveBackWindow {
                                window: window.clone(),
                                raise_count: raise_count(window, 11),
                            })
                            .collect(),
                    })
                ),
                _ => {
                    // A provider's count: a floor on one window (a sync applies floors on a
                    // resend too, as maxima).
                    let at = (this_seq % 3) as usize;
                    format!(
                        "{:?}",
                        store.sync(&SyncBatch {
                            instance: id(instance),
                            seq: this_seq,
                            done_below: 0,
                            at_ms: now_ms(),
                            deltas: Vec::new(),
                            read: Vec::new(),
                            raises: vec![Raise {
                                window: windows[at].clone(),
                                at_least: 20 + 10 * (step % 40),
                            }],
                        })
                    )
                }
            })
            .collect();
        assert_eq!(
            answers[0], answers[1],
            "step {step}: kind {kind}, seq {this_seq}"
        );
        let outcome = match kind {
            0 | 1 if answers[1].contains("Admitted") => "admitted",
            0 | 1 => "denied",
            2 if answers[1].contains("granted: 0") => "no grant",
            2 => "granted",
            3 if answers[1] == "Ok(0)" => "nothing given back",
            3 => "given back",
            _ => "raised",
        };
        seen.insert((outcome, more));
        let refs: Vec<&WindowKey> = epochs.iter().flatten().collect();
        assert_eq!(read(&redis, &refs), read(&reference, &refs), "step {step}");
    }
    // The sequence reached every outcome with one, two and three windows.
    for outcome in [
        "admitted",
        "denied",
        "granted",
        "no grant",
        "given back",
        "nothing given back",
    ] {
        for more in 0..3 {
            assert!(
                seen.contains(&(outcome, more)),
                "{outcome} with {more} more windows: {seen:?}"
            );
        }
    }
}

#[test]
fn a_request_naming_a_window_twice_or_two_services_is_refused_and_changes_nothing() {
    let server = Server::start();
    let redis = RedisStore::new(&server.url()).unwrap().prefix("bad");
    let memory = MemoryStore::new();
    let (hour, day) = (window(Period::Hour), window(Period::Day));
    let other = WindowKey {
        service: "other".into(),
        ..day.clone()
    };
    for store in [&redis as &dyn Store, &memory] {
        for twice in [hour.clone(), other.clone()] {
            let mut request = admit(&hour, &day, 30, 3, false);
            request.also.push(AdmitWindow {
                window: twice.clone(),
                below: 5,
                cap: 5,
            });
            let error = store.admit(&request).unwrap_err();
            assert!(
                matches!(error, quota_core::StoreError::Invalid(_)),
                "{error}"
            );
            assert!(!error.maybe_applied());
            let lease = LeaseRequest {
                instance: id(1),
                seq: 31,
                done_below: 0,
                window: hour.clone(),
                block: 2,
                ceiling: 50,
                also: vec![LeaseWindow {
                    window: twice.clone(),
                    ceiling: 50,
                }],
            };
            assert!(matches!(
                store.lease(&lease),
                Err(quota_core::StoreError::Invalid(_))
            ));
            let back = GiveBack {
                instance: id(1),
                seq: 32,
                done_below: 0,
                window: hour.clone(),
                unused: 1,
                raise_count: 0,
                also: vec![GiveBackWindow {
                    window: twice,
                    raise_count: 0,
                }],
            };
            assert!(matches!(
                store.give_back(&back),
                Err(quota_core::StoreError::Invalid(_))
            ));
        }
        assert_eq!(read(store, &[&hour, &day, &other]), [0, 0, 0]);
    }
}
