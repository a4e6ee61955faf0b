//! A logger that panics on every record: the tracker logs only through a guard, so observers,
//! stores and clocks that fail (and get logged) still cannot wedge delivery or escape a call.
//! Its own test binary, since the logger is process-wide.

use quota_core::{
    Level, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, TrackerConfig,
};
use std::sync::{Arc, Mutex};
use std::thread;

struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        panic!("logger bug while logging: {}", record.args());
    }

    fn flush(&self) {}
}

#[test]
fn a_panicking_logger_cannot_wedge_delivery_or_escape_a_call() {
    log::set_logger(&PanickingLogger).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let store = MemoryStore::new();
    store.set_raw(Some("not json".into())); // build logs the corrupt load
    let tracker = Arc::new(
        QuotaTracker::builder(TrackerConfig::new([ServiceConfig::new(
            "a",
            100,
            Period::Day,
        )]))
        .clock(ManualClock::new(1_718_000_000_000))
        .store(store)
        .build()
        .unwrap(),
    );
    tracker.on_transition(|_| panic!("observer bug")); // logged: the logger panics too
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.to));
    tracker.record_call("a", 50).unwrap();
    tracker.record_call("a", 30).unwrap();
    let other = Arc::clone(&tracker);
    thread::spawn(move || {
        other.record_call("a", 20).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [Level::Warning, Level::Critical, Level::Exhausted]
    );
}
