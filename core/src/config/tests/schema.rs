//! One config schema, three readers: serde on [`ServiceConfig`], the file reader's `*Repr`
//! types, and the JS module's reader of JS objects (`js/input.rs`, checked there against the
//! table below). The file reader's names are serde's derive, so they cannot be read from a
//! table; defaults and checks are shared in code (`ServiceConfig::new`, `SyncPolicy::default`,
//! `TrackerConfig::validate`, `Period`'s names). These tests fail when the names drift apart.

use crate::config::{QuotaFile, ServiceConfig};
use crate::window::Period;

/// A service's fields, in order: the name in Rust, serde and config files; the name in a JS
/// config (`None`: not read there).
pub(crate) const SERVICE_FIELDS: [(&str, Option<&str>); 12] = [
    ("name", Some("name")),
    ("limit", Some("limit")),
    ("period", Some("period")),
    ("warn_threshold", Some("warnThreshold")),
    ("critical_threshold", Some("criticalThreshold")),
    ("reserve_fraction", Some("reserveFraction")),
    // Exact and leased admission need a store shared by instances: the JS module has none.
    ("admission", None),
    ("enforce", Some("enforce")),
    ("every", Some("every")),
    ("timezone", Some("timezone")),
    ("anchor_day", Some("anchorDay")),
    // Every limit, the service's own first, instead of `limit` and `period` (`ServiceConfig`
    // keeps the others in `more_limits`, serialized only when there are some).
    ("limits", Some("limits")),
];

/// The names serde's "unknown field" error lists as expected, in order.
fn expected_fields(error: &str) -> Vec<String> {
    let (_, list) = error
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("no field list in {error:?}"));
    list.split(", ")
        .map(|name| name.trim_matches('`').to_owned())
        .collect()
}

fn rust_names() -> Vec<String> {
    SERVICE_FIELDS.map(|(rust, _)| rust.to_owned()).to_vec()
}

#[test]
fn serde_on_service_config_has_the_schemas_fields() {
    // Every field set (the window's optional ones are left out when not).
    let window =
        crate::window::WindowSpec::from_parts(Period::Month, 3, Some("Europe/Paris"), Some(15))
            .unwrap();
    let json = serde_json::to_value(ServiceConfig::new("svc", 1, window)).unwrap();
    // serde_json's map is sorted by key.
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    let mut expected = rust_names();
    expected.retain(|name| name != "limits");
    expected.sort();
    assert_eq!(keys, expected.iter().collect::<Vec<_>>());
}

#[test]
fn the_file_reader_accepts_the_schemas_fields() {
    let toml = "[[services]]\nname = \"svc\"\nlimit = 1\nperiod = \"day\"\nnot_a_field = 1\n";
    let error = QuotaFile::from_toml_str(toml).unwrap_err().to_string();
    assert_eq!(expected_fields(&error), rust_names(), "{error}");
    let json = r#"{"services": [{"name": "svc", "limit": 1, "period": "day", "not_a_field": 1}]}"#;
    let error = QuotaFile::from_json_str(json).unwrap_err().to_string();
    assert_eq!(expected_fields(&error), rust_names(), "{error}");
}

#[test]
fn every_reader_names_the_periods_alike() {
    // serde (files, `ServiceConfig`) and `FromStr` (the JS module) each have their list.
    for period in Period::ALL {
        let serde = serde_json::to_value(period).unwrap();
        assert_eq!(serde.as_str(), Some(period.as_str()));
        assert_eq!(period.as_str().parse::<Period>(), Ok(period));
        let file = format!("[[services]]\nname = \"s\"\nlimit = 1\nperiod = {serde}\n");
        let file = QuotaFile::from_toml_str(&file).unwrap();
        assert_eq!(file.tracker.services[0].window.period(), period);
    }
    assert!("Day".parse::<Period>().is_err());
    assert!(serde_json::from_str::<Period>("\"Day\"").is_err());
}
