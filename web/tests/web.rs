//! The dashboard's components in headless Chromium: mounted on a real page, driven through the
//! engine or the DOM, checked by what the page shows.
#![cfg(target_arch = "wasm32")]

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use quota_core::sim::Mode;
use quota_core::{
    Clock, ManualClock, Period, QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig, WindowSpec,
};
use quota_web::clock::SimClock;
use quota_web::components::{
    ConfigEditor, Controls, Counters, InstancesPanel, ServiceCards, StorePanel, TransitionTimeline,
    UsageChart,
};
use quota_web::engine::SYNC_INTERVAL_MS;
use quota_web::instances::SnapshotStore;
use quota_web::model::Status;
use quota_web::persist::DashboardStorage;
use quota_web::settings::CallMode;
use quota_web::state::AppState;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, EventInit, HtmlElement, HtmlInputElement, HtmlSelectElement};

wasm_bindgen_test_configure!(run_in_browser);

/// 2024-02-29T13:45:10Z: mid-minute, so no window ends during a test (the clock is paused).
const T0: u64 = 1_709_214_310_000;
/// tiingo's and finnhub's indexes in the default config (tiingo, finnhub, sendgrid).
const TIINGO: usize = 0;
const FINNHUB: usize = 1;

/// A `localStorage` key no other test uses, with nothing saved under it.
fn fresh_key(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let key = format!(
        "quota-web-test.{name}.{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    DashboardStorage::new(&key).clear();
    key
}

/// Mounts `view` on a fresh element with a new state for the default config, saving under a
/// key of its own.
fn mount<V: IntoView + 'static>(view: impl FnOnce() -> V + 'static) -> (AppState, Element) {
    mount_on(&fresh_key("mount"), SimClock::new(T0), view)
}

/// Mounts `view` with a new state on `clock`, saving under (and restoring from) `key`.
fn mount_on<V: IntoView + 'static>(
    key: &str,
    clock: SimClock,
    view: impl FnOnce() -> V + 'static,
) -> (AppState, Element) {
    let document = web_sys::window().unwrap().document().unwrap();
    let root: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    let slot = Rc::new(Cell::new(None));
    let out = Rc::clone(&slot);
    let key = key.to_owned();
    leptos::mount::mount_to(root.clone(), move || {
        let state = AppState::with_clock(TrackerConfig::defaults(), clock, &key)
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

fn click(root: &Element, test_id: &str) {
    find(root, test_id).unchecked_into::<HtmlElement>().click();
}

fn checkbox(root: &Element, test_id: &str) -> HtmlInputElement {
    find(root, test_id).unchecked_into()
}

fn local_storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

fn number(root: &Element, test_id: &str) -> u64 {
    let shown = text(root, test_id);
    shown
        .parse()
        .unwrap_or_else(|_| panic!("{test_id} shows {shown:?}, not a number"))
}

/// Picks `value` in the select `test_id`, as a user would (a `change` event).
fn choose(root: &Element, test_id: &str, value: &str) {
    let select: HtmlSelectElement = find(root, test_id).unchecked_into();
    select.set_value(value);
    assert_eq!(select.value(), value, "{test_id} has no option {value:?}");
    let init = EventInit::new();
    init.set_bubbles(true);
    let event = web_sys::Event::new_with_event_init_dict("change", &init).unwrap();
    select.dispatch_event(&event).unwrap();
}

fn selected(root: &Element, test_id: &str) -> String {
    find(root, test_id)
        .unchecked_into::<HtmlSelectElement>()
        .value()
}

/// Refreshes until `done` holds for the state (at most about 2 s).
async fn wait_for(state: &AppState, what: &str, done: impl Fn(&AppState) -> bool) {
    for _ in 0..100 {
        state.refresh();
        if done(state) {
            settle().await;
            return;
        }
        TimeoutFuture::new(20).await;
    }
    panic!("timed out waiting for {what}");
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

/// The timeline's (service, from, to) entries, newest first, as the state has them.
fn timeline_entries(state: &AppState) -> Vec<(String, String, String)> {
    state.timeline().with_untracked(|timeline| {
        timeline
            .entries()
            .map(|entry| {
                let t = &entry.transition;
                (t.service.to_string(), t.from.to_string(), t.to.to_string())
            })
            .collect()
    })
}

#[wasm_bindgen_test]
async fn the_timeline_list_follows_the_timeline_as_entries_come_are_dropped_and_are_cleared() {
    let (state, root) = mount(|| view! { <TransitionTimeline/> });
    let clock = state.engine().clock().clone();
    // finnhub (60 a minute) critical, then a new minute: two level changes per cycle, and
    // several cycles between two renderings of the list.
    for cycle in 1..=60 {
        state.engine().record(1, FINNHUB, 48);
        state.refresh();
        clock.advance(60_000);
        state.refresh();
        if cycle % 7 == 0 || cycle > 45 {
            settle().await;
            assert_eq!(
                transitions(&root),
                timeline_entries(&state),
                "cycle {cycle}"
            );
        }
    }
    let dropped = state.timeline().with_untracked(|t| t.dropped());
    assert!(dropped > 0, "the test never filled the timeline");
    assert_eq!(transitions(&root).len(), 100);

    state.reset();
    settle().await;
    assert_eq!(transitions(&root), []);
    state.engine().record(2, FINNHUB, 48);
    state.refresh();
    settle().await;
    assert_eq!(
        transitions(&root),
        [("finnhub".into(), "normal".into(), "critical".into())]
    );
}

#[wasm_bindgen_test]
async fn service_names_are_shown_as_text_never_as_markup() {
    let (state, root) = mount(|| {
        view! {
            <ServiceCards/>
            <Counters/>
            <UsageChart/>
            <TransitionTimeline/>
            <InstancesPanel/>
        }
    });
    let name = r#"<img src="x" onerror="window.injected = 1">&amp;'"#;
    state
        .apply_config(TrackerConfig::new([
            ServiceConfig::new(name, 10, Period::Minute),
            ServiceConfig::new("plain", 10, Period::Minute),
        ]))
        .unwrap();
    state.engine().record(1, 0, 8); // Critical (normal admission stops there): a timeline entry
    state.refresh();
    settle().await;
    assert!(
        root.query_selector("img").unwrap().is_none(),
        "a service name became markup: {}",
        root.inner_html()
    );
    // Found by comparing test ids (a selector would need the name escaped for CSS).
    let by_id = |id: String| {
        let all = root.query_selector_all("[data-testid]").unwrap();
        (0..all.length())
            .map(|i| all.item(i).unwrap().unchecked_into::<Element>())
            .find(|element| element.get_attribute("data-testid").as_ref() == Some(&id))
            .unwrap_or_else(|| panic!("no element with data-testid={id}"))
    };
    let shown = |id: String| by_id(id).text_content().unwrap_or_default();
    assert_eq!(shown(format!("used-{name}")), "8");
    let heading = by_id(format!("card-{name}"))
        .query_selector("h3")
        .unwrap()
        .unwrap();
    assert_eq!(heading.text_content().unwrap(), name);
    assert_eq!(shown(format!("issued-{name}")), "8");
    assert_eq!(shown(format!("instances-issued-{name}")), "0");
    assert_eq!(transitions(&root)[0].0, name);
    let row = by_id(format!("lost-{name}")).parent_element().unwrap();
    assert_eq!(
        row.first_element_child().unwrap().text_content().unwrap(),
        name
    );
    let legend = root.query_selector(".legend").unwrap().unwrap();
    assert!(legend.text_content().unwrap().contains(name));
    assert!(text(&root, "instances-view-1").contains(name));
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
    assert_eq!(state.config().get_untracked(), TrackerConfig::defaults());

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
        "9",
        "the running tracker takes the new config: its counts stay"
    );
    assert_eq!(text(&root, "used-tiingo"), "9");
}

#[wasm_bindgen_test]
async fn locked_workers_lose_nothing_whether_they_ask_first_or_only_count() {
    let (state, root) = mount(|| view! { <Counters/> });
    state.update_workload(|w| {
        w.workers = 4;
        w.calls_per_second = 1_000;
    });
    for call_mode in [CallMode::Try, CallMode::Count] {
        state.set_call_mode(call_mode);
        state.reset();
        state.start();
        TimeoutFuture::new(400).await;
        state.pause();
        // Workers finish the call they started, then exit.
        wait_for(&state, "paused", |s| {
            s.frame().with_untracked(|f| f.status == Status::Paused)
        })
        .await;
        let issued = number(&root, "issued-total");
        let denied = number(&root, "denied-total");
        let recorded = number(&root, "recorded-total");
        assert!(
            issued >= 100,
            "{call_mode:?}: 4 workers at 1000 calls/s for 0.4 s issued only {issued}"
        );
        assert_eq!(recorded + denied, issued, "{call_mode:?}");
        assert_eq!(text(&root, "lost-total"), "0", "{call_mode:?}");
        match call_mode {
            // 1,600 calls on limits of 500, 60 and 100: try_record refuses many.
            CallMode::Try => assert!(denied > 0, "try_record refused nothing"),
            CallMode::Count => assert_eq!(denied, 0, "record_call refuses nothing"),
        }
    }
}

#[wasm_bindgen_test]
async fn calls_try_record_refuses_are_counted_as_denied_and_count_only_records_them() {
    let (state, root) = mount(|| {
        view! {
            <Controls/>
            <ServiceCards/>
            <Counters/>
        }
    });
    settle().await;
    assert_eq!(
        selected(&root, "admission"),
        "try",
        "a careful client by default"
    );
    let record = |worker, service, count| {
        state.engine().record(worker, service, count);
        state.refresh();
    };
    record(1, FINNHUB, 47); // admitted: warning
    record(1, FINNHUB, 1); // 48 of 60: admitted, and now critical
    record(2, FINNHUB, 5); // refused: try_record stops at critical
    record(3, FINNHUB, 1); // refused
    record(2, TIINGO, 501); // refused: more than tiingo's limit of 500
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "48");
    assert_eq!(text(&root, "level-finnhub"), "critical");
    assert_eq!(text(&root, "issued-finnhub"), "54");
    assert_eq!(text(&root, "denied-finnhub"), "6");
    assert_eq!(text(&root, "recorded-finnhub"), "48");
    assert_eq!(text(&root, "lost-finnhub"), "0");
    assert_eq!(text(&root, "used-tiingo"), "0");
    assert_eq!(text(&root, "denied-tiingo"), "501");
    assert_eq!(text(&root, "denied-sendgrid"), "0");
    assert_eq!(text(&root, "denied-total"), "507");
    assert_eq!(text(&root, "lost-total"), "0");

    // "count only": record_call counts every call, past the limit too; denied stays.
    choose(&root, "admission", "count");
    settle().await;
    assert_eq!(state.settings().get_untracked().call_mode, CallMode::Count);
    record(1, FINNHUB, 20);
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "68");
    assert_eq!(text(&root, "level-finnhub"), "exhausted");
    assert_eq!(text(&root, "denied-finnhub"), "6");
    assert_eq!(text(&root, "issued-finnhub"), "74");
    assert_eq!(text(&root, "lost-finnhub"), "0");

    // Racy mode always counts: the select is disabled there.
    let admission = || find(&root, "admission").unchecked_into::<HtmlSelectElement>();
    assert!(!admission().disabled());
    state.set_mode(Mode::Racy);
    settle().await;
    assert!(admission().disabled());
}

#[wasm_bindgen_test]
async fn a_new_app_on_the_same_key_continues_where_it_was_and_reset_clears_it() {
    let key = fresh_key("reload");
    let (first, root) = mount_on(&key, SimClock::new(T0), || {
        view! {
            <ServiceCards/>
            <Counters/>
            <StorePanel/>
        }
    });
    // A config of its own, which the next page must run again: tiingo at 1,000.
    let mut config = TrackerConfig::defaults();
    config.services[TIINGO].limit = 1_000;
    first.apply_config(config.clone()).unwrap();
    first.engine().record(1, FINNHUB, 12);
    first.engine().record(2, TIINGO, 9);
    first.engine().record(2, FINNHUB, 3);
    first.engine().record(3, FINNHUB, 100); // denied: more than finnhub's 60
    first.pause(); // syncs
    let synced_at = first.engine().clock().now_ms();
    settle().await;
    assert_eq!(text(&root, "stats-saves"), "1");
    assert_eq!(text(&root, "used-finnhub"), "15");
    assert_eq!(text(&root, "denied-finnhub"), "100");
    assert!(local_storage()
        .get_item(&format!("{key}.tracker"))
        .unwrap()
        .is_some());

    // A later page (its clock ten minutes on): the config, the simulated time, the used
    // counts and the counters all continue from the sync. finnhub is per minute, so without
    // the restored clock its count would be gone.
    let (second, root) = mount_on(&key, SimClock::new(synced_at + 600_000), || {
        view! {
            <ServiceCards/>
            <Counters/>
        }
    });
    settle().await;
    assert_eq!(
        second.config().get_untracked(),
        config,
        "the config is restored"
    );
    assert_eq!(text(&root, "limit-tiingo"), "1000");
    assert_eq!(
        second.engine().clock().now_ms(),
        synced_at,
        "the simulated time is restored"
    );
    assert_eq!(text(&root, "used-finnhub"), "15");
    assert_eq!(text(&root, "used-tiingo"), "9");
    assert_eq!(text(&root, "used-sendgrid"), "0");
    for (name, issued, denied, recorded) in [("finnhub", 115, 100, 15), ("tiingo", 9, 0, 9)] {
        assert_eq!(number(&root, &format!("issued-{name}")), issued, "{name}");
        assert_eq!(number(&root, &format!("denied-{name}")), denied, "{name}");
        assert_eq!(
            number(&root, &format!("recorded-{name}")),
            recorded,
            "{name}"
        );
        assert_eq!(text(&root, &format!("lost-{name}")), "0");
    }
    assert_eq!(
        second.frame().get_untracked().status,
        Status::Paused,
        "a restored run is paused, not ready"
    );

    // It counts on from there.
    second.engine().record(1, FINNHUB, 2);
    second.refresh();
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "17");
    assert_eq!(text(&root, "issued-finnhub"), "117");
    assert_eq!(text(&root, "recorded-finnhub"), "17");

    // Reset clears what was saved: a third page starts from zero.
    second.reset();
    settle().await;
    assert_eq!(text(&root, "used-finnhub"), "0");
    assert_eq!(text(&root, "issued-total"), "0");
    assert_eq!(text(&root, "denied-total"), "0");
    for suffix in ["tracker", "counters"] {
        assert_eq!(
            local_storage()
                .get_item(&format!("{key}.{suffix}"))
                .unwrap(),
            None,
            "{suffix} cleared"
        );
    }
    let (third, root) = mount_on(&key, SimClock::new(T0), || view! { <Counters/> });
    settle().await;
    assert_eq!(text(&root, "issued-total"), "0");
    assert_eq!(third.frame().get_untracked().status, Status::Ready);
}

#[wasm_bindgen_test]
async fn counters_of_another_sync_are_not_restored() {
    let key = fresh_key("mismatch");
    let (first, _) = mount_on(&key, SimClock::new(T0), || view! { <Counters/> });
    first.engine().record(1, FINNHUB, 4);
    first.pause(); // syncs, and writes the counters of that sync
                   // Something else syncs to the store afterwards (another tab, say): the counters no
                   // longer describe what the store holds.
    let other = QuotaTracker::builder(TrackerConfig::defaults())
        .clock(ManualClock::new(T0 + 1_000))
        .store(quota_core::LocalStorageStore::new(format!("{key}.tracker")))
        .build()
        .unwrap();
    other.record_call("finnhub", 1).unwrap();
    other.flush().unwrap();

    let (second, root) = mount_on(&key, SimClock::new(T0), || {
        view! {
            <ServiceCards/>
            <Counters/>
        }
    });
    settle().await;
    assert_eq!(
        text(&root, "issued-total"),
        "0",
        "counters from another sync are dropped"
    );
    // The store's counts are what they are: both trackers' calls.
    assert_eq!(text(&root, "used-finnhub"), "5");
    assert_eq!(
        second.engine().clock().now_ms(),
        T0 + 1_000,
        "the store's last sync"
    );
}

#[wasm_bindgen_test]
async fn the_outage_switch_drives_reduced_rate_on_after_3_failed_syncs_and_off_after_5_good_ones() {
    let (state, root) = mount(|| view! { <StorePanel/> });
    // One sync: the simulated clock moves on by the interval, and the next call saves.
    let sync = || {
        state.engine().clock().advance(SYNC_INTERVAL_MS);
        state.engine().record(1, TIINGO, 1);
        state.refresh();
    };
    let events = |root: &Element| {
        let list = find(root, "store-events")
            .query_selector_all("[data-testid=\"store-event\"]")
            .unwrap();
        (0..list.length())
            .map(|i| {
                let entry: Element = list.item(i).unwrap().unchecked_into();
                let kind = entry.get_attribute("data-kind").unwrap_or_default();
                (kind, entry.text_content().unwrap_or_default())
            })
            .collect::<Vec<_>>()
    };
    settle().await;
    assert_eq!(text(&root, "reduced-rate"), "off");
    sync();
    settle().await;
    assert_eq!(text(&root, "stats-saves"), "1");

    click(&root, "store-outage");
    settle().await;
    assert!(checkbox(&root, "store-outage").checked());
    assert!(state.engine().outage());
    for failures in 1..=3 {
        assert_eq!(
            text(&root, "reduced-rate"),
            "off",
            "before failure {failures}"
        );
        sync();
        settle().await;
        assert_eq!(text(&root, "stats-save-failures"), failures.to_string());
        assert_eq!(
            text(&root, "stats-consecutive-failures"),
            failures.to_string()
        );
    }
    assert_eq!(text(&root, "reduced-rate"), "on", "after 3 failed syncs");
    assert!(text(&root, "stats-last-error").contains("simulated store outage"));
    let log = events(&root);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, "entered");
    assert!(
        log[0].1.contains("after 3 failed syncs in a row"),
        "{log:?}"
    );

    click(&root, "store-outage");
    settle().await;
    assert!(!checkbox(&root, "store-outage").checked());
    for successes in 1..=5 {
        assert_eq!(
            text(&root, "reduced-rate"),
            "on",
            "before good sync {successes}"
        );
        sync();
        settle().await;
        assert_eq!(
            text(&root, "stats-consecutive-successes"),
            successes.to_string()
        );
    }
    assert_eq!(text(&root, "reduced-rate"), "off", "after 5 good syncs");
    assert_eq!(text(&root, "stats-saves"), "6");
    assert_eq!(text(&root, "stats-save-failures"), "3");
    let log = events(&root);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].0, "left", "newest first");
    assert!(log[0].1.contains("after 5 good syncs in a row"), "{log:?}");

    // Racy mode has no store: the switch is disabled there.
    assert!(!checkbox(&root, "store-outage").disabled());
    state.set_mode(Mode::Racy);
    settle().await;
    assert!(checkbox(&root, "store-outage").disabled());
    assert!(root
        .text_content()
        .unwrap()
        .contains("the outage switch applies to locked mode only"));
}

#[wasm_bindgen_test]
async fn racy_mode_counts_direct_records_and_its_workers_lose_updates() {
    let (state, root) = mount(|| {
        view! {
            <Counters/>
            <TransitionTimeline/>
        }
    });
    state.set_mode(Mode::Racy);
    assert_eq!(state.settings().get_untracked().mode, Mode::Racy);
    // One record at a time overwrites nothing: all of it counts, and its level change shows.
    state.engine().record(2, FINNHUB, 30); // 30 of 60: the warn threshold
    state.refresh();
    settle().await;
    assert_eq!(text(&root, "recorded-finnhub"), "30");
    assert_eq!(text(&root, "lost-finnhub"), "0");
    assert_eq!(
        transitions(&root),
        [("finnhub".into(), "normal".into(), "warning".into())]
    );
    assert!(find(&root, "timeline")
        .text_content()
        .unwrap()
        .contains("worker 2"));

    // Workers that await between copy and write-back overwrite each other.
    state.update_workload(|w| {
        w.workers = 8;
        w.calls_per_second = 400;
    });
    assert_eq!(state.settings().get_untracked().workload.workers, 8);
    state.start();
    for _ in 0..100 {
        TimeoutFuture::new(20).await;
        state.refresh();
        if state
            .frame()
            .with_untracked(|f| f.services.iter().any(|s| s.lost() > 0))
        {
            break;
        }
    }
    state.pause();
    settle().await;
    let lost: u64 = text(&root, "lost-total").parse().unwrap();
    assert!(lost > 0, "racy workers lost nothing");
}

/// Runs the instances view's workers for `ms`, then pauses and waits until they stopped.
async fn run_instances(state: &AppState, root: &Element, ms: u32) {
    click(root, "instances-start");
    settle().await;
    assert_eq!(text(root, "instances-status"), "running");
    TimeoutFuture::new(ms).await;
    click(root, "instances-pause");
    wait_for(state, "instances paused", |s| {
        s.instances_frame()
            .with_untracked(|f| f.status == Status::Paused)
    })
    .await;
    assert_eq!(text(root, "instances-status"), "paused");
}

#[wasm_bindgen_test]
async fn instances_lose_nothing_with_delta_sync_and_lose_calls_with_snapshot_saves() {
    let (state, root) = mount(|| view! { <InstancesPanel/> });
    settle().await;
    assert!(find(&root, "instances")
        .text_content()
        .unwrap()
        .contains("Instance 3"));
    assert_eq!(selected(&root, "instances-mode"), "delta");
    assert_eq!(text(&root, "instances-status"), "ready");
    let names = ["tiingo", "finnhub", "sendgrid"];

    // Delta sync: the store holds every call all three instances made.
    run_instances(&state, &root, 400).await;
    let mut issued_total = 0;
    for name in names {
        let issued = number(&root, &format!("instances-issued-{name}"));
        let stored = number(&root, &format!("instances-stored-{name}"));
        assert!(issued > 0, "{name} got calls");
        assert_eq!(stored, issued, "{name}: the store has every call");
        assert_eq!(
            text(&root, &format!("instances-lost-{name}")),
            "0",
            "{name}"
        );
        issued_total += issued;
    }
    assert!(
        issued_total >= 60,
        "3 x 2 workers at 100 calls/s issued only {issued_total}"
    );
    assert_eq!(text(&root, "instances-lost-total"), "0");
    // Each instance sees the shared total.
    let finnhub = text(&root, "instances-stored-finnhub");
    for instance in 1..=3 {
        let view = text(&root, &format!("instances-view-{instance}"));
        assert!(view.contains(&format!("finnhub {finnhub}")), "{view}");
    }

    // Snapshot saves (the demonstration): a new run, whose instances overwrite each other.
    choose(&root, "instances-mode", "snapshot");
    settle().await;
    assert_eq!(text(&root, "instances-status"), "ready");
    assert_eq!(
        text(&root, "instances-issued-total"),
        "0",
        "a new mode starts over"
    );
    run_instances(&state, &root, 400).await;
    let mut lost_total = 0;
    for name in names {
        let issued = number(&root, &format!("instances-issued-{name}"));
        let stored = number(&root, &format!("instances-stored-{name}"));
        let lost = number(&root, &format!("instances-lost-{name}"));
        assert!(stored <= issued, "{name}");
        assert_eq!(lost, issued - stored, "{name}: lost = issued - stored");
        lost_total += lost;
    }
    assert!(lost_total > 0, "snapshot saves lost nothing");
    assert_eq!(number(&root, "instances-lost-total"), lost_total);

    // Reset empties the view, in the same mode.
    click(&root, "instances-reset");
    settle().await;
    assert_eq!(text(&root, "instances-issued-total"), "0");
    assert_eq!(text(&root, "instances-stored-total"), "0");
    assert_eq!(selected(&root, "instances-mode"), "snapshot");
}

#[wasm_bindgen_test]
fn the_snapshot_store_keeps_only_the_last_whole_view() {
    let config = TrackerConfig::new([ServiceConfig::new("api", 1_000, Period::Day)]);
    let store = Arc::new(SnapshotStore::new());
    let clock = ManualClock::new(T0);
    let tracker = || {
        QuotaTracker::builder(config.clone())
            .clock(clock.clone())
            .store(Arc::clone(&store))
            .sync_policy(SyncPolicy {
                interval_ms: 0,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap()
    };
    let day = WindowSpec::from(Period::Day);
    let (a, b) = (tracker(), tracker());
    a.record_call("api", 5).unwrap();
    assert_eq!(store.total("api", &day), 5);
    b.record_call("api", 3).unwrap(); // b's whole view (3) replaces a's
    assert_eq!(store.total("api", &day), 3);
    assert_eq!(a.usage("api").unwrap().used, 5, "a never sees b's calls");
    // A new instance loads what the store holds, and overwrites it in turn.
    let c = tracker();
    assert_eq!(c.usage("api").unwrap().used, 3);
    c.record_call("api", 1).unwrap();
    assert_eq!(store.total("api", &day), 4);
    a.record_call("api", 1).unwrap();
    assert_eq!(
        store.total("api", &day),
        6,
        "10 calls made, a's view of 6 stored"
    );
}

fn button(root: &Element, test_id: &str) -> web_sys::HtmlButtonElement {
    find(root, test_id).unchecked_into()
}

/// (label, primary, disabled) of the button `test_id`.
fn button_state(root: &Element, test_id: &str) -> (String, bool, bool) {
    let button = button(root, test_id);
    (
        button.text_content().unwrap_or_default().trim().to_owned(),
        button.class_list().contains("primary"),
        button.disabled(),
    )
}

#[wasm_bindgen_test]
async fn start_says_running_and_gives_way_to_pause_while_the_workers_run() {
    let (state, root) = mount(|| view! { <Controls/> });
    settle().await;
    assert_eq!(button_state(&root, "start"), ("Start".into(), true, false));
    assert_eq!(button_state(&root, "pause"), ("Pause".into(), false, true));

    click(&root, "start");
    settle().await;
    assert_eq!(text(&root, "status"), "running");
    assert_eq!(
        button_state(&root, "start"),
        ("Running".into(), false, true),
        "a running simulation's Start is neither primary nor clickable"
    );
    assert_eq!(button_state(&root, "pause"), ("Pause".into(), true, false));

    click(&root, "pause");
    wait_for(&state, "paused", |s| {
        s.frame().with_untracked(|f| f.status == Status::Paused)
    })
    .await;
    assert_eq!(button_state(&root, "start"), ("Resume".into(), true, false));
    assert_eq!(button_state(&root, "pause"), ("Pause".into(), false, true));
}

#[wasm_bindgen_test]
async fn a_new_page_runs_4_workers_at_8_calls_per_second() {
    let (state, root) = mount(|| view! { <Controls/> });
    settle().await;
    let workload = state.settings().get_untracked().workload;
    assert_eq!((workload.workers, workload.calls_per_second), (4, 8));
    let value = |id| find(&root, id).unchecked_into::<HtmlInputElement>().value();
    assert_eq!(value("workers"), "4");
    assert_eq!(value("rate"), "8");
}

#[wasm_bindgen_test]
async fn switching_how_instances_share_the_store_says_what_happened_and_keeps_them_running() {
    let (state, root) = mount(|| view! { <InstancesPanel/> });
    settle().await;
    assert_eq!(text(&root, "instances-notice"), "");
    assert_eq!(
        button_state(&root, "instances-start"),
        ("Start instances".into(), true, false)
    );
    assert_eq!(text(&root, "instances-past-limit"), "");

    click(&root, "instances-start");
    settle().await;
    assert_eq!(
        button_state(&root, "instances-start"),
        ("Instances running".into(), false, true)
    );
    assert_eq!(
        button_state(&root, "instances-pause"),
        ("Pause".into(), true, false)
    );
    // 600 calls a second, a third of them finnhub's: past its 60 within half a second.
    wait_for(&state, "finnhub's stored total past its limit", |s| {
        s.instances_frame()
            .with_untracked(|f| f.service("finnhub").is_some_and(|f| f.stored > 60))
    })
    .await;
    let why = text(&root, "instances-past-limit");
    assert!(why.contains("finnhub"), "{why}");
    assert!(why.contains("of 60"), "{why}");
    assert!(why.contains("record_call"), "{why}");

    // Switching while they run: a new store, counts from zero, and they run on.
    choose(&root, "instances-mode", "snapshot");
    settle().await;
    assert_eq!(
        text(&root, "instances-notice"),
        "Switched to snapshot saves: a new, empty store, so every count starts from zero; the \
         instances kept running."
    );
    assert_eq!(text(&root, "instances-status"), "running");
    wait_for(&state, "calls in the new mode", |s| {
        s.instances_frame()
            .with_untracked(|f| f.services.iter().any(|s| s.issued > 0))
    })
    .await;
    assert!(number(&root, "instances-issued-total") > 0);

    // Switching while paused says how to go on.
    click(&root, "instances-pause");
    wait_for(&state, "instances paused", |s| {
        s.instances_frame()
            .with_untracked(|f| f.status == Status::Paused)
    })
    .await;
    assert_eq!(
        button_state(&root, "instances-start"),
        ("Resume instances".into(), true, false)
    );
    choose(&root, "instances-mode", "delta");
    settle().await;
    assert_eq!(
        text(&root, "instances-notice"),
        "Switched to delta sync: a new, empty store, so every count starts from zero. Start \
         instances to run them."
    );
    assert_eq!(text(&root, "instances-status"), "ready");
    assert_eq!(text(&root, "instances-issued-total"), "0");
    click(&root, "instances-reset");
    settle().await;
    assert_eq!(
        text(&root, "instances-notice"),
        "",
        "reset clears the notice"
    );
}

#[wasm_bindgen_test]
async fn a_frame_updates_the_numbers_in_place_and_makes_no_new_elements() {
    let (state, root) = mount(|| {
        view! {
            <Counters/>
            <UsageChart/>
            <StorePanel/>
            <InstancesPanel/>
        }
    });
    let sample = |state: &AppState| {
        state.refresh();
        state.sample_history();
    };
    state.engine().record(1, FINNHUB, 3);
    sample(&state);
    sample(&state);
    settle().await;
    let cell = find(&root, "issued-finnhub");
    let total = find(&root, "issued-total");
    let saves = find(&root, "stats-saves");
    let series = root
        .query_selector("polyline[data-service=\"finnhub\"]")
        .unwrap()
        .expect("a finnhub series");
    let points = series.get_attribute("points").unwrap();
    let elements = root.get_elements_by_tag_name("*").length();

    for count in 1..=5 {
        state.engine().record(1, FINNHUB, count);
        state.engine().flush();
        sample(&state);
        settle().await;
    }
    assert_eq!(text(&root, "issued-finnhub"), "18");
    assert!(
        find(&root, "issued-finnhub").is_same_node(Some(&cell)),
        "the cell was made again"
    );
    assert!(find(&root, "issued-total").is_same_node(Some(&total)));
    assert!(find(&root, "stats-saves").is_same_node(Some(&saves)));
    assert_eq!(text(&root, "stats-saves"), "5");
    assert!(series.is_connected(), "the series was made again");
    assert_ne!(series.get_attribute("points").unwrap(), points);
    assert_eq!(
        root.get_elements_by_tag_name("*").length(),
        elements,
        "a frame added or removed elements"
    );
}

#[wasm_bindgen_test]
async fn at_the_fastest_speed_the_page_writes_local_storage_a_few_times_a_second_not_on_every_sync()
{
    let key = fresh_key("writes");
    let (state, _root) = mount_on(&key, SimClock::new(T0), || view! { <Counters/> });
    // Counts the writes to this test's keys.
    js_sys::eval(&format!(
        "window.writes = 0; const setItem = Storage.prototype.setItem; \
         Storage.prototype.setItem = function (k, v) {{ \
           if (k.startsWith({key:?})) window.writes += 1; return setItem.call(this, k, v); }};"
    ))
    .unwrap();
    let writes = || {
        js_sys::Reflect::get(&web_sys::window().unwrap(), &"writes".into())
            .unwrap()
            .as_f64()
            .unwrap()
    };
    state.set_speed(86_400.0);
    state.update_workload(|w| {
        w.workers = 8;
        w.calls_per_second = 1_000;
    });
    state.start();
    let started = web_time::Instant::now();
    TimeoutFuture::new(1_500).await;
    let seconds = started.elapsed().as_secs_f64();
    let syncs = state.engine().frame().0.store.unwrap().saves;
    let during = writes();
    state.pause();
    wait_for(&state, "paused", |s| {
        s.frame().with_untracked(|f| f.status == Status::Paused)
    })
    .await;
    // Each write is two keys (the store, then the counters). At most one write every 0.5 s,
    // or every 0.1 s when a service has just entered Critical (here: every simulated minute).
    let bound = 2.0 * (seconds / 0.1 + 2.0);
    assert!(
        syncs as f64 > 4.0 * bound,
        "the test must sync far more often than it may write: {syncs} syncs"
    );
    assert!(during >= 2.0, "nothing was written in {seconds} s");
    assert!(
        during <= bound,
        "{during} writes in {seconds} s ({syncs} syncs), over {bound}"
    );
    assert_eq!(writes(), during + 2.0, "pause writes once, at once");
    // What was written is the paused state: a new page continues from it exactly.
    let issued = state.frame().with_untracked(|f| {
        f.services
            .iter()
            .map(|s| (s.issued, s.denied, s.recorded()))
            .collect::<Vec<_>>()
    });
    let (second, _) = mount_on(&key, SimClock::new(T0), || view! { <Counters/> });
    let restored = second.frame().with_untracked(|f| {
        f.services
            .iter()
            .map(|s| (s.issued, s.denied, s.recorded()))
            .collect::<Vec<_>>()
    });
    assert_eq!(restored, issued);
}

/// The size of this module's `.wasm` memory, in bytes (it grows, never shrinks).
fn wasm_memory() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

#[wasm_bindgen_test]
async fn thousands_of_level_changes_leave_the_timeline_and_the_wasm_memory_as_they_were() {
    let (state, root) = mount(|| view! { <TransitionTimeline/> });
    let clock = state.engine().clock().clone();
    // finnhub critical, then a new minute: two level changes per cycle, shown every 5 cycles.
    let cycles = |n: u32| {
        let clock = clock.clone();
        async move {
            for cycle in 0..n {
                state.engine().record(1, FINNHUB, 48);
                clock.advance(60_000);
                if cycle % 5 == 0 {
                    state.refresh();
                    settle().await;
                }
            }
            state.refresh();
            settle().await;
        }
    };
    cycles(200).await; // the list full, the allocator warmed up
    let (before, elements) = (wasm_memory(), root.get_elements_by_tag_name("*").length());
    cycles(3_000).await;
    let grown = wasm_memory() - before;
    assert_eq!(transitions(&root), timeline_entries(&state));
    assert_eq!(transitions(&root).len(), 100);
    assert_eq!(root.get_elements_by_tag_name("*").length(), elements);
    // A list keyed by entry id (`<For>`) grew it by 576 KiB here.
    assert!(
        grown <= 128.0 * 1024.0,
        "6,000 level changes grew the wasm memory by {grown} bytes"
    );
}
