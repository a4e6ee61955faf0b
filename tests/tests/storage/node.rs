//! `storage` in Node, which has no `localStorage`: the tracker still starts and works, and the
//! store's failures are reported, never thrown from the constructor.

use super::suite::js::*;
use super::suite::storage::{reduced, stats, with_storage};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn storage_without_local_storage_starts_fresh_and_says_why() {
    let _clock = FixedClock::at(NOW);
    let tracker = with_storage("({ key: 'quota-node' })").unwrap_or_else(|thrown| {
        panic!(
            "no localStorage must not stop the tracker: {}",
            message(&thrown)
        )
    });
    let stats_now = stats(&tracker);
    assert_eq!(num(&stats_now, "loads"), 1.0);
    assert_eq!(num(&stats_now, "loadFailures"), 1.0);
    assert_eq!(num(&stats_now, "saves"), 0.0);
    let last_error = text(&stats_now, "lastError");
    assert!(
        last_error.contains("unavailable") && last_error.contains("localStorage"),
        "{last_error:?}"
    );
    assert!(!reduced(&tracker));

    // The tracker works as without a store.
    tracker.record("search", 25);
    assert_eq!(tracker.used("search"), 25.0);
    assert_eq!(tracker.call("canCall", &["search".into()]).unwrap(), true);

    // flush throws the store's message, and each failure counts.
    for failures in 1..=3 {
        let thrown = tracker
            .call("flush", &[])
            .expect_err("flush without localStorage throws");
        let text = message(&thrown);
        assert!(text.contains("localStorage"), "{text:?}");
        let stats_now = stats(&tracker);
        assert_eq!(num(&stats_now, "saveFailures"), f64::from(failures));
        assert_eq!(num(&stats_now, "consecutiveFailures"), f64::from(failures));
        assert_eq!(num(&stats_now, "saves"), 0.0);
        // Reduced rate from the third failure in a row (the default policy).
        assert_eq!(
            reduced(&tracker),
            failures >= 3,
            "after {failures} failures"
        );
        assert_eq!(
            get(&stats_now, "reducedRate").as_bool(),
            Some(failures >= 3)
        );
    }

    // Reduced rate: a quarter of the limit (25 of 100), which `search` has used.
    assert_eq!(tracker.call("canCall", &["search".into()]).unwrap(), false);
    let refused = tracker
        .call("tryRecord", &["search".into(), 1.into()])
        .unwrap();
    assert_eq!(get(&refused, "allowed").as_bool(), Some(false));
    // recordCall always records; nothing is lost while the store is down.
    tracker.record("search", 1);
    assert_eq!(tracker.used("search"), 26.0);
}
