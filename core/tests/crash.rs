//! Crash safety: a child process saving in a loop is killed with SIGKILL at random moments;
//! the file always parses to a state that was actually saved.

#![cfg(unix)]

use quota_core::{FileStore, Period, QuotaTracker, ServiceConfig, Store, TrackerConfig};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "QUOTA_CRASH_CHILD_FILE";

fn config() -> TrackerConfig {
    TrackerConfig::new([
        ServiceConfig::new("a", u64::MAX, Period::Month),
        ServiceConfig::new("b", u64::MAX, Period::Month),
    ])
}

/// The child: records one call to each service, flushes, forever. Every saved state therefore
/// has `a == b`; a torn or mixed write would not.
#[test]
#[ignore = "run by killed_saver_always_leaves_a_saved_state as its child process"]
fn crash_child_saves_forever() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let tracker = QuotaTracker::builder(config())
        .store(FileStore::new(path))
        .build()
        .unwrap();
    loop {
        tracker.record_call("a", 1).unwrap();
        tracker.record_call("b", 1).unwrap();
        tracker.flush().unwrap();
    }
}

#[test]
fn killed_saver_always_leaves_a_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let store = FileStore::new(&path);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut last_a = 0;
    for round in 0..50 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash_child_saves_forever",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until this child has saved at least once more, then a random moment longer.
        let started = Instant::now();
        while saved_a(&store) <= last_a {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "child never saved"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..20_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let state = store
            .load()
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .expect("a state");
        let (a, b) = (state.services[0].used, state.services[1].used);
        assert_eq!(a, b, "round {round}: a mixed state");
        assert!(a > last_a, "round {round}: went back from {last_a} to {a}");
        last_a = a;
    }
    // Nothing was ever moved aside as corrupt.
    let corrupt = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("corrupt")
        })
        .count();
    assert_eq!(corrupt, 0);
}

fn saved_a(store: &FileStore) -> u64 {
    match store.load() {
        Ok(Some(state)) => state.services[0].used,
        _ => 0,
    }
}
