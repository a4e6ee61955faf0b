//! The services' names, found from JS strings without copying them into wasm.

use super::input;
use crate::tracker::{QuotaTracker, ServiceId};
use js_sys::{Array, Error};
use std::borrow::Cow;
use std::cell::RefCell;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/js/names.js")]
extern "C" {
    /// `index.get(name) ?? -1`
    /// `new Map(names.map((name, i) => [name, positions[i]]))`
    #[wasm_bindgen(js_name = nameMap)]
    fn name_map(names: &Array, positions: &Array) -> JsValue;

    #[wasm_bindgen(js_name = findName)]
    fn find_name(index: &JsValue, name: &JsValue) -> i32;

    /// `name`'s position + 64 x `Date.now()` when `count` is omitted or 1; `-2 - (position +
    /// 64 x count)` for another whole count; `-1` when wasm must look at the name and the count
    /// itself (see `names.js`).
    #[wasm_bindgen(js_name = findCall)]
    fn find_call(index: &JsValue, name: &JsValue, count: &JsValue) -> f64;
}

/// The services' names, each at the position it got when it was configured (positions only
/// grow: a service removed by `reconfigure` keeps its position, whose tracker id then answers
/// "unknown service", and a name added again gets a new one), as Rust and as JS strings, with
/// the tracker's ids.
pub(super) struct Names {
    table: RefCell<Table>,
}

struct Table {
    rust: Vec<String>,
    js: Vec<JsValue>,
    ids: Vec<ServiceId>,
    /// `Map<string, number>`: JS name to position, for the configured services only.
    index: JsValue,
    /// The positions of the configured services, in config order.
    order: Vec<usize>,
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
        let order: Vec<usize> = (0..rust.len()).collect();
        let positions: Array = order.iter().map(|&p| JsValue::from(p as u32)).collect();
        let index = name_map(&js.iter().collect(), &positions);
        Names {
            table: RefCell::new(Table {
                rust,
                js,
                ids,
                index,
                order,
            }),
        }
    }

    /// After `tracker.reconfigure`: the services of the new config, `configured` (in order). A
    /// service that kept its tracker id keeps its position; any other gets a new one.
    #[inline(never)]
    pub(super) fn reconfigured(&self, tracker: &QuotaTracker, configured: &[String]) {
        let mut table = self.table.borrow_mut();
        let mut order = Vec::with_capacity(configured.len());
        for name in configured {
            let Ok(service) = tracker.service(name) else {
                continue;
            };
            let id = service.id();
            let kept = table
                .order
                .iter()
                .copied()
                .find(|&position| table.ids[position] == id && table.rust[position] == *name);
            let position = kept.unwrap_or_else(|| {
                table.rust.push(name.clone());
                table.js.push(JsValue::from_str(name));
                table.ids.push(id);
                table.rust.len() - 1
            });
            order.push(position);
        }
        let names: Array = order.iter().map(|&p| table.js[p].clone()).collect();
        let positions: Array = order.iter().map(|&p| JsValue::from(p as u32)).collect();
        table.index = name_map(&names, &positions);
        table.order = order;
    }

    /// The positions of the configured services, in config order.
    pub(super) fn order(&self) -> Vec<usize> {
        self.table.borrow().order.clone()
    }

    /// What `service` names: found in the JS `Map`, or else a string (the tracker then
    /// reports it as unknown). Not a string: an error.
    pub(super) fn find(&self, service: &JsValue) -> Result<Found, Error> {
        let table = self.table.borrow();
        match usize::try_from(find_name(&table.index, service)) {
            Ok(position) if position < table.rust.len() => Ok(Found::Position(position)),
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
        let table = self.table.borrow();
        let answer = find_call(&table.index, service, count);
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
            if position < table.rust.len() && count >= 1 {
                return Ok((Found::Position(position), count, now));
            }
        }
        drop(table);
        let found = self.find(service)?;
        let count = input::count(&self.name(&found), count)?;
        Ok((found, count, None))
    }

    /// The name `found` stands for.
    pub(super) fn name<'a>(&self, found: &'a Found) -> Cow<'a, str> {
        match found {
            Found::Position(position) => Cow::Owned(self.rust(*position)),
            Found::Unknown(name) => Cow::Borrowed(name),
        }
    }

    /// The name of the service at `position`.
    pub(super) fn rust(&self, position: usize) -> String {
        self.table.borrow().rust[position].clone()
    }

    /// The tracker's id of the service at `position`.
    pub(super) fn id(&self, position: usize) -> ServiceId {
        self.table.borrow().ids[position]
    }

    /// The name of the service at `position` as a JS string (the same JS string each time).
    pub(super) fn js(&self, position: usize) -> JsValue {
        self.table.borrow().js[position].clone()
    }
}
