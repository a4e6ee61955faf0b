//! Bad files: every syntax, schema and value error names its line, and its service and field.

use super::{json_error, toml_error};
use crate::config::{ConfigError, ConfigFormat};
use crate::error::QuotaError;

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
        // Missing fields, named (at the service's table; a missing limit: see
        // `a_service_without_a_limit_is_named`).
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
fn a_service_without_a_limit_is_named() {
    use crate::config::QuotaFile;
    let cases = [
        (
            QuotaFile::from_toml_str("[[services]]\nname = \"svc\"\nperiod = \"day\"\n"),
            "service \"svc\": limit is required: give `limit` and `period`, or a list `limits`",
        ),
        (
            QuotaFile::from_json_str(r#"{"services": [{"name": "svc", "period": "day"}]}"#),
            "service \"svc\": limit is required",
        ),
        (
            QuotaFile::from_toml_str("[[services]]\nname = \"svc\"\nlimit = 5\n"),
            "service \"svc\": period is required beside `limit`",
        ),
        (
            QuotaFile::from_toml_str(
                "[[services]]\nname = \"svc\"\nlimit = 5\nlimits = [{ limit = 9, period = \"day\" }]\n",
            ),
            "service \"svc\": limit goes inside `limits` when that is given (got 5)",
        ),
        (
            QuotaFile::from_toml_str("[[services]]\nname = \"svc\"\nlimits = []\n"),
            "service \"svc\": limits must list at least one limit",
        ),
    ];
    for (result, words) in cases {
        let text = result.unwrap_err().to_string();
        assert!(text.starts_with("invalid config at line "), "{text}");
        assert!(text.contains(words), "{text:?} should say {words:?}");
    }
}
