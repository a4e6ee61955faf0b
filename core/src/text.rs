//! How values are written into messages: numbers and quoted names, the same natively and
//! (through the JS engine) on wasm32. A leaf module: errors, windows and stores all
//! write messages with it.

use std::fmt;

/// An `f64` in a message: Rust's `Display`, except on wasm32 (the JS module, the dashboard:
/// every wasm32 build runs in a JS engine), where JavaScript formats it (as `String(x)` does:
/// `0.5`, `NaN`, `Infinity`), so the `.wasm` carries no float formatting of its own (about
/// 14 KB of wasm).
pub(crate) struct Float(pub(crate) f64);

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(target_arch = "wasm32")]
        {
            let text = js_sys::Number::from(self.0)
                .to_string_with_radix(10)
                .map(String::from)
                .unwrap_or_default();
            f.write_str(&text)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            fmt::Display::fmt(&self.0, f)
        }
    }
}

/// Text in double quotes, as Rust's `{:?}` writes it (`"api"`, `"say \"hi\""`), except on
/// wasm32, where JavaScript's `JSON.stringify` writes it, so the `.wasm` carries no `Debug`
/// formatting of strings (escapes and Unicode tables, about 3 KB of wasm). The two write the
/// same for text without control characters or invisible code points (those Rust writes as
/// `\u{1}`, `\u{200b}`; JSON as `\u0001` and unescaped).
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(target_arch = "wasm32")]
        {
            let text = js_sys::JSON::stringify(&js_sys::wasm_bindgen::JsValue::from_str(self.0))
                .map(String::from)
                .unwrap_or_default();
            f.write_str(&text)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            fmt::Debug::fmt(self.0, f)
        }
    }
}
