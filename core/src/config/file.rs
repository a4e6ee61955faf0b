//! Config files: a [`TrackerConfig`], a store and a [`SyncPolicy`] read from TOML or JSON.
//!
//! The file's schema is its own (strict: an unknown field is an error naming it; see
//! `repr.rs`), converted into the crate's types and then checked with the same validation as
//! a config built in code ([`TrackerConfig::validate`], the sync policy's checks). Every error
//! says where: a syntax or schema error carries the line and column the parser reports, an
//! invalid value the service and field it concerns (and the line of that field: see
//! `position.rs`).
//!
//! A URL password (`redis://user:password@host`) is never shown: [`StoreUrl`]'s `Display` and
//! `Debug` replace it with `<redacted>`, and every error message built from a file has each
//! password found anywhere in the file's text replaced too (parsers quote the values they
//! refuse, and a password could be quoted from any line).
//!
//! Building a tracker from a file ([`QuotaFile::build`]) lives beside the tracker
//! (`tracker/from_file.rs`), so that the reader does not depend on what it configures.

use super::error::ConfigError;
use super::position::{json_message, json_offset, position_at, position_at_line, toml_offset, Key};
use super::repr::FileRepr;
use super::store_url::StoreUrl;
use super::SyncPolicy;
use super::{Admission, AdmissionText, TrackerConfig};
use crate::error::QuotaError;
use crate::secrets::{url_passwords, Secrets};
use crate::sorted::Lookup;
use std::fmt;
use std::path::Path;

/// A quota config file: the services, the store they are shared through and when to sync.
///
/// The same schema in TOML and JSON; only `services` is required. Each service takes `name`,
/// `limit`, `period` (`"minute"`, `"hour"`, `"day"` or `"month"`), and optionally
/// `warn_threshold`, `critical_threshold`, `reserve_fraction` (defaults 0.5, 0.8, 0.1) and
/// `admission`: `"local"` (the default), `"exact"`, or `{ leased = BLOCK }` (JSON:
/// `{"leased": BLOCK}`), see [`Admission`]. `store` is a [`StoreUrl`]; `exact` and `leased`
/// need one. `[sync]` takes `interval_ms` (60 000), `force_on_critical` (true),
/// `flush_timeout_ms` (3 000) and
/// `[sync.reduced_rate]` with `enter_after_failures` (3), `leave_after_successes` (5) and
/// `fraction` (0.25), see [`SyncPolicy`].
///
/// ```toml
/// store = "redis://app:secret@redis.internal:6379"
///
/// [sync]
/// interval_ms = 10000
///
/// [[services]]
/// name = "llm"
/// limit = 10000
/// period = "day"
/// admission = { leased = 100 }
/// ```
///
/// ```
/// use quota_core::{Admission, Period, QuotaFile};
///
/// let file = QuotaFile::from_toml_str(
///     r#"
///     [[services]]
///     name = "search"
///     limit = 100
///     period = "minute"
///     "#,
/// )?;
/// assert_eq!(file.tracker.services[0].window.period(), Period::Minute);
/// assert_eq!(file.tracker.services[0].admission, Admission::Local);
/// let tracker = file.build()?; // no store: counts kept in this process only
/// tracker.record_call("search", 1)?;
///
/// let json = r#"{"services": [{"name": "x", "limit": 0, "period": "day"}]}"#;
/// let error = QuotaFile::from_json_str(json).unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "invalid config at line 1, column 29: service \"x\": limit must be at least 1 (got 0)"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QuotaFile {
    /// The services (`services` in the file).
    pub tracker: TrackerConfig,
    /// Where counts are kept and shared (`store`); `None`: in this process only.
    pub store: Option<StoreUrl>,
    /// When the tracker syncs with its store (`sync`).
    pub sync: SyncPolicy,
    /// `require_store = true`: [`build`](Self::build) fails with [`ConfigError::Store`] when
    /// the first read of the store fails (a wrong URL, port or password), instead of starting
    /// from zero (see [`QuotaTrackerBuilder::require_store`]).
    ///
    /// [`QuotaTrackerBuilder::require_store`]: crate::QuotaTrackerBuilder::require_store
    pub require_store: bool,
}

impl QuotaFile {
    /// A file of these services, without a store, with the default sync policy.
    pub fn new(tracker: TrackerConfig) -> Self {
        QuotaFile {
            tracker,
            store: None,
            sync: SyncPolicy::default(),
            require_store: false,
        }
    }

    /// Reads a TOML config. Errors: [`ConfigError::Parse`] (not TOML, or not this schema) or
    /// [`ConfigError::Invalid`] (a value the tracker refuses).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, ConfigFormat::Toml)
    }

    /// Reads a JSON config. Errors: [`ConfigError::Parse`] (not JSON, or not this schema) or
    /// [`ConfigError::Invalid`] (a value the tracker refuses).
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, ConfigFormat::Json)
    }

    /// Reads a config in `format`.
    pub fn parse(text: &str, format: ConfigFormat) -> Result<Self, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let parsed = match format {
            ConfigFormat::Toml => toml::from_str::<FileRepr>(text).map_err(|error| {
                let at = error.span().map(|span| position_at(text, span.start));
                (error.message().to_owned(), at)
            }),
            ConfigFormat::Json => serde_json::from_str::<FileRepr>(text).map_err(|error| {
                let at = (error.line() > 0)
                    .then(|| position_at_line(text, error.line(), error.column()));
                (json_message(&error), at)
            }),
        };
        let file = match parsed {
            Ok(repr) => repr
                .into_file()
                .and_then(|file| file.check().map(|()| file)),
            Err((message, at)) => {
                let secrets = file_secrets(text, format);
                return Err(ConfigError::Parse {
                    path: None,
                    format,
                    line: at.map(|(line, _)| line),
                    column: at.map(|(_, column)| column),
                    message: secrets.redact(&message),
                });
            }
        };
        match file {
            Ok(file) => Ok(file),
            Err((error, place)) => {
                let keys = place.keys();
                let at = match format {
                    ConfigFormat::Toml => toml_offset(text, &keys),
                    ConfigFormat::Json => json_offset(text, &keys),
                }
                .map(|offset| position_at(text, offset));
                let secrets = file_secrets(text, format);
                Err(ConfigError::Invalid {
                    path: None,
                    line: at.map(|(line, _)| line),
                    column: at.map(|(_, column)| column),
                    error: Box::new(redact_quota_error(&secrets, error)),
                })
            }
        }
    }

    /// Reads the config file at `path`: TOML if its name ends in `.toml`, JSON if in `.json`
    /// (any case). Errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let format = ConfigFormat::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        Self::parse(&text, format).map_err(|error| error.in_file(path))
    }

    /// Checks the file as a whole: the tracker's validation of the services
    /// ([`TrackerConfig::validate`]), the sync policy's (the error names its field as in the
    /// file: `sync.reduced_rate.fraction`), a `leased` block of at least 1, and a store for
    /// any `exact` or `leased` service. A file that parsed passes it.
    pub fn validate(&self) -> Result<(), QuotaError> {
        self.check().map_err(|(error, _)| error)
    }

    /// [`validate`](Self::validate), also answering which part of the file is wrong.
    fn check(&self) -> Result<(), (QuotaError, Place)> {
        let services = &self.tracker.services;
        if let Err(error) = self.tracker.validate() {
            // The service `TrackerConfig::validate` stopped at: the same loop.
            let mut seen = Lookup::default();
            let index = services
                .iter()
                .position(|s| s.validate().is_err() || seen.insert(s.name.as_str(), ()).is_some());
            let place = match (index, &error) {
                (Some(index), QuotaError::InvalidConfig { field, .. }) => {
                    Place::Service(index, field)
                }
                _ => Place::Services,
            };
            return Err((error, place));
        }
        if let Err(error) = self.sync.validate() {
            let mut error = error;
            if let QuotaError::InvalidConfig { field, .. } = &mut error {
                *field = sync_field(field);
            }
            let place = match &error {
                QuotaError::InvalidConfig { field, .. } => Place::Sync(field),
                _ => Place::Root,
            };
            return Err((error, place));
        }
        for (index, service) in services.iter().enumerate() {
            let reason = match service.admission {
                Admission::Exact | Admission::Leased { .. } if self.store.is_none() => {
                    "needs a store shared by the instances (set `store`: file:PATH or \
                     redis://HOST)"
                }
                _ => continue,
            };
            let error = QuotaError::invalid_config(
                Some(&service.name),
                "admission",
                AdmissionText(service.admission),
                reason,
            );
            return Err((error, Place::Service(index, "admission")));
        }
        if self.require_store && self.store.is_none() {
            let error = QuotaError::invalid_config(
                None,
                "require_store",
                true,
                "needs a store to require (set `store`: file:PATH or redis://HOST)",
            );
            return Err((error, Place::Field("require_store")));
        }
        Ok(())
    }
}

/// The file's field for a [`SyncPolicy`] field that `SyncPolicy::validate` names.
fn sync_field(field: &'static str) -> &'static str {
    match field {
        "interval_ms" => "sync.interval_ms",
        "force_on_critical" => "sync.force_on_critical",
        "enter_after_failures" => "sync.reduced_rate.enter_after_failures",
        "leave_after_successes" => "sync.reduced_rate.leave_after_successes",
        "fraction" => "sync.reduced_rate.fraction",
        other => other,
    }
}

/// Which part of the file a validation error is about.
pub(super) enum Place {
    Root,
    Services,
    /// Service `index`, its field.
    Service(usize, &'static str),
    /// A sync field, as `sync_field` names it.
    Sync(&'static str),
    /// A field of the file itself.
    Field(&'static str),
}

impl Place {
    fn keys(&self) -> Vec<Key<'static>> {
        match self {
            Place::Root => Vec::new(),
            Place::Services => vec![Key::Field("services")],
            Place::Service(index, field) => vec![
                Key::Field("services"),
                Key::Index(*index),
                Key::Field(field),
            ],
            Place::Sync(field) => field.split('.').map(Key::Field).collect(),
            Place::Field(field) => vec![Key::Field(field)],
        }
    }
}

/// The two formats of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigFormat {
    /// TOML (`.toml`), read with the `toml` crate.
    Toml,
    /// JSON (`.json`).
    Json,
}

impl ConfigFormat {
    /// The format a file name's extension says (`.toml` or `.json`, any case), if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?;
        if extension.eq_ignore_ascii_case("toml") {
            Some(ConfigFormat::Toml)
        } else if extension.eq_ignore_ascii_case("json") {
            Some(ConfigFormat::Json)
        } else {
            None
        }
    }
}

impl fmt::Display for ConfigFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigFormat::Toml => "TOML",
            ConfigFormat::Json => "JSON",
        })
    }
}

/// The passwords in a file's raw text and in each of its strings, decoded.
fn file_secrets(text: &str, format: ConfigFormat) -> Secrets {
    let mut found = Vec::new();
    url_passwords(text, true, &mut found);
    if !text.contains("://") && !text.contains('\\') {
        // No URL, and no escape that could spell one.
        return Secrets::new(found);
    }
    match format {
        ConfigFormat::Toml => {
            if let Ok(root) = toml::de::DeTable::parse(text) {
                toml_strings(root.get_ref(), &mut |s| url_passwords(s, false, &mut found));
            }
        }
        ConfigFormat::Json => json_strings(text, &mut |s| url_passwords(s, false, &mut found)),
    }
    Secrets::new(found)
}

/// `error` with every secret in its texts redacted.
fn redact_quota_error(secrets: &Secrets, mut error: QuotaError) -> QuotaError {
    if let QuotaError::InvalidConfig {
        service,
        value,
        reason,
        ..
    } = &mut error
    {
        for text in service.iter_mut().chain([value, reason]) {
            *text = secrets.redact(text);
        }
    }
    error
}

/// Calls `each` with every key and string value of a TOML table, decoded.
fn toml_strings(table: &toml::de::DeTable<'_>, each: &mut dyn FnMut(&str)) {
    use toml::de::DeValue;
    fn value(item: &DeValue<'_>, each: &mut dyn FnMut(&str)) {
        match item {
            DeValue::String(text) => each(text),
            DeValue::Array(array) => {
                for element in array {
                    value(element.get_ref(), each);
                }
            }
            DeValue::Table(table) => toml_strings(table, each),
            _ => {}
        }
    }
    for (key, item) in table {
        each(key.get_ref());
        value(item.get_ref(), each);
    }
}

/// Calls `each` with every string of a JSON text (valid or not), decoded where it can be.
fn json_strings(text: &str, each: &mut dyn FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let end = (i + 1).min(bytes.len());
        if let Some(literal) = text.get(start..end) {
            match serde_json::from_str::<String>(literal) {
                Ok(decoded) => each(&decoded),
                Err(_) => each(literal),
            }
        }
        i = end;
    }
}
