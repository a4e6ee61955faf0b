//! [`ConfigError`]: why a config file could not be read, or a tracker not be built from it;
//! each message says where (file, line, column) and never shows a password.

use super::file::ConfigFormat;
use crate::error::{ConfigProblem, QuotaError};
use crate::store::StoreError;
use std::fmt;
use std::path::{Path, PathBuf};

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
    ///
    /// [`QuotaFile::load`]: crate::QuotaFile::load
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
        /// The file, if read by [`QuotaFile::load`](crate::QuotaFile::load).
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
        /// The file, if read by [`QuotaFile::load`](crate::QuotaFile::load).
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
    pub(crate) fn invalid(error: QuotaError) -> Self {
        ConfigError::Invalid {
            path: None,
            line: None,
            column: None,
            error: Box::new(error),
        }
    }

    /// The same error, naming `file`.
    pub(super) fn in_file(self, file: &Path) -> Self {
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

/// The message, as `Display` writes it: a `main` returning `Result<(), Box<dyn Error>>`
/// prints `Error: ` and this, and `unwrap` shows it too, rather than a struct dump.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
