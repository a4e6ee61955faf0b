//! `StoredState`'s tests: the JSON form (the fixture byte for byte, bad entries, version 1),
//! exactly once in any order, records kept and forgotten.

use super::*;
use crate::store::{Delta, Raise, StoreError, WindowTotal};
use crate::window::Period;

/// A version 2 document with every kind of entry, as serde_json writes it. wasm32 builds
/// (`engine`) must read and write it the same: see `tests/tests/suite/document.rs`.
const FIXTURE: &str = include_str!("fixture_v2.json");

#[test]
fn the_fixture_reads_and_writes_back_byte_for_byte() {
    let state = StoredState::from_json(FIXTURE).unwrap();
    assert!(state.skipped().is_empty(), "{:?}", state.skipped());
    assert_eq!(state.to_json(), FIXTURE.trim_end());
    assert_eq!(state.windows().count(), 3);
    assert_eq!(
        state.total(&key("search", 1_709_164_800_000)),
        (1 << 53) - 1
    );
}

fn key(service: &str, start_ms: u64) -> WindowKey {
    WindowKey {
        service: service.into(),
        spec: Period::Day.into(),
        start_ms,
        end_ms: start_ms + 86_400_000,
    }
}

fn batch(instance: u128, seq: u64, deltas: &[(&str, u64, u64)]) -> SyncBatch {
    SyncBatch {
        instance: InstanceId::from_u128(instance),
        seq,
        done_below: 0,
        at_ms: 0,
        deltas: deltas
            .iter()
            .map(|&(service, start, calls)| Delta {
                window: key(service, start),
                calls,
            })
            .collect(),
        read: vec![key("a", 0), key("b", 0)],
        raises: Vec::new(),
    }
}

#[test]
fn deltas_add_up_across_instances_and_a_retry_counts_once() {
    let mut state = StoredState::new();
    assert_eq!(state.apply(&batch(1, 1, &[("a", 0, 5)])), [5, 0]);
    assert_eq!(
        state.apply(&batch(2, 1, &[("a", 0, 3), ("b", 0, 1)])),
        [8, 1]
    );
    // Instance 1 retries seq 1 (its reply was lost): applied once.
    assert_eq!(state.apply(&batch(1, 1, &[("a", 0, 5)])), [8, 1]);
    assert_eq!(state.apply(&batch(1, 2, &[("a", 0, 1)])), [9, 1]);
    // A round trip through JSON keeps totals and the dedup records.
    let mut again = StoredState::from_json(&state.to_json()).unwrap();
    assert_eq!(again.apply(&batch(2, 1, &[("a", 0, 3)])), [9, 1]);
}

fn admit(instance: u128, seq: u64, done_below: u64, count: u64) -> super::super::AdmitRequest {
    super::super::AdmitRequest {
        instance: InstanceId::from_u128(instance),
        seq,
        done_below,
        window: key("a", 0),
        count,
        below: 100,
        cap: 100,
        force: false,
        also: Vec::new(),
    }
}

#[test]
fn every_kind_of_operation_counts_once_in_any_order() {
    use super::super::{AdmitReply, GiveBack, LeaseRequest};
    let mut state = StoredState::new();
    // Admissions 1 and 2 answered; 1 resent after 2 landed (the old bug: counted 3).
    assert_eq!(
        state.admit(&admit(1, 1, 1, 1)),
        AdmitReply::Admitted {
            total: 1,
            raise_count: 0,
            also: Vec::new(),
        }
    );
    assert_eq!(
        state.admit(&admit(1, 2, 1, 1)),
        AdmitReply::Admitted {
            total: 2,
            raise_count: 0,
            also: Vec::new(),
        }
    );
    assert_eq!(
        state.admit(&admit(1, 1, 1, 1)),
        AdmitReply::Admitted {
            total: 1,
            raise_count: 0,
            also: Vec::new(),
        }
    );
    assert_eq!(state.total(&key("a", 0)), 2);
    // A sync batch resent after a newer admission.
    let mut sync = batch(1, 3, &[("a", 0, 5)]);
    sync.done_below = 1;
    assert_eq!(state.apply(&sync)[0], 7);
    assert_eq!(
        state.admit(&admit(1, 4, 1, 1)),
        AdmitReply::Admitted {
            total: 8,
            raise_count: 0,
            also: Vec::new(),
        }
    );
    assert_eq!(state.apply(&sync)[0], 8);
    // A lease resent after a newer one gets its own grant again, not 0, and adds nothing.
    let lease = |seq, block| LeaseRequest {
        instance: InstanceId::from_u128(1),
        seq,
        done_below: 1,
        window: key("a", 0),
        block,
        ceiling: 100,
        also: Vec::new(),
    };
    assert_eq!(state.lease(&lease(5, 10)).granted, 10);
    assert_eq!(state.lease(&lease(6, 10)).granted, 10);
    assert_eq!(state.lease(&lease(5, 10)).granted, 10);
    assert_eq!(state.total(&key("a", 0)), 28);
    // A give-back resent after a newer one takes nothing twice.
    let back = |seq| GiveBack {
        instance: InstanceId::from_u128(1),
        seq,
        done_below: 1,
        window: key("a", 0),
        unused: 3,
        raise_count: 0,
        also: Vec::new(),
    };
    state.give_back(&back(7));
    state.give_back(&back(8));
    state.give_back(&back(7));
    assert_eq!(state.total(&key("a", 0)), 22);
    // The record survives JSON: the resends still count once.
    let mut state = StoredState::from_json(&state.to_json()).unwrap();
    state.give_back(&back(8));
    assert_eq!(state.lease(&lease(6, 10)).granted, 10);
    assert_eq!(
        state.admit(&admit(1, 2, 1, 1)),
        AdmitReply::Admitted {
            total: 2,
            raise_count: 0,
            also: Vec::new(),
        }
    );
    assert_eq!(state.total(&key("a", 0)), 22);
    // done_below 9: everything below is forgotten, and a stale copy changes nothing.
    assert_eq!(
        state.admit(&admit(1, 9, 9, 1)),
        AdmitReply::Admitted {
            total: 23,
            raise_count: 0,
            also: Vec::new(),
        }
    );
    assert_eq!(
        state.admit(&admit(1, 4, 1, 1)),
        AdmitReply::Denied {
            total: 23,
            also: Vec::new()
        }
    );
    assert_eq!(state.lease(&lease(5, 10)).granted, 0);
    state.give_back(&back(7));
    assert_eq!(state.total(&key("a", 0)), 23);
    let text = state.to_json();
    assert!(text.contains("\"low\": 9"), "{text}");
    assert!(
        !text.contains("\"a1\""),
        "answers below low are forgotten: {text}"
    );
}

#[test]
fn thousands_of_instances_keep_their_records_while_their_window_lives() {
    let mut state = StoredState::new();
    for instance in 1..=3_000 {
        state.apply(&batch(instance, 1, &[("a", 0, 1)]));
    }
    // Instance 1's resend, 2,999 instances later: counted once.
    state.apply(&batch(1, 1, &[("a", 0, 1)]));
    assert_eq!(state.total(&key("a", 0)), 3_000);
    assert_eq!(state.records(), 3_000);
    // The next day is within the grace of this one's end; the day after is not.
    state.apply(&batch(1, 2, &[("a", 86_400_000, 1)]));
    assert_eq!(state.records(), 3_000);
    state.apply(&batch(2, 2, &[("a", 2 * 86_400_000, 1)]));
    assert_eq!(
        state.records(),
        2,
        "instances 1 and 2 counted in a later window"
    );
    assert_eq!(state.evicted(), 0);
}

#[test]
fn a_window_from_a_clock_far_ahead_forgets_no_record() {
    let mut state = StoredState::new();
    state.apply(&batch(1, 1, &[("a", 0, 5)]));
    // A host whose clock says 2100 syncs once.
    state.apply(&batch(2, 1, &[("a", 4_102_444_800_000, 1)]));
    // Instance 1's resend (its reply was lost) still counts once.
    state.apply(&batch(1, 1, &[("a", 0, 5)]));
    assert_eq!(state.total(&key("a", 0)), 5);
    assert_eq!(state.records(), 2);
}

#[test]
fn answers_read_back_as_written() {
    let window = |total, raise_count| WindowTotal { total, raise_count };
    for (answer, text) in [
        (Answer::APPLIED, "1"),
        (Answer::admitted(&[window(0, 3)]), "a0/3"),
        (
            Answer::admitted(&[window(5, 0), window(40, 1)]),
            "a5/0,40/1",
        ),
        (Answer::denied(&[41]), "d41"),
        (Answer::denied(&[9, 40]), "d9,40"),
        (Answer::granted(u64::MAX, &[0]), "g18446744073709551615/0"),
        (Answer::granted(5, &[0, 1]), "g5/0,1"),
        (Answer::given_back(7), "b7"),
    ] {
        // One window writes as it always did (older builds read it); several add comma parts.
        assert_eq!(answer.text(), text);
        assert_eq!(Answer::parse(text), Some(answer));
    }
    let two = Answer::parse("a5/0,40/1").unwrap();
    assert_eq!(two.as_admitted(2), Some(vec![window(5, 0), window(40, 1)]));
    assert_eq!(
        two.as_admitted(1),
        None,
        "an answer for another number of windows"
    );
    assert_eq!(two.as_denied(2), None);
    assert_eq!(
        Answer::parse("g5/0,1").unwrap().as_granted(2),
        Some((5, &[0, 1][..]))
    );
    assert_eq!(Answer::parse("b7").unwrap().as_given_back(), Some(7));
    for bad in [
        "",
        "a",
        "a1",
        "x1",
        "a-1/0",
        "a1.5/0",
        "g18446744073709551616/0",
        "2",
        "b",
        "d1/2",
        "a1/0,",
        "a1/0,2",
        "a1,0",
        "a1//0",
        "d1,,2",
        "d,1",
        "g1/",
        "g1",
        "g1,0",
        "g1/0/1",
        "g1/0,x",
        "b1,2",
        "1a",
    ] {
        assert_eq!(Answer::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_raise_keeps_the_larger_total_and_a_resend_changes_nothing() {
    let mut state = StoredState::new();
    state.apply(&batch(1, 1, &[("a", 0, 5)]));
    // Instance 2 adds 3 and reports a floor of 20 seen at the provider.
    let mut raising = batch(2, 1, &[("a", 0, 3)]);
    raising.raises.push(super::super::Raise {
        window: key("a", 0),
        at_least: 20,
    });
    assert_eq!(state.apply(&raising), [20, 0], "max(5 + 3, 20)");
    // The same batch again (its reply was lost): deltas skipped, the floor holds as is.
    assert_eq!(state.apply(&raising), [20, 0]);
    // A floor below the total changes nothing; deltas after it add on top.
    raising.seq = 2;
    raising.raises[0].at_least = 4;
    assert_eq!(state.apply(&raising), [23, 0]);
    // A floor past the cap is capped.
    raising.seq = 3;
    raising.deltas.clear();
    raising.raises[0].at_least = u64::MAX;
    assert_eq!(state.apply(&raising)[0], StoredState::MAX_TOTAL);
}

#[test]
fn a_delta_for_an_ended_window_goes_to_that_window() {
    let mut state = StoredState::new();
    state.apply(&batch(1, 1, &[("a", 86_400_000, 2), ("a", 0, 7)]));
    assert_eq!(state.total(&key("a", 0)), 7);
    assert_eq!(state.total(&key("a", 86_400_000)), 2);
}

#[test]
fn bad_entries_are_skipped_one_by_one() {
    let text = r#"{"version": 2, "windows": [
        {"service": "a", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 30},
        {"service": "a", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 30},
        {"service": "b", "period": "weekly", "start_ms": 0, "end_ms": 1, "total": 1},
        {"service": "c", "period": "day", "start_ms": 0, "end_ms": 86400000,
         "total": 18446744073709551615}
    ]}"#;
    let state = StoredState::from_json(text).unwrap();
    assert_eq!(
        state.total(&key("a", 0)),
        30,
        "duplicates keep the larger, not the sum"
    );
    assert_eq!(state.total(&key("c", 0)), StoredState::MAX_TOTAL);
    assert_eq!(state.skipped().len(), 1, "{:?}", state.skipped());
    for bad in ["", "nope", "[]", r#"{"windows": []}"#, r#"{"version": 9}"#] {
        assert!(matches!(
            StoredState::from_json(bad),
            Err(StoreError::Corrupt(_))
        ));
    }
}

#[test]
fn version_1_is_converted_entry_by_entry() {
    let text = r#"{"version": 1, "updated_at_ms": 5, "services": [
        {"name": "a", "used": 30, "window_start_ms": 0,
         "config": {"name": "a", "limit": 100, "period": "day",
                    "warn_threshold": 0.5, "critical_threshold": 0.8,
                    "reserve_fraction": 0.1}},
        {"name": "z", "used": 1, "window_start_ms": 0, "config": {"limit": 0, "period": "day"}},
        {"name": "bad", "used": -1, "window_start_ms": 0, "config": {"period": "day"}}
    ]}"#;
    let state = StoredState::from_json(text).unwrap();
    assert!(state.converted());
    assert_eq!(state.total(&key("a", 0)), 30);
    assert_eq!(
        state.total(&key("z", 0)),
        1,
        "a config v2 does not need is not checked"
    );
    assert_eq!(state.skipped().len(), 1);
}

#[test]
fn old_windows_go_by_count_not_by_clock() {
    let mut state = StoredState::new();
    for day in 0..20u64 {
        state.apply(&batch(1, day + 1, &[("a", day * 86_400_000, 1)]));
    }
    assert_eq!(state.windows().count(), StoredState::WINDOWS_KEPT);
    assert_eq!(state.total(&key("a", 19 * 86_400_000)), 1);
    // A bogus far-future window pushes out only the oldest.
    state.apply(&batch(1, 100, &[("a", u64::MAX / 2, 1)]));
    assert_eq!(state.total(&key("a", 19 * 86_400_000)), 1);
}

/// [`FIXTURE`]'s counts, as `to_json_counts` writes them: its windows, no records.
const COUNTS_FIXTURE: &str = include_str!("fixture_v2_counts.json");

#[test]
fn the_fixtures_counts_read_without_records_and_write_back_byte_for_byte() {
    let counts = StoredState::from_json_counts(FIXTURE).unwrap();
    assert!(counts.skipped().is_empty(), "{:?}", counts.skipped());
    assert_eq!(counts.to_json_counts(), COUNTS_FIXTURE.trim_end());
    let full = StoredState::from_json(FIXTURE).unwrap();
    assert!(full.records() > 0, "the fixture has records to leave out");
    assert_eq!(counts.records(), 0);
    assert_eq!(
        counts.windows().collect::<Vec<_>>(),
        full.windows().collect::<Vec<_>>(),
        "every count kept"
    );
    assert!(!COUNTS_FIXTURE.contains("\"ops\""));
    // Read back by the full reader, and by the counts reader again: the same counts.
    let again = StoredState::from_json(COUNTS_FIXTURE).unwrap();
    assert_eq!(again.to_json_counts(), COUNTS_FIXTURE.trim_end());
    assert_eq!(full.to_json_counts(), COUNTS_FIXTURE.trim_end());
}

#[test]
fn counts_count_every_delta_and_floor_as_apply_does_without_records() {
    let mut state = StoredState::new();
    assert_eq!(state.apply_counts(&batch(1, 1, &[("a", 0, 5)])), [5, 0]);
    // The same seq again counts again: a store that keeps no records is never resent what
    // it counted.
    assert_eq!(
        state.apply_counts(&batch(1, 1, &[("a", 0, 5), ("b", 0, 1)])),
        [10, 1]
    );
    assert_eq!(state.records(), 0);
    // Floors: a maximum, each window's largest once per batch (its raise count rises by one).
    let mut raised = batch(1, 2, &[]);
    raised.raises = vec![
        Raise {
            window: key("a", 0),
            at_least: 12,
        },
        Raise {
            window: key("a", 0),
            at_least: 30,
        },
        Raise {
            window: key("b", 0),
            at_least: 0,
        },
    ];
    assert_eq!(state.apply_counts(&raised), [30, 1]);
    let a = state.windows().find(|w| w.service == "a").unwrap();
    assert_eq!((a.total, a.raise_count), (30, 1));
    // The same batch through `apply` gives the same totals.
    let mut recorded = StoredState::new();
    recorded.apply(&batch(1, 1, &[("a", 0, 5)]));
    recorded.apply(&batch(1, 3, &[("a", 0, 5), ("b", 0, 1)]));
    assert_eq!(recorded.apply(&raised), [30, 1]);
}

#[test]
fn counts_keep_a_services_latest_windows_of_each_spec() {
    let mut state = StoredState::new();
    let kept = StoredState::WINDOWS_KEPT as u64;
    for day in 0..kept + 3 {
        state.apply_counts(&batch(1, day, &[("a", day * 86_400_000, 1), ("b", 0, 1)]));
    }
    let starts: Vec<u64> = state
        .windows()
        .filter(|w| w.service == "a")
        .map(|w| w.start_ms / 86_400_000)
        .collect();
    assert_eq!(starts, (3..kept + 3).collect::<Vec<_>>());
    assert_eq!(state.total(&key("b", 0)), kept + 3, "b's one window kept");
}
