//! The page's number reading, in the browser (the numbers are converted by its `parseFloat`).
#![cfg(target_arch = "wasm32")]

use quota_web::format::parse_number;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn numbers_read_as_rust_reads_them() {
    let texts = [
        "0.8",
        "0.85",
        ".5",
        "5.",
        "+1",
        "-0.25",
        "1e-3",
        "1E5",
        "2.5e+2",
        "007",
        "0.1",
        "1",
        "0",
        "-0",
        "0.30000000000000004",
        "123456789012345678901234567890",
        "1e400",
        "1e-400",
        "2.2250738585072011e-308",
        "inf",
        "-inf",
        "+infinity",
        "Infinity",
        "NaN",
        "nan",
        "-nan",
        "",
        ".",
        "-",
        "+",
        "e5",
        "1e",
        "1e+",
        "1.2.3",
        "0x10",
        " 1",
        "1 ",
        "1_0",
        "1,5",
        "--1",
        "+-1",
        ".e1",
        "infinit",
        "١",
    ];
    for text in texts {
        let ours = parse_number(text);
        let rust = text.parse::<f64>().ok();
        match (ours, rust) {
            (Some(a), Some(b)) if a.is_nan() && b.is_nan() => {}
            (a, b) => assert_eq!(
                a.map(f64::to_bits),
                b.map(f64::to_bits),
                "{text:?}: {a:?} against Rust's {b:?}"
            ),
        }
    }
}
