//! The JSON form, version 2 (version 1 read and converted): written by serde_json, or by the
//! JS engine on wasm32; read entry by entry through [`Json`], so that one bad entry
//! never voids the rest.

#[cfg(target_arch = "wasm32")]
use super::engine;
use super::records::{add_done, Answer, Ops};
use super::{Admitted, Applied, Lease, StoredState, StoredWindow};
use crate::store::{InstanceId, StoreError};
use crate::window::{Period, WindowSpec};
#[cfg(not(target_arch = "wasm32"))]
use serde::Serialize;
#[cfg(not(target_arch = "wasm32"))]
use serde_json::Value;

/// The JSON shape, version 2.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    updated_at_ms: u64,
    windows: Vec<&'a StoredWindow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ops: Vec<OpsEntry<'a>>,
    #[serde(skip_serializing_if = "super::is_zero")]
    evicted: u64,
    applied: Vec<&'a Applied>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    leases: Vec<&'a Lease>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    admits: Vec<&'a Admitted>,
    applies: u64,
}

/// An operations record as JSON: `done` is a list of `[seq, answer]`.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Serialize)]
struct OpsEntry<'a> {
    instance: InstanceId,
    service: &'a str,
    low: u64,
    done: Vec<(u64, String)>,
    until_ms: u64,
    seen: u64,
}

impl StoredState {
    /// The state as JSON text, version 2.
    ///
    /// On wasm32 (the JS module, the dashboard) the JS engine's `JSON.stringify` writes it,
    /// so the `.wasm` carries no JSON writer: numbers above `Number.MAX_SAFE_INTEGER` (2^53 - 1)
    /// are then written rounded, as the JS API reports counts anyway.
    pub fn to_json(&self) -> String {
        #[cfg(target_arch = "wasm32")]
        {
            engine::to_json::<true>(self)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let document = Document {
                version: Self::VERSION,
                updated_at_ms: self.updated_at_ms,
                windows: self.windows.values().collect(),
                ops: self
                    .ops
                    .values()
                    .map(|ops| OpsEntry {
                        instance: ops.instance,
                        service: &ops.service,
                        low: ops.low,
                        done: ops.done.iter().map(|(seq, a)| (*seq, a.text())).collect(),
                        until_ms: ops.until_ms,
                        seen: ops.seen,
                    })
                    .collect(),
                evicted: self.evicted,
                applied: self.applied.values().collect(),
                leases: self.leases.values().collect(),
                admits: self.admits.values().collect(),
                applies: self.applies,
            };
            // Plain structs of strings, numbers and enums always serialize.
            serde_json::to_string_pretty(&document).unwrap_or_default()
        }
    }

    /// Parses JSON text, version 2 or 1, entry by entry (see the module rules). Text that is
    /// not a JSON object with a known `"version"` is [`StoreError::Corrupt`] with the reason.
    ///
    /// On wasm32 (the JS module, the dashboard) the JS engine's `JSON.parse` reads it, so the
    /// `.wasm` carries no JSON parser: a number above `Number.MAX_SAFE_INTEGER` (2^53 - 1) is
    /// then read as the nearest JS number, as the JS API reports counts anyway.
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        Self::parse::<true>(text)
    }

    /// The counts of a document, as [`from_json`](Self::from_json) reads them, without its
    /// exactly-once records (nor those of older builds): for a store that keeps none (see
    /// [`apply_counts`](Self::apply_counts)). Its [`to_json_counts`](Self::to_json_counts)
    /// writes the same windows back, and no records.
    pub fn from_json_counts(text: &str) -> Result<Self, StoreError> {
        Self::parse::<false>(text)
    }

    /// The state as JSON text, version 2, without the exactly-once records: what a state read
    /// by [`from_json_counts`](Self::from_json_counts) and changed by
    /// [`apply_counts`](Self::apply_counts) writes (any build reads it).
    pub fn to_json_counts(&self) -> String {
        #[cfg(target_arch = "wasm32")]
        {
            engine::to_json::<false>(self)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut counts = StoredState::new();
            counts.windows = self.windows.clone();
            counts.updated_at_ms = self.updated_at_ms;
            counts.applies = self.applies;
            counts.to_json()
        }
    }

    /// `text` parsed, with its records if `RECORDS` (a constant, so that a build that never
    /// reads records carries no code for them).
    fn parse<const RECORDS: bool>(text: &str) -> Result<Self, StoreError> {
        if text.trim().is_empty() {
            return Err(StoreError::Corrupt("empty data".into()));
        }
        #[cfg(target_arch = "wasm32")]
        let value = engine::parse(text)?;
        #[cfg(not(target_arch = "wasm32"))]
        let value = &serde_json::from_str::<Value>(text)
            .map_err(|error| StoreError::Corrupt(format!("not valid JSON: {error}")))?;
        Self::read::<RECORDS, _>(&value)
    }

    /// The state of a parsed document (see [`from_json`](Self::from_json)).
    fn read<const RECORDS: bool, J: Json>(value: &J) -> Result<Self, StoreError> {
        if !value.is_object() {
            return Err(StoreError::Corrupt("not a JSON object".into()));
        }
        let mut state = StoredState::new();
        match value.field("version").and_then(|version| version.as_u64()) {
            Some(2) => state.read_v2::<RECORDS, _>(value),
            Some(1) => state.read_v1(value),
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "unsupported version {other} (this build reads versions 1 and 2)"
                )))
            }
            None => return Err(StoreError::Corrupt("no numeric \"version\" field".into())),
        }
        Ok(state)
    }

    fn entries<J: Json>(object: &J, field: &str, skipped: &mut Vec<String>) -> Vec<J> {
        match object.field(field) {
            None => Vec::new(),
            Some(value) => value.items().unwrap_or_else(|| {
                skipped.push(format!("\"{field}\" is not an array"));
                Vec::new()
            }),
        }
    }

    /// Reads each item of the array `field` with `read`, noting each one it refuses as
    /// `field[index]: why`: one loop (and one message format) for every kind of entry.
    fn each_entry<J: Json>(
        object: &J,
        field: &str,
        skipped: &mut Vec<String>,
        read: &mut dyn FnMut(&J) -> Result<(), String>,
    ) {
        for (index, entry) in Self::entries(object, field, skipped).iter().enumerate() {
            if let Err(error) = read(entry) {
                skipped.push(format!("{field}[{index}]: {error}"));
            }
        }
    }

    fn read_v2<const RECORDS: bool, J: Json>(&mut self, object: &J) {
        self.updated_at_ms = object.number("updated_at_ms").unwrap_or(0);
        self.applies = object.number("applies").unwrap_or(0);
        let mut skipped = Vec::new();
        Self::each_entry(object, "windows", &mut skipped, &mut |entry| {
            self.add_window(window_entry(entry)?);
            Ok(())
        });
        if RECORDS {
            self.read_records(object, &mut skipped);
        }
        self.skipped = skipped;
    }

    /// The records of a version 2 document: this build's (`ops`) and older builds'.
    fn read_records<J: Json>(&mut self, object: &J, skipped: &mut Vec<String>) {
        self.evicted = object.number("evicted").unwrap_or(0);
        Self::each_entry(object, "ops", skipped, &mut |entry| {
            let ops = ops_entry(entry)?;
            self.applies = self.applies.max(ops.seen);
            self.ops.insert((ops.service.clone(), ops.instance), ops);
            Ok(())
        });
        Self::each_entry(object, "applied", skipped, &mut |entry| {
            let applied = applied_entry(entry)?;
            self.applies = self.applies.max(applied.seen);
            let key = (applied.service.clone(), applied.instance);
            let keep = self
                .applied
                .get(&key)
                .is_none_or(|existing| existing.seq < applied.seq);
            if keep {
                self.applied.insert(key, applied);
            }
            Ok(())
        });
        Self::each_entry(object, "admits", skipped, &mut |entry| {
            let admitted = admitted_entry(entry)?;
            self.applies = self.applies.max(admitted.seen);
            self.admits
                .insert((admitted.service.clone(), admitted.instance), admitted);
            Ok(())
        });
        Self::each_entry(object, "leases", skipped, &mut |entry| {
            let lease = lease_entry(entry)?;
            self.leases
                .insert((lease.service.clone(), lease.instance), lease);
            Ok(())
        });
    }

    /// Version 1: `{ "version": 1, "services": [{ "name", "used", "window_start_ms",
    /// "config": { "period", ... }, "previous"?: { "window_start_ms", "used" } }] }`.
    fn read_v1<J: Json>(&mut self, object: &J) {
        self.converted = true;
        self.updated_at_ms = object.number("updated_at_ms").unwrap_or(0);
        let mut skipped = Vec::new();
        Self::each_entry(object, "services", &mut skipped, &mut |entry| {
            v1_windows(entry)?
                .into_iter()
                .for_each(|window| self.add_window(window));
            Ok(())
        });
        self.skipped = skipped;
    }

    fn add_window(&mut self, mut window: StoredWindow) {
        window.total = window.total.min(Self::MAX_TOTAL);
        let key = (window.service.clone(), window.spec.key(), window.start_ms);
        match self.windows.get_mut(&key) {
            Some(existing) => {
                existing.total = existing.total.max(window.total);
                existing.raise_count = existing.raise_count.max(window.raise_count);
            }
            None => {
                self.windows.insert(key, window);
            }
        }
    }
}

/// A parsed JSON document, read: serde_json's [`Value`], or on wasm32 the JS engine's
/// own `JSON.parse` result ([`engine`]), so that one reader serves both.
pub(super) trait Json: Sized {
    /// The field `name` of an object (`None` if this is no object or has no such field).
    fn field(&self, name: &str) -> Option<Self>;
    /// A whole number from 0 to `u64::MAX` (`None` for anything else).
    fn as_u64(&self) -> Option<u64>;
    fn as_text(&self) -> Option<String>;
    fn as_bool(&self) -> Option<bool>;
    /// An array's items (`None` if this is no array).
    fn items(&self) -> Option<Vec<Self>>;
    fn is_object(&self) -> bool;
    fn is_null(&self) -> bool;

    /// The whole-number field `name`.
    fn number(&self, name: &str) -> Option<u64> {
        self.field(name)?.as_u64()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Json for &Value {
    fn field(&self, name: &str) -> Option<Self> {
        self.get(name)
    }
    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_text(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }
    fn as_bool(&self) -> Option<bool> {
        Value::as_bool(self)
    }
    fn items(&self) -> Option<Vec<Self>> {
        self.as_array().map(|items| items.iter().collect())
    }
    fn is_object(&self) -> bool {
        Value::is_object(self)
    }
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
}

/// The whole-number field `name` of `entry`, or why not.
fn number<J: Json>(entry: &J, name: &str) -> Result<u64, String> {
    entry
        .number(name)
        .ok_or_else(|| format!("\"{name}\" is not a whole number"))
}

/// The text field `name` of `entry`, or why not.
fn text<J: Json>(entry: &J, name: &str) -> Result<String, String> {
    entry
        .field(name)
        .and_then(|value| value.as_text())
        .ok_or_else(|| format!("\"{name}\" is not a string"))
}

/// A window spec, stored as its key (a plain period's is its word).
fn spec<J: Json>(entry: &J, name: &str) -> Result<WindowSpec, String> {
    WindowSpec::from_key(&text(entry, name)?).map_err(|error| error.to_string())
}

fn instance<J: Json>(entry: &J) -> Result<InstanceId, String> {
    InstanceId::try_from(text(entry, "instance")?)
}
fn window_entry<J: Json>(entry: &J) -> Result<StoredWindow, String> {
    Ok(StoredWindow {
        service: text(entry, "service")?,
        spec: spec(entry, "period")?,
        start_ms: number(entry, "start_ms")?,
        end_ms: number(entry, "end_ms")?,
        total: number(entry, "total")?,
        // Written since give-backs check raise_count; older documents have none.
        raise_count: match entry.field("raise_count") {
            None => 0,
            Some(_) => number(entry, "raise_count")?,
        },
    })
}

fn ops_entry<J: Json>(entry: &J) -> Result<Ops, String> {
    let mut done = Vec::new();
    let items = entry
        .field("done")
        .and_then(|done| done.items())
        .ok_or("\"done\" is not an array")?;
    for item in items {
        let pair = item.items().unwrap_or_default();
        let parsed = match pair.as_slice() {
            [seq, answer] => seq
                .as_u64()
                .zip(answer.as_text().as_deref().and_then(Answer::parse)),
            _ => None,
        };
        let (seq, answer) = parsed.ok_or("\"done\" holds an entry that is not [seq, answer]")?;
        add_done(&mut done, seq, answer);
    }
    Ok(Ops {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        low: number(entry, "low")?,
        done,
        until_ms: number(entry, "until_ms")?,
        seen: number(entry, "seen")?,
    })
}

fn applied_entry<J: Json>(entry: &J) -> Result<Applied, String> {
    Ok(Applied {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        seq: number(entry, "seq")?,
        seen: number(entry, "seen")?,
    })
}

fn lease_entry<J: Json>(entry: &J) -> Result<Lease, String> {
    Ok(Lease {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        seq: number(entry, "seq")?,
        granted: number(entry, "granted")?,
        returned_seq: number(entry, "returned_seq")?,
        // Written since leases could be forgotten; older documents have none.
        seen: match entry.field("seen") {
            None => 0,
            Some(_) => number(entry, "seen")?,
        },
    })
}

fn admitted_entry<J: Json>(entry: &J) -> Result<Admitted, String> {
    Ok(Admitted {
        instance: instance(entry)?,
        service: text(entry, "service")?,
        seq: number(entry, "seq")?,
        admitted: entry
            .field("admitted")
            .and_then(|value| value.as_bool())
            .ok_or("\"admitted\" is not a boolean")?,
        total: number(entry, "total")?,
        seen: number(entry, "seen")?,
    })
}

/// The windows of one version 1 service entry.
fn v1_windows<J: Json>(entry: &J) -> Result<Vec<StoredWindow>, String> {
    let service = text(entry, "name")?;
    let period: Period = entry
        .field("config")
        .and_then(|config| config.field("period"))
        .and_then(|period| period.as_text())
        .ok_or("\"config.period\" is missing")?
        .parse()
        .map_err(|error: crate::window::UnknownPeriod| error.to_string())?;
    let mut windows = Vec::new();
    let mut push = |start_ms: u64, total: u64| {
        let window = period.window_at(start_ms);
        windows.push(StoredWindow {
            service: service.clone(),
            spec: WindowSpec::new(period),
            start_ms,
            end_ms: window.reset_at_ms,
            total,
            raise_count: 0,
        });
    };
    push(number(entry, "window_start_ms")?, number(entry, "used")?);
    if let Some(previous) = entry.field("previous").filter(|p| !p.is_null()) {
        let field = |name| {
            number(&previous, name)
                .map_err(|_| format!("\"previous.{name}\" is not a whole number"))
        };
        push(field("window_start_ms")?, field("used")?);
    }
    Ok(windows)
}
