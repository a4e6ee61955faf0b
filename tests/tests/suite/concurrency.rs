//! Interleaved async tasks sharing one tracker lose no call.

use super::js::*;
use js_sys::{Array, Function, Promise};
use quota_core::js::JsQuotaTracker;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Mutex;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &Function, ms: i32);
}

/// Yields to the other tasks: a `setTimeout(0)` (a new macrotask) on even rounds, a resolved
/// promise (a microtask) on odd ones.
async fn yield_now(round: u32) {
    let promise = if round.is_multiple_of(2) {
        Promise::new(&mut |resolve, _| set_timeout(&resolve, 0))
    } else {
        Promise::resolve(&JsValue::UNDEFINED)
    };
    JsFuture::from(promise).await.unwrap();
}

/// Runs every task concurrently (each spawned with `spawn_local`) until all are done.
async fn join_all(tasks: impl IntoIterator<Item = impl Future<Output = ()> + 'static>) {
    let promises: Array = tasks
        .into_iter()
        .map(|task| {
            future_to_promise(async move {
                task.await;
                Ok(JsValue::UNDEFINED)
            })
        })
        .collect();
    JsFuture::from(Promise::all(&promises)).await.unwrap();
}

const TASKS: u32 = 8;
const ROUNDS: u32 = 250;

/// What task `task` records in round `round`: a service and a count of 1 to 3.
fn plan(task: u32, round: u32) -> (&'static str, u32) {
    let service = if (task + round).is_multiple_of(2) {
        "a"
    } else {
        "b"
    };
    (service, (task * 7 + round) % 3 + 1)
}

#[wasm_bindgen_test]
async fn a_mutex_guarded_tracker_shared_by_async_tasks_loses_nothing() {
    let _clock = FixedClock::at(NOW);
    let config = parse(
        r#"{ "services": [
            { "name": "a", "limit": 1500, "period": "day" },
            { "name": "b", "limit": 1500, "period": "day" }
        ] }"#,
    );
    let tracker = Rc::new(Mutex::new(JsQuotaTracker::new(&config).unwrap()));
    let (callback, log) = recorder();
    tracker.lock().unwrap().on_transition(&callback).unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));

    join_all((0..TASKS).map(|task| {
        let tracker = Rc::clone(&tracker);
        let order = Rc::clone(&order);
        async move {
            for round in 0..ROUNDS {
                let (service, count) = plan(task, round);
                {
                    // No task holds the lock across an await, so it is always free here.
                    let guard = tracker.try_lock().expect("the lock is free between awaits");
                    guard
                        .record_call(&service.into(), &count.into())
                        .unwrap_or_else(|error| panic!("recordCall threw {error:?}"));
                }
                order.borrow_mut().push(task);
                yield_now(round).await;
            }
        }
    }))
    .await;

    // The tasks really interleaved: every task's first call came before any second one.
    let order = order.borrow();
    assert_eq!(order.len(), (TASKS * ROUNDS) as usize);
    assert_eq!(order[..TASKS as usize], (0..TASKS).collect::<Vec<_>>()[..]);

    let expected = |name: &str| -> f64 {
        let plans = (0..TASKS).flat_map(|task| (0..ROUNDS).map(move |round| plan(task, round)));
        plans
            .filter(|(service, _)| *service == name)
            .map(|(_, count)| f64::from(count))
            .sum()
    };
    let guard = tracker.lock().unwrap();
    let snapshot = guard.snapshot();
    let services = Array::from(&get(&snapshot, "services"));
    assert_eq!(num(&services.get(0), "used"), expected("a"));
    assert_eq!(num(&services.get(1), "used"), expected("b"));
    assert_eq!(num(&snapshot, "totalUsed"), expected("a") + expected("b"));
    assert!(expected("a") > 1500.0 && expected("b") > 1500.0);

    // Each service climbed through every level once, and each change was reported once.
    let per_service = |name: &str| -> Vec<(String, String)> {
        log.iter()
            .filter(|t| text(t, "service") == name)
            .map(|t| levels(&t))
            .collect()
    };
    let climb = pairs(&[
        ("normal", "warning"),
        ("warning", "critical"),
        ("critical", "exhausted"),
    ]);
    assert_eq!(per_service("a"), climb);
    assert_eq!(per_service("b"), climb);
    assert_eq!(log.length(), 6);
}

#[wasm_bindgen_test]
async fn interleaved_calls_through_the_js_object_are_all_counted() {
    let _clock = FixedClock::at(NOW);
    let tracker = Rc::new(Tracker::of(
        r#"{ "services": [{ "name": "api", "limit": 100000, "period": "month" }] }"#,
    ));
    join_all((0..4u32).map(|task| {
        let tracker = Rc::clone(&tracker);
        async move {
            for round in 0..500u32 {
                let args = if round.is_multiple_of(5) {
                    vec![JsValue::from("api")] // count omitted: 1
                } else {
                    vec![JsValue::from("api"), JsValue::from(task + 1)]
                };
                tracker.call("recordCall", &args).unwrap();
                if round % 10 == 9 {
                    yield_now(round / 10).await;
                }
            }
        }
    }))
    .await;
    // Per task: 100 calls of 1 and 400 calls of (task + 1).
    let expected: u32 = (0..4u32).map(|task| 100 + 400 * (task + 1)).sum();
    assert_eq!(tracker.used("api"), f64::from(expected));
}
