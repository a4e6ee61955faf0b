//! The saved counters' JSON, in the browser (`JSON` and serde-wasm-bindgen, no serde_json).
#![cfg(target_arch = "wasm32")]

use quota_core::{Limit, Period, ServiceConfig, WindowSpec};
use quota_web::persist::{SavedCounters, SavedService};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn counters(config: Vec<ServiceConfig>) -> SavedCounters {
    SavedCounters {
        version: SavedCounters::VERSION,
        synced_at_ms: 1_765_000_000_123,
        clock_ms: 1_765_000_000_000,
        config,
        calls: 42,
        services: vec![SavedService {
            name: "llm".into(),
            issued: 40,
            denied: 3,
            recorded: 37,
        }],
    }
}

fn read_back(text: &str) -> Result<SavedCounters, String> {
    SavedCounters::from_json(js_sys::JSON::parse(text).map_err(|error| format!("{error:?}"))?)
}

#[wasm_bindgen_test]
fn a_config_of_several_limits_zones_and_anchors_reads_back_the_same() {
    let day = WindowSpec::new(Period::Day)
        .timezone("America/Los_Angeles")
        .unwrap();
    let month = WindowSpec::new(Period::Month).anchor_day(15).unwrap();
    let five_minutes = WindowSpec::new(Period::Minute).every(5).unwrap();
    let mut tight = Limit::new(9_007_199_254_740_991, month);
    tight.warn_threshold = Some(0.5);
    tight.enforce = Some(false);
    let mut service = ServiceConfig::builder("llm", 50, five_minutes)
        .and_limit(Limit::new(1_000, day))
        .and_limit(tight)
        .build()
        .unwrap();
    service.warn_threshold = 0.7;
    service.reserve_fraction = 0.125;
    let saved = counters(vec![service, ServiceConfig::new("mail", 1, Period::Second)]);

    let text = saved.to_json().expect("counters of safe numbers write");
    assert_eq!(read_back(&text), Ok(saved));
}

#[wasm_bindgen_test]
fn counters_the_previous_build_wrote_with_serde_json_still_read() {
    // serde_json writes an f64 that holds a whole number as `1.0`, and every field.
    let mut service = ServiceConfig::new("mail", 100, Period::Hour);
    service.reserve_fraction = 0.0;
    let saved = counters(vec![service]);
    let text = saved.to_json().unwrap();
    let as_serde_json = text.replace("\"reserve_fraction\":0,", "\"reserve_fraction\":0.0,");
    assert_ne!(
        as_serde_json, text,
        "the fixture differs from what this build writes"
    );
    assert_eq!(read_back(&as_serde_json), Ok(saved));
}

#[wasm_bindgen_test]
fn counters_past_2_to_the_53_are_refused_not_rounded() {
    let mut saved = counters(Vec::new());
    saved.calls = 1 << 53;
    let error = saved.to_json().unwrap_err();
    assert!(
        error.contains("can't be represented as a JavaScript number"),
        "{error}"
    );
    assert!(read_back("{\"version\": 2}")
        .unwrap_err()
        .contains("missing field"));
    assert!(SavedCounters::from_json(JsValue::NULL).is_err());
}
