//! [`TimeZone`]: a validated IANA time zone name, and the offset from UTC it gives at an
//! instant. That offset is the one thing each target computes its own way: natively from the
//! IANA database bundled into the binary by jiff (`native.rs`), on wasm32 from the JS engine's
//! `Intl` (`intl.rs`), so no time zone data goes into the .wasm. Everything built on it (local
//! time to an instant, finding an offset change) is here, shared.

#[cfg(target_arch = "wasm32")]
mod intl;
#[cfg(not(target_arch = "wasm32"))]
mod native;

#[cfg(target_arch = "wasm32")]
use intl as engine;
#[cfg(not(target_arch = "wasm32"))]
use native as engine;
/// The database zones are looked up in (for the tests).
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(in crate::window) use native::database as bundled_database;

use super::calendar::DAY_MS;
use super::error::cut;
use super::WindowSpecError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The longest time zone name accepted (the longest IANA name has 32 characters).
const MAX_NAME_LEN: usize = 64;

/// Offsets are read between these instants (seconds since the epoch: 1900-01-01T00:00Z and
/// 9999-01-01T00:00Z); outside, the offset at the nearer one holds. Both engines cover the
/// range (jiff's timestamps end in 9999, JavaScript's dates in 275760), so both targets read
/// the same zone there.
const FIRST_S: i64 = -2_208_988_800;
const LAST_S: i64 = 253_370_764_800;

/// An IANA time zone (`"America/Los_Angeles"`, `"Europe/Paris"`, `"Etc/GMT+5"`), validated
/// when made. Cloning is cheap (a shared pointer); two zones are equal when their names are.
///
/// Natively the zone comes from the IANA time zone database that jiff bundles into the binary
/// (never the host's `/usr/share/zoneinfo`), so every host computes the same windows, with or
/// without system time zone data. On wasm32 it comes from the JS engine's
/// `Intl.DateTimeFormat`, so the browser's (or Node's) own data decides. Before 1900 and after
/// 9998 a zone keeps the offset it has on 1900-01-01 and 9999-01-01.
///
/// ```
/// use quota_core::TimeZone;
///
/// let paris = TimeZone::new("Europe/Paris")?;
/// assert_eq!(paris.name(), "Europe/Paris");
/// assert!(TimeZone::new("Mars/Olympus_Mons").is_err());
/// # Ok::<(), quota_core::WindowSpecError>(())
/// ```
#[derive(Clone)]
pub struct TimeZone(Arc<Zone>);

struct Zone {
    name: Box<str>,
    engine: engine::Zone,
}

impl TimeZone {
    /// The zone named `name`, an IANA time zone name. Letters, digits and `/ _ - +` only, at
    /// most 64 characters. The lookup ignores ASCII case and the name is kept as the database
    /// spells it (`"europe/paris"` is `"Europe/Paris"`); links (`"US/Pacific"`) are kept as
    /// written. On wasm32, a name whose spelling the JS engine does not report back (a link it
    /// resolves to another zone) is kept as written.
    pub fn new(name: &str) -> Result<TimeZone, WindowSpecError> {
        let unknown = || WindowSpecError::UnknownTimeZone(cut(name).to_owned());
        if !valid_name(name) {
            return Err(unknown());
        }
        let (canonical, engine) = engine::Zone::lookup(name).ok_or_else(unknown)?;
        Ok(TimeZone(Arc::new(Zone {
            name: canonical.into(),
            engine,
        })))
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The zone's offset from UTC at `instant_ms` (ms since the epoch), in ms: a whole number
    /// of seconds, since zones change offset on whole seconds.
    pub(in crate::window) fn offset_ms(&self, instant_ms: i64) -> i64 {
        let second = instant_ms.div_euclid(1_000).clamp(FIRST_S, LAST_S);
        self.0.engine.offset_s(&self.0.name, second) * 1_000
    }

    /// The instant at which the zone's clock reads `local_ms` (ms since 1970-01-01T00:00
    /// local), as jiff's "compatible" disambiguation picks it: where the clock reads it twice
    /// (a fold), the earlier; where it never does (a gap), as if the clock had not moved yet,
    /// that is, later by the gap's length.
    ///
    /// Reads the offsets a day either side, so it assumes one offset change at most in two
    /// days around `local_ms` (as Temporal's polyfill does).
    pub(in crate::window) fn to_instant(&self, local_ms: i64) -> i64 {
        let before = self.offset_ms(local_ms - DAY_MS);
        let after = self.offset_ms(local_ms + DAY_MS);
        let with_before = local_ms - before;
        if before == after {
            return with_before;
        }
        let with_after = local_ms - after;
        match (
            self.offset_ms(with_before) == before,
            self.offset_ms(with_after) == after,
        ) {
            // A fold: the clock reads `local_ms` at both.
            (true, true) => with_before.min(with_after),
            (true, false) => with_before,
            (false, true) => with_after,
            // A gap: the offset before it (the later instant of the two).
            (false, false) => with_before,
        }
    }

    /// The first instant after `after_ms`, at or before `until_ms`, at which the offset is not
    /// the one at `after_ms`, given that the offset at `until_ms` is not: a binary search on
    /// whole seconds (offsets change on whole seconds), which assumes one change between them.
    pub(in crate::window) fn change_after(&self, after_ms: i64, until_ms: i64) -> i64 {
        let offset = self.offset_ms(after_ms);
        // The offset at `low` is `offset`; at `high` it is not.
        let (mut low, mut high) = (after_ms.div_euclid(1_000), until_ms.div_euclid(1_000));
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.offset_ms(middle * 1_000) == offset {
                low = middle;
            } else {
                high = middle;
            }
        }
        high * 1_000
    }
}

/// Letters, digits and `/ _ - +`, at most [`MAX_NAME_LEN`], no empty part between slashes:
/// nothing that could not sit in a window key (no `{`, `}`, `:`, `@`, whitespace).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name.as_bytes().windows(2).all(|pair| pair != b"//")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
        // jiff answers this name with its "unknown" zone (UTC by another name).
        && !name.eq_ignore_ascii_case("Etc/Unknown")
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZone({:?})", self.name())
    }
}

impl PartialEq for TimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for TimeZone {}

impl Hash for TimeZone {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl PartialOrd for TimeZone {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimeZone {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

/// The name, as a string.
impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A name, looked up: an unknown zone is an error naming it.
impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        TimeZone::new(&name).map_err(serde::de::Error::custom)
    }
}
