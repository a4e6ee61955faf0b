//! Config files: good ones in both formats, every kind of bad input (each error names its line
//! or its field), password redaction, the example `quota.toml`.

use super::*;

const FULL_TOML: &str = r#"
# Everything set.
store = "file:/var/lib/app/quota.json"
require_store = true

[sync]
interval_ms = 5000
force_on_critical = false
flush_timeout_ms = 1500

[sync.reduced_rate]
enter_after_failures = 2
leave_after_successes = 4
fraction = 0.5

[[services]]
name = "tiingo"
limit = 500
period = "month"

[[services]]
name = "llm"
limit = 10000
period = "day"
warn_threshold = 0.6
critical_threshold = 0.9
reserve_fraction = 0.05
admission = { leased = 100 }

[[services]]
name = "payments"
limit = 1000
period = "hour"
admission = "exact"
"#;

const FULL_JSON: &str = r#"{
  "store": "file:/var/lib/app/quota.json",
  "require_store": true,
  "sync": {
    "interval_ms": 5000,
    "flush_timeout_ms": 1500,
    "force_on_critical": false,
    "reduced_rate": { "enter_after_failures": 2, "leave_after_successes": 4, "fraction": 0.5 }
  },
  "services": [
    { "name": "tiingo", "limit": 500, "period": "month" },
    { "name": "llm", "limit": 10000, "period": "day", "warn_threshold": 0.6,
      "critical_threshold": 0.9, "reserve_fraction": 0.05, "admission": { "leased": 100 } },
    { "name": "payments", "limit": 1000, "period": "hour", "admission": "exact" }
  ]
}"#;

fn full() -> QuotaFile {
    QuotaFile {
        tracker: TrackerConfig::new([
            ServiceConfig::new("tiingo", 500, Period::Month),
            ServiceConfig::builder("llm", 10_000, Period::Day)
                .warn_threshold(0.6)
                .critical_threshold(0.9)
                .reserve_fraction(0.05)
                .admission(Admission::Leased { block: 100 })
                .build()
                .unwrap(),
            ServiceConfig::builder("payments", 1_000, Period::Hour)
                .admission(Admission::Exact)
                .build()
                .unwrap(),
        ]),
        store: Some(StoreUrl::File("/var/lib/app/quota.json".into())),
        require_store: true,
        sync: SyncPolicy {
            interval_ms: 5_000,
            force_on_critical: false,
            reduced_rate: ReducedRatePolicy {
                enter_after_failures: 2,
                leave_after_successes: 4,
                fraction: 0.5,
            },
            flush_timeout_ms: 1_500,
        },
    }
}

fn toml_error(text: &str) -> ConfigError {
    QuotaFile::from_toml_str(text).expect_err(text)
}

fn json_error(text: &str) -> ConfigError {
    QuotaFile::from_json_str(text).expect_err(text)
}

/// A minimal TOML service with `extra` lines added.
fn toml_service(extra: &str) -> String {
    format!("[[services]]\nname = \"svc\"\nlimit = 10\nperiod = \"day\"\n{extra}")
}

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
fn store_urls() {
    let parse = |text: &str| text.parse::<StoreUrl>();
    assert_eq!(parse("memory:"), Ok(StoreUrl::Memory));
    assert_eq!(
        parse("file:quota.json"),
        Ok(StoreUrl::File("quota.json".into()))
    );
    assert_eq!(
        parse("file:///var/lib/q.json"),
        Ok(StoreUrl::File("/var/lib/q.json".into()))
    );
    assert_eq!(parse("file:/q.json"), Ok(StoreUrl::File("/q.json".into())));
    // A host (and maybe a password) is not a local path: refused, the password not shown.
    assert!(parse("file://").is_err());
    assert_eq!(
        parse("file://localhost/var/q.json"),
        Ok(StoreUrl::File("/var/q.json".into()))
    );
    for text in [
        "file://backup:secret@nas/q.json",
        "file://nas/q.json",
        "file:////backup:secret@nas/q.json",
        "file://///nas/q.json",
        "file:/\u{2f}backup:secret@nas/q.json",
    ] {
        let error = parse(text).expect_err(text);
        let shown = format!("{error} {error:?}");
        assert!(
            shown.contains("file:// with a host is not a local file"),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "{shown}");
    }
    let error = QuotaFile::from_toml_str(&format!(
        "store = \"file://backup:secret@nas/q.json\"\n{}",
        toml_service("")
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("line 1") && !error.contains("secret"),
        "{error}"
    );
    for (text, shown, tls) in [
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379", false),
        ("redis://h/2", "redis://h/2", false),
        (
            "redis://user:pa%40ss@h:6379/0",
            "redis://user:<redacted>@h:6379/0",
            false,
        ),
        ("rediss://:s3cret@h", "rediss://:<redacted>@h", true),
        // The last `@` of the host part ends the user information, as URL parsers read it.
        ("redis://u:p@ss@h", "redis://u:<redacted>@h", false),
    ] {
        let Ok(StoreUrl::Redis(url)) = parse(text) else {
            panic!("{text} should be a Redis URL");
        };
        assert_eq!(url.expose_secret(), text);
        assert_eq!(url.to_string(), shown);
        assert_eq!(StoreUrl::Redis(url.clone()).to_string(), shown);
        assert_eq!(format!("{url:?}"), format!("RedisUrl({shown:?})"));
        assert_eq!(url.is_tls(), tls);
    }
    for (text, why) in [
        ("", "expected memory:"),
        ("memory", "expected memory:"),
        ("file:", "needs a path"),
        ("postgres://u:hunter2@db", "expected memory:"),
        ("REDIS://u:hunter2@h", "expected memory:"),
        ("redis://", "no host"),
        ("redis://u:hunter2@", "no host"),
        ("redis://u:hunter2@:6379", "no host"),
        ("redis://u:hun/ter2@h", "percent-encode"),
        ("redis://u:hunter2@h /0", "no spaces"),
    ] {
        let error = parse(text).expect_err(text).to_string();
        assert!(error.contains(why), "{text:?}: {error}");
        assert!(
            !error.contains("hunter2") && !error.contains("ter2"),
            "{error}"
        );
    }
}

/// Asserts a parse error at `line` whose message has each of `words`.
fn assert_parse_error(error: &ConfigError, format: ConfigFormat, line: usize, words: &[&str]) {
    let ConfigError::Parse {
        format: got,
        line: Some(got_line),
        column: Some(_),
        message,
        path: None,
    } = error
    else {
        panic!("expected a parse error with a position, got {error:?}");
    };
    assert_eq!(*got, format, "{error}");
    assert_eq!(*got_line, line, "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("invalid {format} at line {line}, column ")),
        "{text}"
    );
    for word in words {
        assert!(message.contains(word), "{text:?} should mention {word:?}");
    }
}

#[test]
fn bad_toml_names_the_line_and_the_field() {
    let service = "[[services]]\nname = \"svc\"\nlimit = 10\nperiod = \"day\"\n";
    let cases: Vec<(String, usize, &[&str])> = vec![
        // Syntax.
        ("services = [".into(), 1, &[]),
        ("store = \"memory:\nx\"".into(), 2, &[]),
        (format!("{service}limit = 11\n"), 5, &["duplicate key"]),
        (format!("{service}name = what\n"), 5, &[]),
        // Unknown fields, named.
        (
            format!("stor = \"memory:\"\n{service}"),
            1,
            &["unknown field `stor`"],
        ),
        (
            format!("{service}limt = 3\n"),
            5,
            &["unknown field `limt`", "limit"],
        ),
        (
            format!("[sync]\nintervl_ms = 5\n{service}"),
            2,
            &["unknown field `intervl_ms`"],
        ),
        (
            format!("[sync.reduced_rate]\nfractio = 0.5\n{service}"),
            2,
            &["unknown field `fractio`"],
        ),
        (
            format!("store = \"memory:\"\n{service}admission = {{ leasd = 5 }}\n"),
            6,
            &["unknown field `leasd`", "leased"],
        ),
        (
            format!("store = \"memory:\"\n{service}admission = {{ leased = {{ blok = 5 }} }}\n"),
            6,
            &["unknown field `blok`", "block"],
        ),
        // Missing fields, named (at the service's table).
        (
            "[[services]]\nname = \"svc\"\nperiod = \"day\"\n".into(),
            1,
            &["missing field `limit`"],
        ),
        (
            "\n\n[[services]]\nlimit = 3\nperiod = \"day\"\n".into(),
            3,
            &["missing field `name`"],
        ),
        (
            "[sync]\ninterval_ms = 5\n".into(),
            1,
            &["missing field `services`"],
        ),
        // Wrong types and values.
        ("services = 5".into(), 1, &["expected a sequence"]),
        (
            "[services]\nname = \"svc\"\n".into(),
            1,
            &["expected a sequence"],
        ),
        (
            "[[services]]\nname = \"svc\"\nlimit = -5\nperiod = \"day\"\n".into(),
            3,
            &["-5", "u64"],
        ),
        (
            "[[services]]\nname = \"svc\"\nlimit = 1.5\nperiod = \"day\"\n".into(),
            3,
            &["1.5", "u64"],
        ),
        (
            "[[services]]\nname = \"svc\"\nlimit = 10\nperiod = \"weekly\"\n".into(),
            4,
            &["weekly", "minute", "month"],
        ),
        (
            format!("{service}warn_threshold = \"high\"\n"),
            5,
            &["high", "f64"],
        ),
        (
            format!("[sync]\nforce_on_critical = 1\n{service}"),
            2,
            &["expected a boolean"],
        ),
        (
            format!("[sync.reduced_rate]\nenter_after_failures = -1\n{service}"),
            2,
            &["-1"],
        ),
        (
            format!("{service}admission = \"fast\"\n"),
            5,
            &["unknown admission `fast`", "local", "exact", "leased"],
        ),
        (
            format!("{service}admission = \"leased\"\n"),
            5,
            &["needs its block", "{ leased = 100 }"],
        ),
        (format!("{service}admission = 3\n"), 5, &["an admission"]),
        (
            format!("{service}admission = {{}}\n"),
            5,
            &["empty admission"],
        ),
        (
            format!("{service}admission = {{ leased = -1 }}\n"),
            5,
            &["-1"],
        ),
        (
            format!("{service}admission = {{ leased = 1, mode = 2 }}\n"),
            5,
            &["one key"],
        ),
        // Store URLs.
        (format!("store = 5\n{service}"), 1, &["store URL"]),
        (
            format!("store = \"sqlite:q.db\"\n{service}"),
            1,
            &["invalid store URL", "file:PATH"],
        ),
        (
            format!("\nstore = \"file:\"\n{service}"),
            2,
            &["needs a path"],
        ),
    ];
    for (text, line, words) in &cases {
        assert_parse_error(&toml_error(text), ConfigFormat::Toml, *line, words);
    }
}

#[test]
fn bad_json_names_the_line_and_the_field() {
    let service = r#"{"name": "svc", "limit": 10, "period": "day""#;
    let cases: Vec<(String, usize, &[&str])> = vec![
        // Syntax.
        ("".into(), 1, &["EOF"]),
        ("{\"services\": [".into(), 1, &["EOF"]),
        ("{\n\"services\": [],\n}".into(), 3, &["trailing comma"]),
        ("{\"services\": [{\"name\": 'svc'}]}".into(), 1, &[]),
        // Unknown fields, named.
        (format!("{{\"stor\": \"memory:\", \"services\": [{service}}}]}}"), 1, &["unknown field `stor`"]),
        (format!("{{\"services\": [\n{service},\n\"limt\": 3}}]}}"), 3, &["unknown field `limt`", "limit"]),
        (format!("{{\"sync\": {{\"reduced_rate\": {{\"fractio\": 1}}}}, \"services\": [{service}}}]}}"), 1, &["unknown field `fractio`"]),
        // Missing and duplicate fields, named.
        ("{\"services\": [{\"name\": \"svc\", \"period\": \"day\"}]}".into(), 1, &["missing field `limit`"]),
        ("{}".into(), 1, &["missing field `services`"]),
        (format!("{{\"services\": [{service}, \"limit\": 3}}]}}"), 1, &["duplicate field `limit`"]),
        // Wrong types and values.
        ("{\"services\": {}}".into(), 1, &["expected a sequence"]),
        ("{\"services\": [{\"name\": \"svc\", \"limit\": -5, \"period\": \"day\"}]}".into(), 1, &["-5", "u64"]),
        ("{\"services\": [{\"name\": \"svc\", \"limit\": 10,\n\"period\": \"Day\"}]}".into(), 2, &["`Day`", "day"]),
        (format!("{{\"services\": [{service}, \"admission\": \"fast\"}}]}}"), 1, &["unknown admission `fast`"]),
        (format!("{{\"services\": [{service}, \"admission\": {{\"leased\": \"ten\"}}}}]}}"), 1, &["the block"]),
        (format!("{{\"store\": \"redis:/h\", \"services\": [{service}}}]}}"), 1, &["invalid store URL"]),
        (format!("{{\"sync\": {{\"interval_ms\": true}}, \"services\": [{service}}}]}}"), 1, &["u64"]),
    ];
    for (text, line, words) in &cases {
        assert_parse_error(&json_error(text), ConfigFormat::Json, *line, words);
    }
}

/// Asserts an invalid-config error naming `service` and `field`, pointing at `line`.
fn assert_invalid(
    error: &ConfigError,
    line: usize,
    service: Option<&str>,
    field: &str,
    words: &[&str],
) {
    let ConfigError::Invalid {
        path: None,
        line: Some(got_line),
        column: Some(_),
        error: invalid,
    } = error
    else {
        panic!("expected an invalid-config error with a position, got {error:?}");
    };
    let QuotaError::InvalidConfig {
        service: got_service,
        field: got_field,
        ..
    } = &**invalid
    else {
        panic!("expected QuotaError::InvalidConfig, got {invalid:?}");
    };
    let text = error.to_string();
    assert_eq!(*got_line, line, "{text}");
    assert_eq!(got_service.as_deref(), service, "{text}");
    assert_eq!(*got_field, field, "{text}");
    assert!(text.starts_with(&format!("invalid config at line {line}, column ")));
    for word in words {
        assert!(text.contains(word), "{text:?} should mention {word:?}");
    }
}

#[test]
fn invalid_values_name_the_service_the_field_and_its_line() {
    let head = "[[services]]\nname = \"svc\"\nperiod = \"day\"\n";
    type Case<'a> = (String, usize, Option<&'a str>, &'a str, &'a [&'a str]);
    let cases: Vec<Case<'_>> = vec![
        (
            format!("{head}limit = 0\n"),
            4,
            Some("svc"),
            "limit",
            &["at least 1", "got 0"],
        ),
        (
            format!("{head}limit = 5\nwarn_threshold = 0.0\n"),
            5,
            Some("svc"),
            "warn_threshold",
            &["(0, 1]"],
        ),
        (
            format!("{head}limit = 5\nwarn_threshold = nan\n"),
            5,
            Some("svc"),
            "warn_threshold",
            &["NaN"],
        ),
        (
            format!("{head}limit = 5\ncritical_threshold = 1.5\n"),
            5,
            Some("svc"),
            "critical_threshold",
            &["1.5"],
        ),
        (
            format!("{head}limit = 5\nwarn_threshold = 0.9\n"),
            5,
            Some("svc"),
            "warn_threshold",
            &["0.9", "critical threshold (0.8)"],
        ),
        // The field is left out (its default clashes): the service's table.
        (
            format!("\n{head}limit = 5\ncritical_threshold = 0.4\n"),
            2,
            Some("svc"),
            "warn_threshold",
            &["(0.4) (got 0.5)"],
        ),
        (
            format!("\n{head}limit = 5\nwarn_threshold = 0.3\ncritical_threshold = 0.2\n"),
            6,
            Some("svc"),
            "warn_threshold",
            &["0.3"],
        ),
        (
            format!("{head}limit = 5\nreserve_fraction = 1.0\n"),
            5,
            Some("svc"),
            "reserve_fraction",
            &["[0, 1)"],
        ),
        (
            "[[services]]\nname = \"  \"\nlimit = 5\nperiod = \"day\"\n".into(),
            2,
            None,
            "name",
            &["must not be empty"],
        ),
        // The second of two services of one name.
        (
            format!("{head}limit = 5\n{head}limit = 6\n"),
            6,
            Some("svc"),
            "name",
            &["must be unique"],
        ),
        (
            "services = []\n".into(),
            1,
            None,
            "services",
            &["at least one service"],
        ),
        (
            format!("\n[sync.reduced_rate]\nfraction = 0.0\n{head}limit = 5\n"),
            3,
            None,
            "sync.reduced_rate.fraction",
            &["(0, 1]"],
        ),
        (
            format!("[sync.reduced_rate]\nenter_after_failures = 0\n{head}limit = 5\n"),
            2,
            None,
            "sync.reduced_rate.enter_after_failures",
            &["at least 1"],
        ),
        (
            format!("[sync.reduced_rate]\nleave_after_successes = 0\n{head}limit = 5\n"),
            2,
            None,
            "sync.reduced_rate.leave_after_successes",
            &["at least 1"],
        ),
        (
            format!("store = \"memory:\"\n{head}limit = 5\nadmission = {{ leased = 0 }}\n"),
            6,
            Some("svc"),
            "admission",
            &["needs a lease block of at least 1", "Leased { block: 0 }"],
        ),
        (
            format!("{head}limit = 5\nadmission = \"exact\"\n"),
            5,
            Some("svc"),
            "admission",
            &["needs a store"],
        ),
        (
            format!("{head}limit = 5\nadmission = {{ leased = 10 }}\n"),
            5,
            Some("svc"),
            "admission",
            &["needs a store"],
        ),
    ];
    for (text, line, service, field, words) in &cases {
        assert_invalid(&toml_error(text), *line, *service, field, words);
    }

    let json = |services: &str| format!("{{\"services\": [\n{services}\n]}}");
    let cases: Vec<Case<'_>> = vec![
        (json(r#"{"name": "svc", "period": "day", "limit": 0}"#), 2, Some("svc"), "limit", &["at least 1"]),
        (json("{\"name\": \"a\", \"period\": \"day\", \"limit\": 1},\n{\"name\": \"b\", \"period\": \"day\", \"limit\": 1,\n \"reserve_fraction\": -0.5}"), 4, Some("b"), "reserve_fraction", &["-0.5"]),
        (json("{\"name\": \"a\", \"period\": \"day\", \"limit\": 1},\n{\"name\": \"a\", \"period\": \"day\", \"limit\": 1}"), 3, Some("a"), "name", &["unique"]),
        // Left out: the service's object.
        (json("{\"name\": \"a\", \"period\": \"day\", \"limit\": 1},\n  {\"name\": \"b\", \"period\": \"day\", \"limit\": 1, \"critical_threshold\": 0.3}"), 3, Some("b"), "warn_threshold", &["(0.3) (got 0.5)"]),
        ("{\"services\": []}".into(), 1, None, "services", &["at least one"]),
        ("{\"services\": [{\"name\": \"a\", \"period\": \"day\", \"limit\": 1}],\n \"sync\": {\"reduced_rate\": {\n  \"fraction\": 2}}}".into(), 3, None, "sync.reduced_rate.fraction", &["(0, 1]"]),
        (json(r#"{"name": "svc", "period": "day", "limit": 1, "admission": "exact"}"#), 2, Some("svc"), "admission", &["needs a store"]),
    ];
    for (text, line, service, field, words) in &cases {
        assert_invalid(&json_error(text), *line, *service, field, words);
    }
}

#[test]
fn validation_is_the_trackers_own() {
    // The same error as building that config in code.
    let text = "[[services]]\nname = \"svc\"\nperiod = \"day\"\nlimit = 0\n";
    let ConfigError::Invalid { error, .. } = toml_error(text) else {
        panic!()
    };
    let code = TrackerConfig::new([ServiceConfig::new("svc", 0, Period::Day)]);
    assert_eq!(Err(*error.clone()), code.validate());
    assert_eq!(
        QuotaTracker::new(code).err(),
        Some(*error),
        "the tracker refuses it alike"
    );
    // And the sync policy's, through the builder.
    let mut file = QuotaFile::from_toml_str(&toml_service("")).unwrap();
    file.sync.reduced_rate.fraction = 0.0;
    let Err(ConfigError::Invalid {
        error, line: None, ..
    }) = file.build()
    else {
        panic!("expected the sync policy to be refused");
    };
    assert!(
        matches!(
            *error,
            QuotaError::InvalidConfig {
                field: "sync.reduced_rate.fraction",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn errors_read_well() {
    let error = toml_error(&toml_service("limt = 3\n"));
    assert_eq!(
        error.to_string(),
        "invalid TOML at line 5, column 1: unknown field `limt`, expected one of `name`, \
         `limit`, `period`, `warn_threshold`, `critical_threshold`, `reserve_fraction`, \
         `admission`"
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
fn passwords_never_appear_in_errors_or_debug() {
    const SECRET: &str = "hunter2-Zq9";
    let service = toml_service("");
    let bad_toml = [
        // The store itself is refused, for many reasons.
        format!("store = \"redis://app:{SECRET}@\"\n{service}"),
        format!("store = \"redis://app:{SECRET}@h /0\"\n{service}"),
        format!("store = \"redis://app:{SECRET}@h/@x\"\n{service}"),
        format!("store = \"postgres://app:{SECRET}@h\"\n{service}"),
        format!("store = \"redis://app:{SECRET}@h\n{service}"),
        format!("store = redis://app:{SECRET}@h\n{service}"),
        format!("store = \"redis://app:{SECRET}@h\"\nstore = \"memory:\"\n{service}"),
        // A URL quoted where a parser echoes the value.
        format!("store = \"redis://app:{SECRET}@h\"\n[[services]]\nname = \"svc\"\nlimit = \"redis://app:{SECRET}@h\"\nperiod = \"day\"\n"),
        format!("{service}period = \"redis://app:{SECRET}@h\"\n"),
        format!("{service}admission = \"redis://app:{SECRET}@h\"\n"),
        format!("{service}\"redis://app:{SECRET}@h\" = 1\n"),
        format!("store = \"redis://app:{SECRET}@h\"\n[[services]]\nname = \"{SECRET}\"\nlimit = 0\nperiod = \"day\"\n"),
        format!("store = \"redis://app:{SECRET}@h\"\n[[services]]\nname = \"svc\"\nlimit = 1\nperiod = \"{SECRET}\"\n"),
        // Escapes that spell the password only once decoded.
        format!("{service}period = \"redis://app:hunter\\u0032-Zq9@h\"\n"),
        format!("{service}period = 'redis://app:{SECRET}@h'\n"),
        format!("{service}period = \"\"\"redis://app:{SECRET}@h/x\"\"\"\n"),
        // Percent-encoded in the URL, decoded in an echo.
        format!("store = \"redis://app:hunter%32-Zq9@h\"\n[[services]]\nname = \"svc\"\nlimit = 1\nperiod = \"{SECRET}\"\n"),
    ];
    let object = r#"{"name": "svc", "limit": 10, "period": "day"}"#;
    let bad_json = [
        format!("{{\"store\": \"redis://app:{SECRET}@\", \"services\": [{object}]}}"),
        format!("{{\"store\": \"redis://app:{SECRET}@h\", \"services\": [{{\"name\": \"svc\", \"limit\": \"redis://app:{SECRET}@h\"}}]}}"),
        r#"{"services": [{"name": "svc", "limit": "redis://app:hunter\u0032-Zq9@h"}"#.to_string(),
        r#"{"services": [{"name": "svc", "limit": 1, "period": "redis://app:hunter2-\"Zq9@h"}]}"#.to_string(),
        format!("{{\"redis://app:{SECRET}@h\": 1, \"services\": [{object}]}}"),
        format!("{{\"store\": \"redis://app:{SECRET}@h\", \"services\": [{{\"name\": \"{SECRET}\", \"limit\": 0, \"period\": \"day\"}}]}}"),
        format!("{{\"store\": \"redis://app:{SECRET}@h\", \"services\": [{{\"name\": \"svc\", \"limit\": 1, \"period\": \"{SECRET}\"}}]}} x"),
    ];
    let errors = bad_toml
        .iter()
        .map(|text| toml_error(text))
        .chain(bad_json.iter().map(|text| json_error(text)));
    for error in errors {
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
    // The Debug of a file that parsed.
    let file = QuotaFile::from_toml_str(&format!(
        "store = \"rediss://app:{SECRET}@redis.internal:6380\"\n{service}"
    ))
    .unwrap();
    let store = file.store.as_ref().unwrap();
    assert_eq!(
        store.to_string(),
        "rediss://app:<redacted>@redis.internal:6380"
    );
    assert!(!format!("{file:?}").contains(SECRET));
    assert!(!format!("{file:#?}").contains(SECRET));
    let StoreUrl::Redis(url) = store else {
        panic!()
    };
    assert!(url.expose_secret().contains(SECRET));
}

#[cfg(not(all(feature = "redis", not(target_arch = "wasm32"))))]
#[test]
fn a_redis_store_without_the_feature_is_a_clear_error() {
    let file = QuotaFile::from_toml_str(&format!(
        "store = \"redis://app:hunter2@127.0.0.1:1\"\n{}",
        toml_service("")
    ))
    .unwrap();
    let error = file.build().expect_err("no Redis in this build");
    assert!(
        matches!(error, ConfigError::Unsupported { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("feature `redis`"), "{text}");
    assert!(
        text.contains("redis://app:<redacted>@127.0.0.1:1"),
        "{text}"
    );
    assert!(!format!("{text}{error:?}").contains("hunter2"));
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[test]
fn a_redis_store_opens_lazily_with_the_feature() {
    let url: StoreUrl = "redis://app:hunter2@127.0.0.1:1".parse().unwrap();
    assert!(
        url.open().is_ok(),
        "RedisStore::new connects at its first call"
    );
    // A URL the Redis client refuses: its error, redacted.
    let url: StoreUrl = "redis://app:hunter2@h:port".parse().unwrap();
    let error = url.open().err().expect("not a port");
    assert!(matches!(error, ConfigError::Store { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(text.contains("redis://app:<redacted>@h:port"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn build_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counts.json");
    let text = format!(
        "store = {:?}\n{}",
        format!("file:{}", path.display()),
        toml_service("admission = { leased = 2 }\n")
    );
    let file = QuotaFile::from_toml_str(&text).unwrap();
    let tracker = file.build().unwrap();
    tracker.try_record("svc", 1).unwrap();
    tracker.flush().unwrap();
    drop(tracker);
    // A second tracker on the same file continues the count.
    assert_eq!(file.build().unwrap().usage("svc").unwrap().used, 1);

    let memory = QuotaFile::from_toml_str(&format!(
        "store = \"memory:\"\n{}",
        toml_service("admission = \"exact\"\n")
    ))
    .unwrap();
    let tracker = memory.builder().unwrap().build().unwrap();
    tracker.try_record("svc", 3).unwrap();
    assert_eq!(tracker.usage("svc").unwrap().used, 3);
    assert_eq!(tracker.stats().loads, 1, "it has a store");
}

#[test]
fn require_store_fails_the_build_when_the_first_read_fails() {
    let dir = tempfile::tempdir().unwrap();
    // A store under a plain file: every read fails (not a directory).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let store = format!("file:{}", blocker.join("quota.json").display());
    let text = |require: &str| format!("store = {store:?}\n{require}{}", toml_service(""));

    let file = QuotaFile::from_toml_str(&text("require_store = true\n")).unwrap();
    assert!(file.require_store);
    let error = file.build().expect_err("the store cannot be read");
    let ConfigError::Store {
        store: named,
        error: cause,
    } = &error
    else {
        panic!("not a store error: {error:?}");
    };
    assert_eq!(named, &store);
    assert!(matches!(cause, StoreError::Io(_)), "{cause:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot open store {store}: store I/O failed")),
        "{error}"
    );

    // Without it the tracker starts from zero and says so in its stats.
    let file = QuotaFile::from_toml_str(&text("")).unwrap();
    assert!(!file.require_store);
    let tracker = file.build().unwrap();
    assert_eq!(tracker.stats().load_failures, 1);
    tracker.record_call("svc", 1).unwrap();

    // A store that can be read builds either way.
    let good = format!(
        "store = {:?}\nrequire_store = true\n{}",
        format!("file:{}", dir.path().join("ok.json").display()),
        toml_service("")
    );
    QuotaFile::from_toml_str(&good).unwrap().build().unwrap();
    // Nothing to require: an error at the field.
    let text = format!("require_store = true\n{}", toml_service(""));
    let error = toml_error(&text).to_string();
    assert_eq!(
        error,
        "invalid config at line 1, column 1: require_store needs a store to require (set \
         `store`: file:PATH or redis://HOST) (got true)"
    );
    // A wrong type is a parse error at its line.
    let error = toml_error(&format!("require_store = \"yes\"\n{}", toml_service("")));
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[test]
fn require_store_with_an_unreachable_redis_names_it_redacted() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let text = format!(
        "store = \"redis://app:hunter2@127.0.0.1:1\"\nrequire_store = true\n{}",
        toml_service("")
    );
    let error = QuotaFile::from_toml_str(&text)
        .unwrap()
        .build()
        .expect_err("nothing listens");
    assert!(matches!(error, ConfigError::Store { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(
        text.contains("redis://app:<redacted>@127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
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
fn the_example_quota_toml_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../quota.toml");
    let file = QuotaFile::load(&path).unwrap();
    assert_eq!(file.tracker, TrackerConfig::defaults());
    assert_eq!(file.store, None);
    assert_eq!(file.sync, SyncPolicy::default());
    file.validate().unwrap();
    let tracker = file.build().unwrap();
    tracker.record_call("finnhub", 1).unwrap();
}

#[test]
fn the_example_quota_toml_with_a_store_and_a_lease() {
    // As its comments say: a store line on top, and another admission.
    let text = include_str!("../../../quota.toml");
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
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## Config files").unwrap()..];
    let docs = include_str!("../config_file.rs")
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
fn many_urls_cost_linear_time() {
    // 10,000 URL-like texts, each read only up to the next: an error still comes at once.
    let urls: String = (0..10_000).map(|i| format!("://u:p{i}@")).collect();
    let started = std::time::Instant::now();
    for text in [
        format!("store = \"{urls}\"\n{}", toml_service("")),
        format!("{}period = \"{urls}\"\n", toml_service("")),
        format!("{{\"store\": \"{urls}\", \"services\": []}}"),
    ] {
        assert!(QuotaFile::from_toml_str(&text).is_err());
        assert!(QuotaFile::from_json_str(&text).is_err());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
