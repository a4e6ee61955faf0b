//! Crash safety: child processes syncing to one file in a loop are killed with SIGKILL at random
//! moments; the file always parses to a state some sync wrote, counts never go back, and
//! nothing is moved aside.

#![cfg(unix)]

use quota_core::{FileStore, Period, QuotaTracker, ServiceConfig, StoredState, TrackerConfig};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "QUOTA_CRASH_CHILD_FILE";

fn config() -> TrackerConfig {
    TrackerConfig::new([
        ServiceConfig::new("a", u64::MAX, Period::Month),
        ServiceConfig::new("b", u64::MAX, Period::Month),
    ])
}

/// The child: records one call to each service, flushes, forever. Every batch therefore adds
/// as much to `a` as to `b`, so every stored state has `a == b`; a torn or mixed write, or a
/// batch applied to one service only, would not.
#[test]
#[ignore = "run by killed_syncers_always_leave_a_synced_state as its child process"]
fn crash_child_syncs_forever() {
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

fn spawn_child(path: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_syncs_forever",
            "--nocapture",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killed_syncers_always_leave_a_synced_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let store = FileStore::new(&path);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut last_a = 0;
    for round in 0..50 {
        // Odd rounds: two processes share the file.
        let mut children: Vec<Child> = (0..1 + round % 2).map(|_| spawn_child(&path)).collect();
        // Wait until the children have synced at least once more, then a random moment longer.
        let started = Instant::now();
        while totals(&store).map_or(0, |(a, _)| a) <= last_a {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: the children never synced"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..20_000)));
        for child in &mut children {
            child.kill().unwrap(); // SIGKILL
        }
        for child in &mut children {
            child.wait().unwrap();
        }

        let (a, b) = totals(&store).unwrap_or_else(|e| panic!("round {round}: {e}"));
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

/// The stored totals of `a` and `b` (every window: the test runs within one month, or two
/// if it crosses a month's end), read under the store's lock; an error if the file does not
/// parse cleanly.
fn totals(store: &FileStore) -> Result<(u64, u64), String> {
    let state: StoredState = store.state().map_err(|e| e.to_string())?;
    if !state.skipped().is_empty() {
        return Err(format!("entries skipped: {:?}", state.skipped()));
    }
    let total = |name: &str| {
        state
            .windows()
            .filter(|w| w.service == name)
            .map(|w| w.total)
            .sum()
    };
    Ok((total("a"), total("b")))
}
