//! What a JS `QuotaTracker` and its lean `Service` handles share: the tracker, its services'
//! names, its clock and its JS callbacks; and the lookups and the delivery every call makes.

use super::callbacks::Callbacks;
use super::clock::JsClock;
use super::input;
use super::names::{Found, Names};
use crate::error::QuotaError;
use crate::tracker::QuotaTracker;
use js_sys::Error;

/// What a JS `QuotaTracker` and its `Service` handles share.
pub(super) struct Inner {
    pub(super) tracker: QuotaTracker,
    pub(super) names: Names,
    /// The time a lean call read in JS, for the tracker's clock while that call runs.
    pub(super) clock: JsClock,
    /// The JS callbacks, and the transitions queued for them.
    pub(super) callbacks: Callbacks,
}

impl Inner {
    /// The tracker's handle on the service `found` names; the tracker's error for a name that
    /// is no configured service.
    pub(super) fn handle(&self, found: &Found) -> Result<crate::tracker::Service<'_>, QuotaError> {
        self.service_at(self.position(found)?)
    }

    /// The tracker's handle on the service at `position` (of the config).
    pub(super) fn service_at(
        &self,
        position: usize,
    ) -> Result<crate::tracker::Service<'_>, QuotaError> {
        self.tracker
            .service_by_id(self.names.id(position))
            .ok_or_else(|| QuotaError::UnknownService(self.names.rust(position)))
    }

    /// The position of the service `found` names; the tracker's error for a name that is no
    /// configured service.
    pub(super) fn position(&self, found: &Found) -> Result<usize, QuotaError> {
        match found {
            Found::Position(position) => Ok(*position),
            Found::Unknown(name) => Err(QuotaError::UnknownService(name.clone())),
        }
    }

    /// Delivers what the tracker call that produced `result` queued, then converts its error.
    pub(super) fn delivered<T>(&self, result: Result<T, QuotaError>) -> Result<T, Error> {
        self.deliver();
        result.map_err(input::error)
    }

    /// Delivers the queued transitions to the JS callbacks ([`Callbacks::deliver`]).
    pub(super) fn deliver(&self) {
        self.callbacks.deliver();
    }
}
