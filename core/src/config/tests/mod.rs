//! Config files: good ones in both formats, every kind of bad input (each error names its line
//! or its field), password redaction, the example `quota.toml`; the services' validation; the
//! one schema of every reader. (Building a tracker from a file: `tracker/from_file/tests.rs`.)

mod errors;
mod file;
pub(crate) mod schema;
mod service;
mod store_url;

use super::{Admission, ConfigError, QuotaFile, ServiceConfig, StoreUrl, TrackerConfig};
use crate::config::{ReducedRatePolicy, SyncPolicy};
use crate::window::Period;

pub(super) const FULL_TOML: &str = r#"
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

pub(super) const FULL_JSON: &str = r#"{
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

pub(super) fn full() -> QuotaFile {
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

pub(crate) fn toml_error(text: &str) -> ConfigError {
    QuotaFile::from_toml_str(text).expect_err(text)
}

pub(super) fn json_error(text: &str) -> ConfigError {
    QuotaFile::from_json_str(text).expect_err(text)
}

/// A minimal TOML service with `extra` lines added.
pub(crate) fn toml_service(extra: &str) -> String {
    format!("[[services]]\nname = \"svc\"\nlimit = 10\nperiod = \"day\"\n{extra}")
}
