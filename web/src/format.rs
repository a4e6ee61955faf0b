//! Numbers and times as the page writes (and reads) them.

/// `ms` since the Unix epoch as a UTC time of day, `HH:MM:SS`.
pub fn time_of_day(ms: u64) -> String {
    let seconds = ms / 1_000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// A duration in ms as the two largest units: `42 s`, `3 min 05 s`, `5 h 02 min`, `12 d 04 h`.
pub fn countdown(ms: u64) -> String {
    let seconds = ms.div_ceil(1_000);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days} d {hours:02} h")
    } else if hours > 0 {
        format!("{hours} h {minutes:02} min")
    } else if minutes > 0 {
        format!("{minutes} min {:02} s", seconds % 60)
    } else {
        format!("{seconds} s")
    }
}

/// A rate with at most one decimal: `16000`, `59.8`.
pub fn rate(value: f64) -> String {
    fixed(value, if value >= 100.0 { 0 } else { 1 })
}

/// `value` as JavaScript's `String(value)` writes it: the shortest text that reads back as the
/// same number (`0.8`, `12.5`, `1`), which is what Rust's `Display` writes too, except that
/// JavaScript switches to an exponent below 1e-6 and from 1e21 (`1e-7`, `1e+21`).
///
/// The page formats numbers here and in [`fixed`], never through Rust's float formatting,
/// which brings about 9.5 KB of code and tables into the `.wasm`.
pub fn number(value: f64) -> String {
    js_sys::Number::from(value)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// `value` with `decimals` digits after the point (at most 9): `value * 10^decimals` rounded to
/// a whole number, ties away from zero (`fixed(59.84, 1)` is `59.8`, `fixed(0.5, 0)` is `1`;
/// Rust's `{:.1}` rounds the exact binary value instead, so at a tie the two may differ by the
/// last digit: `0.15` is `0.2` here). Past 2^64 once scaled, as [`number`] writes it
/// (`1e+30`). Not finite: `NaN`, `inf`, `-inf`.
pub fn fixed(value: f64, decimals: u32) -> String {
    let mut out = String::new();
    push_fixed(&mut out, value, decimals);
    out
}

/// [`fixed`], written onto `out` (the chart writes hundreds of coordinates a frame).
pub fn push_fixed(out: &mut String, value: f64, decimals: u32) {
    use std::fmt::Write;
    if !value.is_finite() {
        out.push_str(if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "inf"
        } else {
            "-inf"
        });
        return;
    }
    let scale = 10_u64.pow(decimals.min(9));
    let scaled = (value.abs() * scale as f64).round();
    // Whole numbers up to 2^64 convert exactly; past that a u64 would saturate.
    if scaled >= 18_446_744_073_709_551_616.0 {
        out.push_str(&number(value));
        return;
    }
    let scaled = scaled as u64;
    if value < 0.0 && scaled > 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", scaled / scale);
    if decimals > 0 {
        let _ = write!(
            out,
            ".{:0width$}",
            scaled % scale,
            width = decimals.min(9) as usize
        );
    }
}

/// `text` as a number, as `str::parse::<f64>` reads it: a decimal with an optional sign,
/// fraction and exponent (`0.8`, `.5`, `-1e-3`), or `inf`, `infinity` or `nan` in any case;
/// `None` for anything else (surrounding whitespace included).
///
/// Rust's float parser brings about 15 KB of code and tables into the `.wasm`; the browser's
/// `parseFloat` converts the same way (correctly rounded), so the text is checked here and
/// converted there.
pub fn parse_number(text: &str) -> Option<f64> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let special = match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    if let Some(value) = special {
        return Some(if negative { -value } else { value });
    }
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent_ok = exponent.is_none_or(|exponent| {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !exponent.is_empty() && digits(exponent)
    });
    let valid = !(whole.is_empty() && fraction.is_empty())
        && digits(whole)
        && digits(fraction)
        && exponent_ok;
    valid.then(|| js_sys::parse_float(text))
}

/// `ms` since the Unix epoch as the time of day in the IANA time zone `zone`, `HH:MM`, after
/// the date (`Mar 15, 00:00`) when `with_date`; formatted by the browser's `Intl` (no time
/// zone data in the `.wasm`). Empty if `Intl` refuses the zone (the core accepted it through
/// the same `Intl`, so it does not).
pub fn local_time(ms: u64, zone: &str, with_date: bool) -> String {
    use js_sys::{Array, Date, Function, Reflect, JSON};
    use wasm_bindgen::{JsCast, JsValue};
    let date_fields = if with_date {
        ",\"month\":\"short\",\"day\":\"numeric\""
    } else {
        ""
    };
    // A zone name holds letters, digits and `/ _ - +` only (the core checks): nothing to
    // escape.
    let formatted = (|| {
        let options = JSON::parse(&format!(
            "{{\"timeZone\":\"{zone}\",\"hourCycle\":\"h23\",\"hour\":\"2-digit\",\
             \"minute\":\"2-digit\"{date_fields}}}"
        ))
        .ok()?;
        let intl = Reflect::get(&js_sys::global(), &"Intl".into()).ok()?;
        let constructor: Function = Reflect::get(&intl, &"DateTimeFormat".into())
            .ok()?
            .dyn_into()
            .ok()?;
        // `Reflect.construct` hands back a `RangeError` instead of throwing it through the wasm.
        let formatter: js_sys::Intl::DateTimeFormat =
            Reflect::construct(&constructor, &Array::of2(&"en-US".into(), &options))
                .ok()?
                .dyn_into()
                .ok()?;
        let date = Date::new(&JsValue::from_f64(ms as f64));
        formatter
            .format()
            .call1(&JsValue::UNDEFINED, &date)
            .ok()?
            .as_string()
    })()
    .unwrap_or_default();
    // Some engines write midnight as hour 24 despite `h23`.
    match formatted.rsplit_once("24:") {
        Some((before, after)) if before.is_empty() || before.ends_with(' ') => {
            format!("{before}00:{after}")
        }
        _ => formatted,
    }
}
