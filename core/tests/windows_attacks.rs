//! A hostile review of window specs (N units, time zones, anchor days) through the tracker, the
//! text stores, the config file, `QuotaFile::reconfigure` and the metrics example's reload.
//! `guard_*` tests are attacks the code survived; the others found a defect (fixed since) and
//! are its regression tests.

#![allow(clippy::unwrap_used)]

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(all(feature = "metrics", unix))]
#[allow(dead_code)]
#[path = "../examples/metrics.rs"]
mod example;

use quota_core::{
    Delta, InstanceId, ManualClock, MemoryStore, Period, QuotaFile, QuotaTracker, ServiceConfig,
    StoredState, SyncBatch, SyncPolicy, TrackerConfig, WindowKey, WindowSpec,
};
use std::collections::BTreeMap;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn ms(text: &str) -> u64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

fn spec(key: &str) -> WindowSpec {
    WindowSpec::from_key(key).unwrap()
}

/// A tracker on `store` that syncs only when told.
fn stored(store: &MemoryStore, config: TrackerConfig, clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::builder(config)
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(SyncPolicy {
            interval_ms: 365 * DAY,
            force_on_critical: false,
            ..SyncPolicy::default()
        })
        .build()
        .unwrap()
}

/// The stored totals of `service`, by (spec key, start).
fn totals(state: &StoredState, service: &str) -> BTreeMap<(String, u64), u64> {
    state
        .windows()
        .filter(|w| w.service == service)
        .map(|w| ((w.spec.key(), w.start_ms), w.total))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Stored documents
// ---------------------------------------------------------------------------------------------

#[test]
fn guard_old_documents_v1_and_v2_with_a_plain_period_keep_their_counts() {
    let now = ms("2024-06-10T12:00:00Z");
    let start = now / DAY * DAY;
    let v2 = format!(
        r#"{{"version": 2, "updated_at_ms": {now}, "applied": [], "applies": 3,
            "windows": [{{"service": "api", "period": "day", "start_ms": {start},
                          "end_ms": {end}, "total": 7}}]}}"#,
        end = start + DAY
    );
    let v1 = format!(
        r#"{{"version": 1, "updated_at_ms": {now}, "services": [{{"name": "api", "used": 9,
            "window_start_ms": {start}, "config": {{"period": "day"}}}}]}}"#
    );
    for (text, used) in [(v2, 7), (v1, 9)] {
        let store = MemoryStore::new();
        store.set_raw(Some(text));
        let clock = ManualClock::new(now);
        let config = TrackerConfig::new([ServiceConfig::new("api", 100, Period::Day)]);
        let tracker = stored(&store, config, &clock);
        assert_eq!(tracker.usage("api").unwrap().used, used);
        tracker.record_call("api", 1).unwrap();
        tracker.flush().unwrap();
        let state = store.state().unwrap();
        assert_eq!(
            totals(&state, "api"),
            BTreeMap::from([(("day".to_owned(), start), used + 1)])
        );
        // Written back as version 2, still under the old key.
        assert!(store.raw().unwrap().contains("\"period\": \"day\""));
    }
}

#[test]
fn guard_garbage_period_keys_are_skipped_with_a_reason_and_the_rest_kept() {
    let bad = [
        "\"fortnight\"",
        "\"day@Mars/Olympus\"",
        "\"day@america/los_angeles\"",
        "\"1day\"",
        "\"05minute\"",
        "\"month+1\"",
        "\"day+15\"",
        "\"month+32\"",
        "\"99999999999999999999999day\"",
        "\"86401second\"",
        "\"day@\"",
        "\"@\"",
        "\"+\"",
        "\"\"",
        "\"day@UTC@UTC\"",
        "\"day@Etc/Unknown\"",
        "\"day@../../etc/passwd\"",
        "\"day@{tag}\"",
        "\"d\u{e9}y\"",
        "5",
        "null",
        "{}",
    ];
    let mut windows: Vec<String> = bad
        .iter()
        .map(|period| {
            format!(
                r#"{{"service": "api", "period": {period}, "start_ms": 0, "end_ms": 1, "total": 5}}"#
            )
        })
        .collect();
    windows.push(
        r#"{"service": "api", "period": "day@America/Los_Angeles", "start_ms": 28800000, "end_ms": 115200000, "total": 4}"#
            .into(),
    );
    windows.push(
        r#"{"service": "api", "period": "day", "start_ms": 0, "end_ms": 86400000, "total": 3}"#
            .into(),
    );
    let text = format!(
        r#"{{"version": 2, "updated_at_ms": 0, "applied": [], "windows": [{}]}}"#,
        windows.join(",")
    );
    let state = StoredState::from_json(&text).unwrap();
    assert_eq!(state.skipped().len(), bad.len(), "{:?}", state.skipped());
    for (note, period) in state.skipped().iter().zip(bad) {
        assert!(note.starts_with("windows["), "{note} ({period})");
        println!("{period}: {note}");
    }
    assert_eq!(
        totals(&state, "api"),
        BTreeMap::from([
            (("day".to_owned(), 0), 3),
            (("day@America/Los_Angeles".to_owned(), 28_800_000), 4),
        ])
    );
}

fn batch(instance: u128, seq: u64, windows: &[(&WindowKey, u64)]) -> SyncBatch {
    SyncBatch {
        instance: InstanceId::from_u128(instance),
        seq,
        done_below: 0,
        at_ms: 0,
        deltas: windows
            .iter()
            .map(|&(window, calls)| Delta {
                window: window.clone(),
                calls,
            })
            .collect(),
        read: vec![],
        raises: vec![],
    }
}

fn key(service: &str, spec: &WindowSpec, at_ms: u64) -> WindowKey {
    let window = spec.window_at(at_ms);
    WindowKey {
        service: service.into(),
        spec: spec.clone(),
        start_ms: window.start_ms,
        end_ms: window.reset_at_ms,
    }
}

#[test]
fn guard_a_document_keeps_eight_windows_per_spec_of_a_service_after_respecs() {
    // A service reconfigured through three specs: each spec keeps its latest 8 windows, and
    // another spec's windows never push a spec's current window out.
    let specs = [spec("day"), spec("hour@Europe/Paris"), spec("5minute")];
    let mut state = StoredState::new();
    let mut seq = 0;
    let start = ms("2024-06-10T00:00:00Z");
    for (round, spec) in specs.iter().enumerate() {
        for n in 0..20u64 {
            seq += 1;
            let at = start + round as u64 * 30 * DAY + n * spec.max_ms();
            state.apply(&batch(1, seq, &[(&key("api", spec, at), 1)]));
        }
    }
    for spec in &specs {
        let kept = state
            .windows()
            .filter(|w| w.service == "api" && w.spec == *spec)
            .count();
        assert_eq!(kept, StoredState::WINDOWS_KEPT, "{}", spec.key());
    }
    // A resend of the last batch still counts once (its record survived the other specs).
    let last = key("api", &specs[2], start + 60 * DAY + 19 * specs[2].max_ms());
    let before = state.total(&last);
    state.apply(&batch(1, seq, &[(&last, 1)]));
    assert_eq!(state.total(&last), before);
}

#[test]
fn guard_a_resend_counted_in_a_long_and_a_short_spec_still_counts_once() {
    // Two instances on two specs of one service (a rolling reconfigure): instance 1 counts in
    // seconds windows, instance 2 in a zoned month. Instance 2's record must survive the
    // seconds windows rolling past.
    let seconds = spec("second");
    let month = spec("month+15@America/Los_Angeles");
    let mut state = StoredState::new();
    let t0 = ms("2024-06-10T12:00:00Z");
    let month_window = key("api", &month, t0);
    state.apply(&batch(2, 1, &[(&month_window, 5)]));
    for n in 0..100u64 {
        state.apply(&batch(
            1,
            n + 1,
            &[(&key("api", &seconds, t0 + n * 1_000), 1)],
        ));
    }
    // Instance 2's reply was lost: it resends seq 1.
    state.apply(&batch(2, 1, &[(&month_window, 5)]));
    assert_eq!(state.total(&month_window), 5);
}

// ---------------------------------------------------------------------------------------------
// The tracker across DST: the fast path, roll-overs, clock steps
// ---------------------------------------------------------------------------------------------

/// Records one call at every `step_ms` from `from` to `to` on a `spec` service (flushing
/// every `flush_every` calls), then checks every stored window's total and the tracker's
/// `used` against the spec's own windows.
fn record_across(spec: WindowSpec, from: u64, to: u64, step_ms: u64, flush_every: u64) {
    let store = MemoryStore::new();
    let clock = ManualClock::new(from);
    let config = TrackerConfig::new([ServiceConfig::new("api", u64::MAX / 4, spec.clone())]);
    let tracker = stored(&store, config, &clock);
    let mut expected: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut now = from;
    let mut calls = 0;
    while now < to {
        clock.set(now);
        let window = spec.window_at(now);
        let recorded = tracker.record_call("api", 1).unwrap();
        *expected.entry((spec.key(), window.start_ms)).or_default() += 1;
        assert_eq!(
            (recorded.usage.window_start_ms, recorded.usage.reset_at_ms),
            (window.start_ms, window.reset_at_ms),
            "{} at {now}",
            spec.key()
        );
        assert_eq!(
            recorded.usage.used,
            expected[&(spec.key(), window.start_ms)],
            "{} at {now}",
            spec.key()
        );
        calls += 1;
        if calls % flush_every == 0 {
            tracker.flush().unwrap();
        }
        now += step_ms;
    }
    tracker.flush().unwrap();
    let stored = totals(&store.state().unwrap(), "api");
    // The store keeps the latest 8 windows of the spec.
    let latest: BTreeMap<_, _> = expected
        .into_iter()
        .rev()
        .take(StoredState::WINDOWS_KEPT)
        .collect();
    assert_eq!(stored, latest, "{}", spec.key());
}

#[test]
fn guard_the_fast_path_counts_exactly_per_window_across_spring_forward() {
    let from = ms("2024-03-10T07:00:00Z");
    let to = ms("2024-03-10T13:00:00Z");
    record_across(spec("hour@America/Los_Angeles"), from, to, 7_000, 97);
    record_across(spec("2hour@America/Los_Angeles"), from, to, 7_000, 97);
    record_across(spec("45minute@America/Los_Angeles"), from, to, 7_000, 97);
    record_across(spec("hour@Asia/Kolkata"), from, to, 7_000, 97);
    let from = ms("2024-03-09T00:00:00Z");
    let to = ms("2024-03-12T00:00:00Z");
    record_across(spec("day@America/Los_Angeles"), from, to, 61_000, 500);
}

#[test]
fn guard_the_fast_path_counts_exactly_per_window_across_fall_back() {
    // 2024-11-03 09:00Z: 02:00 PDT becomes 01:00 PST, the hour 01:00-02:00 runs twice.
    let from = ms("2024-11-03T06:00:00Z");
    let to = ms("2024-11-03T12:00:00Z");
    record_across(spec("hour@America/Los_Angeles"), from, to, 7_000, 97);
    record_across(spec("3hour@America/Los_Angeles"), from, to, 7_000, 97);
    record_across(
        spec("30minute@Australia/Lord_Howe"),
        ms("2024-04-06T12:00:00Z"),
        ms("2024-04-06T18:00:00Z"),
        7_000,
        97,
    );
    let from = ms("2024-11-02T00:00:00Z");
    let to = ms("2024-11-05T00:00:00Z");
    record_across(spec("day@America/Los_Angeles"), from, to, 61_000, 500);
    // A day that did not start at midnight (Pacific/Apia skipped 2011-12-30).
    record_across(
        spec("day@Pacific/Apia"),
        ms("2011-12-28T00:00:00Z"),
        ms("2012-01-02T00:00:00Z"),
        97_000,
        500,
    );
}

#[test]
fn guard_n_unit_windows_partition_time_through_the_tracker() {
    // Random forward steps over years: the tracker's window is always the spec's, and its
    // count is exactly the calls in that window.
    let specs = [
        "7day",
        "3month+31",
        "86400second",
        "3month+31@America/Los_Angeles",
        "2week@Pacific/Apia",
        "month+30@Australia/Lord_Howe",
        "5hour@Asia/Kolkata",
        "36525day",
        "1200month",
    ];
    for key in specs {
        let spec = spec(key);
        let clock = ManualClock::new(ms("2011-01-01T00:00:00Z"));
        let tracker = QuotaTracker::new_with_clock(
            TrackerConfig::new([ServiceConfig::new("api", u64::MAX / 4, spec.clone())]),
            clock.clone(),
        )
        .unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = ms("2011-01-01T00:00:00Z");
        let mut current = (0, 0);
        let mut count = 0;
        for _ in 0..3_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            now += (seed >> 33) % (spec.max_ms() / 3 + 1);
            clock.set(now);
            let window = spec.window_at(now);
            assert!(
                window.start_ms <= now && now < window.reset_at_ms,
                "{key} at {now}"
            );
            assert!(
                window.reset_at_ms - window.start_ms <= spec.max_ms(),
                "{key} at {now}"
            );
            let here = (window.start_ms, window.reset_at_ms);
            if here != current {
                if current != (0, 0) && window.start_ms < current.1 {
                    panic!("{key}: window {here:?} overlaps {current:?}");
                }
                current = here;
                count = 0;
            }
            count += 1;
            let usage = tracker.record_call("api", 1).unwrap().usage;
            assert_eq!(
                (usage.window_start_ms, usage.reset_at_ms, usage.used),
                (here.0, here.1, count),
                "{key} at {now}"
            );
        }
    }
}

#[test]
fn guard_a_clock_stepping_back_across_a_dst_change_loses_and_doubles_nothing() {
    // The 25-hour day of 2024-11-03 in Los Angeles starts at 07:00Z; the clock steps back to
    // just before it (small step: stays), then far back (a jump), then returns.
    let spec = spec("day@America/Los_Angeles");
    let store = MemoryStore::new();
    let clock = ManualClock::new(ms("2024-11-03T12:00:00Z"));
    let config = TrackerConfig::new([ServiceConfig::new("api", 1_000_000, spec.clone())]);
    let tracker = stored(&store, config, &clock);
    tracker.record_call("api", 5).unwrap();
    clock.set(ms("2024-11-03T06:59:59Z")); // 23:59:59 PDT on the 2nd
    assert_eq!(tracker.record_call("api", 1).unwrap().usage.used, 6);
    clock.set(ms("2024-11-04T07:59:59Z")); // 23:59:59 PST on the 3rd: still the 25-hour day
    assert_eq!(tracker.record_call("api", 1).unwrap().usage.used, 7);
    clock.set(ms("2024-11-04T08:00:00Z")); // the 4th
    assert_eq!(tracker.record_call("api", 2).unwrap().usage.used, 2);
    tracker.flush().unwrap();
    let state = store.state().unwrap();
    assert_eq!(
        totals(&state, "api"),
        BTreeMap::from([
            ((spec.key(), ms("2024-11-03T07:00:00Z")), 7),
            ((spec.key(), ms("2024-11-04T08:00:00Z")), 2),
        ])
    );
    // Before a 23-hour day: the reading a minute before 2024-03-10's start stays in it.
    let clock = ManualClock::new(ms("2024-03-10T12:00:00Z"));
    let tracker = QuotaTracker::new_with_clock(
        TrackerConfig::new([ServiceConfig::new("api", 100, spec.clone())]),
        clock.clone(),
    )
    .unwrap();
    tracker.record_call("api", 3).unwrap();
    clock.set(ms("2024-03-10T07:59:00Z"));
    let usage = tracker.record_call("api", 1).unwrap().usage;
    assert_eq!(
        (usage.used, usage.window_start_ms),
        (4, ms("2024-03-10T08:00:00Z"))
    );
}

// ---------------------------------------------------------------------------------------------
// Reconfigure
// ---------------------------------------------------------------------------------------------

#[test]
fn guard_reconfigure_changing_only_the_time_zone_starts_fresh_and_the_old_calls_reach_the_store() {
    let store = MemoryStore::new();
    let now = ms("2024-06-10T12:00:00Z");
    let clock = ManualClock::new(now);
    let config = |zone: Option<&str>| {
        let spec = WindowSpec::from_parts(Period::Day, 1, zone, None).unwrap();
        TrackerConfig::new([ServiceConfig::new("api", 100, spec)])
    };
    let tracker = stored(&store, config(None), &clock);
    tracker.record_call("api", 5).unwrap();
    tracker.flush().unwrap();
    tracker.record_call("api", 2).unwrap(); // not synced yet
    let done = tracker
        .reconfigure(config(Some("America/Los_Angeles")))
        .unwrap();
    assert_eq!(done.changed, ["api"]);
    let usage = tracker.usage("api").unwrap();
    assert_eq!(usage.used, 0);
    assert_eq!(usage.window_start_ms, ms("2024-06-10T07:00:00Z"));
    tracker.record_call("api", 3).unwrap();
    // And again to another zone, unsynced.
    tracker.reconfigure(config(Some("Europe/Paris"))).unwrap();
    tracker.record_call("api", 4).unwrap();
    tracker.flush().unwrap();
    assert_eq!(
        totals(&store.state().unwrap(), "api"),
        BTreeMap::from([
            (("day".to_owned(), ms("2024-06-10T00:00:00Z")), 7),
            (
                (
                    "day@America/Los_Angeles".to_owned(),
                    ms("2024-06-10T07:00:00Z")
                ),
                3
            ),
            (
                ("day@Europe/Paris".to_owned(), ms("2024-06-09T22:00:00Z")),
                4
            ),
        ])
    );
    // Back to the first zone: the store's count of that window comes back at the next sync.
    tracker.reconfigure(config(None)).unwrap();
    tracker.record_call("api", 1).unwrap();
    tracker.flush().unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 8);
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

#[test]
fn guard_config_file_window_fields_give_clear_errors_with_lines() {
    let toml = |period: &str, line: &str| {
        format!("[[services]]\nname = \"x\"\nlimit = 1\nperiod = \"{period}\"\n{line}\n")
    };
    let cases = [
        ("day", "timezone = \"\"", "timezone"),
        ("day", "every = -1", "every"),
        ("day", "every = 4294967296", "every"),
        ("day", "every = 36526", "every"),
        ("second", "every = 86401", "every"),
        ("day", "every = 1.5", "every"),
        ("day", "every = \"2\"", "every"),
        ("month", "anchor_day = 0", "anchor_day"),
        ("month", "anchor_day = 300", "anchor_day"),
        ("month", "anchor_day = -3", "anchor_day"),
        ("month", "anchor_day = 32", "anchor_day"),
        ("day", "anchor_day = 1", "anchor_day"),
        ("day", "timezone = 5", "timezone"),
        ("day", "timezone = \"America/Los Angeles\"", "timezone"),
        ("day", "timezone = \"Etc/Unknown\"", "timezone"),
        (
            "day",
            "timezone = \"../../../../etc/localtime\"",
            "timezone",
        ),
        ("day", "timezone = \"/etc/localtime\"", "timezone"),
        (
            "day",
            &format!("timezone = \"{}\"", "A/".repeat(200)),
            "timezone",
        ),
    ];
    for (period, line, field) in cases {
        let error = QuotaFile::from_toml_str(&toml(period, line)).unwrap_err();
        let text = error.to_string();
        println!("{line}: {text}");
        assert!(text.contains("line 5"), "{line}: {text}");
        let _ = field;
        assert!(text.len() < 400, "{line}: {text}");
    }
    // JSON: the field's own line.
    for (period, field, value) in [
        ("day", "timezone", "\"\""),
        ("day", "every", "-1"),
        ("day", "every", "4294967296"),
        ("day", "every", "0"),
        ("month", "anchorDay", "1"),
        ("month", "anchor_day", "0"),
        ("month", "anchor_day", "300"),
        ("day", "timezone", "null"),
        ("day", "every", "null"),
    ] {
        let json = format!(
            "{{\"services\": [{{\n\"name\": \"x\",\n\"limit\": 1,\n\"period\": \"{period}\",\n\"{field}\": {value}\n}}]}}"
        );
        match QuotaFile::from_json_str(&json) {
            // `null` for an optional field may mean "none".
            Ok(file) if value == "null" && field == "timezone" => {
                assert_eq!(file.tracker.services[0].window, spec("day"));
            }
            Ok(file) => panic!("{field} = {value} accepted: {:?}", file.tracker.services),
            Err(error) => {
                let text = error.to_string();
                println!("{field} = {value}: {text}");
                assert!(text.contains("line 5"), "{field} = {value}: {text}");
            }
        }
    }
    // Accepted spellings: the zone as the database spells it; UTC's names are no zone (the
    // plain spec: writing the default down does not start another window).
    for utc in ["utc", "UTC", "Etc/UTC", "GMT", "Zulu"] {
        let file =
            QuotaFile::from_toml_str(&toml("day", &format!("timezone = \"{utc}\""))).unwrap();
        assert_eq!(file.tracker.services[0].window.key(), "day", "{utc}");
    }
    let file =
        QuotaFile::from_toml_str(&toml("day", "timezone = \"america/los_angeles\"")).unwrap();
    assert_eq!(
        file.tracker.services[0].window.key(),
        "day@America/Los_Angeles"
    );
    let file = QuotaFile::from_toml_str(&toml("month", "anchor_day = 1")).unwrap();
    assert_eq!(file.tracker.services[0].window.key(), "month");
}

// ---------------------------------------------------------------------------------------------
// QuotaFile::reconfigure
// ---------------------------------------------------------------------------------------------

fn file_toml(store: &str, limit: u64, extra: &str) -> String {
    format!("{store}\n[[services]]\nname = \"api\"\nlimit = {limit}\nperiod = \"day\"\n{extra}\n")
}

#[test]
fn guard_a_tracker_built_without_a_file_refuses_a_file_with_a_store() {
    let clock = ManualClock::new(ms("2024-06-10T12:00:00Z"));
    let store = MemoryStore::new();
    let tracker = stored(
        &store,
        TrackerConfig::new([ServiceConfig::new("api", 100, Period::Day)]),
        &clock,
    );
    tracker.record_call("api", 3).unwrap();
    let with_store = QuotaFile::from_toml_str(&file_toml("store = \"memory:\"", 50, "")).unwrap();
    assert!(with_store.reconfigure(&tracker).is_err());
    assert_eq!(tracker.usage("api").unwrap().limit, 100);
}

#[test]
fn a_reload_without_a_store_is_refused_by_a_tracker_that_has_one() {
    // A tracker that shares its counts through a store, given a file that says "no store"
    // (counts in this process only) with a different [sync]: the reload is applied, and the
    // file's sync policy is silently ignored, although `reconfigure` documents that a file
    // changing the store or the sync policy is refused.
    let clock = ManualClock::new(ms("2024-06-10T12:00:00Z"));
    let store = MemoryStore::new();
    let tracker = stored(
        &store,
        TrackerConfig::new([ServiceConfig::new("api", 100, Period::Day)]),
        &clock,
    );
    let file =
        QuotaFile::from_toml_str(&file_toml("[sync]\ninterval_ms = 1000\n", 50, "")).unwrap();
    let result = file.reconfigure(&tracker);
    assert!(
        result.is_err(),
        "a file with no store (and another sync policy) reloaded into a tracker with one: {result:?}"
    );
}

#[test]
fn guard_a_reload_of_a_file_store_written_another_way_changes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let absolute = format!("store = \"file:{}\"", path.display());
    let tracker = QuotaFile::from_toml_str(&file_toml(&absolute, 100, ""))
        .unwrap()
        .build()
        .unwrap();
    tracker.record_call("api", 3).unwrap();
    // The same file through a `..` detour: a different URL, refused (conservative).
    let detour = format!(
        "store = \"file:{}/../{}/quota.json\"",
        path.parent().unwrap().display(),
        path.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    let error = QuotaFile::from_toml_str(&file_toml(&detour, 50, ""))
        .unwrap()
        .reconfigure(&tracker)
        .unwrap_err();
    assert!(error.to_string().contains("store"), "{error}");
    assert_eq!(tracker.usage("api").unwrap().limit, 100);
    // The same URL with require_store now true: applied (require_store only matters at build).
    let done = QuotaFile::from_toml_str(&file_toml(
        &format!("{absolute}\nrequire_store = true"),
        50,
        "",
    ))
    .unwrap()
    .reconfigure(&tracker)
    .unwrap();
    assert_eq!(done.changed, ["api"]);
    assert_eq!(tracker.usage("api").unwrap().used, 3);
}

#[cfg(feature = "redis")]
#[test]
fn guard_a_reload_with_another_redis_password_is_refused_and_redacts_both() {
    let old = "store = \"redis://app:OLDSECRET@127.0.0.1:1/0\"";
    let new = "store = \"redis://app:NEWSECRET@127.0.0.1:1/0\"";
    let tracker = QuotaFile::from_toml_str(&file_toml(old, 100, ""))
        .unwrap()
        .build()
        .unwrap();
    let error = QuotaFile::from_toml_str(&file_toml(new, 100, ""))
        .unwrap()
        .reconfigure(&tracker)
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("store"), "{text}");
    // The same password percent-encoded differently is another URL too: refused, redacted.
    let encoded = "store = \"redis://app:OLD%53ECRET@127.0.0.1:1/0\"";
    let error = QuotaFile::from_toml_str(&file_toml(encoded, 100, ""))
        .unwrap()
        .reconfigure(&tracker)
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("SECRET") && !text.contains("%53"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The metrics example's reload, racing recording threads
// ---------------------------------------------------------------------------------------------

#[cfg(all(feature = "metrics", unix))]
#[test]
fn guard_reloads_racing_recording_threads_lose_and_double_no_call() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("counts.json");
    let config_path = dir.path().join("quota.toml");
    let write = |zone: &str, every: u32, limit: u64| {
        let extra = match zone {
            "" => format!("every = {every}"),
            zone => format!("every = {every}\ntimezone = \"{zone}\""),
        };
        let text = file_toml(
            &format!(
                "store = \"file:{}\"\n[sync]\ninterval_ms = 3600000\nforce_on_critical = false\n",
                store_path.display()
            ),
            limit,
            &extra,
        );
        std::fs::write(&config_path, text).unwrap();
    };
    write("", 1, 1_000_000_000);
    let tracker = Arc::new(QuotaFile::load(&config_path).unwrap().build().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (tracker, stop, counted) = (
                Arc::clone(&tracker),
                Arc::clone(&stop),
                Arc::clone(&counted),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if tracker.record_call("api", 1).is_ok() {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let variants = [
        ("", 1, 1_000_000_000),
        ("America/Los_Angeles", 1, 1_000_000_000),
        ("America/Los_Angeles", 1, 2_000_000_000),
        ("Europe/Paris", 2, 1_000_000_000),
        ("", 1, 3_000_000_000),
    ];
    for round in 0..40 {
        let (zone, every, limit) = variants[round % variants.len()];
        write(zone, every, limit);
        let said = example::reload(&config_path, &tracker);
        assert!(said.starts_with("reloaded "), "{said}");
        if round % 7 == 0 {
            tracker.flush().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    tracker.flush().unwrap();
    let state = quota_core::FileStore::new(&store_path).state().unwrap();
    let stored: u64 = state.windows().map(|w| w.total).sum();
    assert_eq!(stored, counted.load(Ordering::Relaxed));
    assert_eq!(
        tracker.usage("api").unwrap().total_recorded,
        counted.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// Redis keys of a zoned service
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "redis")]
#[test]
fn guard_redis_keys_of_a_zoned_service_name_the_spec_and_expire_with_it() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let server = redis_server::Server::start();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let spec = spec("day@America/Los_Angeles");
    let tracker = QuotaTracker::builder(TrackerConfig::new([ServiceConfig::new(
        "maps{x}:y",
        100,
        spec.clone(),
    )]))
    .store(server.store())
    .build()
    .unwrap();
    tracker.record_call("maps{x}:y", 4).unwrap();
    tracker.flush().unwrap();
    let window = spec.window_at(now);
    let mut raw = server.raw();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    let window_keys: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with(&format!(":{}", window.start_ms)))
        .collect();
    assert_eq!(window_keys.len(), 1, "{keys:?}");
    let key = window_keys[0];
    assert!(key.contains(":day@America/Los_Angeles:"), "{key}");
    // One hash tag, the service's (escaped), before the spec.
    let tag = &key[key.find('{').unwrap() + 1..key.find('}').unwrap()];
    assert!(!tag.contains("day@"), "{key}");
    let value: String = redis::cmd("GET").arg(key).query(&mut raw).unwrap();
    assert_eq!(value, "4");
    let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut raw).unwrap();
    let expected = window.reset_at_ms + 3_600_000 - now;
    assert!(
        ttl > 0 && (ttl as u64) <= expected + 5_000,
        "{ttl} vs {expected}"
    );
    assert!(ttl as u64 + 60_000 >= expected, "{ttl} vs {expected}");
}

#[test]
fn an_anchor_day_out_of_range_in_a_file_says_its_reason_once() {
    // `config::window_spec` passes `WindowSpecError::AnchorOutOfRange`'s whole message as the
    // reason, so the field and the value appear twice:
    // `service "x": anchor_day anchor_day must be a day of the month, 1 to 31 (got 0) (got 0)`.
    for day in [0, 32] {
        let text = format!(
            "[[services]]\nname = \"x\"\nlimit = 1\nperiod = \"month\"\nanchor_day = {day}\n"
        );
        let error = QuotaFile::from_toml_str(&text).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "invalid config at line 5, column 1: service \"x\": anchor_day must be a day of \
                 the month, 1 to 31 (got {day})"
            )
        );
    }
}

#[test]
fn every_and_anchor_day_past_their_integer_type_name_field_and_range() {
    // `every = 36526` says "every must be from 1 to 36525 for days", `anchor_day = 32` names
    // the range; but one past the Rust integer type gives serde's words: "invalid value:
    // integer `300`, expected u8", naming neither the field nor the allowed range.
    for (period, line, wanted) in [
        ("month", "anchor_day = 300", "1 to 31"),
        ("month", "anchor_day = -1", "1 to 31"),
        ("day", "every = 4294967296", "1 to 36525"),
        ("day", "every = -1", "1 to 36525"),
    ] {
        let text =
            format!("[[services]]\nname = \"x\"\nlimit = 1\nperiod = \"{period}\"\n{line}\n");
        let error = QuotaFile::from_toml_str(&text).unwrap_err().to_string();
        let field = line.split(' ').next().unwrap();
        assert!(
            error.contains("line 5") && error.contains(field) && error.contains(wanted),
            "{line}: {error}"
        );
    }
}

#[test]
fn guard_extreme_clock_readings_never_panic_for_any_spec() {
    let keys = [
        "second",
        "86400second",
        "45minute@Australia/Lord_Howe",
        "24hour@Asia/Kolkata",
        "day@Pacific/Kiritimati",
        "36525day@America/Los_Angeles",
        "5218week@Pacific/Apia",
        "1200month+31@Antarctica/Troll",
        "month+29@Etc/GMT-14",
        "week@Etc/GMT+12",
    ];
    let last = 1u64 << 62;
    for key in keys {
        let spec = spec(key);
        for now in [
            0,
            1,
            999,
            DAY,
            last - 1,
            last,
            last + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let window = spec.window_at(now);
            assert!(window.start_ms <= now, "{key} at {now}: {window:?}");
            assert!(
                now < window.reset_at_ms || window.reset_at_ms == u64::MAX,
                "{key} at {now}"
            );
        }
        let store = MemoryStore::new();
        let clock = ManualClock::new(ms("2024-06-10T12:00:00Z"));
        let config = TrackerConfig::new([ServiceConfig::new("api", 100, spec.clone())]);
        let tracker = stored(&store, config, &clock);
        for now in [u64::MAX, 0, last, ms("2024-06-10T12:00:00Z"), u64::MAX - 1] {
            clock.set(now);
            tracker.record_call("api", 1).unwrap();
            tracker.flush().unwrap();
        }
        let sum: u64 = store.state().unwrap().windows().map(|w| w.total).sum();
        assert!(sum >= 5, "{key}: {sum}");
    }
}

#[test]
fn a_far_ahead_host_on_a_short_spec_keeps_a_long_specs_records() {
    // `outlived` ignores a window further off than two of its spec's longest windows (a host
    // whose clock is far ahead), but its `full_after` clause takes any spec's 8 windows after
    // a record's end as "the record's windows are gone". With two specs of one service in the
    // store (a rolling reconfigure; several limits per service later), a host 10 days ahead
    // counting in seconds windows for 8 seconds expires every day-window record of the
    // service, and a resend of a lost reply then counts twice.
    let day = spec("day");
    let seconds = spec("second");
    let t0 = ms("2024-06-10T12:00:00Z");
    let mut state = StoredState::new();
    let honest = key("api", &day, t0);
    state.apply(&batch(2, 1, &[(&honest, 5)]));
    let ahead = t0 + 10 * DAY;
    for n in 0..(StoredState::WINDOWS_KEPT as u64 + 1) {
        state.apply(&batch(
            1,
            n + 1,
            &[(&key("api", &seconds, ahead + n * 1_000), 1)],
        ));
    }
    // Instance 2's reply was lost: it resends seq 1.
    state.apply(&batch(2, 1, &[(&honest, 5)]));
    assert_eq!(state.total(&honest), 5, "the resend counted twice");
}

#[test]
fn guard_a_far_ahead_host_on_the_same_spec_does_not_expire_records() {
    // The same attack with one spec: 8 far-ahead windows of a day take 8 days of bogus
    // progress; one window 10 days ahead (past two days and the grace) is ignored.
    let day = spec("day");
    let t0 = ms("2024-06-10T12:00:00Z");
    let mut state = StoredState::new();
    let honest = key("api", &day, t0);
    state.apply(&batch(2, 1, &[(&honest, 5)]));
    state.apply(&batch(1, 1, &[(&key("api", &day, t0 + 10 * DAY), 1)]));
    state.apply(&batch(2, 1, &[(&honest, 5)]));
    assert_eq!(state.total(&honest), 5);
}
