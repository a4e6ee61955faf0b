//! The config editor changes the running tracker (issue 18): what the page shows after Apply,
//! in headless Chromium. Counts are kept, removed services lose their card and row, a window in
//! a time zone shows its local reset time (formatted by the browser's `Intl`).
#![cfg(target_arch = "wasm32")]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use quota_core::sim::Mode;
use quota_core::{Period, ServiceConfig, TrackerConfig, WindowSpec};
use quota_web::clock::SimClock;
use quota_web::components::{ConfigEditor, Counters, ServiceCards, TransitionTimeline};
use quota_web::persist::DashboardStorage;
use quota_web::state::AppState;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, EventInit, HtmlElement, HtmlInputElement};

wasm_bindgen_test_configure!(run_in_browser);

/// 2024-02-29T13:45:10Z: mid-minute, so no window ends during a test (the clock is paused).
/// In Los Angeles it is 05:45 on the 29th: the day ends at 2024-03-01T08:00Z.
const T0: u64 = 1_709_214_310_000;
/// The default config's indexes (tiingo 500 a month, finnhub 60 a minute, sendgrid 100 a day).
const TIINGO: usize = 0;
const FINNHUB: usize = 1;

/// Mounts the cards, the counters, the timeline and the editor with a new state for the
/// default config, saving under `key` (cleared first unless `keep`).
fn mount_on(key: &str, keep: bool) -> (AppState, Element) {
    if !keep {
        DashboardStorage::new(key).clear();
    }
    let document = web_sys::window().unwrap().document().unwrap();
    let root: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    let slot = Rc::new(Cell::new(None));
    let out = Rc::clone(&slot);
    let key = key.to_owned();
    leptos::mount::mount_to(root.clone(), move || {
        let state = AppState::with_clock(TrackerConfig::defaults(), SimClock::new(T0), &key)
            .unwrap()
            .provide();
        out.set(Some(state));
        view! {
            <ServiceCards/>
            <Counters/>
            <TransitionTimeline/>
            <ConfigEditor/>
        }
    })
    .forget();
    (slot.get().expect("mounted"), root.into())
}

fn mount(name: &str) -> (AppState, Element) {
    mount_on(&format!("quota-web-test.reconfigure.{name}"), false)
}

async fn settle() {
    leptos::task::tick().await;
    TimeoutFuture::new(0).await;
}

fn try_find(root: &Element, test_id: &str) -> Option<Element> {
    root.query_selector(&format!("[data-testid=\"{test_id}\"]"))
        .unwrap()
}

fn find(root: &Element, test_id: &str) -> Element {
    try_find(root, test_id).unwrap_or_else(|| panic!("no element with data-testid={test_id}"))
}

fn text(root: &Element, test_id: &str) -> String {
    find(root, test_id).text_content().unwrap_or_default()
}

fn click(root: &Element, test_id: &str) {
    find(root, test_id).unchecked_into::<HtmlElement>().click();
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

/// The service names of the cards, in page order.
fn cards(root: &Element) -> Vec<String> {
    let list = root.query_selector_all("[data-testid^=\"card-\"]").unwrap();
    (0..list.length())
        .map(|i| {
            let card: Element = list.item(i).unwrap().unchecked_into();
            card.get_attribute("data-testid").unwrap()["card-".len()..].to_owned()
        })
        .collect()
}

/// The timeline's entries, newest first, as their text.
fn timeline(root: &Element) -> Vec<String> {
    let list = root
        .query_selector_all("[data-testid=\"transition\"]")
        .unwrap();
    (0..list.length())
        .map(|i| list.item(i).unwrap().text_content().unwrap_or_default())
        .collect()
}

async fn apply(root: &Element) {
    click(root, "config-apply");
    settle().await;
}

#[wasm_bindgen_test]
async fn editing_a_limit_keeps_the_used_count_and_shows_the_new_limit() {
    let (state, root) = mount("limit");
    state.engine().record(1, FINNHUB, 30); // 30 of 60: warning
    state.engine().record(2, TIINGO, 9);
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "level-finnhub"), "warning");
    let entries = timeline(&root).len();

    type_into(&root, "config-limit-finnhub", "35");
    apply(&root).await;
    assert_eq!(text(&root, "config-error"), "");
    assert_eq!(
        text(&root, "config-applied"),
        "Applied to the running tracker, counts kept: changed finnhub."
    );
    assert_eq!(
        text(&root, "used-finnhub"),
        "30",
        "the count is kept, not reset to 0"
    );
    assert_eq!(text(&root, "limit-finnhub"), "35");
    assert_eq!(text(&root, "remaining-finnhub"), "5");
    assert_eq!(text(&root, "recorded-finnhub"), "30");
    assert_eq!(text(&root, "issued-finnhub"), "30");
    assert_eq!(
        text(&root, "used-tiingo"),
        "9",
        "other services are untouched"
    );
    // 30 of 35 is past critical (0.8): one transition, caused by the config.
    assert_eq!(text(&root, "level-finnhub"), "critical");
    let after = timeline(&root);
    assert_eq!(after.len(), entries + 1, "{after:?}");
    assert!(after[0].contains("finnhub"), "{after:?}");
    assert!(after[0].contains("warning → critical"), "{after:?}");
    assert!(after[0].contains("config change"), "{after:?}");

    // Admission goes on under the new limit: try_record refuses a Critical service's calls.
    state.engine().record(1, FINNHUB, 4);
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "30");
    assert_eq!(text(&root, "denied-finnhub"), "4");
    assert_eq!(text(&root, "issued-finnhub"), "34");
}

#[wasm_bindgen_test]
async fn removing_a_service_removes_its_card_and_row_and_an_added_one_starts_at_zero() {
    let (state, root) = mount("remove");
    state.engine().record(1, TIINGO, 7);
    state.engine().record(1, 2, 5); // sendgrid
    state.refresh();
    settle().await;
    assert_eq!(cards(&root), ["tiingo", "finnhub", "sendgrid"]);

    click(&root, "config-remove-sendgrid");
    click(&root, "config-add");
    settle().await;
    let added = root
        .query_selector("[data-testid^=\"config-name-new-\"]")
        .unwrap()
        .expect("an added row");
    let label = added.get_attribute("data-testid").unwrap()["config-name-".len()..].to_owned();
    type_into(&root, &format!("config-name-{label}"), "mail");
    type_into(&root, &format!("config-limit-{label}"), "40");
    apply(&root).await;
    assert_eq!(text(&root, "config-error"), "");
    assert_eq!(
        text(&root, "config-applied"),
        "Applied to the running tracker, counts kept: added mail; removed sendgrid."
    );
    assert_eq!(cards(&root), ["tiingo", "finnhub", "mail"]);
    assert!(try_find(&root, "card-sendgrid").is_none());
    assert!(
        try_find(&root, "recorded-sendgrid").is_none(),
        "its row is gone"
    );
    assert!(
        try_find(&root, "config-limit-sendgrid").is_none(),
        "and its editor row"
    );
    assert_eq!(text(&root, "used-tiingo"), "7");
    assert_eq!(text(&root, "issued-tiingo"), "7");
    assert_eq!(text(&root, "used-mail"), "0");
    assert_eq!(text(&root, "limit-mail"), "40");
    assert_eq!(text(&root, "issued-mail"), "0");
    // The totals are those of the services in force.
    assert_eq!(text(&root, "issued-total"), "7");

    state.engine().record(1, 2, 3); // index 2 is mail now
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "used-mail"), "3");
    assert_eq!(text(&root, "issued-mail"), "3");
}

#[wasm_bindgen_test]
async fn a_service_in_a_time_zone_shows_its_local_reset_time() {
    let (state, root) = mount("zone");
    let mut config = TrackerConfig::defaults();
    config.services[2].window = WindowSpec::new(Period::Day)
        .timezone("America/Los_Angeles")
        .unwrap();
    config.services.push({
        let mut billing = ServiceConfig::new("billing", 1_000, Period::Month);
        billing.window = WindowSpec::new(Period::Month)
            .anchor_day(15)
            .unwrap()
            .timezone("Europe/Paris")
            .unwrap();
        billing
    });
    state.apply_config(config).unwrap();
    click(&root, "config-discard"); // the editor shows the running config
    settle().await;
    assert_eq!(text(&root, "period-sendgrid"), "day in America/Los_Angeles");
    assert_eq!(
        text(&root, "local-reset-sendgrid"),
        "resets 00:00 America/Los_Angeles"
    );
    assert_eq!(
        text(&root, "reset-sendgrid"),
        "18 h 14 min",
        "08:00Z next day"
    );
    assert_eq!(
        text(&root, "period-billing"),
        "month from day 15 in Europe/Paris"
    );
    assert_eq!(
        text(&root, "local-reset-billing"),
        "resets Mar 15, 00:00 Europe/Paris"
    );
    // A UTC window has no local time to show.
    assert_eq!(text(&root, "period-finnhub"), "minute");
    assert_eq!(text(&root, "local-reset-finnhub"), "");

    // The editor shows the zone and keeps the anchor while the period stays; another zone is
    // another window, which starts fresh.
    let zone: HtmlInputElement = find(&root, "config-zone-billing").unchecked_into();
    assert_eq!(zone.value(), "Europe/Paris");
    state.engine().record(1, 2, 4); // sendgrid
    state.refresh();
    type_into(&root, "config-zone-sendgrid", "Asia/Tokyo");
    type_into(&root, "config-limit-billing", "2000");
    apply(&root).await;
    assert_eq!(text(&root, "config-error"), "");
    assert_eq!(
        text(&root, "local-reset-sendgrid"),
        "resets 00:00 Asia/Tokyo"
    );
    assert_eq!(
        text(&root, "used-sendgrid"),
        "0",
        "a new window starts fresh"
    );
    assert_eq!(
        text(&root, "recorded-sendgrid"),
        "4",
        "what it recorded stays counted"
    );
    assert_eq!(
        text(&root, "period-billing"),
        "month from day 15 in Europe/Paris"
    );
    assert_eq!(text(&root, "limit-billing"), "2000");

    // An unknown zone: the core's message, nothing changes.
    type_into(&root, "config-zone-sendgrid", "Mars/Olympus_Mons");
    apply(&root).await;
    let error = text(&root, "config-error");
    assert!(
        error.contains("service \"sendgrid\": unknown time zone \"Mars/Olympus_Mons\""),
        "{error:?}"
    );
    assert_eq!(
        text(&root, "local-reset-sendgrid"),
        "resets 00:00 Asia/Tokyo"
    );

    // Empty is UTC again.
    type_into(&root, "config-zone-sendgrid", "");
    apply(&root).await;
    assert_eq!(text(&root, "period-sendgrid"), "day");
    assert_eq!(text(&root, "local-reset-sendgrid"), "");
}

#[wasm_bindgen_test]
async fn racy_mode_has_no_reconfigure_and_starts_over_with_the_new_config() {
    let (state, root) = mount("racy");
    state.set_mode(Mode::Racy);
    state.engine().record(1, FINNHUB, 12);
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "12");

    type_into(&root, "config-limit-finnhub", "100");
    apply(&root).await;
    assert!(
        text(&root, "config-applied").starts_with("Applied: racy mode has no reconfigure"),
        "{:?}",
        text(&root, "config-applied")
    );
    assert_eq!(text(&root, "limit-finnhub"), "100");
    assert_eq!(text(&root, "used-finnhub"), "0");
    assert_eq!(text(&root, "issued-finnhub"), "0");
}

#[wasm_bindgen_test]
async fn a_reload_after_apply_runs_the_new_config_with_the_kept_counts() {
    let key = "quota-web-test.reconfigure.reload";
    let (first, root) = mount_on(key, false);
    first.engine().record(1, FINNHUB, 20);
    first.refresh();
    type_into(&root, "config-limit-finnhub", "25");
    click(&root, "config-remove-tiingo");
    apply(&root).await;
    assert_eq!(text(&root, "used-finnhub"), "20");

    let (second, root) = mount_on(key, true);
    settle().await;
    let names: Vec<String> = second
        .config()
        .get_untracked()
        .services
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["finnhub", "sendgrid"]);
    assert_eq!(text(&root, "limit-finnhub"), "25");
    assert_eq!(text(&root, "used-finnhub"), "20");
    assert_eq!(text(&root, "issued-finnhub"), "20");
    assert_eq!(text(&root, "level-finnhub"), "critical");
}
