//! Reading good files: both formats alike, defaults, every admission form, `load` by
//! extension, the example `quota.toml` and the documented examples; errors that read well.

use super::{full, toml_error, toml_service, FULL_JSON, FULL_TOML};
use crate::config::SyncPolicy;
use crate::config::{
    Admission, ConfigError, ConfigFormat, QuotaFile, ServiceConfig, StoreUrl, TrackerConfig,
};
use crate::window::Period;
use std::path::Path;

#[test]
fn a_full_file_reads_the_same_in_toml_and_json() {
    assert_eq!(QuotaFile::from_toml_str(FULL_TOML).unwrap(), full());
    assert_eq!(QuotaFile::from_json_str(FULL_JSON).unwrap(), full());
    full().validate().unwrap();
}

#[test]
fn only_services_are_required_and_the_rest_defaults() {
    let expected = QuotaFile::new(TrackerConfig::new([ServiceConfig::new(
        "svc",
        10,
        Period::Day,
    )]));
    assert_eq!(
        QuotaFile::from_toml_str(&toml_service("")).unwrap(),
        expected
    );
    let json = r#"{"services": [{"name": "svc", "limit": 10, "period": "day"}]}"#;
    assert_eq!(QuotaFile::from_json_str(json).unwrap(), expected);
    // JSON's null is no store; a byte-order mark is skipped.
    let json = "\u{feff}{\"store\": null, \"services\": [{\"name\": \"svc\", \"limit\": 10, \"period\": \"day\"}]}";
    assert_eq!(QuotaFile::from_json_str(json).unwrap(), expected);
    // A partial [sync] keeps the other defaults.
    let file = QuotaFile::from_toml_str(&format!(
        "[sync.reduced_rate]\nfraction = 0.5\n{}",
        toml_service("")
    ))
    .unwrap();
    assert_eq!(file.sync.reduced_rate.fraction, 0.5);
    assert_eq!(file.sync.interval_ms, SyncPolicy::default().interval_ms);
    assert_eq!(file.sync.reduced_rate.enter_after_failures, 3);
}

#[test]
fn every_admission_form() {
    let cases = [
        ("\"local\"", r#""local""#, Admission::Local),
        ("\"exact\"", r#""exact""#, Admission::Exact),
        (
            "{ leased = 100 }",
            r#"{"leased": 100}"#,
            Admission::Leased { block: 100 },
        ),
        // As `Admission` serializes itself.
        (
            "{ leased = { block = 7 } }",
            r#"{"leased": {"block": 7}}"#,
            Admission::Leased { block: 7 },
        ),
    ];
    for (toml, json, admission) in cases {
        let text = format!(
            "store = \"memory:\"\n{}",
            toml_service(&format!("admission = {toml}\n"))
        );
        let file = QuotaFile::from_toml_str(&text).unwrap();
        assert_eq!(file.tracker.services[0].admission, admission, "{toml}");
        let text = format!(
            r#"{{"store": "memory:", "services": [{{"name": "svc", "limit": 10, "period": "day", "admission": {json}}}]}}"#
        );
        let file = QuotaFile::from_json_str(&text).unwrap();
        assert_eq!(file.tracker.services[0].admission, admission, "{json}");
    }
}

#[test]
fn a_tracker_config_serialized_by_serde_reads_as_a_json_file() {
    let mut config = TrackerConfig::defaults();
    config.services[0].admission = Admission::Leased { block: 50 };
    let mut json: serde_json::Value = serde_json::to_value(&config).unwrap();
    json["store"] = "memory:".into();
    let file = QuotaFile::from_json_str(&json.to_string()).unwrap();
    assert_eq!(file.tracker, config);
}

#[test]
fn errors_read_well() {
    let error = toml_error(&toml_service("limt = 3\n"));
    assert_eq!(
        error.to_string(),
        "invalid TOML at line 5, column 1: unknown field `limt`, expected one of `name`, \
         `limit`, `period`, `warn_threshold`, `critical_threshold`, `reserve_fraction`, \
         `admission`, `enforce`, `every`, `timezone`, `anchor_day`, `limits`"
    );
    let error = toml_error("[[services]]\nname = \"finnhub\"\nlimit = 0\nperiod = \"minute\"\n");
    assert_eq!(
        error.to_string(),
        "invalid config at line 3, column 1: service \"finnhub\": limit must be at least 1 (got 0)"
    );
    let error = error.in_file(Path::new("quota.toml"));
    assert_eq!(
        error.to_string(),
        "invalid config in quota.toml at line 3, column 1: service \"finnhub\": limit must be at \
         least 1 (got 0)"
    );
    // Columns count characters.
    let error = toml_error("[[services]]\nname = \"ünïcödé\"\nlimit = 1\nperiod = \"day\" ; \n");
    assert!(error.to_string().contains("line 4, column 16"), "{error}");
}

#[test]
fn load_picks_the_format_by_extension_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    assert_eq!(QuotaFile::load(write("a.toml", FULL_TOML)).unwrap(), full());
    assert_eq!(QuotaFile::load(write("b.JSON", FULL_JSON)).unwrap(), full());
    let yaml = write("c.yaml", "services: []");
    assert_eq!(
        QuotaFile::load(&yaml),
        Err(ConfigError::UnknownFormat { path: yaml.clone() })
    );
    let missing = dir.path().join("missing.toml");
    let error = QuotaFile::load(&missing).unwrap_err();
    assert!(matches!(&error, ConfigError::Read { path, .. } if *path == missing));
    assert!(error.to_string().contains("missing.toml"), "{error}");

    // The format is the extension's, whatever the text.
    let swapped = write("d.toml", FULL_JSON);
    let error = QuotaFile::load(&swapped).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Parse { path: Some(path), format: ConfigFormat::Toml, .. } if *path == swapped),
        "{error:?}"
    );
    assert!(error.to_string().starts_with(&format!(
        "invalid TOML in {} at line 1, column ",
        swapped.display()
    )));
    let invalid = write(
        "e.json",
        r#"{"services": [{"name": "x", "limit": 0, "period": "day"}]}"#,
    );
    let error = QuotaFile::load(&invalid).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Invalid { path: Some(path), line: Some(1), .. } if *path == invalid),
        "{error:?}"
    );
}

#[test]
fn the_example_quota_toml_with_a_store_and_a_lease() {
    // As its comments say: a store line on top, and another admission.
    let text = include_str!("../../../../quota.toml");
    assert!(text.contains("admission = \"local\""));
    let text = format!(
        "store = \"redis://app:pw@redis.internal:6379/0\"\n{}",
        text.replacen(
            "\nadmission = \"local\"",
            "\nadmission = { leased = 50 }",
            1
        )
    );
    let file = QuotaFile::from_toml_str(&text).unwrap();
    assert_eq!(
        file.tracker.services[0].admission,
        Admission::Leased { block: 50 }
    );
    assert!(matches!(file.store, Some(StoreUrl::Redis(_))));
}

#[test]
fn the_documented_examples_parse() {
    // The TOML of the README's "Config files" section and of `QuotaFile`'s docs.
    let readme = include_str!("../../../../README.md");
    let section = &readme[readme.find("## Config files").unwrap()..];
    let docs = include_str!("../file.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("/// "))
        .collect::<Vec<_>>()
        .join("\n");
    for text in [section, &docs] {
        let start = text.find("```toml\n").unwrap() + "```toml\n".len();
        let toml = &text[start..start + text[start..].find("```").unwrap()];
        let file = QuotaFile::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(file.tracker.services[0].name, "llm");
        assert_eq!(
            file.tracker.services[0].admission,
            Admission::Leased { block: 100 }
        );
        assert!(matches!(file.store, Some(StoreUrl::Redis(_))));
    }
}

#[test]
fn the_fuzzers_seed_files_parse() {
    // A seed that fails to parse would start the fuzzer from an error instead of a file.
    for (text, parsed) in [
        (
            "full.toml",
            QuotaFile::from_toml_str(include_str!("../../../../fuzz/seeds/config_file/full.toml")),
        ),
        (
            "full.json",
            QuotaFile::from_json_str(include_str!("../../../../fuzz/seeds/config_file/full.json")),
        ),
    ] {
        let file = parsed.unwrap_or_else(|e| panic!("{text}: {e}"));
        file.validate().unwrap();
    }
    let file =
        QuotaFile::from_toml_str(include_str!("../../../../fuzz/seeds/config_file/full.toml"))
            .unwrap();
    let finnhub = file.tracker.services.last().unwrap();
    assert_eq!(finnhub.limits().count(), 3);
    assert_eq!(finnhub.more_limits[0].enforce, Some(false));
}
