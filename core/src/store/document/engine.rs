//! The stored JSON through the JS engine's own `JSON.parse` and `JSON.stringify`, on wasm32
//! (the JS module, the dashboard: every wasm32 build runs in a JS engine, whose clock it
//! reads): the `.wasm` then carries no JSON parser or writer (about a quarter of the JS
//! module's gzipped size with serde_json). The document is the same as serde_json's,
//! field for field and in the same order; numbers are exact up to `Number.MAX_SAFE_INTEGER`.

use super::json::Json;
use super::StoredState;
use crate::store::StoreError;
use js_sys::wasm_bindgen::{JsCast, JsValue};
use js_sys::{Array, Object, Reflect, JSON};

/// `JSON.parse(text)`; its `SyntaxError` as [`StoreError::Corrupt`].
pub(super) fn parse(text: &str) -> Result<JsValue, StoreError> {
    JSON::parse(text).map_err(|error| {
        let reason = error.dyn_ref::<js_sys::Error>().map_or_else(
            || "JSON.parse threw".into(),
            |error| String::from(error.message()),
        );
        StoreError::Corrupt(format!("not valid JSON: {reason}"))
    })
}

impl Json for JsValue {
    fn field(&self, name: &str) -> Option<Self> {
        if !JsValue::is_object(self) {
            return None;
        }
        // Own fields only, as serde_json reads them: a field a page added to
        // `Object.prototype` is not the document's.
        let name = JsValue::from_str(name);
        if !Object::has_own(self.unchecked_ref::<Object>(), &name) {
            return None;
        }
        let value = Reflect::get(self, &name).ok()?;
        (!value.is_undefined()).then_some(value)
    }

    fn as_u64(&self) -> Option<u64> {
        // 2^64, the first number above u64::MAX; NaN is in no range.
        const ABOVE_MAX: f64 = 18_446_744_073_709_551_616.0;
        let n = self.as_f64()?;
        ((0.0..ABOVE_MAX).contains(&n) && n.fract() == 0.0).then_some(n as u64)
    }

    fn as_text(&self) -> Option<String> {
        self.as_string()
    }

    fn as_bool(&self) -> Option<bool> {
        JsValue::as_bool(self)
    }

    fn items(&self) -> Option<Vec<Self>> {
        Array::is_array(self).then(|| self.unchecked_ref::<Array>().iter().collect())
    }

    fn is_object(&self) -> bool {
        JsValue::is_object(self) && !Array::is_array(self)
    }

    fn is_null(&self) -> bool {
        JsValue::is_null(self)
    }
}

/// The state as JSON text, version 2, indented by 2 as serde_json's `to_string_pretty`; with its
/// records if `RECORDS` (a constant: see `StoredState::parse`).
pub(super) fn to_json<const RECORDS: bool>(state: &StoredState) -> String {
    let windows = list(state.windows.values(), |window| {
        let mut fields = vec![
            ("service", window.service.as_str().into()),
            ("period", window.spec.key().into()),
            ("start_ms", number(window.start_ms)),
            ("end_ms", number(window.end_ms)),
            ("total", number(window.total)),
        ];
        if window.raise_count > 0 {
            fields.push(("raise_count", number(window.raise_count)));
        }
        object(&fields)
    });
    let mut fields = vec![
        ("version", JsValue::from(StoredState::VERSION)),
        ("updated_at_ms", number(state.updated_at_ms)),
        ("windows", windows),
    ];
    if RECORDS {
        records(state, &mut fields);
    } else {
        // serde_json's writer always writes `applied`: the same text from every build.
        fields.push(("applied", Array::new().into()));
    }
    fields.push(("applies", number(state.applies)));
    // Plain objects of strings, numbers and booleans always stringify.
    JSON::stringify_with_replacer_and_space(&object(&fields), &JsValue::NULL, &JsValue::from(2))
        .map(String::from)
        .unwrap_or_default()
}

/// The document's records, after its windows: `ops`, `evicted`, and older builds' `applied`,
/// `leases` and `admits`, in serde_json's order.
fn records(state: &StoredState, fields: &mut Vec<(&str, JsValue)>) {
    if !state.ops.is_empty() {
        let ops = list(state.ops.values(), |ops| {
            let done = ops
                .done
                .iter()
                .map(|(seq, answer)| {
                    [number(*seq), JsValue::from(answer.text())]
                        .into_iter()
                        .collect::<Array>()
                })
                .collect::<Array>();
            object(&[
                ("instance", String::from(ops.instance).into()),
                ("service", ops.service.as_str().into()),
                ("low", number(ops.low)),
                ("done", done.into()),
                ("until_ms", number(ops.until_ms)),
                ("seen", number(ops.seen)),
            ])
        });
        fields.push(("ops", ops));
    }
    if state.evicted > 0 {
        fields.push(("evicted", number(state.evicted)));
    }
    let applied = list(state.applied.values(), |applied| {
        object(&[
            ("instance", String::from(applied.instance).into()),
            ("service", applied.service.as_str().into()),
            ("seq", number(applied.seq)),
            ("seen", number(applied.seen)),
        ])
    });
    fields.push(("applied", applied));
    if !state.leases.is_empty() {
        let leases = list(state.leases.values(), |lease| {
            object(&[
                ("instance", String::from(lease.instance).into()),
                ("service", lease.service.as_str().into()),
                ("seq", number(lease.seq)),
                ("granted", number(lease.granted)),
                ("returned_seq", number(lease.returned_seq)),
                ("seen", number(lease.seen)),
            ])
        });
        fields.push(("leases", leases));
    }
    if !state.admits.is_empty() {
        let admits = list(state.admits.values(), |admitted| {
            object(&[
                ("instance", String::from(admitted.instance).into()),
                ("service", admitted.service.as_str().into()),
                ("seq", number(admitted.seq)),
                ("admitted", admitted.admitted.into()),
                ("total", number(admitted.total)),
                ("seen", number(admitted.seen)),
            ])
        });
        fields.push(("admits", admits));
    }
}

fn number(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

/// A plain object with `fields`, in order.
fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (name, value) in fields {
        // Setting a field of a fresh plain object cannot fail.
        let _ = Reflect::set(&object, &JsValue::from_str(name), value);
    }
    object.into()
}

fn list<'a, T: 'a>(items: impl Iterator<Item = &'a T>, each: impl Fn(&T) -> JsValue) -> JsValue {
    items.map(each).collect::<Array>().into()
}
