//! A tracker from a config file: [`QuotaFile::builder`] and [`QuotaFile::build`], here beside
//! the tracker so that the config reader (`config/`) does not depend on what it configures.

use crate::config::{ConfigError, QuotaFile};
use crate::error::QuotaError;
use crate::tracker::{QuotaTracker, QuotaTrackerBuilder};

impl QuotaFile {
    /// A tracker builder with the file's services, sync policy and store (opened here: a
    /// fresh [`MemoryStore`] for `memory:`), for adding a clock or anything else before
    /// [`build`](QuotaTrackerBuilder::build).
    ///
    /// Errors: [`ConfigError::Invalid`] if the file does not [`validate`](Self::validate);
    /// [`ConfigError::Unsupported`] for a Redis store in a build without the `redis` feature
    /// (or a file store on wasm32); [`ConfigError::Store`] if the store refuses its URL.
    ///
    /// [`MemoryStore`]: crate::MemoryStore
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
}

#[cfg(test)]
mod tests;
