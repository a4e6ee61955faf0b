//! The config file's schema: the serde `*Repr` types TOML and JSON are read into (strict: an
//! unknown field is an error naming it), converted into a [`QuotaFile`].

use super::file::{Place, QuotaFile};
use super::store_url::StoreUrl;
use super::{window_spec, Admission, Limit, ServiceConfig, TrackerConfig};
use super::{ReducedRatePolicy, SyncPolicy};
use crate::error::QuotaError;
use crate::window::{Period, WindowSpec};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "config file")]
pub(super) struct FileRepr {
    services: Vec<ServiceRepr>,
    #[serde(default)]
    store: Option<StoreRepr>,
    #[serde(default)]
    sync: SyncRepr,
    #[serde(default)]
    require_store: bool,
}

/// A [`StoreUrl`] in a file. Not a `Deserialize` of `StoreUrl` itself: a parser's own error
/// display (`toml`'s quotes the line) could show the password, so only this module, which
/// shows messages only, reads one.
struct StoreRepr(StoreUrl);

impl<'de> Deserialize<'de> for StoreRepr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StoreVisitor;
        impl Visitor<'_> for StoreVisitor {
            type Value = StoreRepr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a store URL (memory:, file:PATH, redis://... or rediss://...)")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<StoreRepr, E> {
                text.parse().map(StoreRepr).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(StoreVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "service")]
struct ServiceRepr {
    name: String,
    // Both given, or neither and `limits` instead (checked in `into_file`, naming the field).
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    period: Option<Period>,
    #[serde(default = "default_warn")]
    warn_threshold: f64,
    #[serde(default = "default_critical")]
    critical_threshold: f64,
    #[serde(default = "default_reserve")]
    reserve_fraction: f64,
    #[serde(default)]
    admission: AdmissionRepr,
    #[serde(default = "super::enforce_by_default")]
    enforce: bool,
    // Wide integers, range-checked with the window spec (a clear message, not serde's "expected
    // u8" for 300 or -1).
    #[serde(default = "one")]
    every: i64,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    anchor_day: Option<i64>,
    /// Several limits, each in its own window: the first is the service's own.
    #[serde(default)]
    limits: Option<Vec<LimitRepr>>,
}

/// One entry of a service's `limits`: a limit's count and window, and optionally its own
/// thresholds and `enforce` (the service's apply where it sets none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "limit")]
struct LimitRepr {
    limit: u64,
    period: Period,
    #[serde(default = "one")]
    every: i64,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    anchor_day: Option<i64>,
    #[serde(default)]
    warn_threshold: Option<f64>,
    #[serde(default)]
    critical_threshold: Option<f64>,
    #[serde(default)]
    enforce: Option<bool>,
}

fn one() -> i64 {
    1
}

fn default_warn() -> f64 {
    ServiceConfig::DEFAULT_WARN
}

fn default_critical() -> f64 {
    ServiceConfig::DEFAULT_CRITICAL
}

fn default_reserve() -> f64 {
    ServiceConfig::DEFAULT_RESERVE
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default, rename = "sync")]
struct SyncRepr {
    interval_ms: u64,
    force_on_critical: bool,
    reduced_rate: ReducedRateRepr,
    flush_timeout_ms: u64,
}

impl Default for SyncRepr {
    fn default() -> Self {
        let policy = SyncPolicy::default();
        SyncRepr {
            interval_ms: policy.interval_ms,
            force_on_critical: policy.force_on_critical,
            reduced_rate: ReducedRateRepr::default(),
            flush_timeout_ms: policy.flush_timeout_ms,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default, rename = "reduced_rate")]
struct ReducedRateRepr {
    enter_after_failures: u32,
    leave_after_successes: u32,
    fraction: f64,
}

impl Default for ReducedRateRepr {
    fn default() -> Self {
        let policy = ReducedRatePolicy::default();
        ReducedRateRepr {
            enter_after_failures: policy.enter_after_failures,
            leave_after_successes: policy.leave_after_successes,
            fraction: policy.fraction,
        }
    }
}

/// `"local"`, `"exact"`, `{ leased = BLOCK }` (or, as `Admission` serializes,
/// `{ leased = { block = BLOCK } }`).
#[derive(Default)]
struct AdmissionRepr(Admission);

const ADMISSION: &str = "\"local\", \"exact\" or { leased = BLOCK }";

impl<'de> Deserialize<'de> for AdmissionRepr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AdmissionVisitor;
        impl<'de> Visitor<'de> for AdmissionVisitor {
            type Value = AdmissionRepr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an admission: {ADMISSION}")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<AdmissionRepr, E> {
                match text {
                    "local" => Ok(AdmissionRepr(Admission::Local)),
                    "exact" => Ok(AdmissionRepr(Admission::Exact)),
                    "leased" => Err(E::custom(
                        "leased admission needs its block: admission = { leased = 100 } \
                         (JSON: \"admission\": {\"leased\": 100})",
                    )),
                    other => Err(E::custom(format_args!(
                        "unknown admission `{other}`, expected {ADMISSION}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AdmissionRepr, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format_args!(
                        "empty admission, expected {ADMISSION}"
                    )));
                };
                if key != "leased" {
                    return Err(de::Error::unknown_field(&key, &["leased"]));
                }
                let BlockRepr(block) = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("an admission table has one key: leased"));
                }
                Ok(AdmissionRepr(Admission::Leased { block }))
            }
        }
        deserializer.deserialize_any(AdmissionVisitor)
    }
}

/// A leased block: a whole number, or `{ block = N }`.
struct BlockRepr(u64);

impl<'de> Deserialize<'de> for BlockRepr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlockVisitor;
        impl<'de> Visitor<'de> for BlockVisitor {
            type Value = BlockRepr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the block, a whole number of calls")
            }
            fn visit_u64<E: de::Error>(self, block: u64) -> Result<BlockRepr, E> {
                Ok(BlockRepr(block))
            }
            fn visit_i64<E: de::Error>(self, block: i64) -> Result<BlockRepr, E> {
                u64::try_from(block)
                    .map(BlockRepr)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(block), &self))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BlockRepr, A::Error> {
                let mut block = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "block" {
                        return Err(de::Error::unknown_field(&key, &["block"]));
                    }
                    if block.is_some() {
                        return Err(de::Error::duplicate_field("block"));
                    }
                    block = Some(map.next_value::<u64>()?);
                }
                block
                    .map(BlockRepr)
                    .ok_or_else(|| de::Error::missing_field("block"))
            }
        }
        deserializer.deserialize_any(BlockVisitor)
    }
}

impl FileRepr {
    /// The file, or a window spec's error and where it is.
    pub(super) fn into_file(self) -> Result<QuotaFile, (QuotaError, Place)> {
        let mut services = Vec::with_capacity(self.services.len());
        for (index, s) in self.services.into_iter().enumerate() {
            let listed = s.limits.is_some();
            services.push(s.into_config().map_err(|error| {
                let field = match &error {
                    // A window field inside `limits` is found through the list.
                    _ if listed => "limits",
                    QuotaError::InvalidConfig { field, .. } => *field,
                    _ => "period",
                };
                (error, Place::Service(index, field))
            })?);
        }
        Ok(QuotaFile {
            tracker: TrackerConfig::new(services),
            store: self.store.map(|StoreRepr(store)| store),
            require_store: self.require_store,
            sync: SyncPolicy {
                interval_ms: self.sync.interval_ms,
                force_on_critical: self.sync.force_on_critical,
                reduced_rate: ReducedRatePolicy {
                    enter_after_failures: self.sync.reduced_rate.enter_after_failures,
                    leave_after_successes: self.sync.reduced_rate.leave_after_successes,
                    fraction: self.sync.reduced_rate.fraction,
                },
                flush_timeout_ms: self.sync.flush_timeout_ms,
            },
        })
    }
}

impl ServiceRepr {
    /// The service's config: its limits as `limit` + `period` (one) or `limits` (the first
    /// entry is the service's own limit; its own thresholds and `enforce`, if it sets them,
    /// are its alone, the service's still apply to every other entry that sets none).
    fn into_config(self) -> Result<ServiceConfig, QuotaError> {
        let name = self.name;
        let invalid = |field, value: &dyn fmt::Display, reason: &str| {
            QuotaError::invalid_config(Some(&name), field, value, reason)
        };
        let entries = match (self.limits, self.limit, self.period) {
            (Some(_), Some(limit), _) => {
                return Err(invalid(
                    "limit",
                    &limit,
                    "goes inside `limits` when that is given",
                ))
            }
            (Some(_), None, Some(period)) => {
                return Err(invalid(
                    "period",
                    &period,
                    "goes inside `limits` when that is given",
                ))
            }
            (Some(entries), None, None) => {
                let window_fields =
                    self.every != 1 || self.timezone.is_some() || self.anchor_day.is_some();
                if window_fields {
                    return Err(invalid(
                        "limits",
                        &"[...]",
                        "takes every, timezone and anchor_day in each entry, not beside it",
                    ));
                }
                entries
            }
            (None, Some(limit), Some(period)) => vec![LimitRepr {
                limit,
                period,
                every: self.every,
                timezone: self.timezone,
                anchor_day: self.anchor_day,
                warn_threshold: None,
                critical_threshold: None,
                enforce: None,
            }],
            (None, None, _) => {
                return Err(invalid(
                    "limit",
                    &"nothing",
                    "is required: give `limit` and `period`, or a list `limits`",
                ))
            }
            (None, Some(_), None) => {
                return Err(invalid("period", &"nothing", "is required beside `limit`"))
            }
        };
        let mut listed = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut limit = Limit::new(entry.limit, entry.window(&name)?);
            limit.warn_threshold = entry.warn_threshold;
            limit.critical_threshold = entry.critical_threshold;
            limit.enforce = entry.enforce;
            listed.push(limit);
        }
        // The first limit is a placeholder until the list sets it.
        let mut config = ServiceConfig::new(name, 1, Period::Day);
        config.warn_threshold = self.warn_threshold;
        config.critical_threshold = self.critical_threshold;
        config.reserve_fraction = self.reserve_fraction;
        config.admission = self.admission.0;
        config.enforce = self.enforce;
        config.with_listed_limits(listed)
    }
}

impl LimitRepr {
    fn window(&self, service: &str) -> Result<WindowSpec, QuotaError> {
        window_spec(
            service,
            self.period,
            self.every,
            self.timezone.as_deref(),
            self.anchor_day,
        )
    }
}
