//! The services' names, found from JS strings without copying them into wasm.

use super::input;
use crate::tracker::{QuotaTracker, ServiceId};
use js_sys::{Array, Error};
use std::borrow::Cow;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/names.js")]
extern "C" {
    /// `new Map(names.map((name, index) => [name, index]))`
    #[wasm_bindgen(js_name = nameIndex)]
    fn name_index(names: &Array) -> JsValue;

    /// `index.get(name) ?? -1`
    #[wasm_bindgen(js_name = findName)]
    fn find_name(index: &JsValue, name: &JsValue) -> i32;

    /// `name`'s position + 64 x `Date.now()` when `count` is omitted or 1; `-2 - (position +
    /// 64 x count)` for another whole count; `-1` when wasm must look at the name and the count
    /// itself (see `names.js`).
    #[wasm_bindgen(js_name = findCall)]
    fn find_call(index: &JsValue, name: &JsValue, count: &JsValue) -> f64;
}

/// The configured names, in config order, as Rust and as JS strings, with the tracker's ids.
pub(super) struct Names {
    rust: Vec<String>,
    js: Vec<JsValue>,
    ids: Vec<ServiceId>,
    /// `Map<string, number>`: JS name to position.
    index: JsValue,
}

/// What a JS value names: a configured service's position, or a string that is no service's
/// name.
pub(super) enum Found {
    Position(usize),
    Unknown(String),
}

impl Names {
    /// The names of `tracker`'s services, `rust` (in config order).
    pub(super) fn new(tracker: &QuotaTracker, rust: Vec<String>) -> Names {
        let ids = rust
            .iter()
            .filter_map(|name| tracker.service(name).ok())
            .map(|service| service.id())
            .collect();
        let js: Vec<JsValue> = rust.iter().map(|name| JsValue::from_str(name)).collect();
        let index = name_index(&js.iter().collect());
        Names {
            rust,
            js,
            ids,
            index,
        }
    }

    /// What `service` names: found in the JS `Map`, or else a string (the tracker then
    /// reports it as unknown). Not a string: an error.
    pub(super) fn find(&self, service: &JsValue) -> Result<Found, Error> {
        match usize::try_from(find_name(&self.index, service)) {
            Ok(position) if position < self.rust.len() => Ok(Found::Position(position)),
            _ => input::service(service).map(Found::Unknown),
        }
    }

    /// What `service` names, the call count `count` stands for (see [`input::count`]), and
    /// the time if it came along: one call out of wasm for a configured service and a whole
    /// count (see `findCall` in `names.js`).
    pub(super) fn find_call(
        &self,
        service: &JsValue,
        count: &JsValue,
    ) -> Result<(Found, u64, Option<u64>), Error> {
        // Whole numbers below 2^53 (checked in JS): exact as u64.
        let answer = find_call(&self.index, service, count);
        let fast = if answer >= 0.0 {
            let packed = answer as u64;
            Some((packed % 64, 1, Some(packed / 64)))
        } else if answer <= -2.0 {
            let packed = (-2.0 - answer) as u64;
            Some((packed % 64, packed / 64, None))
        } else {
            None
        };
        if let Some((position, count, now)) = fast {
            let position = position as usize;
            if position < self.rust.len() && count >= 1 {
                return Ok((Found::Position(position), count, now));
            }
        }
        let found = self.find(service)?;
        let count = input::count(&self.name(&found), count)?;
        Ok((found, count, None))
    }

    /// The name `found` stands for.
    pub(super) fn name<'a>(&'a self, found: &'a Found) -> Cow<'a, str> {
        match found {
            Found::Position(position) => Cow::Borrowed(&self.rust[*position]),
            Found::Unknown(name) => Cow::Borrowed(name),
        }
    }

    /// The name of the service at `position`.
    pub(super) fn rust(&self, position: usize) -> &str {
        &self.rust[position]
    }

    /// The tracker's id of the service at `position`.
    pub(super) fn id(&self, position: usize) -> ServiceId {
        self.ids[position]
    }

    /// The name of the service at `position` as a JS string.
    pub(super) fn js(&self, position: usize) -> &JsValue {
        &self.js[position]
    }
}
