//! A token service on the dashboard (issue 19), in headless Chromium: its workers hold an
//! estimate and settle a random actual, its card shows what is held in flight, and the
//! counters table says its unit and checks the identity of its holds.
#![cfg(target_arch = "wasm32")]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use quota_core::sim::Mode;
use quota_core::{Period, ServiceConfig, TrackerConfig};
use quota_web::clock::SimClock;
use quota_web::components::{Counters, ServiceCards};
use quota_web::engine::ESTIMATE_TOKENS;
use quota_web::model::{Cause, HoldCounts, ServiceView, Status, Unit};
use quota_web::persist::DashboardStorage;
use quota_web::state::AppState;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, HtmlElement};

wasm_bindgen_test_configure!(run_in_browser);

/// 2024-02-29T13:45:10Z: mid-minute.
const T0: u64 = 1_709_214_310_000;

/// One service counted in calls and one in tokens, whose limit the workers reach quickly.
fn config() -> TrackerConfig {
    TrackerConfig::new([
        ServiceConfig::new("api", 1_000, Period::Hour),
        ServiceConfig::new("llm-tokens", 40_000, Period::Hour),
    ])
}

/// Mounts the cards and the counters with a new state for [`config`], saving under a key of
/// its own (`name`).
fn mount(name: &str) -> (AppState, Element) {
    let key = format!("quota-web-test.tokens.{name}");
    DashboardStorage::new(&key).clear();
    let document = web_sys::window().unwrap().document().unwrap();
    let root: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    let slot = Rc::new(Cell::new(None));
    let out = Rc::clone(&slot);
    leptos::mount::mount_to(root.clone(), move || {
        let state = AppState::with_clock(config(), SimClock::new(T0), &key)
            .unwrap()
            .provide();
        out.set(Some(state));
        view! {
            <ServiceCards/>
            <Counters/>
        }
    })
    .forget();
    (slot.get().expect("mounted"), root.into())
}

async fn settle() {
    leptos::task::tick().await;
    TimeoutFuture::new(0).await;
}

fn text(root: &Element, test_id: &str) -> String {
    root.query_selector(&format!("[data-testid=\"{test_id}\"]"))
        .unwrap()
        .unwrap_or_else(|| panic!("no element with data-testid={test_id}"))
        .text_content()
        .unwrap_or_default()
}

fn number(root: &Element, test_id: &str) -> u64 {
    let shown = text(root, test_id);
    shown
        .parse()
        .unwrap_or_else(|_| panic!("{test_id} shows {shown:?}"))
}

fn tokens(state: &AppState) -> ServiceView {
    state
        .frame()
        .with_untracked(|f| f.service("llm-tokens").cloned())
        .expect("llm-tokens is configured")
}

/// Runs the workers for `ms`, checking the identity on every frame meanwhile, then pauses and
/// waits until every hold is settled (at most about 3 s). Returns how many frames had tokens
/// in flight.
async fn run(state: &AppState, root: &Element, ms: u32) -> usize {
    state.start();
    let mut holding = 0;
    for _ in 0..ms / 20 {
        TimeoutFuture::new(20).await;
        state.refresh();
        settle().await;
        let service = tokens(state);
        assert!(service.identity_holds(), "{service:?}");
        assert_eq!(text(root, "holds-off-llm-tokens"), "0");
        assert_eq!(
            number(root, "held-llm-tokens"),
            service.holds.in_flight,
            "the card shows what is held"
        );
        holding += usize::from(service.holds.in_flight > 0);
    }
    state.pause();
    for _ in 0..150 {
        state.refresh();
        if state.frame().with_untracked(|f| f.status == Status::Paused) {
            settle().await;
            return holding;
        }
        TimeoutFuture::new(20).await;
    }
    panic!("the holds did not settle");
}

#[wasm_bindgen_test]
async fn locked_holds_settle_to_an_exact_identity_and_lose_nothing() {
    let (state, root) = mount("locked");
    state.update_workload(|w| {
        w.workers = 4;
        w.calls_per_second = 200;
    });
    assert_eq!(text(&root, "unit-api"), "calls");
    assert_eq!(text(&root, "unit-llm-tokens"), "tokens");
    let holding = run(&state, &root, 1_500).await;
    assert!(holding > 0, "tokens were held in flight on some frame");

    let service = tokens(&state);
    let holds = service.holds;
    assert_eq!(service.unit, Unit::Tokens);
    assert_eq!(holds.in_flight, 0, "paused: every hold settled");
    assert_eq!(number(&root, "held-llm-tokens"), 0);
    assert!(service.denied > 0, "the limit refused some estimates");
    assert_eq!(service.issued % ESTIMATE_TOKENS, 0);
    // Below their estimate: given back, or kept where a sync had carried the estimate already.
    assert!(
        holds.given_back + holds.kept > 0 && holds.added > 0,
        "{holds:?}"
    );
    assert_eq!(
        service.issued + holds.added,
        service.denied + holds.settled + holds.given_back + holds.kept
    );
    assert_eq!(service.recorded(), holds.settled + holds.kept);
    // Give-backs of tokens a sync had carried to the store stay counted (no shared admission
    // in the dashboard's build: nothing takes them off the store): kept, and forfeited in the
    // store's stats; the window's used (one window) is the total recorded, no more.
    let stats = state.frame().with_untracked(|f| f.store.clone().unwrap());
    assert!(stats.forfeited_calls > 0, "{stats:?}");
    assert!(holds.kept > 0, "{holds:?}");
    assert_eq!(service.usage.used, service.recorded(), "{service:?}");
    assert_eq!(service.lost(), 0);
    assert_eq!(number(&root, "lost-llm-tokens"), 0);
    assert_eq!(number(&root, "recorded-llm-tokens"), service.recorded());
    assert_eq!(number(&root, "holds-settled-llm-tokens"), holds.settled);
    assert_eq!(
        number(&root, "holds-given-back-llm-tokens"),
        holds.given_back
    );
    assert_eq!(number(&root, "holds-added-llm-tokens"), holds.added);
    // The totals add the calls only: the api's.
    let api = state
        .frame()
        .with_untracked(|f| f.service("api").cloned())
        .unwrap();
    assert_eq!(number(&root, "issued-total"), api.issued);
    assert_eq!(text(&root, "unit-total"), "calls");
    // A settlement that gave tokens back may have lowered the level (at random): a worker's
    // doing, not a window's (none ended: the hour starts at T0's 13:00).
    let lowered = state.timeline().with_untracked(|timeline| {
        timeline
            .entries()
            .filter(|e| e.transition.to < e.transition.from)
            .map(|e| (e.cause, e.transition.used))
            .collect::<Vec<_>>()
    });
    for (cause, used) in lowered {
        assert!(
            matches!(cause, Cause::Worker(_)) && used > 0,
            "{cause:?} at {used}"
        );
    }
}

#[wasm_bindgen_test]
async fn racy_token_calls_hold_nothing_and_their_lost_updates_are_counted() {
    let (state, root) = mount("racy");
    state.set_mode(Mode::Racy);
    state.update_workload(|w| {
        w.workers = 8;
        w.calls_per_second = 200;
    });
    let holding = run(&state, &root, 1_500).await;
    assert_eq!(holding, 0, "racy mode holds nothing");
    let service = tokens(&state);
    let holds = service.holds;
    assert!(service.identity_holds(), "{service:?}");
    assert_eq!(service.denied, 0);
    assert_eq!(holds.kept, 0);
    assert_eq!(service.lost(), holds.settled - service.recorded());
    assert_eq!(number(&root, "lost-llm-tokens"), service.lost());
}

#[wasm_bindgen_test]
fn the_identity_is_the_sum_of_its_terms() {
    let holds = HoldCounts {
        added: 300,
        settled: 2_500,
        given_back: 700,
        in_flight: 2_000,
        kept: 100,
        past_window: 0,
    };
    // issued 6,000 + added 300 = denied 1,000 + 2,500 + 700 + 2,000 + 100.
    assert!(holds.identity_holds(6_000, 1_000));
    assert!(!holds.identity_holds(6_001, 1_000));
    assert_eq!(holds.counted(), 4_600);
    assert_eq!(Unit::of("llm-tokens"), Unit::Tokens);
    assert_eq!(
        Unit::of("tokens"),
        Unit::Calls,
        "only a name ending in -tokens"
    );
}
