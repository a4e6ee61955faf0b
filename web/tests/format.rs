//! The page's number reading and writing, in the browser (numbers are converted by its
//! `parseFloat` and `String`).
#![cfg(target_arch = "wasm32")]

use quota_web::format::{fixed, number, parse_number, push_fixed};
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

#[wasm_bindgen_test]
fn numbers_write_as_rust_writes_them_from_a_millionth_to_1e21() {
    let values = [
        0.0,
        -0.0,
        1.0,
        0.8,
        0.95,
        12.5,
        100.0,
        1.0 / 3.0,
        0.1 + 0.2,
        -2.25,
        1e-6,
        123_456.789,
        9_007_199_254_740_993.0,
        1e20,
        f64::MIN_POSITIVE * 1e302,
    ];
    for value in values {
        let rust = if value == 0.0 {
            "0".to_owned()
        } else {
            value.to_string()
        };
        assert_eq!(number(value), rust, "{value:?}");
    }
    // Where JavaScript writes an exponent and Rust does not.
    assert_eq!(number(1e21), "1e+21");
    assert_eq!(number(1e-7), "1e-7");
    assert_eq!(number(f64::NAN), "NaN");
    assert_eq!(number(f64::INFINITY), "Infinity");
}

#[wasm_bindgen_test]
fn fixed_decimals_match_rust_away_from_ties() {
    let values = [
        0.0,
        1.0,
        44.0,
        592.0,
        59.84,
        59.86,
        16_000.4,
        0.04,
        0.06,
        99.96,
        212.345_67,
        -3.21,
        -0.04,
        1e15,
        7.0 / 3.0,
    ];
    for value in values {
        for decimals in 0..=3_u32 {
            let rust = format!("{value:.*}", decimals as usize);
            // Rust writes a value that rounds to zero with its sign (`-0.0`); the page does not.
            let rust = match rust.strip_prefix('-') {
                Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_owned(),
                _ => rust,
            };
            assert_eq!(
                fixed(value, decimals),
                rust,
                "{value} to {decimals} decimals"
            );
        }
    }
    let mut out = String::from("x=");
    push_fixed(&mut out, 12.25, 1);
    push_fixed(&mut out, -0.5, 0);
    assert_eq!(out, "x=12.3-1", "onto the text, ties away from zero");
    assert_eq!(fixed(f64::NAN, 1), "NaN");
    assert_eq!(fixed(f64::NEG_INFINITY, 1), "-inf");
    assert_eq!(fixed(2.5, 12), "2.500000000", "at most 9 decimals");
    assert_eq!(fixed(1e30, 1), "1e+30", "past 2^64 once scaled");
}
