//! Services of several limits on the dashboard (issue 18), in headless Chromium: a bar per
//! limit in the card with the binding one tagged, a zoned limit's local reset time, the config
//! editor keeping and editing further limits, and the instances' store totals counting each
//! call once.
#![cfg(target_arch = "wasm32")]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use quota_core::sim::Workload;
use quota_core::{
    Limit, ManualClock, Period, QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig, WindowSpec,
};
use quota_web::app::simulation_config;
use quota_web::clock::SimClock;
use quota_web::components::{ConfigEditor, ServiceCards, TransitionTimeline};
use quota_web::instances::{Instances, SnapshotStore};
use quota_web::persist::DashboardStorage;
use quota_web::settings::{CallMode, SyncMode};
use quota_web::state::AppState;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, EventInit, HtmlElement, HtmlInputElement, HtmlSelectElement};

wasm_bindgen_test_configure!(run_in_browser);

/// 2024-02-29T13:45:10Z: mid-hour, so no window but the second ends while a test reads (the
/// clock is paused). In Los Angeles it is 05:45 on the 29th: the day ends at
/// 2024-03-01T08:00Z.
const T0: u64 = 1_709_214_310_000;
const HOUR: u64 = 3_600_000;
/// The simulation's indexes (tiingo 50 an hour and 1,000 a day, finnhub 60 a minute and 30 a
/// second, sendgrid 100 a day).
const TIINGO: usize = 0;

/// Mounts the cards, the timeline and the editor with a new state for `config` on `clock`,
/// saving under a key of its own (`name`).
fn mount(name: &str, config: TrackerConfig, clock: SimClock) -> (AppState, Element) {
    let key = format!("quota-web-test.limits.{name}");
    DashboardStorage::new(&key).clear();
    let document = web_sys::window().unwrap().document().unwrap();
    let root: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    let slot = Rc::new(Cell::new(None));
    let out = Rc::clone(&slot);
    leptos::mount::mount_to(root.clone(), move || {
        let state = AppState::with_clock(config, clock, &key).unwrap().provide();
        out.set(Some(state));
        view! {
            <ServiceCards/>
            <TransitionTimeline/>
            <ConfigEditor/>
        }
    })
    .forget();
    (slot.get().expect("mounted"), root.into())
}

async fn settle() {
    leptos::task::tick().await;
    TimeoutFuture::new(0).await;
}

async fn show(state: &AppState) {
    state.refresh();
    settle().await;
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
    dispatch(&input, &["input", "change"]);
}

/// Picks `value` in the select `test_id`, as a user would (a `change` event).
fn choose(root: &Element, test_id: &str, value: &str) {
    let select: HtmlSelectElement = find(root, test_id).unchecked_into();
    select.set_value(value);
    assert_eq!(select.value(), value, "{test_id} has no option {value:?}");
    dispatch(&select, &["change"]);
}

fn dispatch(target: &web_sys::EventTarget, kinds: &[&str]) {
    let init = EventInit::new();
    init.set_bubbles(true);
    for kind in kinds {
        let event = web_sys::Event::new_with_event_init_dict(kind, &init).unwrap();
        target.dispatch_event(&event).unwrap();
    }
}

fn value(root: &Element, test_id: &str) -> String {
    let element = find(root, test_id);
    match element.dyn_ref::<HtmlInputElement>() {
        Some(input) => input.value(),
        None => element.unchecked_into::<HtmlSelectElement>().value(),
    }
}

/// The meters (bars) of service `name`'s card: (aria-label, aria-valuenow, aria-valuemax).
fn bars(root: &Element, name: &str) -> Vec<(String, String, String)> {
    let list = find(root, &format!("card-{name}"))
        .query_selector_all("[role=\"meter\"]")
        .unwrap();
    (0..list.length())
        .map(|i| {
            let bar: Element = list.item(i).unwrap().unchecked_into();
            let attr = |name| bar.get_attribute(name).unwrap_or_default();
            (
                attr("aria-label"),
                attr("aria-valuenow"),
                attr("aria-valuemax"),
            )
        })
        .collect()
}

fn owned(bars: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    bars.iter()
        .map(|&(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        .collect()
}

#[wasm_bindgen_test]
async fn a_service_of_two_limits_shows_a_bar_per_limit_and_tags_the_binding_one() {
    let clock = SimClock::new(T0);
    let (state, root) = mount("bars", simulation_config(), clock.clone());
    state.set_call_mode(CallMode::Count);
    state.engine().record(1, TIINGO, 12);
    show(&state).await;

    // The hour binds (38 left, against 988 in the day): the card's numbers are its.
    assert_eq!(text(&root, "used-tiingo"), "12");
    assert_eq!(text(&root, "limit-tiingo"), "50");
    assert_eq!(text(&root, "remaining-tiingo"), "38");
    assert_eq!(
        bars(&root, "tiingo"),
        owned(&[
            ("tiingo quota used per hour, binding", "12", "50"),
            ("tiingo quota used per day", "12", "1000"),
        ])
    );
    assert_eq!(text(&root, "period-tiingo"), "hour");
    assert_eq!(text(&root, "window-used-tiingo"), "12");
    assert_eq!(text(&root, "window-limit-tiingo"), "50");
    assert_eq!(text(&root, "binding-tiingo"), "binding");
    assert_eq!(text(&root, "period-2-tiingo"), "day");
    assert_eq!(text(&root, "window-used-2-tiingo"), "12");
    assert_eq!(text(&root, "window-limit-2-tiingo"), "1000");
    assert_eq!(text(&root, "binding-2-tiingo"), "");
    assert_eq!(text(&root, "reset-tiingo"), "14 min 50 s");
    assert_eq!(text(&root, "reset-2-tiingo"), "10 h 14 min");
    // Each bar has its own level's colour: the hour is normal at 12 of 50.
    assert!(find(&root, "window-tiingo")
        .class_name()
        .contains("limit-normal binding"));

    // A service of one limit looks as before: one bar, no tag, its window in the period line.
    assert_eq!(
        bars(&root, "sendgrid"),
        owned(&[("sendgrid quota used", "0", "100")])
    );
    assert!(try_find(&root, "binding-sendgrid").is_none());
    assert_eq!(text(&root, "period-sendgrid"), "day");

    // 948 more in this hour (counted past the hour's limit), then the next hour: the hour
    // starts at 0 (50 left) and the day, 960 of 1,000 (40 left), binds.
    state.engine().record(1, TIINGO, 948);
    show(&state).await;
    assert_eq!(text(&root, "level-tiingo"), "exhausted");
    clock.set(T0 + HOUR);
    show(&state).await;
    assert_eq!(text(&root, "used-tiingo"), "960");
    assert_eq!(text(&root, "limit-tiingo"), "1000");
    assert_eq!(text(&root, "level-tiingo"), "critical", "the day's level");
    assert_eq!(text(&root, "binding-tiingo"), "");
    assert_eq!(text(&root, "binding-2-tiingo"), "binding");
    assert_eq!(
        bars(&root, "tiingo"),
        owned(&[
            ("tiingo quota used per hour", "0", "50"),
            ("tiingo quota used per day, binding", "960", "1000"),
        ])
    );
    assert!(find(&root, "window-2-tiingo")
        .class_name()
        .contains("limit-critical binding"));
    // The timeline names the limit whose level changed.
    let timeline = find(&root, "timeline").text_content().unwrap();
    assert!(timeline.contains("at 960 / 1000 per day"), "{timeline}");
    assert!(timeline.contains("at 0 / 50 per hour"), "{timeline}");
}

#[wasm_bindgen_test]
async fn a_limit_in_a_time_zone_shows_its_local_reset_time() {
    let tiingo = ServiceConfig::builder("tiingo", 50, Period::Hour)
        .and_limit(Limit::new(
            1_000,
            WindowSpec::from_parts(Period::Day, 1, Some("America/Los_Angeles"), None).unwrap(),
        ))
        .build()
        .unwrap();
    let (state, root) = mount("zone", TrackerConfig::new([tiingo]), SimClock::new(T0));
    show(&state).await;
    assert_eq!(text(&root, "period-tiingo"), "hour");
    assert_eq!(text(&root, "local-reset-tiingo"), "", "a UTC hour");
    assert_eq!(text(&root, "period-2-tiingo"), "day in America/Los_Angeles");
    assert_eq!(
        text(&root, "local-reset-2-tiingo"),
        "resets 00:00 America/Los_Angeles"
    );
    assert_eq!(text(&root, "reset-2-tiingo"), "18 h 14 min");
}

#[wasm_bindgen_test]
async fn the_editor_keeps_a_services_further_limits_and_edits_them() {
    let (state, root) = mount("editor", simulation_config(), SimClock::new(T0));
    state.engine().record(1, TIINGO, 12);
    show(&state).await;
    assert_eq!(value(&root, "config-limit-2-tiingo"), "1000");
    assert_eq!(value(&root, "config-period-2-tiingo"), "day");
    assert_eq!(value(&root, "config-zone-2-tiingo"), "");
    assert_eq!(value(&root, "config-limit-2-finnhub"), "30");
    assert_eq!(value(&root, "config-period-2-finnhub"), "second");
    assert!(try_find(&root, "config-limit-2-sendgrid").is_none());

    // Another edit of the service keeps its second limit, and its count.
    type_into(&root, "config-limit-tiingo", "60");
    click(&root, "config-apply");
    show(&state).await;
    assert_eq!(text(&root, "config-error"), "");
    assert_eq!(text(&root, "window-limit-tiingo"), "60");
    assert_eq!(text(&root, "window-limit-2-tiingo"), "1000");
    assert_eq!(text(&root, "window-used-2-tiingo"), "12");
    assert_eq!(
        state
            .config()
            .with_untracked(|c| c.services[TIINGO].more_limits.clone()),
        [Limit::new(1_000, Period::Day)]
    );

    // A limit edited in place, one added (in a time zone), one removed.
    type_into(&root, "config-limit-2-tiingo", "800");
    click(&root, "config-add-limit-sendgrid");
    settle().await;
    assert_eq!(value(&root, "config-limit-2-sendgrid"), "1000");
    assert_eq!(
        value(&root, "config-period-2-sendgrid"),
        "hour",
        "a period it has no limit in"
    );
    type_into(&root, "config-limit-2-sendgrid", "20");
    type_into(&root, "config-zone-2-sendgrid", "America/Los_Angeles");
    click(&root, "config-remove-2-finnhub");
    settle().await;
    assert!(try_find(&root, "config-limit-2-finnhub").is_none());
    click(&root, "config-apply");
    show(&state).await;
    assert_eq!(text(&root, "config-error"), "");
    assert_eq!(
        text(&root, "config-applied"),
        "Applied to the running tracker, counts kept: changed tiingo, finnhub, sendgrid."
    );
    assert_eq!(text(&root, "window-limit-2-tiingo"), "800");
    assert_eq!(
        text(&root, "window-used-2-tiingo"),
        "12",
        "the day's count is kept"
    );
    assert_eq!(bars(&root, "finnhub").len(), 1);
    assert!(try_find(&root, "binding-finnhub").is_none());
    assert_eq!(text(&root, "period-finnhub"), "minute");
    assert_eq!(bars(&root, "sendgrid").len(), 2);
    assert_eq!(text(&root, "window-limit-2-sendgrid"), "20");
    assert_eq!(
        text(&root, "period-2-sendgrid"),
        "hour in America/Los_Angeles"
    );
    assert_eq!(
        text(&root, "binding-2-sendgrid"),
        "binding",
        "20 an hour binds"
    );

    // Two limits of one window: the core's message, and nothing changes.
    click(&root, "config-add-limit-finnhub");
    settle().await;
    choose(&root, "config-period-2-finnhub", "minute");
    click(&root, "config-apply");
    show(&state).await;
    let error = text(&root, "config-error");
    assert!(error.contains("finnhub"), "{error}");
    assert!(error.contains("needs its own window"), "{error}");
    assert_eq!(bars(&root, "finnhub").len(), 1);
    // A count that is not a number names the limit.
    choose(&root, "config-period-2-finnhub", "hour");
    type_into(&root, "config-limit-2-finnhub", "lots");
    click(&root, "config-apply");
    show(&state).await;
    assert_eq!(
        text(&root, "config-error"),
        "service \"finnhub\": limit 2 must be a whole number (got \"lots\")"
    );
    // Nor one past what the page can save as JSON (2^53 - 1).
    type_into(&root, "config-limit-2-finnhub", "9007199254740992");
    click(&root, "config-apply");
    show(&state).await;
    assert_eq!(
        text(&root, "config-error"),
        "service \"finnhub\": limit 2 must be at most 9007199254740991 (got \"9007199254740992\")"
    );
    assert_eq!(bars(&root, "finnhub").len(), 1, "nothing applied");
}

#[wasm_bindgen_test]
async fn the_instances_store_totals_count_each_call_once_with_several_limits() {
    // The workers are tasks: they need the executor that mounting a page starts.
    mount("instances", simulation_config(), SimClock::new(T0));
    let config = simulation_config();
    let instances = Instances::new(config.clone(), SyncMode::Delta).unwrap();
    instances.start(&Workload::even(&config));
    TimeoutFuture::new(300).await;
    instances.pause();
    let frame = instances.frame();
    for service in &frame.services {
        assert!(service.issued > 0, "{} got calls", service.name);
        assert_eq!(service.stored, service.issued, "{}", service.name);
    }
}

#[wasm_bindgen_test]
fn the_snapshot_store_totals_one_window_of_a_service_of_several_limits() {
    let api = ServiceConfig::builder("api", 1_000, Period::Day)
        .and_limit(Limit::new(100, Period::Hour))
        .build()
        .unwrap();
    let store = Arc::new(SnapshotStore::new());
    let tracker = QuotaTracker::builder(TrackerConfig::new([api]))
        .clock(ManualClock::new(T0))
        .store(Arc::clone(&store))
        .sync_policy(SyncPolicy {
            interval_ms: 0,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap();
    tracker.record_call("api", 5).unwrap();
    assert_eq!(store.total("api", &Period::Day.into()), 5);
    assert_eq!(store.total("api", &Period::Hour.into()), 5);
}
