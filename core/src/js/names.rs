//! The services' names, found from JS strings without copying them into wasm.

use super::input;
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
}

/// The configured names, in config order, as Rust and as JS strings.
pub(super) struct Names {
    rust: Vec<String>,
    js: Vec<JsValue>,
    /// `Map<string, number>`: JS name to position.
    index: JsValue,
}

impl Names {
    pub(super) fn new(names: Vec<String>) -> Names {
        let js: Vec<JsValue> = names.iter().map(|name| JsValue::from_str(name)).collect();
        let index = name_index(&js.iter().collect());
        Names {
            rust: names,
            js,
            index,
        }
    }

    /// The name `service` stands for: a configured one found in the JS `Map`, or else the
    /// string itself (the tracker then reports it as unknown). Not a string: an error.
    pub(super) fn find(&self, service: &JsValue) -> Result<Cow<'_, str>, Error> {
        let found = usize::try_from(find_name(&self.index, service))
            .ok()
            .and_then(|position| self.rust.get(position));
        match found {
            Some(name) => Ok(Cow::Borrowed(name)),
            None => input::service(service).map(Cow::Owned),
        }
    }

    /// The names as JS strings, in config order.
    pub(super) fn js(&self) -> &[JsValue] {
        &self.js
    }
}
