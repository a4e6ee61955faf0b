//! Config files: a [`TrackerConfig`], a store and a [`SyncPolicy`] read from TOML or JSON.
//!
//! The file's schema is its own (strict: an unknown field is an error naming it), converted
//! into the crate's types and then checked with the same validation as a config built in code
//! ([`TrackerConfig::validate`], the sync policy's checks). Every error says where: a syntax or
//! schema error carries the line and column the parser reports, an invalid value the service
//! and field it concerns (and the line of that field).
//!
//! A URL password (`redis://user:password@host`) is never shown: [`StoreUrl`]'s `Display` and
//! `Debug` replace it with `<redacted>`, and every error message built from a file has each
//! password found anywhere in the file's text replaced too (parsers quote the values they
//! refuse, and a password could be quoted from any line).

use crate::error::{ConfigProblem, QuotaError};
use crate::persistence::{ReducedRatePolicy, SyncPolicy};
use crate::service::{Admission, ServiceConfig, TrackerConfig};
use crate::store::{MemoryStore, Store, StoreError};
use crate::tracker::{QuotaTracker, QuotaTrackerBuilder};
use crate::window::Period;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
/// assert_eq!(file.tracker.services[0].period, Period::Minute);
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
            Ok(repr) => repr.into_file(),
            Err((message, at)) => {
                let secrets = Secrets::in_file(text, format);
                return Err(ConfigError::Parse {
                    path: None,
                    format,
                    line: at.map(|(line, _)| line),
                    column: at.map(|(_, column)| column),
                    message: secrets.redact(&message),
                });
            }
        };
        match file.check() {
            Ok(()) => Ok(file),
            Err((error, place)) => {
                let keys = place.keys();
                let at = match format {
                    ConfigFormat::Toml => toml_offset(text, &keys),
                    ConfigFormat::Json => json_offset(text, &keys),
                }
                .map(|offset| position_at(text, offset));
                let secrets = Secrets::in_file(text, format);
                Err(ConfigError::Invalid {
                    path: None,
                    line: at.map(|(line, _)| line),
                    column: at.map(|(_, column)| column),
                    error: Box::new(secrets.redact_quota_error(error)),
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

    /// A tracker builder with the file's services, sync policy and store (opened here: a
    /// fresh [`MemoryStore`] for `memory:`), for adding a clock or anything else before
    /// [`build`](QuotaTrackerBuilder::build).
    ///
    /// Errors: [`ConfigError::Invalid`] if the file does not [`validate`](Self::validate);
    /// [`ConfigError::Unsupported`] for a Redis store in a build without the `redis` feature
    /// (or a file store on wasm32); [`ConfigError::Store`] if the store refuses its URL.
    pub fn builder(&self) -> Result<QuotaTrackerBuilder, ConfigError> {
        self.validate().map_err(ConfigError::invalid)?;
        let mut builder =
            QuotaTracker::builder(self.tracker.clone()).sync_policy(self.sync.clone());
        if self.require_store {
            builder = builder.require_store();
        }
        Ok(match &self.store {
            Some(store) => builder.boxed_store(store.open()?),
            None => builder,
        })
    }

    /// The tracker: [`builder`](Self::builder), built (which reads the stored counts). With
    /// `require_store`, a first read that fails is a [`ConfigError::Store`].
    pub fn build(&self) -> Result<QuotaTracker, ConfigError> {
        self.builder()?
            .build()
            .map_err(|error| match (error, &self.store) {
                (QuotaError::Store(error), Some(store)) => ConfigError::Store {
                    store: store.to_string(),
                    error,
                },
                (error, _) => ConfigError::invalid(error),
            })
    }

    /// [`validate`](Self::validate), also answering which part of the file is wrong.
    fn check(&self) -> Result<(), (QuotaError, Place)> {
        let services = &self.tracker.services;
        if let Err(error) = self.tracker.validate() {
            // The service `TrackerConfig::validate` stopped at: the same loop.
            let mut seen = HashSet::with_capacity(services.len());
            let index = services
                .iter()
                .position(|s| s.validate().is_err() || !seen.insert(s.name.as_str()));
            let place = match (index, &error) {
                (Some(index), QuotaError::InvalidConfig { field, .. }) => {
                    Place::Service(index, field)
                }
                _ => Place::Services,
            };
            return Err((error, place));
        }
        if let Err(error) = self.sync.validate() {
            let error = match error {
                QuotaError::InvalidConfig {
                    service,
                    field,
                    value,
                    reason,
                } => QuotaError::InvalidConfig {
                    service,
                    field: sync_field(field),
                    value,
                    reason,
                },
                other => other,
            };
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
                format_args!("{:?}", service.admission),
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
enum Place {
    Root,
    Services,
    /// Service `index`, its field.
    Service(usize, &'static str),
    /// A sync field, as `sync_field` names it.
    Sync(&'static str),
    /// A field of the file itself.
    Field(&'static str),
}

/// A step into a TOML or JSON document.
#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    Field(&'a str),
    Index(usize),
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

/// Why a config file could not be read, or a tracker not be built from it.
///
/// No message contains a password from the file's store URL (nor, for safety, any text of the
/// file that looks like a URL password).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// [`QuotaFile::load`] was given a name that ends neither in `.toml` nor in `.json`.
    #[error("{}: unknown config format: the name must end in .toml or .json", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// Not TOML or JSON, or not a config file: a syntax error, a value of the wrong type, an
    /// unknown field (named), a missing one (named), an invalid store URL or admission. Reads
    /// `invalid TOML in quota.toml at line 4, column 9: unknown field `limt`, expected ...`.
    #[error("invalid {format}{} {message}", Where::new(path, *line, *column))]
    Parse {
        /// The file, if read by [`QuotaFile::load`].
        path: Option<PathBuf>,
        /// The file's format.
        format: ConfigFormat,
        /// The line (from 1) the parser points at, if it does.
        line: Option<usize>,
        /// The column (from 1, in characters) the parser points at, if it does.
        column: Option<usize>,
        /// What is wrong, as the parser says it.
        message: String,
    },
    /// A value the tracker refuses: `error` is a [`QuotaError::InvalidConfig`] naming the
    /// service and the field, exactly as building that config in code would report it; `line`
    /// and `column` point at the field (or, if the file leaves it out, at its service). Reads
    /// `invalid config in quota.toml at line 12, column 1: service "finnhub": limit must be at
    /// least 1 (got 0)`.
    #[error("invalid config{} {}", Where::new(path, *line, *column), Problem(error))]
    Invalid {
        /// The file, if read by [`QuotaFile::load`].
        path: Option<PathBuf>,
        /// The line of the field (from 1), when the file was parsed from text.
        line: Option<usize>,
        /// The column of the field (from 1, in characters), when the file was parsed from text.
        column: Option<usize>,
        /// The validation error (boxed: it is large).
        error: Box<QuotaError>,
    },
    /// This build cannot open that kind of store: a Redis URL without the crate feature
    /// `redis`, or a file store on wasm32.
    #[error("cannot open store {store}: {reason}")]
    Unsupported {
        /// The store URL, its password redacted.
        store: String,
        /// Why, and what to change.
        reason: &'static str,
    },
    /// The store refused its URL (the Redis client's own checks), or, with `require_store`,
    /// its first read failed.
    #[error("cannot open store {store}: {error}")]
    Store {
        /// The store URL, its password redacted.
        store: String,
        /// The store's error (its messages never contain the password).
        error: StoreError,
    },
}

impl ConfigError {
    fn invalid(error: QuotaError) -> Self {
        ConfigError::Invalid {
            path: None,
            line: None,
            column: None,
            error: Box::new(error),
        }
    }

    /// The same error, naming `file`.
    fn in_file(self, file: &Path) -> Self {
        match self {
            ConfigError::Parse {
                format,
                line,
                column,
                message,
                ..
            } => ConfigError::Parse {
                path: Some(file.to_owned()),
                format,
                line,
                column,
                message,
            },
            ConfigError::Invalid {
                line,
                column,
                error,
                ..
            } => ConfigError::Invalid {
                path: Some(file.to_owned()),
                line,
                column,
                error,
            },
            other => other,
        }
    }
}

/// ` in FILE at line L, column C:` (each part only when known).
struct Where<'a> {
    path: Option<&'a Path>,
    line: Option<usize>,
    column: Option<usize>,
}

impl<'a> Where<'a> {
    fn new(path: &'a Option<PathBuf>, line: Option<usize>, column: Option<usize>) -> Self {
        Where {
            path: path.as_deref(),
            line,
            column,
        }
    }
}

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.path {
            write!(f, " in {}", path.display())?;
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " at line {line}, column {column}")?,
            (Some(line), None) => write!(f, " at line {line}")?,
            _ => {}
        }
        f.write_str(":")
    }
}

/// An invalid-config error without its `invalid config: ` prefix.
struct Problem<'a>(&'a QuotaError);

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            QuotaError::InvalidConfig {
                service,
                field,
                value,
                reason,
            } => ConfigProblem {
                service: service.as_deref(),
                field,
                value,
                reason,
            }
            .fmt(f),
            other => other.fmt(f),
        }
    }
}

/// Where a tracker keeps and shares its counts, as a config file names it:
///
/// - `memory:`: a [`MemoryStore`] (a fresh one for each tracker built: counts stay in the
///   process);
/// - `file:PATH`: a [`FileStore`](crate::FileStore) at `PATH` (as written: a relative path is
///   relative to the working directory), shared by the processes of one machine;
/// - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://...` for TLS: a `RedisStore`
///   (crate feature `redis`), shared by processes on any number of machines. Characters `@`,
///   `/`, `?`, `#` and `%` in the password are percent-encoded (`%40`, `%2F`, `%3F`, `%23`,
///   `%25`).
///
/// `Display` and `Debug` show a Redis URL with its password replaced by `<redacted>`.
///
/// ```
/// use quota_core::StoreUrl;
/// let url: StoreUrl = "redis://app:hunter2@redis.internal:6379/0".parse()?;
/// assert_eq!(url.to_string(), "redis://app:<redacted>@redis.internal:6379/0");
/// assert!(!format!("{url:?}").contains("hunter2"));
/// let file: StoreUrl = "file:/var/lib/app/quota.json".parse()?;
/// assert_eq!(file, StoreUrl::File("/var/lib/app/quota.json".into()));
/// assert!("postgres://db".parse::<StoreUrl>().is_err());
/// # Ok::<(), quota_core::StoreUrlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory:`
    Memory,
    /// `file:PATH`
    File(PathBuf),
    /// `redis://...` or `rediss://...`
    Redis(RedisUrl),
}

/// A `redis://` or `rediss://` URL, whose password `Display` and `Debug` never show.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: String,
}

/// Why a text is not a [`StoreUrl`]. The message never quotes the text (it may hold a
/// password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store URL: {0}")]
pub struct StoreUrlError(&'static str);

impl StoreUrl {
    /// Opens the store: a fresh [`MemoryStore`], a [`FileStore`](crate::FileStore), or a
    /// `RedisStore` (with the crate feature `redis`; it connects at its first use).
    ///
    /// Errors: [`ConfigError::Unsupported`] for a store this build cannot open (Redis without
    /// the `redis` feature, a file on wasm32), [`ConfigError::Store`] for a URL the Redis
    /// client refuses.
    pub fn open(&self) -> Result<Box<dyn Store>, ConfigError> {
        match self {
            StoreUrl::Memory => Ok(Box::new(MemoryStore::new())),
            StoreUrl::File(path) => open_file(path),
            StoreUrl::Redis(url) => open_redis(url),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn open_file(path: &Path) -> Result<Box<dyn Store>, ConfigError> {
    Ok(Box::new(crate::store::FileStore::new(path)))
}

#[cfg(target_arch = "wasm32")]
fn open_file(path: &Path) -> Result<Box<dyn Store>, ConfigError> {
    Err(ConfigError::Unsupported {
        store: StoreUrl::File(path.to_owned()).to_string(),
        reason: "file stores are native only",
    })
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
fn open_redis(url: &RedisUrl) -> Result<Box<dyn Store>, ConfigError> {
    crate::store::RedisStore::new(url.expose_secret())
        .map(|store| Box::new(store) as Box<dyn Store>)
        .map_err(|error| {
            let secrets = Secrets::in_text(url.expose_secret());
            ConfigError::Store {
                store: url.to_string(),
                error: secrets.redact_store_error(error),
            }
        })
}

#[cfg(not(all(feature = "redis", not(target_arch = "wasm32"))))]
fn open_redis(url: &RedisUrl) -> Result<Box<dyn Store>, ConfigError> {
    Err(ConfigError::Unsupported {
        store: url.to_string(),
        reason: "this build has no Redis store: build quota-core with the feature `redis` \
                 (native only)",
    })
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "expected memory:, file:PATH, redis://HOST[:PORT][/DB] or \
                                rediss://HOST[:PORT][/DB]";
        if text == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = text.strip_prefix("file:") {
            // `file://HOST/PATH` names a file on another machine (and may carry a password):
            // not a local path. `file:///PATH` is the local `/PATH`.
            let path = match path.strip_prefix("//") {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                Some(rest) if rest.starts_with("localhost/") => &rest["localhost".len()..],
                Some(_) => {
                    return Err(StoreUrlError(
                        "file:// with a host is not a local file: write file:/PATH or \
                         file:///PATH (a file store is shared by the processes of one machine)",
                    ))
                }
                None => path,
            };
            // `file:////HOST/...` would show as `file://HOST/...` (a UNC-like path that may
            // carry a password too): the same refusal.
            if path.starts_with("//") {
                return Err(StoreUrlError(
                    "file:// with a host is not a local file: write file:/PATH or \
                     file:///PATH (a file store is shared by the processes of one machine)",
                ));
            }
            if path.is_empty() {
                return Err(StoreUrlError("file: needs a path (file:PATH)"));
            }
            return Ok(StoreUrl::File(PathBuf::from(path)));
        }
        let Some(rest) = text
            .strip_prefix("redis://")
            .or_else(|| text.strip_prefix("rediss://"))
        else {
            return Err(StoreUrlError(EXPECTED));
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(StoreUrlError(
                "a Redis URL has no spaces or control characters",
            ));
        }
        let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if after.contains('@') {
            return Err(StoreUrlError(
                "an `@` after the host: percent-encode `/`, `?`, `#` and `@` in the user and \
                 password (%2F, %3F, %23, %40)",
            ));
        }
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if host.is_empty() || host.starts_with(':') {
            return Err(StoreUrlError("the Redis URL names no host"));
        }
        Ok(StoreUrl::Redis(RedisUrl {
            url: text.to_owned(),
        }))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory:"),
            StoreUrl::File(path) => write!(f, "file:{}", path.display()),
            StoreUrl::Redis(url) => url.fmt(f),
        }
    }
}

impl RedisUrl {
    /// The URL as written, password included: for connecting, never for showing.
    pub fn expose_secret(&self) -> &str {
        &self.url
    }

    /// Whether it is a `rediss://` (TLS) URL.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// The URL with its password replaced by `<redacted>`.
    fn redacted(&self) -> String {
        let (scheme, rest) = self.url.split_at(self.url.find("://").map_or(0, |i| i + 3));
        let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let shown = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, password)) if !password.is_empty() => {
                    format!("{scheme}{user}:<redacted>@{host}{after}")
                }
                _ => self.url.clone(),
            },
            None => self.url.clone(),
        };
        // Whatever the structure, no password text survives.
        Secrets::in_text(&self.url).redact(&shown)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// The file's schema.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "config file")]
struct FileRepr {
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
    limit: u64,
    period: Period,
    #[serde(default = "default_warn")]
    warn_threshold: f64,
    #[serde(default = "default_critical")]
    critical_threshold: f64,
    #[serde(default = "default_reserve")]
    reserve_fraction: f64,
    #[serde(default)]
    admission: AdmissionRepr,
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
    fn into_file(self) -> QuotaFile {
        let services = self.services.into_iter().map(|s| ServiceConfig {
            name: s.name,
            limit: s.limit,
            period: s.period,
            warn_threshold: s.warn_threshold,
            critical_threshold: s.critical_threshold,
            reserve_fraction: s.reserve_fraction,
            admission: s.admission.0,
        });
        QuotaFile {
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
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Positions.

/// serde_json's message without its ` at line L column C` (the error carries those).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The line and column (from 1; the column in characters) of byte `offset` in `text`.
fn position_at(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// `line` and `column` as serde_json counts them (the column in bytes) with the column in
/// characters.
fn position_at_line(text: &str, line: usize, column: usize) -> (usize, usize) {
    let line_start = match line {
        0 | 1 => 0,
        _ => text
            .match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1),
    };
    let offset = line_start.saturating_add(column.saturating_sub(1));
    let (_, column) = position_at(text, offset);
    (line, column)
}

/// The byte offset of the key (or element) at `keys` in a TOML document, or of the deepest
/// part of the path that exists.
fn toml_offset(text: &str, keys: &[Key<'_>]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut offset = root.span().start;
    let root = DeValue::Table(root.into_inner());
    let mut value = &root;
    for key in keys {
        let next = match (key, value) {
            (Key::Field(name), DeValue::Table(table)) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == *name)
                .map(|(k, v)| (k.span().start, v)),
            // An element points at its start (`[[services]]`, `{`), not at its first key.
            (Key::Index(index), DeValue::Array(array)) => array
                .into_iter()
                .nth(*index)
                .map(|item| (item.span().start, item)),
            _ => None,
        };
        let Some((start, item)) = next else { break };
        offset = start;
        value = item.get_ref();
    }
    Some(offset)
}

/// The byte offset of the key (or element) at `keys` in a JSON document that parsed, or of
/// the deepest part of the path that exists.
fn json_offset(text: &str, keys: &[Key<'_>]) -> Option<usize> {
    let mut cursor = JsonCursor { text, at: 0 };
    cursor.space();
    let mut found = cursor.at;
    for key in keys {
        cursor.space();
        let next = match key {
            Key::Field(name) => cursor.find_member(name)?,
            Key::Index(index) => cursor.find_element(*index)?,
        };
        let Some(start) = next else { break };
        found = start;
    }
    Some(found)
}

/// A read position in a JSON text that parsed (so it is well-formed; a surprise answers
/// `None`, never a panic).
struct JsonCursor<'a> {
    text: &'a str,
    at: usize,
}

impl JsonCursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Skips a string; answers its text, decoded.
    fn string(&mut self) -> Option<String> {
        self.space();
        let start = self.at;
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }

    /// Skips one value (nesting at most `depth` deep).
    fn skip(&mut self, depth: usize) -> Option<()> {
        self.space();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth == 0 => None,
            b'{' => {
                self.at += 1;
                self.space();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.skip(depth - 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                self.space();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth - 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// In an object: moves to the value of member `name` and answers where its key starts
    /// (`Some(None)`: not an object, or no such member).
    fn find_member(&mut self, name: &str) -> Option<Option<usize>> {
        self.space();
        if self.peek()? != b'{' {
            return Some(None);
        }
        self.at += 1;
        self.space();
        if self.peek()? == b'}' {
            return Some(None);
        }
        loop {
            self.space();
            let key_start = self.at;
            let key = self.string()?;
            self.eat(b':')?;
            if key == name {
                self.space();
                return Some(Some(key_start));
            }
            self.skip(JSON_DEPTH)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                _ => return Some(None),
            }
        }
    }

    /// In an array: moves to element `index` and answers where it starts.
    fn find_element(&mut self, index: usize) -> Option<Option<usize>> {
        self.space();
        if self.peek()? != b'[' {
            return Some(None);
        }
        self.at += 1;
        self.space();
        if self.peek()? == b']' {
            return Some(None);
        }
        for _ in 0..index {
            self.skip(JSON_DEPTH)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                _ => return Some(None),
            }
            self.space();
        }
        Some(Some(self.at))
    }
}

/// How deep the locator follows nested JSON (serde_json refuses more than 128 levels).
const JSON_DEPTH: usize = 256;

// ---------------------------------------------------------------------------------------------
// Passwords.

/// Every text in a file that may be a URL password, as written, percent-decoded and as
/// `Debug` escapes it: replaced by `<redacted>` wherever it appears in a message.
struct Secrets(Vec<String>);

impl Secrets {
    /// The passwords of every `scheme://user:password@` in `text` (one string).
    fn in_text(text: &str) -> Secrets {
        let mut found = Vec::new();
        url_passwords(text, false, &mut found);
        Secrets::new(found)
    }

    /// The passwords in a file's raw text and in each of its strings, decoded.
    fn in_file(text: &str, format: ConfigFormat) -> Secrets {
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

    fn new(mut found: Vec<String>) -> Secrets {
        found.retain(|secret| !secret.is_empty());
        // Longest first, so that no secret is left half replaced by a shorter one.
        found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        found.dedup();
        Secrets(found)
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    fn redact_quota_error(&self, error: QuotaError) -> QuotaError {
        match error {
            QuotaError::InvalidConfig {
                service,
                field,
                value,
                reason,
            } => QuotaError::InvalidConfig {
                service: service.map(|s| self.redact(&s)),
                field,
                value: self.redact(&value),
                reason: self.redact(&reason),
            },
            other => other,
        }
    }

    #[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
    fn redact_store_error(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::Corrupt(text) => StoreError::Corrupt(self.redact(&text)),
            StoreError::Io(text) => StoreError::Io(self.redact(&text)),
            StoreError::Unavailable(text) => StoreError::Unavailable(self.redact(&text)),
            StoreError::Panicked(text) => StoreError::Panicked(self.redact(&text)),
            other => other,
        }
    }
}

/// Adds the password candidates of each `://` in `text`: the text between the first `:` of
/// the user information and its end, taking the user information to end at the last `@` of
/// the authority (as URL parsers do), at the first `@` and at the last `@` before the next
/// `://`; each as written, percent-decoded and `Debug`-escaped. In a file's raw text (`raw`), a
/// URL also ends at a quote, a space or a control character. (Each URL is read only up to the
/// next, so the work stays linear in the text.)
fn url_passwords(text: &str, raw: bool, found: &mut Vec<String>) {
    let starts: Vec<usize> = text.match_indices("://").map(|(i, _)| i + 3).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(text.len(), |next| next - 3);
        let mut tail = text.get(start..end.max(start)).unwrap_or_default();
        if raw {
            let stop = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\'';
            tail = &tail[..tail.find(stop).unwrap_or(tail.len())];
        }
        let authority = &tail[..tail.find(['/', '?', '#']).unwrap_or(tail.len())];
        let userinfos = [
            authority.rsplit_once('@').map(|(userinfo, _)| userinfo),
            tail.split_once('@').map(|(userinfo, _)| userinfo),
            tail.rsplit_once('@').map(|(userinfo, _)| userinfo),
        ];
        for userinfo in userinfos.into_iter().flatten() {
            let Some((_, password)) = userinfo.split_once(':') else {
                continue;
            };
            for form in [password.to_owned(), percent_decode(password)] {
                let escaped = format!("{form:?}");
                let escaped = &escaped[1..escaped.len() - 1];
                if escaped != form {
                    found.push(escaped.to_owned());
                }
                found.push(form);
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) => match (hex(high), hex(low)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests;

/// The message, as `Display` writes it: a `main` returning `Result<(), Box<dyn Error>>`
/// prints `Error: ` and this, and `unwrap` shows it too, rather than a struct dump.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
