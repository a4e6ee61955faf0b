//! `StoredState::from_json` on any text: what a file, `localStorage` or a memory store may hold
//! after a crash, a hand edit or another program's write.
//!
//! Checks:
//! - it never panics;
//! - every error is `StoreError::Corrupt` (the stores move corrupt data aside on that variant);
//! - a state it parses has every total at most `StoredState::MAX_TOTAL`;
//! - the state round-trips: `from_json(to_json())` parses, skips nothing, has the same windows
//!   (service, period, start, end, total), and writes the same JSON again (the written form is a
//!   fixed point, so the dedup records and leases survive too);
//! - a sync batch adding to every parsed window neither panics nor pushes a total past the cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::{Delta, InstanceId, StoreError, StoredState, StoredWindow, SyncBatch, WindowKey};

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 is replaced rather than dropped, so every input reaches the parser.
    let text = String::from_utf8_lossy(data);
    let state = match StoredState::from_json(&text) {
        Ok(state) => state,
        Err(StoreError::Corrupt(_)) => return,
        Err(other) => panic!("from_json returned {other:?}, not StoreError::Corrupt"),
    };
    check_totals(&state, "parsed");

    let json = state.to_json();
    let again = StoredState::from_json(&json)
        .unwrap_or_else(|error| panic!("to_json output does not parse: {error}\n{json}"));
    assert!(
        again.skipped().is_empty(),
        "to_json output has entries from_json skips: {:?}\n{json}",
        again.skipped()
    );
    assert_eq!(
        windows(&state),
        windows(&again),
        "windows differ after a JSON round trip"
    );
    assert_eq!(json, again.to_json(), "to_json is not a fixed point");

    // Adding to what was parsed (windows past the kept count, totals at the cap) stays capped.
    let mut state = state;
    let keys: Vec<WindowKey> = state.windows().map(key).collect();
    let batch = SyncBatch {
        instance: InstanceId::from_u128(u128::MAX),
        seq: u64::MAX,
        done_below: 0,
        at_ms: u64::MAX,
        deltas: keys
            .iter()
            .map(|window| Delta {
                window: window.clone(),
                calls: u64::MAX,
            })
            .collect(),
        read: keys,
        raises: vec![],
    };
    let read = state.apply(&batch);
    assert_eq!(read.len(), batch.read.len());
    assert!(read.iter().all(|&total| total <= StoredState::MAX_TOTAL));
    check_totals(&state, "after a sync");
});

fn windows(state: &StoredState) -> Vec<StoredWindow> {
    state.windows().cloned().collect()
}

fn key(window: &StoredWindow) -> WindowKey {
    WindowKey {
        service: window.service.clone(),
        spec: window.spec.clone(),
        start_ms: window.start_ms,
        end_ms: window.end_ms,
    }
}

fn check_totals(state: &StoredState, when: &str) {
    for window in state.windows() {
        assert!(
            window.total <= StoredState::MAX_TOTAL,
            "{when}: total {} of {window:?} exceeds MAX_TOTAL",
            window.total
        );
    }
}
