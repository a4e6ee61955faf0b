//! Window specs in time zones against an independent oracle: `tz_oracle.mjs` computes the
//! windows from Node's `Intl` alone (the JS engine's time zone data, written from the
//! definitions, not from this crate's code), and every one must be `WindowSpec::window_at`'s:
//! days around every daylight saving time change from 1970 to 2037 in eight zones (23- and
//! 25-hour days, a midnight that does not exist, a skipped day), their weeks and pairs of days,
//! hours and half hours around those changes, and months from anchor days 1, 15, 29, 30 and
//! 31 in every month of 2000 to 2399 in UTC, Los Angeles and Paris.
//!
//! It also checks that the fixture the wasm32 test reads (`tz_oracle_fixture.json`, checked by
//! `tests/tests/time_zones.rs` in a browser) is what the script prints now. After a change to
//! the script (or to Node's time zone data), write it again:
//!
//! ```text
//! node core/tests/tz_oracle.mjs --fixture > core/tests/tz_oracle_fixture.json
//! ```
//!
//! Without `node` on the PATH the test says so and passes (CI has it).

use quota_core::{Window, WindowSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Windows per key, as `[start, length, ...]` in seconds.
type Table = BTreeMap<String, Vec<u64>>;

fn table(value: &Value) -> Table {
    let object = value.as_object().expect("an object of keys");
    object
        .iter()
        .map(|(key, list)| {
            let list = list.as_array().expect("a list of numbers");
            let numbers = list.iter().map(|n| n.as_u64().expect("whole seconds"));
            (key.clone(), numbers.collect())
        })
        .collect()
}

/// Checks every window of `table`: its start, middle and last millisecond have exactly that
/// window. Returns how many windows there were.
fn check(table: &Table) -> usize {
    let mut count = 0;
    for (key, list) in table {
        let spec = WindowSpec::from_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        for pair in list.chunks(2) {
            let (start, reset) = (pair[0] * 1_000, (pair[0] + pair[1]) * 1_000);
            let expected = Window {
                start_ms: start,
                reset_at_ms: reset,
            };
            for now in [start, start + (reset - start) / 2, reset - 1] {
                assert_eq!(spec.window_at(now), expected, "{key} at {now} ms");
            }
            count += 1;
        }
    }
    count
}

fn count(table: &Table, keys: impl Fn(&str) -> bool) -> usize {
    table
        .iter()
        .filter(|(key, _)| keys(key))
        .map(|(_, list)| list.len() / 2)
        .sum()
}

#[test]
fn windows_in_time_zones_agree_with_nodes_intl() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let output = match Command::new("node").arg(dir.join("tz_oracle.mjs")).output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("SKIPPED: the time zone oracle needs node on the PATH ({error})");
            return;
        }
    };
    assert!(
        output.status.success(),
        "tz_oracle.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let oracle: Value = serde_json::from_slice(&output.stdout).expect("the oracle's JSON");
    let cases = table(&oracle["cases"]);

    // Nothing can pass for want of cases: every month of 400 years for 15 specs, quarters,
    // and the windows around 1970-2037's changes of offset (their number follows Node's data).
    let months = count(&cases, |key| key.starts_with("month"));
    assert_eq!(months, 400 * 12 * 15);
    assert_eq!(count(&cases, |key| key.starts_with("3month")), 400 * 4);
    let days = count(&cases, |key| key.starts_with("day@"));
    assert!(days > 2_000, "{days} day windows");
    let hours = count(&cases, |key| {
        key.starts_with("hour@") || key.starts_with("30minute@")
    });
    assert!(hours > 10_000, "{hours} hour and half-hour windows");
    let lengths: Vec<u64> = ["day@America/Los_Angeles", "day@Australia/Lord_Howe"]
        .iter()
        .flat_map(|key| cases[*key].chunks(2).map(|pair| pair[1]))
        .collect();
    for hours in [23.0, 23.5, 24.0, 24.5, 25.0] {
        assert!(
            lengths.contains(&((hours * 3_600.0) as u64)),
            "a day of {hours} hours"
        );
    }
    let checked = check(&cases);
    assert_eq!(checked, count(&cases, |_| true));
    eprintln!("{checked} windows agree with Node's Intl ({months} months, {days} days)");

    let fixture = std::fs::read_to_string(dir.join("tz_oracle_fixture.json")).unwrap();
    let fixture: Value = serde_json::from_str(&fixture).expect("the fixture's JSON");
    assert!(
        fixture == oracle["fixture"],
        "tz_oracle_fixture.json is not what tz_oracle.mjs prints now: write it again with \
         `node core/tests/tz_oracle.mjs --fixture > core/tests/tz_oracle_fixture.json`"
    );
    let fixture = table(&fixture);
    assert!(check(&fixture) > 1_500);
}
