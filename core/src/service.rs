//! Service and tracker configuration.

use crate::error::QuotaError;
use crate::window::Period;
use serde::{Deserialize, Serialize};

/// One rate-limited service: `limit` calls per `period`, with its thresholds.
///
/// ```
/// use quota_core::{Period, ServiceConfig};
/// let openai = ServiceConfig::builder("openai", 10_000, Period::Day)
///     .warn_threshold(0.6)
///     .critical_threshold(0.9)
///     .build()
///     .unwrap();
/// assert_eq!(openai.reserve_fraction, 0.1);
/// assert!(ServiceConfig::builder("bad", 0, Period::Day).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Unique, non-empty name that calls are recorded under.
    pub name: String,
    /// Calls allowed per window, at least 1.
    pub limit: u64,
    /// The window length.
    pub period: Period,
    /// Fraction of the limit at which the level becomes Warning, in (0, 1]; default 0.5.
    pub warn_threshold: f64,
    /// Fraction of the limit at which the level becomes Critical, in (0, 1]; default 0.8.
    pub critical_threshold: f64,
    /// Fraction of the limit held back as a reserve, in [0, 1); default 0.1.
    pub reserve_fraction: f64,
}

impl ServiceConfig {
    /// Default warn threshold.
    pub const DEFAULT_WARN: f64 = 0.5;
    /// Default critical threshold.
    pub const DEFAULT_CRITICAL: f64 = 0.8;
    /// Default reserve fraction.
    pub const DEFAULT_RESERVE: f64 = 0.1;

    /// A config with the default thresholds. It is checked when a tracker is built
    /// (or by [`validate`](Self::validate)).
    pub fn new(name: impl Into<String>, limit: u64, period: Period) -> Self {
        ServiceConfig {
            name: name.into(),
            limit,
            period,
            warn_threshold: Self::DEFAULT_WARN,
            critical_threshold: Self::DEFAULT_CRITICAL,
            reserve_fraction: Self::DEFAULT_RESERVE,
        }
    }

    /// A builder starting from the defaults.
    pub fn builder(name: impl Into<String>, limit: u64, period: Period) -> ServiceConfigBuilder {
        ServiceConfigBuilder(Self::new(name, limit, period))
    }

    /// Checks every field; the error names the service, the field and its value.
    pub fn validate(&self) -> Result<(), QuotaError> {
        let name = Some(self.name.as_str());
        let invalid = |field, value: &dyn std::fmt::Display, reason: &str| {
            Err(QuotaError::invalid_config(name, field, value, reason))
        };
        if self.name.trim().is_empty() {
            return Err(QuotaError::invalid_config(
                None,
                "name",
                format_args!("{:?}", self.name),
                "must not be empty",
            ));
        }
        if self.limit == 0 {
            return invalid("limit", &0, "must be at least 1");
        }
        for (field, value) in [
            ("warn_threshold", self.warn_threshold),
            ("critical_threshold", self.critical_threshold),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return invalid(field, &value, "must be in (0, 1]");
            }
        }
        if self.warn_threshold > self.critical_threshold {
            return invalid(
                "warn_threshold",
                &self.warn_threshold,
                &format!(
                    "must not exceed the critical threshold ({})",
                    self.critical_threshold
                ),
            );
        }
        if !(self.reserve_fraction >= 0.0 && self.reserve_fraction < 1.0) {
            return invalid(
                "reserve_fraction",
                &self.reserve_fraction,
                "must be in [0, 1)",
            );
        }
        Ok(())
    }
}

/// Builds a [`ServiceConfig`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServiceConfigBuilder(ServiceConfig);

impl ServiceConfigBuilder {
    /// Sets the warn threshold (fraction of the limit).
    pub fn warn_threshold(mut self, fraction: f64) -> Self {
        self.0.warn_threshold = fraction;
        self
    }

    /// Sets the critical threshold (fraction of the limit).
    pub fn critical_threshold(mut self, fraction: f64) -> Self {
        self.0.critical_threshold = fraction;
        self
    }

    /// Sets the reserve fraction.
    pub fn reserve_fraction(mut self, fraction: f64) -> Self {
        self.0.reserve_fraction = fraction;
        self
    }

    /// The validated config.
    pub fn build(self) -> Result<ServiceConfig, QuotaError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// The services a tracker counts, in order (snapshots list them in this order).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// The services, in display order; names must be unique.
    pub services: Vec<ServiceConfig>,
}

impl TrackerConfig {
    /// A config of these services.
    pub fn new(services: impl IntoIterator<Item = ServiceConfig>) -> Self {
        TrackerConfig {
            services: services.into_iter().collect(),
        }
    }

    /// The defaults: tiingo 500 per month, finnhub 60 per minute, sendgrid 100 per day.
    pub fn defaults() -> Self {
        Self::new([
            ServiceConfig::new("tiingo", 500, Period::Month),
            ServiceConfig::new("finnhub", 60, Period::Minute),
            ServiceConfig::new("sendgrid", 100, Period::Day),
        ])
    }

    /// Adds a service (builder style).
    pub fn with_service(mut self, service: ServiceConfig) -> Self {
        self.services.push(service);
        self
    }

    /// Checks every service and that names are unique (in O(n) for n services).
    pub fn validate(&self) -> Result<(), QuotaError> {
        let mut seen = std::collections::HashSet::with_capacity(self.services.len());
        for service in &self.services {
            service.validate()?;
            if !seen.insert(service.name.as_str()) {
                return Err(QuotaError::invalid_config(
                    Some(&service.name),
                    "name",
                    format_args!("{:?}", service.name),
                    "must be unique (it is used twice)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
