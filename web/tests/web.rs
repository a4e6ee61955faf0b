//! The dashboard's components in headless Chromium: mounted on a real page, driven through the
//! engine or the DOM, checked by what the page shows.
#![cfg(target_arch = "wasm32")]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use quota_core::TrackerConfig;
use quota_web::clock::SimClock;
use quota_web::components::{ConfigEditor, Counters, ServiceCards, TransitionTimeline};
use quota_web::state::AppState;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, EventInit, HtmlElement, HtmlInputElement};

wasm_bindgen_test_configure!(run_in_browser);

/// 2024-02-29T13:45:10Z: mid-minute, so no window ends during a test (the clock is paused).
const T0: u64 = 1_709_214_310_000;
/// finnhub's index in the default config (tiingo, finnhub, sendgrid).
const FINNHUB: usize = 1;

/// Mounts `view` on a fresh element with a new state for the default config.
fn mount<V: IntoView + 'static>(view: impl FnOnce() -> V + 'static) -> (AppState, Element) {
    let document = web_sys::window().unwrap().document().unwrap();
    let root: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    let slot = Rc::new(Cell::new(None));
    let out = Rc::clone(&slot);
    leptos::mount::mount_to(root.clone(), move || {
        let state = AppState::with_clock(TrackerConfig::defaults(), SimClock::new(T0))
            .unwrap()
            .provide();
        out.set(Some(state));
        view()
    })
    .forget();
    (slot.get().expect("mounted"), root.into())
}

/// Lets the reactive system apply pending updates to the DOM.
async fn settle() {
    leptos::task::tick().await;
    TimeoutFuture::new(0).await;
}

fn find(root: &Element, test_id: &str) -> Element {
    root.query_selector(&format!("[data-testid=\"{test_id}\"]"))
        .unwrap()
        .unwrap_or_else(|| panic!("no element with data-testid={test_id}"))
}

fn text(root: &Element, test_id: &str) -> String {
    find(root, test_id).text_content().unwrap_or_default()
}

fn transitions(root: &Element) -> Vec<(String, String, String)> {
    let list = find(root, "timeline")
        .query_selector_all("[data-testid=\"transition\"]")
        .unwrap();
    (0..list.length())
        .map(|i| {
            let entry: Element = list.item(i).unwrap().unchecked_into();
            let attr = |name| entry.get_attribute(name).unwrap_or_default();
            (attr("data-service"), attr("data-from"), attr("data-to"))
        })
        .collect()
}

/// Types `value` into the input `test_id`, as a user would (an `input` then a `change` event).
fn type_into(root: &Element, test_id: &str, value: &str) {
    let input: HtmlInputElement = find(root, test_id).unchecked_into();
    input.set_value(value);
    let init = EventInit::new();
    init.set_bubbles(true);
    for kind in ["input", "change"] {
        let event = web_sys::Event::new_with_event_init_dict(kind, &init).unwrap();
        input.dispatch_event(&event).unwrap();
    }
}

#[wasm_bindgen_test]
async fn a_card_shows_used_and_limit_after_recordings() {
    let (state, root) = mount(|| view! { <ServiceCards/> });
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "0");
    assert_eq!(text(&root, "limit-finnhub"), "60");
    assert_eq!(text(&root, "level-finnhub"), "normal");

    state.engine().record(1, FINNHUB, 7);
    state.engine().record(2, FINNHUB, 5);
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "12");
    assert_eq!(text(&root, "limit-finnhub"), "60");
    assert_eq!(text(&root, "remaining-finnhub"), "48");
    assert_eq!(text(&root, "level-finnhub"), "normal");
    assert_eq!(text(&root, "used-tiingo"), "0");

    state.engine().record(1, FINNHUB, 18); // 30 of 60: the warn threshold (0.5)
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "30");
    assert_eq!(text(&root, "level-finnhub"), "warning");
    let card = find(&root, "card-finnhub");
    assert!(
        card.class_name().contains("level-warning"),
        "{}",
        card.class_name()
    );
}

#[wasm_bindgen_test]
async fn crossing_critical_adds_exactly_one_timeline_entry() {
    let (state, root) = mount(|| view! { <TransitionTimeline/> });
    let record = |count| {
        state.engine().record(3, FINNHUB, count);
        state.refresh();
    };
    record(47); // normal -> warning on the way (critical is at 48 of 60)
    settle().await;
    let before = transitions(&root);
    assert_eq!(
        before,
        [("finnhub".into(), "normal".into(), "warning".into())]
    );

    record(1); // 48: critical
    settle().await;
    let after = transitions(&root);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(
        after[0],
        ("finnhub".into(), "warning".into(), "critical".into())
    );
    let newest = find(&root, "timeline").first_element_child().unwrap();
    assert!(
        newest.class_list().contains("critical"),
        "critical entries are highlighted"
    );
    assert!(newest.text_content().unwrap().contains("worker 3"));

    record(1); // 49: still critical, no new entry
    settle().await;
    assert_eq!(transitions(&root).len(), after.len());
}

#[wasm_bindgen_test]
async fn an_invalid_limit_shows_the_error_and_keeps_the_config() {
    let (state, root) = mount(|| {
        view! {
            <ServiceCards/>
            <Counters/>
            <ConfigEditor/>
        }
    });
    state.engine().record(1, 0, 9); // tiingo
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "limit-tiingo"), "500");

    type_into(&root, "config-limit-tiingo", "0");
    find(&root, "config-apply")
        .unchecked_into::<HtmlElement>()
        .click();
    settle().await;
    let error = text(&root, "config-error");
    assert!(
        error.contains("service \"tiingo\": limit must be at least 1 (got 0)"),
        "the core's message, got {error:?}"
    );
    assert_eq!(
        text(&root, "limit-tiingo"),
        "500",
        "the running config stays"
    );
    assert_eq!(text(&root, "recorded-tiingo"), "9", "and so do its counts");
    assert_eq!(state.config.get_untracked(), TrackerConfig::defaults());

    type_into(&root, "config-limit-tiingo", "lots");
    find(&root, "config-apply")
        .unchecked_into::<HtmlElement>()
        .click();
    settle().await;
    assert!(text(&root, "config-error").contains("limit must be a whole number (got \"lots\")"));
    assert_eq!(text(&root, "limit-tiingo"), "500");

    type_into(&root, "config-limit-tiingo", "1000");
    find(&root, "config-apply")
        .unchecked_into::<HtmlElement>()
        .click();
    settle().await;
    assert_eq!(text(&root, "config-error"), "");
    assert_eq!(text(&root, "limit-tiingo"), "1000");
    assert_eq!(
        text(&root, "recorded-tiingo"),
        "0",
        "a new config counts from zero"
    );
}

#[wasm_bindgen_test]
async fn locked_workers_lose_nothing() {
    let (state, root) = mount(|| view! { <Counters/> });
    state.update_workload(|w| {
        w.workers = 4;
        w.calls_per_second = 1_000;
    });
    state.start();
    TimeoutFuture::new(400).await;
    state.pause();
    // Workers finish the call they started, then exit.
    for _ in 0..50 {
        state.refresh();
        if state
            .frame
            .with_untracked(|f| f.status.as_str() == "paused")
        {
            break;
        }
        TimeoutFuture::new(20).await;
    }
    settle().await;
    let issued: u64 = text(&root, "issued-total").parse().unwrap();
    assert!(
        issued >= 100,
        "4 workers at 1000 calls/s for 0.4 s issued only {issued}"
    );
    assert_eq!(text(&root, "recorded-total"), issued.to_string());
    assert_eq!(text(&root, "lost-total"), "0");
}
