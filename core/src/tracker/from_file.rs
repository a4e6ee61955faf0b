//! A tracker from a config file: [`QuotaFile::builder`] and [`QuotaFile::build`], here beside
//! the tracker so that the config reader (`config/`) does not depend on what it configures.

use crate::config::{ConfigError, QuotaFile};
use crate::error::QuotaError;
use crate::tracker::{QuotaTracker, QuotaTrackerBuilder, Reconfigured};

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
            Some(store) => {
                builder.store_url = Some(store.clone());
                builder.boxed_store(store.open()?)
            }
            None => builder,
        })
    }

    /// Applies this file's services to `tracker`, a tracker built from a file
    /// ([`build`](Self::build) or [`builder`](Self::builder)) that is running: a reload, as
    /// [`QuotaTracker::reconfigure`] does it (counts kept, services added and removed). The
    /// store and the sync policy cannot change while a tracker runs: a file that changes them
    /// is refused, and so is any invalid file; then nothing changes.
    ///
    /// ```
    /// use quota_core::QuotaFile;
    /// let file = QuotaFile::from_toml_str("[[services]]\nname = \"api\"\nlimit = 100\nperiod = \"day\"\n")?;
    /// let tracker = file.build()?;
    /// tracker.record_call("api", 40)?;
    /// let reloaded = QuotaFile::from_toml_str("[[services]]\nname = \"api\"\nlimit = 50\nperiod = \"day\"\n")?;
    /// let done = reloaded.reconfigure(&tracker)?;
    /// assert_eq!(done.changed, ["api"]);
    /// assert_eq!((tracker.usage("api")?.used, tracker.usage("api")?.limit), (40, 50));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reconfigure(&self, tracker: &QuotaTracker) -> Result<Reconfigured, ConfigError> {
        self.validate().map_err(ConfigError::invalid)?;
        let refuse = |field, value: &dyn std::fmt::Display, what: &str| {
            Err(ConfigError::invalid(QuotaError::invalid_config(
                None,
                field,
                value,
                format!("cannot change while the tracker runs ({what}; build a new tracker)"),
            )))
        };
        // A tracker built in code with a store has no URL to compare: a file with any store,
        // or none, would be another store.
        let has_store = tracker.sync_policy().is_some();
        if self.store != tracker.store_url || self.store.is_some() != has_store {
            let value = match &self.store {
                Some(store) => store.to_string(),
                None => "none".to_owned(),
            };
            return refuse("store", &value, "it holds the counts");
        }
        if has_store && tracker.sync_policy() != Some(&self.sync) {
            return refuse("sync", &"[sync]", "the sync policy is the tracker's");
        }
        tracker
            .reconfigure(self.tracker.clone())
            .map_err(ConfigError::invalid)
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
