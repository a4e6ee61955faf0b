//! Offsets natively: jiff, with the IANA time zone database bundled into the binary (jiff's
//! feature `tzdb-bundle-always`). Zones are looked up in that database only, never in the
//! host's `/usr/share/zoneinfo` or `TZDIR`, so every host computes the same windows.

use jiff::tz::{TimeZone as JiffZone, TimeZoneDatabase};
use jiff::Timestamp;
use std::sync::OnceLock;

/// The bundled database, opened once.
pub(in crate::window) fn database() -> &'static TimeZoneDatabase {
    static DATABASE: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DATABASE.get_or_init(TimeZoneDatabase::bundled)
}

/// A zone of the bundled database.
pub(super) struct Zone(JiffZone);

impl Zone {
    /// The zone named `name` (ASCII case ignored) and its name as the database spells it.
    pub(super) fn lookup(name: &str) -> Option<(String, Zone)> {
        let zone = database().get(name).ok()?;
        let canonical = zone.iana_name().unwrap_or(name).to_owned();
        Some((canonical, Zone(zone)))
    }

    /// The offset from UTC, in seconds, at `second` (seconds since the epoch, in jiff's range).
    pub(super) fn offset_s(&self, _name: &str, second: i64) -> i64 {
        Timestamp::from_second(second)
            .map(|instant| i64::from(self.0.to_offset(instant).seconds()))
            .unwrap_or(0)
    }
}
