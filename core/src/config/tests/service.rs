//! `ServiceConfig` and `TrackerConfig` validation: every invalid field named with its value.

use crate::config::{Admission, AdmissionText, ServiceConfig, TrackerConfig};
use crate::error::QuotaError;
use crate::window::Period;

fn message(config: &TrackerConfig) -> String {
    match config.validate() {
        Err(error @ QuotaError::InvalidConfig { .. }) => error.to_string(),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid() {
    TrackerConfig::defaults().validate().unwrap();
}

#[test]
fn an_empty_config_is_invalid() {
    assert_eq!(
        message(&TrackerConfig::new([])),
        "invalid config: services must name at least one service (got [])"
    );
}

#[test]
fn invalid_fields_are_named_with_their_values() {
    let one = |s: ServiceConfig| TrackerConfig::new([s]);
    let base = || ServiceConfig::new("svc", 10, Period::Day);
    let cases: Vec<(ServiceConfig, &[&str])> = vec![
        (ServiceConfig::new("", 10, Period::Day), &["name", "empty"]),
        (ServiceConfig::new("svc", 0, Period::Day), &["limit", "0"]),
        (
            ServiceConfig {
                warn_threshold: 0.0,
                ..base()
            },
            &["warn_threshold", "0"],
        ),
        (
            ServiceConfig {
                warn_threshold: f64::NAN,
                ..base()
            },
            &["warn_threshold", "NaN"],
        ),
        (
            ServiceConfig {
                critical_threshold: 1.5,
                ..base()
            },
            &["critical_threshold", "1.5"],
        ),
        (
            ServiceConfig {
                warn_threshold: 0.9,
                critical_threshold: 0.8,
                ..base()
            },
            &["warn_threshold", "0.9", "0.8"],
        ),
        (
            ServiceConfig {
                reserve_fraction: 1.0,
                ..base()
            },
            &["reserve_fraction", "1"],
        ),
        (
            ServiceConfig {
                reserve_fraction: -0.1,
                ..base()
            },
            &["reserve_fraction", "-0.1"],
        ),
        (
            ServiceConfig {
                reserve_fraction: 1.0 - 1e-15,
                ..base()
            },
            &[
                "reserve_fraction",
                "0.999999999999999",
                "normal calls",
                "(10)",
            ],
        ),
    ];
    for (service, words) in cases {
        let text = message(&one(service));
        for word in words {
            assert!(text.contains(word), "{text:?} should mention {word:?}");
        }
    }
    let dup = TrackerConfig::new([base(), base()]);
    assert_eq!(
        message(&dup),
        "invalid config: service \"svc\": name must be unique (it is used twice) (got \"svc\")"
    );
    assert_eq!(
        TrackerConfig::new([ServiceConfig::new("svc", 0, Period::Day)]).validate(),
        Err(QuotaError::InvalidConfig {
            service: Some("svc".into()),
            field: "limit",
            value: "0".into(),
            reason: "must be at least 1".into(),
        })
    );
}

#[test]
fn admissions_in_messages_read_as_their_debug_form() {
    for admission in [
        Admission::Local,
        Admission::Exact,
        Admission::Leased { block: 0 },
        Admission::Leased { block: 100 },
    ] {
        assert_eq!(
            AdmissionText(admission).to_string(),
            format!("{admission:?}")
        );
    }
}
