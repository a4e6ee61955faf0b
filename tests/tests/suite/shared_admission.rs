//! The JS module is built without the feature `shared-admission` (as `cargo xtask pkg` builds
//! it): `Exact` and `Leased` admission are refused by `build()` with an error that says why,
//! and `Local` works as ever, with a store too.

use quota_core::{
    Admission, MemoryStore, Period, QuotaError, QuotaTracker, ServiceConfig, TrackerConfig,
};
use wasm_bindgen_test::wasm_bindgen_test;

fn config(admission: Admission) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("llm", 10, Period::Day)
        .admission(admission)
        .build()
        .unwrap()])
}

#[wasm_bindgen_test]
fn exact_and_leased_admission_are_refused_without_the_feature() {
    for admission in [Admission::Exact, Admission::Leased { block: 5 }] {
        let built = QuotaTracker::builder(config(admission))
            .store(MemoryStore::new())
            .build();
        match built {
            Err(QuotaError::InvalidConfig {
                service,
                field,
                reason,
                ..
            }) => {
                assert_eq!(service.as_deref(), Some("llm"));
                assert_eq!(field, "admission");
                assert!(reason.contains("shared-admission"), "{reason:?}");
            }
            other => panic!("{admission:?}: {other:?}"),
        }
    }
}

#[wasm_bindgen_test]
fn local_admission_with_a_store_works() {
    let store = MemoryStore::new();
    let tracker = QuotaTracker::builder(config(Admission::Local))
        .store(store.clone())
        .build()
        .unwrap();
    // Admitted while below Critical (8 of 10): the eighth call takes it there.
    for _ in 0..8 {
        tracker.try_record("llm", 1).unwrap();
    }
    assert!(tracker.try_record("llm", 1).is_err(), "critical at 8 of 10");
    assert!(!tracker.can_call("llm").unwrap());
    tracker.flush().unwrap();
    let other = QuotaTracker::builder(config(Admission::Local))
        .store(store)
        .build()
        .unwrap();
    assert_eq!(other.usage("llm").unwrap().used, 8);
}
