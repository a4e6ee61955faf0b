//! [`StoreUrl`]: where a tracker keeps and shares its counts, as a config file names it
//! (`memory:`, `file:PATH`, `redis://...`), opened into a [`Store`]; a Redis URL's password is
//! never shown.

use super::error::ConfigError;
use crate::secrets::Secrets;
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
use crate::store::StoreError;
use crate::store::{MemoryStore, Store};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a tracker keeps and shares its counts, as a config file names it:
///
/// - `memory:`: a [`MemoryStore`] (a fresh one for each tracker built: counts stay in the
///   process);
/// - `file:PATH`: a [`FileStore`](crate::FileStore) at `PATH` (as written: a relative path is
///   relative to the working directory), shared by the processes of one machine;
/// - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://...` for TLS: a `RedisStore`
///   (crate feature `redis`), shared by processes on any number of machines. Characters `@`,
///   `/`, `?`, `#` and `%` in the password are percent-encoded (`%40`, `%2F`, `%3F`, `%23`,
///   `%25`);
/// - `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]`: a Redis Cluster's seed nodes;
///   `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`: a master that
///   Sentinels watch (`rediss+cluster://`, `rediss+sentinel://` for TLS). See `RedisStore::new`.
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
                error: redact_store_error(&secrets, error),
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
        const EXPECTED: &str = "expected memory:, file:PATH, redis://HOST[:PORT][/DB], \
                                rediss://HOST[:PORT][/DB], redis+cluster://HOST:PORT,... or \
                                redis+sentinel://HOST:PORT,.../MASTER";
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
        let Some(rest) = ["redis", "rediss"].iter().find_map(|base| {
            ["://", "+cluster://", "+sentinel://"]
                .iter()
                .find_map(|kind| text.strip_prefix(&format!("{base}{kind}")))
        }) else {
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

    /// Whether it is a `rediss://` (TLS) URL (or `rediss+cluster://`, `rediss+sentinel://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss:") || self.url.starts_with("rediss+")
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

/// `error` with every secret in its message redacted.
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
fn redact_store_error(secrets: &Secrets, error: StoreError) -> StoreError {
    match error {
        StoreError::Corrupt(text) => StoreError::Corrupt(secrets.redact(&text)),
        StoreError::Io(text) => StoreError::Io(secrets.redact(&text)),
        StoreError::Unavailable(text) => StoreError::Unavailable(secrets.redact(&text)),
        StoreError::Panicked(text) => StoreError::Panicked(secrets.redact(&text)),
        other => other,
    }
}
